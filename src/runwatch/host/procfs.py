"""Reads of one process from procfs: its cgroup, its status (``NSpid``, credentials), its namespaces.

Every reader returns None when the process (or thread) is gone or the file is unreadable;
none raises. The ``parse_*`` functions take the file's bytes, for callers that read through
a directory fd they hold (so every read is of the same process even if the pid is reused).
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field

PROC = "/proc"
_DELETED = " (deleted)"


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _task_dir(pid: int, tid: int | None, proc: str) -> str:
    return f"{proc}/{pid}" if tid is None else f"{proc}/{pid}/task/{tid}"


def clean_cgroup_path(raw: str) -> str:
    """A cgroup path as ``/a/b``: surrounding space, slashes and a trailing `` (deleted)`` removed."""
    path = raw.strip()
    if path.endswith(_DELETED):
        path = path[: -len(_DELETED)]
    return "/" + path.strip("/")


def parse_cgroup_v2(data: bytes) -> str | None:
    """The cgroup v2 path (the ``0::`` line) of a ``/proc/<pid>/cgroup`` file, or None without one."""
    for line in data.splitlines():
        if line.startswith(b"0::"):
            return clean_cgroup_path(line[3:].decode("utf-8", "replace"))
    return None


def cgroup_path(pid: int, proc: str = PROC) -> str | None:
    """The cgroup v2 path of ``pid`` (``/runwatch/abc``), or None when it is gone or has none."""
    data = _read(f"{proc}/{pid}/cgroup")
    return parse_cgroup_v2(data) if data is not None else None


def cgroup_paths(pid: int, proc: str = PROC) -> list[str] | None:
    """The path of ``pid`` in every hierarchy (v1 controllers and v2), in file order; None when gone."""
    data = _read(f"{proc}/{pid}/cgroup")
    if data is None:
        return None
    lines = data.decode("utf-8", "replace").splitlines()
    return [clean_cgroup_path(line.split(":", 2)[-1]) for line in lines if line.count(":") >= 2]


@dataclass(slots=True)
class Status:
    """The fields of ``/proc/<pid>/status`` runwatch uses; None (or empty) when absent.

    ``nspid`` lists the pid in each pid namespace from the host's outward to the innermost
    (``NSpid``); its last entry is the pid the process sees for itself.
    """

    comm: str | None = None
    ppid: int | None = None
    uid: int | None = None
    euid: int | None = None
    gid: int | None = None
    nspid: list[int] = field(default_factory=list)
    cap_bnd: int | None = None  # capability bounding set, as a bit mask
    cap_eff: int | None = None  # effective capability set, as a bit mask
    cap_prm: int | None = None  # permitted capability set, as a bit mask


def parse_status(data: bytes) -> Status:
    """The fields of a status file; malformed lines are skipped."""
    st = Status()
    for line in data.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition(":")
        fields = value.split()
        if not fields:
            continue
        try:
            if key == "Name":
                st.comm = value.strip()
            elif key == "PPid":
                st.ppid = int(fields[0])
            elif key == "Uid" and len(fields) >= 2:
                st.uid, st.euid = int(fields[0]), int(fields[1])
            elif key == "Gid":
                st.gid = int(fields[0])
            elif key == "NSpid":
                st.nspid = [int(x) for x in fields]
            elif key == "CapBnd":
                st.cap_bnd = int(fields[0], 16)
            elif key == "CapEff":
                st.cap_eff = int(fields[0], 16)
            elif key == "CapPrm":
                st.cap_prm = int(fields[0], 16)
        except ValueError:
            continue
    return st


def status(pid: int, tid: int | None = None, proc: str = PROC) -> Status | None:
    """The status of process ``pid`` (of its thread ``tid`` when given), or None when gone."""
    data = _read(f"{_task_dir(pid, tid, proc)}/status")
    return parse_status(data) if data is not None else None


@dataclass(frozen=True, slots=True)
class Stat:
    """The fields of ``/proc/<pid>/stat`` runwatch uses; ``start_ticks`` is clock ticks since boot."""

    comm: str
    ppid: int
    start_ticks: int
    tty: int = 0  # tty_nr: the controlling terminal's device, 0 when none


def parse_stat(data: bytes) -> Stat | None:
    """The fields of a stat file (``comm`` may hold spaces and parentheses), or None if malformed."""
    text = data.decode("utf-8", "replace")
    open_paren, close_paren = text.find("("), text.rfind(")")
    if open_paren < 0 or close_paren < open_paren:
        return None
    fields = text[close_paren + 2:].split()
    try:
        return Stat(text[open_paren + 1:close_paren], int(fields[1]), int(fields[19]), int(fields[4]))
    except (IndexError, ValueError):
        return None


def stat(pid: int, proc: str = PROC) -> Stat | None:
    """The stat fields of ``pid``, or None when it is gone."""
    data = _read(f"{proc}/{pid}/stat")
    return parse_stat(data) if data is not None else None


def loginuid(pid: int, proc: str = PROC) -> int | None:
    """The audit login uid of ``pid`` (4294967295 when never set), or None when unreadable."""
    data = _read(f"{proc}/{pid}/loginuid")
    try:
        return int(data) if data is not None else None
    except ValueError:
        return None


def state(pid: int, proc: str = PROC) -> str | None:
    """The state letter of ``pid`` (``R``, ``S``, ``T`` for stopped, ...), or None when it is gone."""
    data = _read(f"{proc}/{pid}/stat")
    if data is None:
        return None
    fields = data.rpartition(b")")[2].split()
    return fields[0].decode() if fields else None


def start_ticks(pid: int, proc: str = PROC) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of ``stat``), or None when gone."""
    st = stat(pid, proc)
    return st.start_ticks if st is not None else None


def boot_time_ns(proc: str = PROC) -> int:
    """When the machine booted, in ns since the epoch (``btime`` of ``/proc/stat``); 0 if unknown."""
    data = _read(f"{proc}/stat")
    for line in data.splitlines() if data is not None else []:
        if line.startswith(b"btime "):
            try:
                return int(line.split()[1]) * 1_000_000_000
            except (IndexError, ValueError):
                return 0
    return 0


def ns_pid(pid: int, tid: int | None = None, proc: str = PROC) -> int | None:
    """The innermost ``NSpid`` of ``pid`` (or of its thread ``tid``): the id it sees for itself."""
    st = status(pid, tid, proc)
    return st.nspid[-1] if st is not None and st.nspid else None


def pidns(pid: int | str, proc: str = PROC) -> int | None:
    """The inode of the pid namespace of ``pid`` (a pid, or ``"self"``), or None when it is gone."""
    try:
        return os.stat(f"{proc}/{pid}/ns/pid").st_ino
    except OSError:
        return None


NS_GET_PARENT = 0xB702
"""``ioctl`` on a namespace fd: an fd of its parent namespace (EPERM past the caller's own)."""
MAX_PIDNS_DEPTH = 32
"""The kernel nests pid namespaces at most this deep."""


def pidns_within(pid: int, outer: int, proc: str = PROC) -> bool:
    """Whether the pid namespace of ``pid`` is the one with inode ``outer`` or nested inside it."""
    try:
        fd = os.open(f"{proc}/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        for _ in range(MAX_PIDNS_DEPTH + 1):
            if os.fstat(fd).st_ino == outer:
                return True
            try:
                parent = fcntl.ioctl(fd, NS_GET_PARENT)
            except OSError:
                return False  # the top namespace (or one this process may not look above)
            os.close(fd)
            fd = parent
        return False
    finally:
        os.close(fd)


def ns_view(pid: int, proc: str = PROC) -> tuple[int, int] | None:
    """(pid-namespace inode, innermost pid) of ``pid``: how it names itself, and where."""
    ns = pidns(pid, proc)
    inner = ns_pid(pid, proc=proc) if ns is not None else None
    return (ns, inner) if ns is not None and inner is not None else None


def host_tid(pid: int, vtid: int, proc: str = PROC) -> int | None:
    """The host id of the thread of ``pid`` that sees itself as ``vtid``, or None."""
    try:
        tids = os.listdir(f"{proc}/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        if tid.isdigit() and ns_pid(pid, int(tid), proc) == vtid:
            return int(tid)
    return None
