"""Fallback event source for hosts that refuse BPF: the netlink proc connector plus /proc.

The kernel reports fork, exec, exit, uid/gid changes and ptrace attach by pid only;
everything else (exe, argv, cwd, credentials, cgroup, namespaces) is read from /proc
right after the message arrives. Those reads race with the process: a short-lived
program may already be gone, in which case the event carries what could be read and
``stats()["proc_read_misses"]`` counts the failed reads.

Importing this module registers the factory under the source name ``"proc"``.

Process layout: the socket and the /proc reads live in a small reader child process
(``python -c ...`` running :func:`reader_main`), scheduled SCHED_FIFO when permitted.
Measured here: a reader thread sharing the GIL with a busy consumer lost the race for
75-90 % of short-lived programs; a separate real-time process lost none. The child
sends length-prefixed msgpack frames (events plus a stats snapshot) on its stdout and
stops at EOF on its stdin, so it also ends when its parent dies. When the consumer falls
behind, the pipe and then the socket buffer fill and the kernel drops (counted).

Threading contract: ``start``, ``poll``, ``stop`` and ``stats`` are called from one thread.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os
import select
import signal
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import msgspec

from runwatch import exepath
from runwatch.events import Event, PrivInfo, new_id
from runwatch.host import CgroupV2, cgroup_v2_if_any, handles, procfs
from runwatch.sensors.base import register_source
from runwatch.sensors.proc import cnproc
from runwatch.sensors.proc.cnproc import (
    CommRecord,
    ExecRecord,
    ExitRecord,
    ForkRecord,
    IdRecord,
    ProcConnectorUnavailable,
    PtraceRecord,
    Record,
)

__all__ = ["ProcConnectorSource", "ProcConnectorUnavailable", "ProcReader", "reader_main"]

_CACHE_MAX = 65536  # processes remembered (evicted oldest first if exits were missed)
_ANCESTRY_MAX = 32
_READS_PER_PROCESS = 6  # exe (link and stat, one miss), cmdline, cwd, status, cgroup, ns/pid
_LEN = struct.Struct("<I")


@dataclasses.dataclass(slots=True)
class _Proc:
    """What is known about one process (thread group). Lives in the reader process."""

    ppid: int = 0
    exe: str = ""
    exe_ino: int | None = None
    exe_dev: int | None = None
    exe_deleted: bool | None = None
    exe_detached: bool | None = None  # the file is on a mount no path reaches (its path is the root's)
    cmdline: str = ""
    argv: list[str] | None = None
    comm: str | None = None
    cwd: str | None = None
    uid: int = 0
    euid: int | None = None
    gid: int | None = None
    cgroup_id: int | None = None
    cgroup: str | None = None
    pidns: int | None = None
    vpid: int | None = None
    last_uid: tuple[int, int] | None = None  # (ruid, euid) of the last emitted uid change
    last_gid: tuple[int, int] | None = None


class ProcReader:
    """Best-effort reads of /proc/<pid>; never raises, counts every failed read in ``misses``.

    Not thread safe: one instance belongs to one thread.
    """

    def __init__(self, proc: str = "/proc", cgroups: CgroupV2 | None = None) -> None:
        self.proc = proc
        self.cgroups = cgroups
        self.misses = 0

    def _read(self, dfd: int, name: str) -> bytes | None:
        try:
            with open(os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dfd), "rb", buffering=0) as fh:
                return fh.readall()
        except OSError:
            self.misses += 1
            return None

    def _link(self, dfd: int, name: str) -> str | None:
        try:
            return os.readlink(name, dir_fd=dfd)
        except OSError:
            self.misses += 1
            return None

    def _reach(self, dfd: int, info: _Proc) -> None:
        """A file that its link calls ``/`` is the root of a detached mount of the file (runc
        re-executes itself so): its path as this process's root mount reaches it, by handle."""
        info.exe_detached = True
        try:
            handle = handles.handle_at(dfd, "exe")
            root = handles.open_dir("/")
            try:
                path = handles.path_in(root, handle)
            finally:
                os.close(root)
        except OSError:
            self.misses += 1
            return
        if not path.endswith(exepath.DELETED_SUFFIX):
            info.exe = path

    def read(self, pid: int) -> _Proc:
        """Everything readable about ``pid`` now (fields left at defaults when unreadable)."""
        info = _Proc()
        try:
            # One directory fd: every read below is of this process even if the pid is reused.
            dfd = os.open(f"{self.proc}/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            self.misses += _READS_PER_PROCESS
            return info
        try:
            self._read_into(dfd, info)
        finally:
            os.close(dfd)
        return info

    def _read_into(self, dfd: int, info: _Proc) -> None:
        # Order matters: exe, cmdline and cwd vanish when the process exits (a zombie keeps
        # only status, cgroup and ns), so they are read first, fastest first.
        exe = self._link(dfd, "exe")
        if exe is not None:
            try:
                exe_st = os.stat("exe", dir_fd=dfd)  # the executed file itself, even when deleted
            except OSError:
                self.misses += 1
                info.exe, deleted = exepath.from_link(exe)
            else:
                info.exe, deleted = exepath.from_link(exe, nlink=exe_st.st_nlink)
                info.exe_ino, info.exe_dev = exe_st.st_ino, exe_st.st_dev
                if exe == "/" and stat.S_ISREG(exe_st.st_mode):
                    self._reach(dfd, info)
            info.exe_deleted = deleted or None
        raw = self._read(dfd, "cmdline")
        if raw:
            argv = [a.decode("utf-8", "replace") for a in raw.split(b"\0")]
            if argv[-1] == "":
                argv.pop()
            info.argv, info.cmdline = argv, " ".join(argv)
        elif raw is not None:
            self.misses += 1  # empty: the process has exited (or is a kernel thread)
        info.cwd = self._link(dfd, "cwd")
        status = self._read(dfd, "status")
        if status is not None:
            st = procfs.parse_status(status)
            info.comm = st.comm
            info.ppid = st.ppid if st.ppid is not None else info.ppid
            info.uid = st.uid if st.uid is not None else info.uid
            info.euid = st.euid if st.euid is not None else info.euid
            info.gid = st.gid if st.gid is not None else info.gid
            info.vpid = st.nspid[-1] if st.nspid else info.vpid
        cg = self._read(dfd, "cgroup")
        if cg is not None:
            info.cgroup = procfs.parse_cgroup_v2(cg)
        if info.cgroup is not None and self.cgroups is not None:
            cgroup_id = self.cgroups.id_of(info.cgroup)
            if cgroup_id is None:
                self.misses += 1
            info.cgroup_id = cgroup_id
        try:
            info.pidns = os.stat("ns/pid", dir_fd=dfd).st_ino
        except OSError:
            self.misses += 1

    def ppid_map(self) -> dict[int, int]:
        """``pid -> ppid`` for every process visible now (from /proc/<pid>/stat)."""
        result: dict[int, int] = {}
        try:
            names = os.listdir(self.proc)
        except OSError:
            return result
        for name in names:
            if not name.isdigit():
                continue
            st = procfs.stat(int(name), self.proc)
            if st is not None:
                result[int(name)] = st.ppid
        return result


class _Tracker:
    """Turns proc connector records into events, keeping a table of known processes.

    After :meth:`seed`, only the seeded process and its descendants are reported (the set
    grows on fork and shrinks on exit). Runs in the reader process only.
    """

    def __init__(self) -> None:
        self.reader = ProcReader(cgroups=cgroup_v2_if_any())
        self._procs: dict[int, _Proc] = {}
        self._tracked: set[int] | None = None
        self.threads_skipped = 0
        self.offset = time.time_ns() - time.monotonic_ns()  # CLOCK_MONOTONIC -> epoch ns

    def seed(self, root: int) -> None:
        """Track ``root`` and its current descendants (called after subscribing, so a fork
        racing with the scan is seen either here or as a message, possibly both)."""
        parents = self.reader.ppid_map()
        if root not in parents:
            raise ProcessLookupError(f"root pid {root} does not exist")
        children: dict[int, list[int]] = collections.defaultdict(list)
        for pid, ppid in parents.items():
            children[ppid].append(pid)
        self._tracked, todo = set(), [root]
        own = os.getpid()  # the reader itself is a descendant when a process watches itself
        while todo:
            if (pid := todo.pop()) not in self._tracked and pid != own:
                self._tracked.add(pid)
                todo.extend(children.get(pid, ()))
                self._remember(pid, self.reader.read(pid))

    def _wanted(self, tgid: int) -> bool:
        return self._tracked is None or tgid in self._tracked

    def _remember(self, pid: int, info: _Proc) -> None:
        self._procs.pop(pid, None)
        self._procs[pid] = info
        while len(self._procs) > _CACHE_MAX:
            del self._procs[next(iter(self._procs))]

    def _lookup(self, pid: int) -> _Proc:
        info = self._procs.get(pid)
        if info is None:
            # kthreadd (pid 2) and the kernel threads it forks have nothing to read
            info = _Proc(comm="kthreadd") if pid == 2 else self.reader.read(pid)
            self._remember(pid, info)
        return info

    def _ancestry(self, ppid: int) -> list[str]:
        """Executables from ``ppid`` upward (ancestors outside the table are read once)."""
        chain: list[str] = []
        seen: set[int] = set()
        while ppid > 0 and ppid not in seen and len(chain) < _ANCESTRY_MAX:
            seen.add(ppid)
            info = self._lookup(ppid)
            if not (info.exe or info.comm):
                break
            chain.append(info.exe or info.comm or "")
            ppid = info.ppid
        return chain

    def _event(self, kind: str, ts: int, pid: int, tid: int, info: _Proc) -> Event:
        t = ts + self.offset
        return Event(
            id=new_id(t), time=t, kind=kind, source="proc", pid=pid, tid=tid, ppid=info.ppid,
            uid=info.uid, euid=info.euid, gid=info.gid, exe=info.exe, exe_ino=info.exe_ino,
            exe_dev=info.exe_dev, exe_deleted=info.exe_deleted, cmdline=info.cmdline,
            argv=list(info.argv) if info.argv is not None else None, comm=info.comm, cwd=info.cwd,
            cgroup_id=info.cgroup_id, pidns=info.pidns, vpid=info.vpid,
        )

    def handle(self, rec: Record, out: list[Event]) -> None:
        """Turn one record into zero or one events appended to ``out``."""
        if isinstance(rec, ExecRecord):
            if not self._wanted(rec.tgid):
                return
            old = self._procs.get(rec.tgid)
            info = self.reader.read(rec.tgid)
            if old is not None:
                # Reads the process outran: ids and pid namespace are unchanged by exec, so
                # what fork inherited is still right (exe, argv and cwd are not).
                # The cgroup is not carried over: it may have changed since the fork (runc
                # moves its init into the container cgroup before exec); unknown is honest.
                names = ("ppid", "uid", "euid", "gid", "vpid") if info.comm is None else ()
                for name in (*names, "pidns"):
                    if name in names or getattr(info, name) is None:
                        setattr(info, name, getattr(old, name))
            self._remember(rec.tgid, info)
            ev = self._event("process.exec", rec.timestamp_ns, rec.tgid, rec.pid, info)
            ev.ancestry = self._ancestry(info.ppid)
            attrs: dict[str, object] = {}
            if info.cgroup is not None:
                attrs["cgroup"] = info.cgroup
            if not info.exe:
                attrs["exe_unread"] = True  # the process was gone before /proc could be read
            if info.exe_detached:
                attrs["exe_detached"] = True
            ev.attrs = attrs or None
            out.append(ev)
        elif isinstance(rec, ForkRecord):
            if rec.child_pid != rec.child_tgid:
                self.threads_skipped += 1
                return
            parent = rec.parent_tgid
            if not self._wanted(parent):
                return
            if self._tracked is not None:
                self._tracked.add(rec.child_tgid)
            pinfo = self._lookup(parent)
            child = dataclasses.replace(pinfo, ppid=parent, last_uid=None, last_gid=None)
            child.vpid = None  # unknown until read: the child may be in a new pid namespace
            self._remember(rec.child_tgid, child)
            ev = self._event("process.fork", rec.timestamp_ns, parent, rec.parent_pid, pinfo)
            ev.child_pid = rec.child_tgid
            out.append(ev)
        elif isinstance(rec, ExitRecord):
            if rec.pid != rec.tgid or not self._wanted(rec.tgid):
                return
            info = self._procs.pop(rec.tgid) if rec.tgid in self._procs else _Proc()
            if self._tracked is not None:
                self._tracked.discard(rec.tgid)
            if rec.parent_tgid > 0:
                info.ppid = rec.parent_tgid
            ev = self._event("process.exit", rec.timestamp_ns, rec.tgid, rec.pid, info)
            ev.exit_code, ev.signal, core = cnproc.decode_wait_status(rec.status)
            if core:
                ev.attrs = {"core_dumped": True}
            out.append(ev)
        elif isinstance(rec, IdRecord):
            self._handle_id(rec, out)
        elif isinstance(rec, PtraceRecord):
            if rec.tracer_tgid <= 0 or not (self._wanted(rec.tracer_tgid) or self._wanted(rec.tgid)):
                return
            info = self._lookup(rec.tracer_tgid)
            ev = self._event("priv.ptrace", rec.timestamp_ns, rec.tracer_tgid, rec.tracer_pid, info)
            ev.priv = PrivInfo(op="ptrace", request=cnproc.PTRACE_ATTACH, target_pid=rec.tgid)
            out.append(ev)
        elif isinstance(rec, CommRecord):
            known = self._procs.get(rec.tgid)
            if known is not None and rec.pid == rec.tgid:
                known.comm = rec.comm

    def _handle_id(self, rec: IdRecord, out: list[Event]) -> None:
        """uid/gid change. glibc applies set*id to every thread, so the kernel reports one
        change per thread: only the first report of the same new ids is emitted."""
        if not self._wanted(rec.tgid):
            return
        info = self._lookup(rec.tgid)
        new = (rec.real, rec.effective)
        if rec.which == "uid":
            if info.last_uid == new:
                return
            ev = self._event("priv.setuid", rec.timestamp_ns, rec.tgid, rec.pid, info)
            ev.priv = PrivInfo(op="setuid", uid=rec.real, euid=rec.effective)
            info.last_uid, info.uid, info.euid = new, rec.real, rec.effective
        else:
            if info.last_gid == new:
                return
            ev = self._event("priv.setgid", rec.timestamp_ns, rec.tgid, rec.pid, info)
            ev.priv = PrivInfo(op="setgid", gid=rec.real, egid=rec.effective)
            info.last_gid, info.gid = new, rec.real
        out.append(ev)

    @property
    def tracked(self) -> int:
        """How many pids the subtree filter holds (0 without a filter)."""
        return len(self._tracked) if self._tracked is not None else 0


class _Frame(msgspec.Struct, omit_defaults=True):
    """One message from the reader process to the source."""

    events: list[Event] = msgspec.field(default_factory=list)
    stats: dict[str, int] = msgspec.field(default_factory=dict)
    ready: bool = False
    error: str | None = None  # start failed; ``error_type`` names the exception to raise
    error_type: str | None = None


_frame_encoder = msgspec.msgpack.Encoder()
_frame_decoder = msgspec.msgpack.Decoder(_Frame)


def _write_frame(fd: int, frame: _Frame) -> None:
    data = _frame_encoder.encode(frame)
    view = memoryview(_LEN.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def reader_main(config: str) -> int:
    """Entry point of the reader process (``config`` is JSON: root_pid, rcvbuf, ack_timeout,
    realtime). Writes frames to fd 1 until fd 0 reaches EOF; returns the exit status."""
    cfg = json.loads(config)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    realtime = 0
    if cfg["realtime"]:
        # A normal-priority reader woken by a message tends to run only after the sending
        # process leaves the CPU, often after it exited. SCHED_FIFO at the lowest RT
        # priority runs it at once; it does bounded work per message, then blocks, and
        # RT throttling caps it anyway. Best effort: needs CAP_SYS_NICE.
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
            realtime = 1
        except (OSError, AttributeError):
            pass
    sock = cnproc.CnProcSocket(rcvbuf=cfg["rcvbuf"], ack_timeout=cfg["ack_timeout"])
    tracker = _Tracker()

    def stats() -> dict[str, int]:
        return {"messages": sock.messages, "drops": sock.drops, "lost": sock.gaps.missing,
                "malformed": sock.malformed, "rcvbuf_bytes": sock.rcvbuf_bytes, "realtime": realtime,
                "threads_skipped": tracker.threads_skipped, "proc_read_misses": tracker.reader.misses,
                "tracked": tracker.tracked}

    try:
        early = sock.open()
        if cfg["root_pid"] is not None:
            tracker.seed(cfg["root_pid"])
    except (ProcConnectorUnavailable, ProcessLookupError) as exc:
        sock.close()
        _write_frame(1, _Frame(error=str(exc), error_type=type(exc).__name__))
        return 0
    events: list[Event] = []
    for rec in early:
        tracker.handle(rec, events)
    _write_frame(1, _Frame(events=events, stats=stats(), ready=True))
    try:
        while True:
            ready = select.select([sock.fileno(), 0], [], [])[0]
            if 0 in ready and not os.read(0, 4096):
                break
            if sock.fileno() in ready:
                tracker.offset = time.time_ns() - time.monotonic_ns()  # follow wall-clock steps
                events = []
                for rec in sock.read_available():
                    tracker.handle(rec, events)
                _write_frame(1, _Frame(events=events, stats=stats()))
    except BrokenPipeError:
        return 0  # the parent went away
    finally:
        sock.close()
    _write_frame(1, _Frame(stats=stats()))
    return 0


class ProcConnectorSource:
    """Process events from the netlink proc connector (``source="proc"``).

    ``root_pid``: when set, only ``root_pid`` and its descendants are reported (the set
    follows fork and exit messages and is seeded from /proc at start). ``rcvbuf``: the
    requested socket receive buffer in bytes. ``batch_max``: the most events one ``poll``
    returns. ``ack_timeout``: seconds to wait for the kernel to confirm the subscription.
    ``realtime``: run the reader process as SCHED_FIFO (priority 1) when permitted, which
    makes the /proc reads win their race against short-lived processes.

    Event conventions: ``process.fork`` is reported by the parent (``pid``) with the new
    process in ``child_pid``; thread creation is not reported. ``process.exit`` carries
    ``exit_code`` and, when killed, ``signal`` (``exit_code`` is then 0).
    ``priv.setuid``/``priv.setgid`` carry the new ids in ``priv`` and the last known old
    ids on the event itself. ``priv.ptrace`` is reported by the tracer with the tracee in
    ``priv.target_pid`` (attach and seize; detaches are not reported). Exec events carry
    the cgroup v2 path in ``attrs["cgroup"]`` and ``attrs["exe_unread"]`` when the process
    was gone before its exe could be read.
    """

    name = "proc"

    #: What this source cannot see compared with the eBPF sensor (printed as a notice).
    LOST: tuple[str, ...] = (
        "network connect/accept/listen/bind and DNS queries (net.*, dns.query)",
        "file opens, renames and unlinks, including reads of secrets (file.*)",
        "capset, mount, unshare and setns (priv.capset, priv.mount, priv.unshare, priv.setns)",
        "memfd creation (file.memfd)",
        "the exact executable at exec time: exe, argv and cwd are read from /proc afterwards and "
        "are missing (or newer) for short-lived processes",
        "container attribution is racy: the cgroup is read from /proc after the event",
        "which id syscall ran (setuid vs setresuid), ptrace requests other than attach, thread creation",
    )

    def __init__(self, root_pid: int | None = None, *, rcvbuf: int = 8 << 20, batch_max: int = 4096,
                 ack_timeout: float = 2.0, realtime: bool = True) -> None:
        if root_pid is not None and root_pid <= 0:
            raise ValueError(f"root_pid must be a positive pid, got {root_pid}")
        if batch_max <= 0:
            raise ValueError(f"batch_max must be positive, got {batch_max}")
        self.root_pid, self._batch_max, self._ack_timeout = root_pid, batch_max, ack_timeout
        self._config = json.dumps({"root_pid": root_pid, "rcvbuf": rcvbuf, "ack_timeout": ack_timeout,
                                   "realtime": realtime})
        self._child: subprocess.Popen[bytes] | None = None
        self._buf = bytearray()
        self._pending: collections.deque[Event] = collections.deque()
        self._stats: dict[str, int] = {}
        self._events = 0
        self._eof = self._stopped = False

    def start(self) -> None:
        """Start the reader process and wait until it is subscribed; raises on refusal
        (:class:`ProcConnectorUnavailable`) or a missing root pid (``ProcessLookupError``)."""
        if self._child is not None or self._stopped:
            raise RuntimeError("ProcConnectorSource.start() called twice")
        src = str(Path(__file__).resolve().parents[3])  # the directory holding ``runwatch``
        # The child sees this interpreter's whole import path (venv included) and is started
        # from /proc/self/exe: the interpreter's own path may not be reachable for this user.
        path = [src, *(p for p in sys.path if p)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
        code = f"import sys; from {__name__} import reader_main; sys.exit(reader_main(sys.argv[1]))"
        self._child = subprocess.Popen(["/proc/self/exe", "-c", code, self._config], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        deadline = time.monotonic() + self._ack_timeout + 60.0  # import, subscribe, seed
        while not self._stats and time.monotonic() < deadline:
            for frame in self._read_frames(deadline - time.monotonic()):
                if frame.error is not None:
                    self.stop()
                    kind = ProcessLookupError if frame.error_type == "ProcessLookupError" else \
                        ProcConnectorUnavailable
                    raise kind(frame.error)
            if self._eof:
                break
        if not self._stats:
            self.stop()
            raise RuntimeError(f"proc connector reader failed to start: {self._child_error()}")

    def poll(self, timeout: float) -> list[Event] | None:
        """Up to ``batch_max`` events, waiting at most ``timeout`` seconds for the first.

        Returns ``[]`` on timeout and ``None`` once stopped and drained. Raises
        ``RuntimeError`` if the reader process died (after its last events are returned).
        """
        if self._child is None and not self._stopped:
            raise RuntimeError("ProcConnectorSource.poll() called before start()")
        if not self._pending and not self._eof:
            self._read_frames(timeout)
        n = min(len(self._pending), self._batch_max)
        batch = [self._pending.popleft() for _ in range(n)]
        if batch or not self._eof:
            return batch
        if self._stopped:
            return None
        raise RuntimeError(f"proc connector reader exited unexpectedly: {self._child_error()}")

    def stop(self) -> None:
        """Stop the reader and collect what it still had (``poll`` hands it out, then
        returns None). Idempotent; always safe to call."""
        if self._stopped:
            return
        self._stopped = True
        child = self._child
        if child is None:
            return
        assert child.stdin is not None
        with contextlib.suppress(OSError):
            child.stdin.close()  # EOF: the reader unsubscribes, sends final stats, exits
        deadline = time.monotonic() + 5.0
        while not self._eof and time.monotonic() < deadline:
            self._read_frames(deadline - time.monotonic())
        try:
            child.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()

    def stats(self) -> dict[str, int]:
        """Counters: ``messages`` received, ``events`` handed over, ``drops`` (receive-buffer
        overflows reported by the kernel as ENOBUFS; each lost one or more messages),
        ``lost`` (messages missing from the per-CPU sequence numbers), ``malformed``,
        ``threads_skipped``, ``proc_read_misses``, ``rcvbuf_bytes``, ``realtime`` (1 when the
        reader runs as SCHED_FIFO) and ``tracked`` (pids in the subtree filter)."""
        return {"events": self._events, **self._stats}

    def _read_frames(self, timeout: float) -> list[_Frame]:
        """Wait up to ``timeout`` for output of the reader; queue the events of every
        complete frame and return the frames."""
        child = self._child
        assert child is not None and child.stdout is not None
        fd = child.stdout.fileno()
        if child.stdout.closed or not select.select([fd], [], [], max(timeout, 0.0))[0]:
            return []
        data = os.read(fd, 1 << 20)
        if not data:
            self._eof = True
            return []
        self._buf += data
        frames: list[_Frame] = []
        while len(self._buf) >= _LEN.size:
            (size,) = _LEN.unpack_from(self._buf)
            if len(self._buf) < _LEN.size + size:
                break
            frame = _frame_decoder.decode(bytes(self._buf[_LEN.size:_LEN.size + size]))
            del self._buf[:_LEN.size + size]
            self._pending.extend(frame.events)
            self._events += len(frame.events)
            if frame.stats:
                self._stats = frame.stats
            frames.append(frame)
        return frames

    def _child_error(self) -> str:
        child = self._child
        if child is None:
            return "not started"
        rc = child.poll()
        err = b""
        if rc is not None and child.stderr is not None and not child.stderr.closed:
            err = child.stderr.read()
        lines = [ln for ln in err.decode("utf-8", "replace").splitlines() if ln.strip()]
        return f"exit status {rc}: {lines[-1] if lines else 'no message'}"


register_source("proc", ProcConnectorSource)
