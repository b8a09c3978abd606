"""Host-side facts and cleanup helpers for runc containers: cgroup mounts, cgroup removal,
leftover mounts, the caller's capability bounding set, and the lock that guards the shared
``/runwatch`` cgroup parent.

All functions act on this host's real ``/proc`` and cgroup filesystems, read through
:mod:`runwatch.host`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from runwatch.containers.oci import capabilities_from_mask
from runwatch.host import procfs
from runwatch.host.mounts import read_mountinfo, visible

LOCK_DIR = Path("/run/runwatch")
_POLL_S = 0.005


class CgroupError(RuntimeError):
    """A cgroup directory could not be removed; the message is one line."""


def own_bounding_capabilities() -> list[str]:
    """Capability names in this process's bounding set (what runc can pass on)."""
    st = procfs.status(os.getpid())
    return capabilities_from_mask(st.cap_bnd) if st is not None and st.cap_bnd is not None else []


def cgroup_mounts() -> list[Path]:
    """Mount points of every visible cgroup v1 hierarchy and of the v2 hierarchy on this host."""
    return [Path(m.point) for m in visible(read_mountinfo()) if m.fstype in ("cgroup", "cgroup2")]


def mounts_under(path: Path) -> list[str]:
    """Host mount points at or below ``path`` in this process's mount namespace (hidden ones too)."""
    prefix = str(path)
    return [m.point for m in read_mountinfo() if m.point == prefix or m.point.startswith(prefix + "/")]


def remove_cgroup(cgroup: Path, timeout: float = 5.0) -> None:
    """rmdir ``cgroup`` (children first), killing stragglers; retries while it is busy."""
    if not cgroup.is_dir():
        return
    for child in sorted(
        (p for p in cgroup.iterdir() if p.is_dir()), key=lambda p: len(p.parts), reverse=True
    ):
        remove_cgroup(child, timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            cgroup.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() > deadline:
                raise CgroupError(f"cannot remove cgroup {cgroup}: {exc.strerror}") from exc
        for pid in _cgroup_pids(cgroup):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(_POLL_S)


def _cgroup_pids(cgroup: Path) -> list[int]:
    try:
        text = (cgroup / "cgroup.procs").read_text()
    except OSError:
        return []
    return [int(tok) for tok in text.split()]


@contextlib.contextmanager
def cgroup_parent_lock(*, shared: bool, blocking: bool = True) -> Iterator[bool]:
    """flock guarding the shared ``/runwatch`` cgroup parent.

    Starts hold it shared (runc creates the parent), and removal of an empty parent holds it
    exclusive without blocking, so a parent is never removed between runc's mkdir of the
    parent and of the container's own directory. Yields whether the lock was taken.
    """
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(LOCK_DIR / "cgroup-parent.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        flags = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, flags | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def owner_token(pid: int) -> str:
    """``<pid>:<start ticks>``: identifies a live process even across pid reuse."""
    return f"{pid}:{procfs.start_ticks(pid)}"


def owner_alive(token: str) -> bool:
    """Whether the process an :func:`owner_token` names still runs (False for garbage)."""
    pid_text, _, ticks = token.partition(":")
    if not pid_text.isdigit():
        return False
    return str(procfs.start_ticks(int(pid_text))) == ticks
