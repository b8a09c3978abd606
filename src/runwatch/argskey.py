"""The per-installation key of tool-argument digests.

Arguments are never stored, only ``HMAC-SHA256(key, canonical JSON)`` (:func:`runwatch.sdk.args_digest`,
the one digest function): without the key, a digest cannot be checked against guessed
arguments. The key is 32 random bytes written as 64 hex characters to ``args.key`` in the
state directory (``$RUNWATCH_STATE_DIR``, default ``/var/lib/runwatch``), made on first use:
the directory 0700, the file 0600 (a looser file runwatch owns is narrowed), written to a
temporary name and linked into place so two runwatch processes starting at once agree on one
key. The HMAC key is the 64 characters themselves, so an agent given them as
``RUNWATCH_ARGS_KEY`` (``runwatch run`` does this for its command) computes the same digests.

Thread safety: :class:`ArgsKey` loads once under a lock; ``digest`` may run on any thread.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
from typing import Any

from runwatch.privatefile import MODE, ensure_private

ENV_STATE_DIR = "RUNWATCH_STATE_DIR"
DEFAULT_STATE_DIR = "/var/lib/runwatch"
KEY_FILE = "args.key"
_KEY_TEXT = re.compile(r"^[0-9a-f]{64}$")


def default_key_path() -> str:
    """``args.key`` in the state directory (``$RUNWATCH_STATE_DIR`` or ``/var/lib/runwatch``)."""
    return os.path.join(os.environ.get(ENV_STATE_DIR) or DEFAULT_STATE_DIR, KEY_FILE)


def _create(path: str) -> None:
    """Write a new key at ``path`` unless one is there (then nothing changes)."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.{threading.get_native_id()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, MODE)
    try:
        os.write(fd, secrets.token_hex(32).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process made it first: use that one
    finally:
        os.unlink(tmp)


def load_key(path: str) -> bytes:
    """The key at ``path``, made first if missing. Raises OSError with a one-line message."""
    if not os.path.exists(path):
        _create(path)
    ensure_private(path)
    with open(path, "rb") as fh:
        text = fh.read(128).strip()
    if not _KEY_TEXT.match(text.decode("ascii", "replace")):
        raise OSError(f"{path}: not an args key (64 hex characters); remove it to make a new one")
    return text


class ArgsKey:
    """The args key at ``path`` (default :func:`default_key_path`), loaded on first use."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or default_key_path()
        self._key: bytes | None = None
        self._lock = threading.Lock()

    @property
    def key(self) -> bytes:
        """The key bytes (made on first use). Raises OSError (one line) when it cannot be read or made."""
        with self._lock:
            if self._key is None:
                self._key = load_key(self.path)
            return self._key

    @property
    def text(self) -> str:
        """The key as ``RUNWATCH_ARGS_KEY`` takes it."""
        return self.key.decode()

    def digest(self, args: Any) -> str:
        """The HMAC-SHA256 (hex) of ``args`` under this key, as the agent SDK computes it."""
        from runwatch.sdk import args_digest

        return args_digest(args, self.key)
