"""Files runwatch writes are readable by their owner only (0600).

Events and alerts hold command lines, paths and tool arguments, where a workload may have put a
secret. New files are created 0600; an existing file that runwatch owns is narrowed to 0600 when
opened for writing (one it does not own is left as its owner set it).
"""

from __future__ import annotations

import contextlib
import os
from typing import BinaryIO

MODE = 0o600


def _narrow(fd: int) -> None:
    st = os.fstat(fd)
    if st.st_uid == os.geteuid() and st.st_mode & 0o077:
        with contextlib.suppress(OSError):
            os.fchmod(fd, MODE)


def ensure_private(path: str) -> None:
    """Create ``path`` empty and 0600 if missing, or narrow it to 0600 (SQLite's -wal and -shm
    files then take the same mode). Raises OSError."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, MODE)
    try:
        _narrow(fd)
    finally:
        os.close(fd)


def open_append(path: str) -> BinaryIO:
    """``path`` opened for binary append, created 0600 (or narrowed to it). Raises OSError."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, MODE)
    try:
        _narrow(fd)
        return os.fdopen(fd, "ab")
    except BaseException:
        os.close(fd)
        raise
