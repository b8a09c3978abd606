"""Wire format of the netlink proc connector (CN_PROC), decoded into small typed records.

Layouts follow ``linux/netlink.h`` (``struct nlmsghdr``), ``linux/connector.h``
(``struct cn_msg``) and ``linux/cn_proc.h`` (``struct proc_event``). All integers are in
host byte order; this module assumes a little-endian host (x86-64, arm64).

The encoding and decoding functions are pure; :class:`CnProcSocket` owns one subscribed
netlink socket. Nothing here knows /proc or :class:`runwatch.events.Event`. Decoding
errors raise :class:`CnProcDecodeError`, refusals :class:`ProcConnectorUnavailable`, each
with a one-line message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
import os
import select
import socket
import struct
import time

#: ``NETLINK_CONNECTOR`` protocol number (``linux/netlink.h``).
NETLINK_CONNECTOR = 11
#: Connector index/value of the proc connector (``linux/connector.h``); the index is also
#: the multicast group to bind to.
CN_IDX_PROC = 1
CN_VAL_PROC = 1
#: The netlink message type the connector uses for every message, both directions.
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3

#: ``enum proc_cn_mcast_op``.
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2

#: ``PTRACE_ATTACH`` from ``linux/ptrace.h``; the connector reports attach and seize alike.
PTRACE_ATTACH = 16


class What(enum.IntEnum):
    """``enum what`` of ``struct proc_event``: which event a message carries."""

    NONE = 0x00000000  # acknowledgement of a multicast op
    FORK = 0x00000001
    EXEC = 0x00000002
    UID = 0x00000004
    GID = 0x00000040
    SID = 0x00000080
    PTRACE = 0x00000100
    COMM = 0x00000200
    COREDUMP = 0x40000000
    EXIT = 0x80000000


# struct nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid; }
NLMSGHDR = struct.Struct("=IHHII")
# struct cn_msg { struct cb_id { u32 idx; u32 val; } id; u32 seq; u32 ack; u16 len; u16 flags; }
CN_MSG = struct.Struct("=IIIIHH")
# struct proc_event head: u32 what; u32 cpu; u64 timestamp_ns (aligned 8, so no padding here)
PROC_EVENT_HEAD = struct.Struct("=IIQ")
_OP = struct.Struct("=I")
_TWO = struct.Struct("=ii")
_FOUR = struct.Struct("=iiii")
_SIX = struct.Struct("=iiiiii")
_ACK = struct.Struct("=I")
_COMM_LEN = 16

#: Offset of ``struct proc_event`` from the start of one netlink message.
EVENT_OFFSET = NLMSGHDR.size + CN_MSG.size
#: Size of the ``event_data`` union (largest members: exit and comm, 24 bytes).
EVENT_DATA_SIZE = 24


class CnProcDecodeError(ValueError):
    """A received datagram is not a well-formed proc connector message."""


@dataclasses.dataclass(frozen=True, slots=True)
class ProcRecord:
    """Fields every proc connector message carries.

    ``seq`` is the kernel's per-CPU message counter for ``cpu``: consecutive messages from
    one CPU have consecutive numbers, so a jump means the kernel could not deliver some.
    ``timestamp_ns`` is ``ktime_get_ns()``: CLOCK_MONOTONIC nanoseconds, not epoch time.
    """

    cpu: int
    seq: int
    timestamp_ns: int


@dataclasses.dataclass(frozen=True, slots=True)
class AckRecord(ProcRecord):
    """Answer to a multicast op: ``err`` is 0 or a positive errno; ``ack`` is the sent ack + 1."""

    err: int
    ack: int


@dataclasses.dataclass(frozen=True, slots=True)
class ForkRecord(ProcRecord):
    """A task was created. ``child_pid != child_tgid`` means a thread, not a process."""

    parent_pid: int
    parent_tgid: int
    child_pid: int
    child_tgid: int


@dataclasses.dataclass(frozen=True, slots=True)
class ExecRecord(ProcRecord):
    """A task completed ``execve``; after it, ``pid == tgid``."""

    pid: int
    tgid: int


@dataclasses.dataclass(frozen=True, slots=True)
class IdRecord(ProcRecord):
    """Real or effective uid (``which == "uid"``) or gid (``"gid"``) of a task changed."""

    pid: int
    tgid: int
    which: str
    real: int
    effective: int


@dataclasses.dataclass(frozen=True, slots=True)
class SidRecord(ProcRecord):
    """A task called ``setsid``."""

    pid: int
    tgid: int


@dataclasses.dataclass(frozen=True, slots=True)
class PtraceRecord(ProcRecord):
    """``pid``/``tgid`` was attached to by ``tracer_*``; a tracer of 0 means detach."""

    pid: int
    tgid: int
    tracer_pid: int
    tracer_tgid: int


@dataclasses.dataclass(frozen=True, slots=True)
class CommRecord(ProcRecord):
    """A task's ``comm`` (short name) changed."""

    pid: int
    tgid: int
    comm: str


@dataclasses.dataclass(frozen=True, slots=True)
class CoredumpRecord(ProcRecord):
    """A task dumped core (its exit follows)."""

    pid: int
    tgid: int
    parent_pid: int
    parent_tgid: int


@dataclasses.dataclass(frozen=True, slots=True)
class ExitRecord(ProcRecord):
    """A task exited. ``status`` is the kernel's wait status (see :func:`decode_wait_status`);
    ``exit_signal`` is the signal sent to the parent (normally SIGCHLD), not a killing signal.
    """

    pid: int
    tgid: int
    status: int
    exit_signal: int
    parent_pid: int
    parent_tgid: int


@dataclasses.dataclass(frozen=True, slots=True)
class UnknownRecord(ProcRecord):
    """An event type this module does not know (newer kernel); kept so it can be counted."""

    what: int


Record = (
    AckRecord | ForkRecord | ExecRecord | IdRecord | SidRecord | PtraceRecord | CommRecord
    | CoredumpRecord | ExitRecord | UnknownRecord
)


def decode_wait_status(status: int) -> tuple[int, int | None, bool]:
    """Split a wait status into ``(exit_code, signal, core_dumped)``.

    A process killed by a signal has ``exit_code`` 0 and ``signal`` set; a normal exit has
    ``signal`` None.
    """
    sig = status & 0x7F
    if sig:
        return 0, sig, bool(status & 0x80)
    return (status >> 8) & 0xFF, None, False


def mcast_message(op: int, nonce: int) -> bytes:
    """Build the request that sends multicast ``op`` (LISTEN or IGNORE) to the proc connector.

    The kernel answers with an :class:`AckRecord` whose ``ack`` is ``nonce + 1``.
    """
    if op not in (PROC_CN_MCAST_LISTEN, PROC_CN_MCAST_IGNORE):
        raise ValueError(f"unknown proc connector multicast op {op}")
    nonce &= 0x7FFFFFFF
    payload = _OP.pack(op)
    cn = CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, nonce, nonce, len(payload), 0) + payload
    return NLMSGHDR.pack(NLMSGHDR.size + len(cn), NLMSG_DONE, 0, nonce, 0) + cn


def _decode_event(data: bytes | memoryview, off: int, end: int) -> Record:
    """Decode one ``struct proc_event`` at ``data[off:end]``."""
    if end - off < PROC_EVENT_HEAD.size:
        raise CnProcDecodeError(f"proc_event too short: {end - off} bytes")
    what, cpu, ts = PROC_EVENT_HEAD.unpack_from(data, off)
    body = off + PROC_EVENT_HEAD.size
    need = {What.NONE: _ACK.size, What.EXEC: _TWO.size, What.SID: _TWO.size,
            What.FORK: _FOUR.size, What.UID: _FOUR.size, What.GID: _FOUR.size,
            What.PTRACE: _FOUR.size, What.COMM: _TWO.size + _COMM_LEN,
            What.COREDUMP: _FOUR.size, What.EXIT: _SIX.size}.get(what, 0)
    if end - body < need:
        raise CnProcDecodeError(f"proc_event what={what:#x} needs {need} data bytes, got {end - body}")
    # ``seq`` is filled in by the caller (it lives in cn_msg); pass 0 here and replace.
    head = (cpu, 0, ts)
    if what == What.FORK:
        return ForkRecord(*head, *_FOUR.unpack_from(data, body))
    if what == What.EXEC:
        return ExecRecord(*head, *_TWO.unpack_from(data, body))
    if what == What.EXIT:
        return ExitRecord(*head, *_SIX.unpack_from(data, body))
    if what in (What.UID, What.GID):
        pid, tgid, real, eff = struct.unpack_from("=iiII", data, body)
        return IdRecord(*head, pid, tgid, "uid" if what == What.UID else "gid", real, eff)
    if what == What.PTRACE:
        return PtraceRecord(*head, *_FOUR.unpack_from(data, body))
    if what == What.COMM:
        pid, tgid = _TWO.unpack_from(data, body)
        raw = bytes(data[body + _TWO.size:body + _TWO.size + _COMM_LEN])
        return CommRecord(*head, pid, tgid, raw.split(b"\0", 1)[0].decode("utf-8", "replace"))
    if what == What.SID:
        return SidRecord(*head, *_TWO.unpack_from(data, body))
    if what == What.COREDUMP:
        return CoredumpRecord(*head, *_FOUR.unpack_from(data, body))
    if what == What.NONE:
        return AckRecord(*head, _ACK.unpack_from(data, body)[0], 0)
    return UnknownRecord(*head, what)


def decode_datagram(data: bytes | memoryview) -> list[Record]:
    """Decode every proc connector message in one received netlink datagram.

    Netlink messages of other types (NOOP) and connector messages for other callbacks
    are skipped. A netlink error message or a truncated message raises
    :class:`CnProcDecodeError`.
    """
    records: list[Record] = []
    off, size = 0, len(data)
    while off + NLMSGHDR.size <= size:
        length, mtype, _flags, _seq, _port = NLMSGHDR.unpack_from(data, off)
        if length < NLMSGHDR.size or off + length > size:
            raise CnProcDecodeError(f"netlink message length {length} at offset {off} overruns "
                                    f"the {size}-byte datagram")
        if mtype == NLMSG_ERROR:
            errno_ = -struct.unpack_from("=i", data, off + NLMSGHDR.size)[0] if length >= 20 else 0
            raise CnProcDecodeError(f"netlink error message from the kernel (errno {errno_})")
        if mtype == NLMSG_DONE:
            if length < EVENT_OFFSET:
                raise CnProcDecodeError(f"connector message too short: {length} bytes")
            idx, val, seq, ack, dlen, _cflags = CN_MSG.unpack_from(data, off + NLMSGHDR.size)
            if (idx, val) == (CN_IDX_PROC, CN_VAL_PROC):
                if EVENT_OFFSET + dlen > length:
                    raise CnProcDecodeError(f"cn_msg data length {dlen} exceeds the message ({length} bytes)")
                rec = _decode_event(data, off + EVENT_OFFSET, off + EVENT_OFFSET + dlen)
                if isinstance(rec, AckRecord):
                    rec = dataclasses.replace(rec, seq=seq, ack=ack)
                else:
                    rec = dataclasses.replace(rec, seq=seq)
                records.append(rec)
        off += (length + 3) & ~3
    return records



class SeqGapCounter:
    """Counts messages missing from the kernel's per-CPU sequence numbers.

    Each CPU numbers the proc connector messages it sends consecutively (acks included),
    so a jump from ``n`` to ``n + k`` on one CPU means ``k - 1`` messages were never
    delivered, whatever the cause (full receive buffer, failed allocation). Counting starts
    at the first message seen from each CPU. Not thread safe.
    """

    def __init__(self) -> None:
        self.missing = 0
        self._last: dict[int, int] = {}

    def see(self, rec: ProcRecord) -> None:
        """Account for one received record."""
        last = self._last.get(rec.cpu)
        if last is not None:
            gap = (rec.seq - last - 1) & 0xFFFFFFFF
            if gap < 0x80000000:  # a "gap" of almost 2**32 is a repeat or reorder, not loss
                self.missing += gap
        self._last[rec.cpu] = rec.seq


class ProcConnectorUnavailable(OSError):
    """The proc connector cannot be used here; the message says why in one line."""


_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


class CnProcSocket:
    """One NETLINK_CONNECTOR socket subscribed to proc events. Not thread safe.

    Counters (plain attributes): ``messages`` decoded, ``drops`` (ENOBUFS from recv: the
    receive buffer overflowed and the kernel discarded one or more messages),
    ``malformed`` datagrams, ``rcvbuf_bytes`` granted, and ``gaps.missing`` (messages
    missing from the per-CPU sequence numbers, whatever the cause).
    """

    def __init__(self, rcvbuf: int = 8 << 20, ack_timeout: float = 2.0) -> None:
        self.rcvbuf_req, self.ack_timeout = rcvbuf, ack_timeout
        self.sock: socket.socket | None = None
        self.messages = self.drops = self.malformed = self.rcvbuf_bytes = 0
        self.gaps = SeqGapCounter()

    def open(self) -> list[Record]:
        """Bind, subscribe and wait for the kernel's acknowledgement.

        Returns records received before the acknowledgement (they are real events).
        Raises :class:`ProcConnectorUnavailable` when the kernel lacks or refuses it.
        """
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        except OSError as exc:
            raise ProcConnectorUnavailable(f"proc connector not available in this kernel: {exc}") from None
        try:
            try:  # past net.core.rmem_max when privileged, else capped by it
                sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, self.rcvbuf_req)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf_req)
            self.rcvbuf_bytes = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
            try:
                sock.bind((0, CN_IDX_PROC))
            except PermissionError as exc:
                raise ProcConnectorUnavailable(
                    f"proc connector needs CAP_NET_ADMIN: joining the CN_PROC group was refused ({exc})"
                ) from None
            early = self._subscribe(sock)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        return early

    def _subscribe(self, sock: socket.socket) -> list[Record]:
        nonce = (os.getpid() << 8 ^ id(self) ^ time.monotonic_ns()) & 0x3FFFFFFF
        sock.send(mcast_message(PROC_CN_MCAST_LISTEN, nonce))
        early: list[Record] = []
        deadline = time.monotonic() + self.ack_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                raise ProcConnectorUnavailable(
                    f"proc connector did not acknowledge the subscription within {self.ack_timeout:g} s "
                    "(runwatch must run in the host's initial user and pid namespaces)")
            for rec in self._recv(sock, blocking=True) or ():
                if isinstance(rec, AckRecord) and rec.ack == nonce + 1:
                    if rec.err == errno.EPERM:
                        raise ProcConnectorUnavailable(
                            "proc connector needs CAP_NET_ADMIN: the kernel refused the subscription (EPERM)")
                    if rec.err:
                        raise ProcConnectorUnavailable(
                            f"proc connector refused the subscription: {os.strerror(rec.err)}")
                    return early
                early.append(rec)

    def _recv(self, sock: socket.socket, *, blocking: bool) -> list[Record] | None:
        """One datagram's records; None when nothing is waiting (non-blocking)."""
        try:
            data = sock.recv(65536, 0 if blocking else socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            self.drops += 1  # the kernel discarded messages; keep going
            return []
        try:
            records = decode_datagram(data)
        except CnProcDecodeError:
            self.malformed += 1
            return []
        self.messages += len(records)
        for rec in records:
            self.gaps.see(rec)
        return records

    def fileno(self) -> int:
        """The socket's fd, for select/poll (-1 when closed)."""
        return self.sock.fileno() if self.sock is not None else -1

    def read_available(self, max_datagrams: int = 256) -> list[Record]:
        """Records of every waiting datagram, up to ``max_datagrams``; never blocks."""
        assert self.sock is not None, "CnProcSocket.open() first"
        records: list[Record] = []
        for _ in range(max_datagrams):
            got = self._recv(self.sock, blocking=False)
            if got is None:
                break
            records.extend(got)
        return records

    def close(self) -> None:
        """Unsubscribe (so the kernel stops building messages for nobody) and close."""
        sock, self.sock = self.sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.send(mcast_message(PROC_CN_MCAST_IGNORE, 1))
            sock.close()
