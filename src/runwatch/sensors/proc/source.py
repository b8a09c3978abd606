"""Fallback event source for hosts that refuse BPF: the netlink proc connector plus /proc.

The kernel reports fork, exec, exit, uid/gid changes and ptrace attach by pid only;
everything else (exe, argv, cwd, credentials, cgroup, namespaces) is read from /proc
right after the message arrives. Those reads race with the process: a short-lived
program may already be gone, in which case the event carries what could be read and
``stats()["proc_read_misses"]`` counts the failed reads.

Importing this module registers the factory under the source name ``"proc"``.

Threading contract: ``start``, ``poll``, ``stop`` and ``stats`` are called from one
consumer thread. ``start`` launches one internal reader thread that owns the netlink
socket and the process table and does the /proc reads as soon as each message arrives
(independent of how often the consumer polls, so reads lose fewer races). Events reach
the consumer through a bounded queue in kernel order; when it is full the reader stops
reading and the kernel socket buffer absorbs the burst, then drops (counted).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import os
import select
import socket
import threading
import time

from runwatch.events import Event, PrivInfo, new_id
from runwatch.sensors.base import register_source
from runwatch.sensors.proc import cnproc
from runwatch.sensors.proc.cnproc import (
    AckRecord,
    CommRecord,
    ExecRecord,
    ExitRecord,
    ForkRecord,
    IdRecord,
    PtraceRecord,
    Record,
)

_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_DEFAULT_RCVBUF = 8 << 20  # bytes; about 100k messages of 76 bytes plus skb overhead
_QUEUE_MAX = 65536  # events waiting for the consumer before the reader stops reading
_CACHE_MAX = 65536  # processes remembered (evicted oldest first if exits were missed)
_ANCESTRY_MAX = 32
_READS_PER_PROCESS = 6  # exe, cmdline, cwd, status, cgroup, ns/pid


class ProcConnectorUnavailable(OSError):
    """The proc connector cannot be used here; the message says why in one line."""


@dataclasses.dataclass(slots=True)
class _Proc:
    """What is known about one process (thread group). Mutated only by the reader thread."""

    ppid: int = 0
    exe: str = ""
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


def cgroup2_root(mounts: str = "/proc/self/mounts") -> str | None:
    """The cgroup v2 mount point: ``/sys/fs/cgroup/unified`` on hybrid hosts,
    ``/sys/fs/cgroup`` on pure v2, else the first cgroup2 mount; None without one."""
    found: list[str] = []
    try:
        with open(mounts, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "cgroup2":
                    found.append(parts[1].replace("\\040", " "))
    except OSError:
        return None
    for preferred in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if preferred in found:
            return preferred
    return found[0] if found else None


class ProcReader:
    """Best-effort reads of /proc/<pid>; never raises, counts every failed read in ``misses``.

    Not thread safe: one instance belongs to one thread.
    """

    def __init__(self, proc: str = "/proc", cgroup_root: str | None = None) -> None:
        self.proc = proc
        self.cgroup_root = cgroup_root
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
            info.exe = exe
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
            self._parse_status(status.decode("utf-8", "replace"), info)
        cg = self._read(dfd, "cgroup")
        if cg is not None:
            for line in cg.decode("utf-8", "replace").splitlines():
                if line.startswith("0::"):
                    info.cgroup = line[3:]
                    break
        if info.cgroup is not None and self.cgroup_root is not None:
            try:
                info.cgroup_id = os.stat(self.cgroup_root + info.cgroup.rstrip("/")).st_ino
            except OSError:
                self.misses += 1
        try:
            info.pidns = os.stat("ns/pid", dir_fd=dfd).st_ino
        except OSError:
            self.misses += 1

    @staticmethod
    def _parse_status(text: str, info: _Proc) -> None:
        for line in text.splitlines():
            key, _, value = line.partition(":")
            fields = value.split()
            if not fields:
                continue
            if key == "Name":
                info.comm = value.strip()
            elif key == "PPid":
                info.ppid = int(fields[0])
            elif key == "Uid" and len(fields) >= 2:
                info.uid, info.euid = int(fields[0]), int(fields[1])
            elif key == "Gid":
                info.gid = int(fields[0])
            elif key == "NSpid":
                info.vpid = int(fields[-1])

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
            try:
                with open(f"{self.proc}/{name}/stat", "rb") as fh:
                    stat = fh.read()
                result[int(name)] = int(stat[stat.rindex(b")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                continue
        return result


class ProcConnectorSource:
    """Process events from the netlink proc connector (``source="proc"``).

    ``root_pid``: when set, only ``root_pid`` and its descendants are reported (the set
    follows fork and exit messages and is seeded from /proc at start). ``rcvbuf``: the
    requested socket receive buffer in bytes. ``batch_max``: the most events one ``poll``
    returns. ``ack_timeout``: seconds to wait for the kernel to confirm the subscription.
    ``realtime``: run the reader thread as SCHED_FIFO (priority 1) when permitted, which
    makes the /proc reads win their race against short-lived processes far more often.

    Event conventions: ``process.fork`` is reported by the parent (``pid``) with the new
    process in ``child_pid``; thread creation is not reported. ``process.exit`` carries
    ``exit_code`` and, when killed, ``signal`` (``exit_code`` is then 0).
    ``priv.setuid``/``priv.setgid`` carry the new ids in ``priv`` and the last known old
    ids on the event itself. ``priv.ptrace`` is reported by the tracer with the tracee in
    ``priv.target_pid`` (attach and seize; detaches are not reported).
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

    def __init__(self, root_pid: int | None = None, *, rcvbuf: int = _DEFAULT_RCVBUF,
                 batch_max: int = 4096, ack_timeout: float = 2.0, realtime: bool = True) -> None:
        if root_pid is not None and root_pid <= 0:
            raise ValueError(f"root_pid must be a positive pid, got {root_pid}")
        if batch_max <= 0:
            raise ValueError(f"batch_max must be positive, got {batch_max}")
        self.root_pid = root_pid
        self._rcvbuf_req = rcvbuf
        self._batch_max = batch_max
        self._ack_timeout = ack_timeout
        self._realtime = realtime
        self._sock: socket.socket | None = None
        self._wake_r = self._wake_w = -1
        self._thread: threading.Thread | None = None
        self._cond = threading.Condition()
        self._queue: collections.deque[Event] = collections.deque()  # guarded by _cond
        self._stopping = False
        self._stopped = False
        self._failure: BaseException | None = None
        self._reader = ProcReader()
        self._procs: dict[int, _Proc] = {}
        self._tracked: set[int] | None = None
        self._gaps = cnproc.SeqGapCounter()
        self._offset = 0
        # Counters: written by the reader thread, read as a snapshot by stats().
        self._c = dict.fromkeys(("messages", "events", "drops", "lost", "malformed",
                                 "threads_skipped", "rcvbuf_bytes", "realtime"), 0)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Subscribe to the proc connector and start reading; raises on refusal (one line)."""
        if self._sock is not None or self._stopped:
            raise RuntimeError("ProcConnectorSource.start() called twice")
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, cnproc.NETLINK_CONNECTOR)
        except OSError as exc:
            raise ProcConnectorUnavailable(f"proc connector not available in this kernel: {exc}") from None
        try:
            self._c["rcvbuf_bytes"] = self._grow_rcvbuf(sock)
            try:
                sock.bind((0, cnproc.CN_IDX_PROC))
            except PermissionError as exc:
                raise ProcConnectorUnavailable(
                    f"proc connector needs CAP_NET_ADMIN: joining the CN_PROC group was refused ({exc})"
                ) from None
            early = self._subscribe(sock)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._reader.cgroup_root = cgroup2_root()
        self._offset = time.time_ns() - time.monotonic_ns()
        if self.root_pid is not None:
            try:
                self._seed(self.root_pid)
            except BaseException:
                self._unsubscribe()
                raise
        events: list[Event] = []
        for rec in early:
            self._handle(rec, events)
        self._push(events)
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="runwatch-proc-connector", daemon=True)
        self._thread.start()

    def poll(self, timeout: float) -> list[Event] | None:
        """Up to ``batch_max`` events, waiting at most ``timeout`` seconds for the first.

        Returns ``[]`` on timeout and ``None`` once stopped and drained. Raises
        ``RuntimeError`` if the reader thread failed (after the queued events are returned).
        """
        if self._thread is None and not self._stopped:
            raise RuntimeError("ProcConnectorSource.poll() called before start()")
        with self._cond:
            if not self._queue and self._failure is None and not self._stopped:
                self._cond.wait(max(timeout, 0.0))
            n = min(len(self._queue), self._batch_max)
            batch = [self._queue.popleft() for _ in range(n)]
            self._cond.notify_all()  # room for a reader waiting on a full queue
            failure = self._failure
        if batch:
            return batch
        if failure is not None:
            raise RuntimeError(f"proc connector reader failed: {failure}") from failure
        return None if self._stopped else batch

    def stop(self) -> None:
        """Stop the reader, unsubscribe and close the socket. Idempotent; always safe to call."""
        if self._stopped:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            os.write(self._wake_w, b"x")
            self._thread.join(timeout=5.0)
            os.close(self._wake_r)
            os.close(self._wake_w)
        self._unsubscribe()
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def stats(self) -> dict[str, int]:
        """Counters: ``messages`` received, ``events`` emitted, ``drops`` (receive-buffer
        overflows reported by the kernel as ENOBUFS; each lost one or more messages),
        ``lost`` (messages missing from the per-CPU sequence numbers), ``malformed``,
        ``threads_skipped``, ``proc_read_misses``, ``rcvbuf_bytes``, ``realtime`` (1 when the
        reader runs as SCHED_FIFO) and ``tracked`` (pids in the subtree filter)."""
        snap = dict(self._c)
        snap["proc_read_misses"] = self._reader.misses
        snap["tracked"] = len(self._tracked) if self._tracked is not None else 0
        return snap

    # -- setup helpers -----------------------------------------------------------------

    def _grow_rcvbuf(self, sock: socket.socket) -> int:
        """Ask for ``rcvbuf`` bytes, past rmem_max when privileged; returns the size granted."""
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, self._rcvbuf_req)
        except OSError:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._rcvbuf_req)
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))

    def _subscribe(self, sock: socket.socket) -> list[Record]:
        """Send LISTEN and wait for its acknowledgement; returns records that came first."""
        nonce = (os.getpid() << 8 ^ id(self) ^ time.monotonic_ns()) & 0x3FFFFFFF
        try:
            sock.send(cnproc.mcast_message(cnproc.PROC_CN_MCAST_LISTEN, nonce))
        except PermissionError as exc:
            raise ProcConnectorUnavailable(f"proc connector needs CAP_NET_ADMIN: {exc}") from None
        early: list[Record] = []
        deadline = time.monotonic() + self._ack_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                raise ProcConnectorUnavailable(
                    f"proc connector did not acknowledge the subscription within {self._ack_timeout:g} s "
                    "(runwatch must run in the host's initial user and pid namespaces)")
            try:
                data = sock.recv(65536)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self._c["drops"] += 1
                    continue
                raise
            for rec in self._decode(data):
                if isinstance(rec, AckRecord) and rec.ack == nonce + 1:
                    if rec.err == errno.EPERM:
                        raise ProcConnectorUnavailable(
                            "proc connector needs CAP_NET_ADMIN: the kernel refused the subscription (EPERM)")
                    if rec.err:
                        raise ProcConnectorUnavailable(
                            f"proc connector refused the subscription: {os.strerror(rec.err)}")
                    return early
                early.append(rec)

    def _unsubscribe(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        with contextlib.suppress(OSError):
            sock.send(cnproc.mcast_message(cnproc.PROC_CN_MCAST_IGNORE, 1))
        sock.close()

    def _seed(self, root: int) -> None:
        """Track ``root`` and its current descendants (called after subscribing, so a fork
        racing with the scan is seen either here or as a message, possibly both)."""
        parents = self._reader.ppid_map()
        if root not in parents:
            raise ProcessLookupError(f"root pid {root} does not exist")
        children: dict[int, list[int]] = collections.defaultdict(list)
        for pid, ppid in parents.items():
            children[ppid].append(pid)
        self._tracked, todo = set(), [root]
        while todo:
            if (pid := todo.pop()) not in self._tracked:
                self._tracked.add(pid)
                todo.extend(children.get(pid, ()))
                self._remember(pid, self._reader.read(pid))

    # -- reader thread -----------------------------------------------------------------

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        if self._realtime:
            # /proc reads race with short-lived processes, and a normal-priority reader woken
            # by a message tends to run only after the sending process leaves the CPU (often
            # after it exited). SCHED_FIFO at the lowest RT priority runs it at once; it does
            # bounded work per message and then blocks, and RT throttling caps it anyway.
            # Best effort: needs CAP_SYS_NICE.
            with contextlib.suppress(OSError, AttributeError):
                os.sched_setscheduler(threading.get_native_id(), os.SCHED_FIFO, os.sched_param(1))
                self._c["realtime"] = 1
        try:
            while not self._stopping:
                ready = select.select([sock.fileno(), self._wake_r], [], [])[0]
                if self._wake_r in ready or self._stopping:
                    break
                self._drain(sock)
        except BaseException as exc:  # surfaced to the consumer by poll()
            with self._cond:
                self._failure = exc
                self._cond.notify_all()

    def _drain(self, sock: socket.socket) -> int:
        """Read until the socket is empty, handing events over every 256 datagrams;
        returns the number of datagrams read."""
        events: list[Event] = []
        count = 0
        while True:
            try:
                data = sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the kernel dropped messages: count, go on
                    self._c["drops"] += 1
                    continue
                raise
            if count == 0:
                self._offset = time.time_ns() - time.monotonic_ns()  # follow wall-clock steps
            count += 1
            for rec in self._decode(data):
                self._handle(rec, events)
            if len(events) >= 256:
                self._push(events)
                events = []
                if self._stopping:
                    return count
        self._push(events)
        return count

    def _push(self, events: list[Event]) -> None:
        if not events:
            return
        with self._cond:
            while len(self._queue) >= _QUEUE_MAX and not self._stopping:
                self._cond.wait(0.5)
            self._queue.extend(events)
            self._c["events"] += len(events)
            self._cond.notify_all()

    def _decode(self, data: bytes) -> list[Record]:
        try:
            records = cnproc.decode_datagram(data)
        except cnproc.CnProcDecodeError:
            self._c["malformed"] += 1
            return []
        self._c["messages"] += len(records)
        for rec in records:
            self._gaps.see(rec)
        self._c["lost"] = self._gaps.missing
        return records

    # -- message -> event --------------------------------------------------------------

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
            info = _Proc(comm="kthreadd") if pid == 2 else self._reader.read(pid)
            self._remember(pid, info)
        return info

    def _ancestry(self, ppid: int) -> list[str]:
        chain: list[str] = []
        seen: set[int] = set()
        while ppid > 0 and ppid not in seen and len(chain) < _ANCESTRY_MAX:
            seen.add(ppid)
            info = self._procs.get(ppid)
            if info is None:
                break
            chain.append(info.exe or info.comm or "")
            ppid = info.ppid
        return chain

    def _event(self, kind: str, ts: int, pid: int, tid: int, info: _Proc) -> Event:
        t = ts + self._offset
        return Event(
            id=new_id(t), time=t, kind=kind, source="proc", pid=pid, tid=tid, ppid=info.ppid,
            uid=info.uid, euid=info.euid, gid=info.gid, exe=info.exe, cmdline=info.cmdline,
            argv=list(info.argv) if info.argv is not None else None, comm=info.comm, cwd=info.cwd,
            cgroup_id=info.cgroup_id, pidns=info.pidns, vpid=info.vpid,
        )

    def _handle(self, rec: Record, out: list[Event]) -> None:
        """Turn one record into zero or one events appended to ``out`` (reader thread)."""
        if isinstance(rec, ExecRecord):
            if not self._wanted(rec.tgid):
                return
            old = self._procs.get(rec.tgid)
            info = self._reader.read(rec.tgid)
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
            ev.attrs = attrs or None
            out.append(ev)
        elif isinstance(rec, ForkRecord):
            if rec.child_pid != rec.child_tgid:
                self._c["threads_skipped"] += 1
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


register_source("proc", ProcConnectorSource)
