"""The collector for agent SDK messages: a unix datagram socket as a :class:`Source`.

The socket lives in a directory of its own (default ``/run/runwatch/sdk/sdk.sock``) so the
directory can be bind-mounted into containers without exposing anything else, and a
restarted collector is seen through the mount (a file bind would keep the dead inode).

Identity: every datagram carries the sender's credentials (``SO_PASSCRED``), which the
kernel translates into the collector's pid namespace, so ``Event.pid`` is the sender's
host pid whatever the message claims. The message's own pid-namespace inode and in-namespace
pid/thread id are checked against ``/proc/<host pid>`` (``ns/pid`` and ``NSpid``) when
readable; a mismatch is counted and the kernel's view wins.

Container: the sender's cgroup v2 id is read from ``/proc/<host pid>/cgroup`` (cached per
pid), so the enrichment stage attributes SDK events to containers like kernel events.

Times: messages carry CLOCK_MONOTONIC ns; ``Event.time`` is that plus ``clock_offset``
(pass the kernel decoder's offset so SDK and kernel events share one clock exactly).

Bad input (not JSON, wrong types, unknown kind, over-long fields) is counted under
``malformed`` with the first and last reasons in :attr:`SdkCollector.first_error` and
:attr:`SdkCollector.last_error`; it never raises.
Thread safety: ``poll`` from one thread; ``stats`` from any.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import stat
import struct
import time
from pathlib import Path

import msgspec

from runwatch.events import SPAWNED_ATTR, AiInfo, DnsInfo, Event, FileInfo, NetInfo, ToolCall, new_id
from runwatch.host import cgroup_v2_if_any, procfs
from runwatch.listeners import socket_alive
from runwatch.sdk.wire import (
    AUDIT_EVENTS,
    DEFAULT_SOCKET,
    ENV_SOCKET,
    MAX_ARGS,
    MAX_ARGV,
    MAX_CERT,
    MAX_CHAIN,
    MAX_DATAGRAM,
    MAX_FIELD,
    MESSAGE_KINDS,
    SERVER_PID_ATTR,
    WIRE_VERSION,
)
from runwatch.sensors.base import register_source
from runwatch.svid import SVID_CHAIN_ATTR, SVID_CLAIM_ATTR, SVID_MONO_ATTR, SVID_NOTICE, SVID_SIG_ATTR

_UCRED = struct.Struct("iII")
_NO_AI = AiInfo()  # compared against, never assigned to an event
_RECV_BUF = 2 * MAX_DATAGRAM


class Message(msgspec.Struct, omit_defaults=True):
    """One decoded SDK message (see :mod:`runwatch.sdk.wire` for the keys)."""

    v: int
    k: str
    m: int
    pid: int
    tid: int
    ns: int
    sid: int | None = None
    psid: int | None = None
    sm: int | None = None
    dur: int | None = None
    name: str | None = None
    cid: str | None = None
    agent: str | None = None
    ah: str | None = None
    args: str | None = None
    st: str | None = None
    err: str | None = None
    prov: str | None = None
    model: str | None = None
    route: str | None = None
    src: str | None = None
    sha: str | None = None
    sk: str | None = None
    pname: str | None = None
    pcid: str | None = None
    pagent: str | None = None
    # audit messages (runwatch.sdk.audithook) and the plugin version; all optional, added later
    ev: str | None = None
    exe: str | None = None
    xe: str | None = None
    argv: list[str] | None = None
    path: str | None = None
    intent: str | None = None
    host: str | None = None
    fam: str | None = None
    proto: str | None = None
    port: int | None = None
    fl: int | None = None
    ver: str | None = None
    spid: int | None = None  # tool.start: pid of the process serving the call (added later)
    # svid messages (runwatch.sdk.identity), added later
    spiffe: str | None = None
    x5c: list[str] | None = None
    sig: str | None = None


_STR_FIELDS = tuple(f for f in Message.__struct_fields__ if f not in ("v", "m", "pid", "tid", "ns", "sid", "psid",
                                                                       "sm", "dur", "args", "argv", "port", "fl",
                                                                       "spid", "x5c"))
_AUDIT_EVENTS = frozenset(AUDIT_EVENTS)
_EXEC_EVENTS = frozenset({"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn"})
_decoder = msgspec.json.Decoder(Message)


class MalformedMessage(ValueError):
    """An SDK message that fails validation; the message is one line."""


def validate(msg: Message) -> None:
    """Raise :class:`MalformedMessage` if ``msg`` breaks the wire contract."""
    if msg.v != WIRE_VERSION:
        raise MalformedMessage(f"unsupported wire version {msg.v} (expected {WIRE_VERSION})")
    if msg.k not in MESSAGE_KINDS:
        raise MalformedMessage(f"unknown message kind {msg.k[:40]!r}")
    for key in ("m", "pid", "tid", "ns"):
        if getattr(msg, key) < 0 or getattr(msg, key) >= 1 << 63:
            raise MalformedMessage(f"{key} out of range")
    for key in _STR_FIELDS:
        value = getattr(msg, key)
        if value is not None and len(value) > MAX_FIELD:
            raise MalformedMessage(f"field {key} longer than {MAX_FIELD} characters")
    if msg.args is not None and len(msg.args) > MAX_ARGS:
        raise MalformedMessage(f"field args longer than {MAX_ARGS} characters")
    if msg.k.startswith("tool.") and (not msg.name or msg.sid is None):
        raise MalformedMessage(f"{msg.k} needs name and sid")
    if msg.k == "tool.end" and msg.st not in ("ok", "error"):
        raise MalformedMessage(f"tool.end status must be ok or error, got {str(msg.st)[:20]!r}")
    if msg.spid is not None and not 0 < msg.spid < 1 << 31:
        raise MalformedMessage("spid out of range")
    if msg.k == "audit":
        _validate_audit(msg)
    if msg.k == "svid":
        if not msg.x5c or not msg.sig or not msg.spiffe:
            raise MalformedMessage("svid needs spiffe, x5c and sig")
        if len(msg.x5c) > MAX_CHAIN:
            raise MalformedMessage(f"x5c has more than {MAX_CHAIN} certificates")
        if any(len(c) > MAX_CERT for c in msg.x5c):
            raise MalformedMessage(f"an x5c certificate is longer than {MAX_CERT} characters")


def _validate_audit(msg: Message) -> None:
    if msg.ev not in _AUDIT_EVENTS:
        raise MalformedMessage(f"unknown audit event {str(msg.ev)[:40]!r}")
    if msg.argv is not None:
        if len(msg.argv) > MAX_ARGV:
            raise MalformedMessage(f"argv has more than {MAX_ARGV} items")
        if any(len(a) > MAX_FIELD for a in msg.argv):
            raise MalformedMessage(f"an argv item is longer than {MAX_FIELD} characters")
    if msg.port is not None and not 0 <= msg.port <= 65535:
        raise MalformedMessage("port out of range")
    if msg.fl is not None and not 0 <= msg.fl < 1 << 32:
        raise MalformedMessage("open flags out of range")
    if msg.ev in _EXEC_EVENTS and not msg.exe:
        raise MalformedMessage(f"audit {msg.ev} needs exe")
    if msg.ev == "open" and not msg.path:
        raise MalformedMessage("audit open needs path")
    if msg.ev in ("socket.getaddrinfo", "socket.gethostbyname") and not msg.host:
        raise MalformedMessage(f"audit {msg.ev} needs host")
    if msg.ev in ("ctypes.dlopen", "import") and not (msg.name or msg.src):
        raise MalformedMessage(f"audit {msg.ev} needs name or src")


def _audit_kind(msg: Message, ev: Event) -> None:
    """Fill ``ev`` (kind, domain group, attrs) from an ``audit`` message.

    Kinds: exec-like events are ``process.exec`` (``pid`` is the process that asked, which
    for ``os.exec`` is also the new image; ``exec_name`` the program asked for, ``exe`` the
    executable it resolved to in the caller), connects ``net.connect``, name look-ups
    ``dns.query``, watched opens ``file.open``, ``ctypes.dlopen`` and modules executed from
    writable paths ``plugin.load``. Every one has ``source="audit"`` and ``attrs["via"] = "audit"``.
    """
    name = msg.ev or ""
    attrs = ev.attrs if ev.attrs is not None else {}
    attrs["via"] = "audit"
    attrs["audit_event"] = name
    if name in _EXEC_EVENTS:
        ev.kind = "process.exec"
        # exe is the executed file (runwatch.exepath): the hook's resolution of the program,
        # never the name asked for, which is exec_name. Without one (an older SDK, or no such
        # executable) exe stays empty and the event says so.
        ev.exec_name = msg.exe or ""
        ev.exe = msg.xe or ""
        if not msg.xe:
            attrs["exe_unresolved"] = True
        ev.argv = list(msg.argv) if msg.argv is not None else [ev.exec_name]
        ev.cmdline = " ".join(ev.argv)
        if name != "os.exec":  # the others run the program in a child the caller starts
            attrs[SPAWNED_ATTR] = True
    elif name == "socket.connect":
        ev.kind = "net.connect"
        fam = msg.fam or "unix"
        if fam == "unix":
            ev.net = NetInfo(proto="unix", family="unix")
            if msg.path is not None:
                attrs["unix_path"] = msg.path
        else:
            ev.net = NetInfo(proto=msg.proto or "tcp", family=fam, dst_ip=msg.host, dst_port=msg.port)
    elif name in ("socket.getaddrinfo", "socket.gethostbyname"):
        ev.kind = "dns.query"
        qtype = {"ipv4": "A", "ipv6": "AAAA"}.get(msg.fam or "")
        ev.dns = DnsInfo(name=msg.host or "", qtype=qtype)
        if msg.port is not None:
            attrs["port"] = msg.port
    elif name == "open":
        ev.kind = "file.open"
        ev.file = FileInfo(path=msg.path or "", intent=msg.intent, flags=msg.fl)
    else:  # ctypes.dlopen, import
        ev.kind = "plugin.load"
        ai = ev.ai if ev.ai is not None else AiInfo()
        ai.plugin, ai.plugin_source, ai.sha256 = msg.name, msg.src, msg.sha
        ev.ai = ai
    ev.attrs = {k: v for k, v in attrs.items() if v is not None}


class SdkCollector:
    """Receives SDK datagrams on ``path`` and turns them into runwatch events.

    ``mode`` is the socket file's mode (0o666 by default so a container's root, even one
    mapped to another uid by a user namespace, can send). Raises ``RuntimeError`` from
    :meth:`start` if another collector is listening on the path or the path is not a socket.
    """

    name = "sdk"

    def __init__(self, path: str | os.PathLike[str] | None = None, *, mode: int = 0o666, dir_mode: int = 0o755,
                 clock_offset: int | None = None, max_batch: int = 4096, verify: bool = True,
                 rcvbuf: int = 1 << 22) -> None:
        self.path = Path(path if path is not None else os.environ.get(ENV_SOCKET, DEFAULT_SOCKET))
        self.mode, self.dir_mode = mode, dir_mode
        self.clock_offset = (time.time_ns() - time.monotonic_ns()) if clock_offset is None else clock_offset
        self.max_batch = max_batch
        self.verify = verify
        self.rcvbuf = rcvbuf
        self.last_error: str | None = None
        self.first_error: str | None = None
        self._sock: socket.socket | None = None
        self._inode: int | None = None
        self._own_ns = procfs.ns_view(os.getpid())
        self._cgroup_v2 = cgroup_v2_if_any()  # detected once per process (runwatch.host)
        self._views: dict[int, tuple[int, int] | None] = {}
        self._cgroups: dict[int, int | None] = {}
        self._tids: dict[tuple[int, int], int | None] = {}
        self.counters: dict[str, int] = {"events": 0, "datagrams": 0, "malformed": 0, "no_credentials": 0,
                                         "identity_mismatch": 0, "identity_unverified": 0, "drops": 0}

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Create the directory, clear a stale socket, bind and open for everyone to send."""
        directory = self.path.parent
        if not directory.exists():
            directory.mkdir(mode=self.dir_mode, parents=True, exist_ok=True)
            os.chmod(directory, self.dir_mode)
        self._clear_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, self.mode)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            try:
                sock.setsockopt(socket.SOL_SOCKET, 33, self.rcvbuf)  # SO_RCVBUFFORCE (root)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            self._inode = os.stat(self.path).st_ino
        except OSError as exc:
            sock.close()
            raise RuntimeError(f"cannot listen for SDK messages on {self.path}: {exc.strerror or exc}") from exc
        self._sock = sock

    def _clear_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise RuntimeError(f"{self.path} exists and is not a socket; refusing to replace it")
        if socket_alive(str(self.path)):
            raise RuntimeError(f"another collector is listening on {self.path}")
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # nobody listens: a stale socket from a dead collector

    def stop(self) -> None:
        """Close the socket and remove its file (only if it is still ours); idempotent."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        sock.close()
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                self.path.unlink()

    def fileno(self) -> int:
        """The socket's descriptor (for callers that select on several sources)."""
        return self._sock.fileno() if self._sock is not None else -1

    # -- reading ------------------------------------------------------------------------------

    def pending(self) -> bool:
        """Whether a datagram is queued on the socket (the drain's watermark)."""
        sock = self._sock
        if sock is None:
            return False
        try:
            return bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError):
            return False

    def poll(self, timeout: float) -> list[Event] | None:
        """Wait up to ``timeout`` s for datagrams, then decode what is queued (at most ``max_batch``)."""
        sock = self._sock
        if sock is None:
            return None
        out: list[Event] = []
        try:
            ready, _, _ = select.select([sock], [], [], max(timeout, 0.0))
        except (OSError, ValueError):
            return out
        if not ready:
            return out
        cmsg = socket.CMSG_SPACE(_UCRED.size)
        while len(out) < self.max_batch:
            try:
                data, anc, flags, _ = sock.recvmsg(_RECV_BUF, cmsg)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._bad(f"recvmsg: {exc.strerror}")
                break
            self.counters["datagrams"] += 1
            if flags & socket.MSG_TRUNC:
                self._bad(f"datagram over {_RECV_BUF} bytes truncated")
                continue
            creds = None
            for level, ctype, cdata in anc:
                if level == socket.SOL_SOCKET and ctype == socket.SCM_CREDENTIALS and len(cdata) >= _UCRED.size:
                    creds = _UCRED.unpack_from(cdata)
            if creds is None:
                self.counters["no_credentials"] += 1
            self.decode_datagram(data, creds, out)
        self.counters["events"] += len(out)
        return out

    def _bad(self, reason: str) -> None:
        self.counters["malformed"] += 1
        self.last_error = reason
        if self.first_error is None:
            self.first_error = reason

    def decode_datagram(self, data: bytes, creds: tuple[int, int, int] | None, out: list[Event]) -> None:
        """Decode every message line of one datagram into ``out``; bad lines are counted."""
        for line in data.split(b"\n"):
            if not line:
                continue
            try:
                msg = _decoder.decode(line)
                validate(msg)
                event = self.to_event(msg, creds)
            except (msgspec.DecodeError, MalformedMessage) as exc:
                self._bad(" ".join(str(exc).split())[:200])
                continue
            except (ValueError, RecursionError, OverflowError) as exc:  # invalid UTF-8, nesting, huge numbers
                self._bad(f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}")
                continue
            out.append(event)

    def _view(self, host_pid: int) -> tuple[int, int] | None:
        if host_pid not in self._views:
            if len(self._views) > 4096:
                self._views.clear()
            self._views[host_pid] = procfs.ns_view(host_pid)
        return self._views[host_pid]

    def _cgroup(self, host_pid: int) -> int | None:
        if host_pid not in self._cgroups:
            if len(self._cgroups) > 4096:
                self._cgroups.clear()
            self._cgroups[host_pid] = self._cgroup_v2.id_of_pid(host_pid) if self._cgroup_v2 else None
        return self._cgroups[host_pid]

    def to_event(self, msg: Message, creds: tuple[int, int, int] | None) -> Event:
        """The runwatch event for one valid message; ``creds`` is (host pid, uid, gid) or None."""
        t = msg.m + self.clock_offset
        pidns: int | None = msg.ns
        vpid: int | None = msg.pid
        vtid = msg.tid
        pid = tid = uid = 0
        cgroup: int | None = None
        if creds is not None and creds[0] > 0:
            pid, uid = creds[0], creds[1]
            cgroup = self._cgroup(pid) if self.verify else None
            view = self._view(pid) if self.verify else None
            if view is not None and view != (pidns, vpid):
                self.counters["identity_mismatch"] += 1
                pidns, vpid = view
            elif view is None and self.verify:
                # the sender is gone before its claim could be checked: keep only the kernel's
                # word (its host pid), unless it claims this namespace with that very pid
                own = self._own_ns[0] if self._own_ns is not None else None
                if not (pidns == own and vpid == pid):
                    self.counters["identity_unverified"] += 1
                    pidns = vpid = None
            if self._own_ns is not None and pidns == self._own_ns[0]:
                tid = vtid
            elif self.verify:
                key = (pid, vtid)
                if key not in self._tids:
                    if len(self._tids) > 16384:
                        self._tids.clear()
                    self._tids[key] = procfs.host_tid(pid, vtid)
                tid = self._tids[key] or 0
        kind = msg.k
        attrs: dict[str, object] = {}
        ai = AiInfo(route=msg.route)
        call: ToolCall | None = None
        if kind in ("tool.start", "tool.end"):
            call = ToolCall(name=msg.name or "", call_id=msg.cid, agent=msg.agent)
            ai.span = msg.sid
            if kind == "tool.start":
                ai.parent_span, ai.args_digest, ai.args = msg.psid, msg.ah, msg.args
                if msg.spid is not None:
                    attrs[SERVER_PID_ATTR] = msg.spid
            else:
                ai.status, ai.duration_ns, ai.error = msg.st, msg.dur, msg.err
                if msg.sm is not None:
                    ai.start_time = msg.sm + self.clock_offset
        else:
            if msg.pname is not None:
                call = ToolCall(name=msg.pname, call_id=msg.pcid, agent=msg.pagent)
                ai.span = msg.psid
            if kind == "model.call":
                ai.operation, ai.provider, ai.model = "model.call", msg.prov, msg.model
            elif kind == "prompt.route":
                kind = "model.call"
                ai.operation = "prompt.route"
            elif kind == "plugin.load":
                ai.plugin, ai.plugin_source, ai.sha256, ai.plugin_version = msg.name, msg.src, msg.sha, msg.ver
            elif kind == "secret.access":
                ai.secret, ai.secret_kind = msg.name, msg.sk
            elif kind == "hello":
                kind = "sensor.notice"
                attrs["notice"] = "sdk.attach"
                ai.agent = msg.agent
            elif kind == "svid":
                # verified by the enrichment stage once the sender's container is known (runwatch.svid)
                kind = "sensor.notice"
                attrs.update({"notice": SVID_NOTICE, SVID_CLAIM_ATTR: msg.spiffe, SVID_CHAIN_ATTR: list(msg.x5c or ()),
                              SVID_SIG_ATTR: msg.sig, SVID_MONO_ATTR: msg.m})
        event = Event(id=new_id(t), time=t, kind=kind, source="sdk", pid=pid, tid=tid, uid=uid, cgroup_id=cgroup,
                      pidns=pidns, vpid=vpid, vtid=vtid, tool_call=call, attrs=attrs or None,
                      ai=ai if ai != _NO_AI else None)
        if kind == "audit":
            event.source = "audit"
            _audit_kind(msg, event)
        return event

    def stats(self) -> dict[str, int]:
        """Counters: events, datagrams, malformed, no_credentials, identity_mismatch, drops (always 0:
        the kernel refuses senders when the queue is full and they count their own drops)."""
        return dict(self.counters)


register_source("sdk", SdkCollector)
