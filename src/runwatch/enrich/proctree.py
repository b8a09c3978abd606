"""The process tree: who started whom, built from fork/exec/exit events and seeded from /proc.

Kernel events other than exec carry only pid and comm; :meth:`ProcessTree.enrich` fills
``ppid``, ``exe``, ``cmdline``, ``argv``, ``ancestry`` and ``pcmdline`` from the tree, reading
``/proc/<pid>`` on a miss (and recording what it read), and the other process facts Falco
rules read: ``proc_start`` (the fork's time) and the exec's ``tty``, ``loginuid``,
``cap_effective`` and ``cap_permitted`` (a later ``priv.capset`` replaces the sets).

Contracts:

- pids are thread-group ids (``tgid``); a fork whose child equals the parent is a thread
  and is ignored.
- ``apply`` must see events in kernel order per pid. ``enrich`` may run before or after
  ``apply`` of the same event: exec events carry their own exe/cmdline, which ``enrich``
  never overwrites, exec does not change ancestry, and an exited pid stays resolvable.
- Times (``start_time``, ``exit_time``) are nanoseconds since the epoch; exited processes
  are kept ``exit_grace_ns`` of *event* time after their exit so that late events of that
  pid still resolve, then dropped.
- Memory is bounded by ``max_entries``: exited records go first, then the least recently
  used live ones; every eviction is counted in :meth:`ProcessTree.stats`.
- Not thread-safe: one tree belongs to one pipeline thread.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, replace

from runwatch.events import Event
from runwatch.host import procfs

_DEPTH_CAP = 64  # longest ancestry returned; real trees are far shallower
_REUSE_SLACK_NS = 2_000_000_000  # /proc start times are only as exact as btime (1 s)


@dataclass(slots=True, frozen=True)
class ProcRecord:
    """One process as the tree knows it. ``exit_time`` is set once it has exited."""

    pid: int
    ppid: int
    exe: str
    cmdline: str
    argv: tuple[str, ...] = ()
    comm: str = ""
    start_time: int = 0
    exit_time: int | None = None
    from_proc: bool = False  # read from /proc rather than learned from events
    tty: int | None = None
    loginuid: int | None = None
    cap_effective: int | None = None
    cap_permitted: int | None = None

    @property
    def label(self) -> str:
        """What ancestry shows for this process: its executable, else its comm."""
        return self.exe or self.comm


def read_proc_record(pid: int, proc_root: str = "/proc", boot_ns: int | None = None) -> ProcRecord | None:
    """Read one process from ``/proc/<pid>``; ``None`` if it is gone or unreadable.

    ``exe`` is the kernel's link text, so a deleted binary keeps its ``" (deleted)"`` suffix
    (a useful signal); it is empty for kernel threads. ``start_time`` is derived from the
    stat start time in clock ticks plus the boot time.
    """
    base = f"{proc_root}/{pid}"
    st = procfs.stat(pid, proc_root)
    if st is None:
        return None
    boot = procfs.boot_time_ns(proc_root) if boot_ns is None else boot_ns
    start = boot + st.start_ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    try:
        exe = os.readlink(f"{base}/exe")
    except OSError:
        exe = ""
    try:
        with open(f"{base}/cmdline", "rb") as f:
            raw = f.read(1 << 16)
    except OSError:
        raw = b""
    argv = tuple(a.decode("utf-8", "replace") for a in raw.split(b"\0")[:-1]) if raw else ()
    status = procfs.status(pid, proc=proc_root)
    return ProcRecord(pid=pid, ppid=st.ppid, exe=exe, cmdline=" ".join(argv), argv=argv, comm=st.comm,
                      start_time=start, from_proc=True, tty=st.tty, loginuid=procfs.loginuid(pid, proc_root),
                      cap_effective=status.cap_eff if status is not None else None,
                      cap_permitted=status.cap_prm if status is not None else None)


class ProcessTree:
    """Live process tree keyed by pid (tgid).

    Args:
        max_entries: bound on records held (live and exited together).
        exit_grace_ns: how long (event time) an exited process stays resolvable.
        proc_root: procfs mount, for seeding and fallback reads.
        proc_fallback: read ``/proc/<pid>`` for pids the tree does not know.
    """

    def __init__(
        self,
        max_entries: int = 65536,
        exit_grace_ns: int = 5_000_000_000,
        proc_root: str = "/proc",
        proc_fallback: bool = True,
    ) -> None:
        if max_entries < 2:
            raise ValueError(f"max_entries must be at least 2, got {max_entries}")
        self.max_entries = max_entries
        self.exit_grace_ns = exit_grace_ns
        self.proc_root = proc_root
        self.proc_fallback = proc_fallback
        self._boot_ns = procfs.boot_time_ns(proc_root)
        self._procs: OrderedDict[int, ProcRecord] = OrderedDict()  # LRU order
        self._exited: OrderedDict[int, int] = OrderedDict()  # pid -> exit time, in exit order
        # Ancestry and parent command line per pid, computed once per state of the tree: any
        # record added, replaced by an exec or dropped starts a new generation.
        self._gen = 0
        self._lineage: dict[int, tuple[int, tuple[str, ...], str | None]] = {}
        self._stats = dict.fromkeys(
            ("seeded", "forks", "execs", "exits", "threads_ignored", "exits_unknown",
             "proc_reads", "proc_misses", "pid_reused", "expired", "evicted"), 0)

    # -- building -----------------------------------------------------------------------

    def seed_from_proc(self) -> int:
        """Add every process now in ``/proc`` that the tree does not know yet. Returns the count."""
        try:
            names = os.listdir(self.proc_root)
        except OSError as exc:
            raise RuntimeError(f"cannot list {self.proc_root}: {exc}") from exc
        added = 0
        for name in names:
            if not name.isdigit():
                continue
            pid = int(name)
            if pid in self._procs:
                continue
            rec = read_proc_record(pid, self.proc_root, self._boot_ns)
            if rec is not None:
                self._put(rec)
                added += 1
        self._stats["seeded"] += added
        return added

    def apply(self, event: Event) -> None:
        """Update the tree from a ``process.fork``, ``process.exec`` or ``process.exit`` event.

        Other kinds are ignored. Also expires exited records older than the grace period.
        """
        kind = event.kind
        if kind == "process.fork":
            self._fork(event)
        elif kind == "process.exec":
            self._exec(event)
        elif kind == "process.exit":
            self._exit(event)
        elif kind == "priv.capset":
            self._capset(event)
            return
        else:
            return
        self.expire(event.time)

    def expire(self, now_ns: int) -> int:
        """Drop exited records whose grace ended before ``now_ns``. Returns how many."""
        dropped = 0
        while self._exited:
            pid, exit_time = next(iter(self._exited.items()))
            if now_ns - exit_time < self.exit_grace_ns:
                break
            del self._exited[pid]
            rec = self._procs.get(pid)
            if rec is not None and rec.exit_time is not None:
                del self._procs[pid]
                self._gen += 1
            dropped += 1
        self._stats["expired"] += dropped
        return dropped

    def _fork(self, event: Event) -> None:
        child_pid = event.child_pid
        if child_pid is None or child_pid <= 0:
            return
        if child_pid == event.pid:
            self._stats["threads_ignored"] += 1
            return
        self._stats["forks"] += 1
        parent = self._lookup(event.pid)
        if parent is None:
            parent = ProcRecord(pid=event.pid, ppid=event.ppid, exe=event.exe, cmdline=event.cmdline,
                                argv=tuple(event.argv or ()), comm=event.comm or "")
            if event.pid > 0:
                self._put(parent)
        old = self._procs.get(child_pid)
        if old is not None:
            self._stats["pid_reused"] += 1
            self._forget(child_pid)
        self._put(ProcRecord(pid=child_pid, ppid=event.pid, exe=parent.exe, cmdline=parent.cmdline,
                             argv=parent.argv, comm=parent.comm, start_time=event.time, tty=parent.tty,
                             loginuid=parent.loginuid, cap_effective=parent.cap_effective,
                             cap_permitted=parent.cap_permitted))

    def _exec(self, event: Event) -> None:
        self._stats["execs"] += 1
        rec = self._procs.get(event.pid)
        if rec is not None and rec.exit_time is not None:
            self._forget(event.pid)  # an exec after an exit is a new process on a reused pid
            self._stats["pid_reused"] += 1
            rec = None
        if rec is None:
            rec = self._lookup(event.pid) or ProcRecord(pid=event.pid, ppid=event.ppid, exe="", cmdline="",
                                                        start_time=event.time)
        argv = tuple(event.argv) if event.argv is not None else tuple(event.cmdline.split())
        comm = event.comm or os.path.basename(event.exe)[:15] or rec.comm
        updated = replace(rec, exe=event.exe, cmdline=event.cmdline, argv=argv, comm=comm,
                          ppid=event.ppid or rec.ppid,
                          tty=event.tty if event.tty is not None else rec.tty,
                          loginuid=event.loginuid if event.loginuid is not None else rec.loginuid,
                          cap_effective=event.cap_effective if event.cap_effective is not None
                          else rec.cap_effective,
                          cap_permitted=event.cap_permitted if event.cap_permitted is not None
                          else rec.cap_permitted)
        self._put(updated)

    def _capset(self, event: Event) -> None:
        rec = self._procs.get(event.pid)
        priv = event.priv
        if rec is None or priv is None or priv.cap_effective is None or (priv.result or 0) < 0:
            return
        self._procs[event.pid] = replace(rec, cap_effective=priv.cap_effective,
                                         cap_permitted=priv.cap_permitted if priv.cap_permitted is not None
                                         else rec.cap_permitted)

    def _exit(self, event: Event) -> None:
        rec = self._procs.get(event.pid)
        if rec is None or rec.exit_time is not None:
            self._stats["exits_unknown"] += 1
            return
        self._stats["exits"] += 1
        self._procs[event.pid] = replace(rec, exit_time=event.time)
        self._exited[event.pid] = event.time

    # -- queries ------------------------------------------------------------------------

    def get(self, pid: int) -> ProcRecord | None:
        """The record for ``pid`` known to the tree (no /proc read), or ``None``."""
        return self._procs.get(pid)

    def lookup(self, pid: int) -> ProcRecord | None:
        """The record for ``pid``, read from /proc (and remembered) when the tree lacks it."""
        return self._lookup(pid) if pid > 0 else None

    def ancestry(self, pid: int) -> list[str]:
        """Executables of the parent, grandparent, ... up to pid 1 (cycle-safe, depth-capped).

        Parents unknown to the tree are read from /proc; a /proc process that started
        after its supposed child is a reused pid and ends the chain.
        """
        out: list[str] = []
        rec = self._lookup(pid)
        seen = {pid}
        while rec is not None and rec.ppid > 0 and rec.ppid not in seen and len(out) < _DEPTH_CAP:
            seen.add(rec.ppid)
            parent = self._lookup(rec.ppid, born_before=rec.start_time)
            if parent is None:
                break
            out.append(parent.label)
            rec = parent
        return out

    def parent_cmdline(self, pid: int) -> str | None:
        """The command line of ``pid``'s parent (read from /proc when the tree lacks it), else None."""
        rec = self._lookup(pid)
        if rec is None or rec.ppid <= 0 or rec.ppid == pid:
            return None
        parent = self._lookup(rec.ppid, born_before=rec.start_time)
        return parent.cmdline or None if parent is not None else None

    def enrich(self, event: Event) -> Event:
        """Fill ``ppid``, ``exe``, ``cmdline``, ``argv``, ``ancestry``, ``pcmdline`` and the process
        facts (``proc_start``, ``tty``, ``loginuid``, ``cap_effective``) where the event lacks them.

        Mutates and returns the same event. Values the event already has are kept.
        """
        rec = self._lookup(event.pid) if event.pid > 0 else None
        if rec is None:
            return event
        if event.proc_start is None and rec.start_time:
            event.proc_start = rec.start_time
        if event.tty is None:
            event.tty = rec.tty
        if event.loginuid is None:
            event.loginuid = rec.loginuid
        if event.cap_effective is None:
            event.cap_effective = rec.cap_effective
        if event.cap_permitted is None:
            event.cap_permitted = rec.cap_permitted
        if not event.ppid:
            event.ppid = rec.ppid
        if not event.exe:
            event.exe = rec.exe
        if not event.cmdline:
            event.cmdline = rec.cmdline
        if event.argv is None and rec.argv:
            event.argv = list(rec.argv)
        if not event.ancestry or event.pcmdline is None:
            ancestry, pcmdline = self._lineage_of(event.pid)
            if not event.ancestry:
                event.ancestry = list(ancestry)
            if event.pcmdline is None:
                event.pcmdline = pcmdline
        return event

    def _lineage_of(self, pid: int) -> tuple[tuple[str, ...], str | None]:
        """:meth:`ancestry` and :meth:`parent_cmdline` of ``pid``, from the cache while the tree is unchanged."""
        hit = self._lineage.get(pid)
        if hit is not None and hit[0] == self._gen:
            return hit[1], hit[2]
        ancestry, pcmdline = tuple(self.ancestry(pid)), self.parent_cmdline(pid)
        if len(self._lineage) >= self.max_entries:
            self._lineage.clear()
        self._lineage[pid] = (self._gen, ancestry, pcmdline)  # after the walks: a /proc read there bumps _gen
        return ancestry, pcmdline

    def stats(self) -> dict[str, int]:
        """Counters (seeded, forks, execs, exits, proc_reads, expired, evicted, ...) and sizes."""
        out = dict(self._stats)
        out["entries"] = len(self._procs)
        out["exited_pending"] = len(self._exited)
        return out

    # -- internals ----------------------------------------------------------------------

    def _lookup(self, pid: int, born_before: int | None = None) -> ProcRecord | None:
        rec = self._procs.get(pid)
        if rec is not None:
            self._procs.move_to_end(pid)
            return rec
        if not self.proc_fallback or pid <= 0:
            return None
        self._stats["proc_reads"] += 1
        rec = read_proc_record(pid, self.proc_root, self._boot_ns)
        if rec is None:
            self._stats["proc_misses"] += 1
            return None
        if born_before and rec.start_time > born_before + _REUSE_SLACK_NS:
            self._stats["proc_misses"] += 1
            return None  # that pid now belongs to a younger process
        self._put(rec)
        return rec

    def _put(self, rec: ProcRecord) -> None:
        self._gen += 1
        self._procs[rec.pid] = rec
        self._procs.move_to_end(rec.pid)
        while len(self._procs) > self.max_entries:
            if self._exited:
                victim, _ = self._exited.popitem(last=False)
                if victim == rec.pid:
                    continue
                self._procs.pop(victim, None)
            else:
                self._procs.popitem(last=False)
            self._stats["evicted"] += 1

    def _forget(self, pid: int) -> None:
        self._gen += 1
        self._procs.pop(pid, None)
        self._exited.pop(pid, None)
