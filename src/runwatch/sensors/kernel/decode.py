"""Decode ring-buffer records (see ``layout.py``) into :class:`runwatch.events.Event`.

Hot path: one ``struct.unpack_from`` per record, no ctypes objects. Unknown kinds and
short records raise :class:`DecodeError` so the caller can count them, never guess.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from runwatch.events import DnsInfo, Event, FileInfo, NetInfo, PrivInfo, new_id
from runwatch.sensors.kernel import layout as L

_HDR_FIELDS = 15
_EXEC = L.struct_of(L.RwExec)
_FORK = L.struct_of(L.RwFork)
_EXIT = L.struct_of(L.RwExit)
_NET = L.struct_of(L.RwNet)
_DNS = L.struct_of(L.RwDns)
_FILE = L.struct_of(L.RwFile)
_PRIV = L.struct_of(L.RwPriv)
_CGROUP = L.struct_of(L.RwCgroup)

PROTOS = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6", 255: "raw", 0: "ip"}
QTYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV",
          65: "HTTPS", 255: "ANY"}
PRIV_OPS = {1: "setuid", 2: "setreuid", 3: "setresuid", 4: "setgid", 5: "setregid", 6: "setresgid"}
O_ACCMODE, O_CREAT, O_TRUNC = 3, 0o100, 0o1000


class DecodeError(ValueError):
    """A record that cannot be decoded (unknown kind or wrong size)."""


def _str(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _addr(family: int, raw: bytes) -> str:
    if family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw[:16])
    return socket.inet_ntop(socket.AF_INET, raw[:4])


def _opt(value: int) -> int | None:
    """An id argument, or None for -1 ("leave unchanged")."""
    return None if value == -1 else value


def intent_of(flags: int) -> str:
    """read / write / rw from open(2) flags (O_CREAT or O_TRUNC count as writing)."""
    acc = flags & O_ACCMODE
    if acc == 2:
        return "rw"
    if acc == 1 or flags & (O_CREAT | O_TRUNC):
        return "write"
    return "read"


def parse_dns_name(payload: bytes) -> tuple[str, str | None] | None:
    """The first question's name and type from a DNS query packet head, or None."""
    if len(payload) < 13:
        return None
    pos, labels = 12, []
    while pos < len(payload):
        n = payload[pos]
        if n == 0:
            pos += 1
            break
        if n & 0xC0 or pos + 1 + n > len(payload):
            return None
        labels.append(payload[pos + 1:pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
    else:
        return None
    if not labels:
        return None
    qtype = None
    if pos + 2 <= len(payload):
        code = int.from_bytes(payload[pos:pos + 2], "big")
        qtype = QTYPES.get(code, str(code))
    return ".".join(labels), qtype


class Decoder:
    """Turns raw records into events. ``clock_offset`` maps monotonic ns to epoch ns.

    Not thread safe; one per consumer thread.
    """

    def __init__(self, clock_offset: int | None = None) -> None:
        self.clock_offset = (time.time_ns() - time.monotonic_ns()) if clock_offset is None else clock_offset
        self._by_kind: dict[int, Callable[[memoryview | bytes, int], Event]] = {
            L.Kind.EXEC: self._exec, L.Kind.FORK: self._fork, L.Kind.EXIT: self._exit,
            L.Kind.CONNECT: self._net, L.Kind.ACCEPT: self._net, L.Kind.LISTEN: self._net,
            L.Kind.BIND: self._net, L.Kind.DNS: self._dns, L.Kind.OPEN: self._file,
            L.Kind.UNLINK: self._file, L.Kind.RENAME: self._file, L.Kind.MEMFD: self._file,
            L.Kind.SETUID: self._priv, L.Kind.SETGID: self._priv, L.Kind.CAPSET: self._priv,
            L.Kind.MOUNT: self._priv, L.Kind.PTRACE: self._priv, L.Kind.UNSHARE: self._priv,
            L.Kind.SETNS: self._priv, L.Kind.CGROUP_MKDIR: self._cgroup,
        }

    def decode(self, buf: memoryview | bytes, off: int = 0, size: int | None = None) -> Event:
        """Decode the record at ``buf[off:]``."""
        kind = int.from_bytes(buf[off:off + 4], "little")
        fn = self._by_kind.get(kind)
        if fn is None:
            raise DecodeError(f"unknown record kind {kind}")
        return fn(buf, off)

    def _base(self, v: tuple[object, ...], kind: str) -> Event:
        ts = v[2]
        assert isinstance(ts, int)
        t = ts + self.clock_offset
        return Event(
            id=new_id(t), time=t, kind=kind, cgroup_id=v[3], pid=v[4], tid=v[5],  # type: ignore[arg-type]
            ppid=v[6], uid=v[7], euid=v[8], gid=v[9], pidns=v[10], vpid=v[11], vtid=v[12],  # type: ignore[arg-type]
            comm=_str(v[14]),  # type: ignore[arg-type]
        )

    def _exec(self, buf: memoryview | bytes, off: int) -> Event:
        v = _EXEC.unpack_from(buf, off)
        e = self._base(v, "process.exec")
        args_len, args_full, depth = v[17], v[18], v[19]
        argv = [a.decode("utf-8", "replace") for a in v[21][:args_len].split(b"\0")]
        if argv and argv[-1] == "":
            argv.pop()
        cmdline = " ".join(argv)
        if args_full > args_len:
            cmdline += " ..."
            e.attrs = {"argv_truncated": True}
        parts = [_str(p) for p in v[22:22 + min(depth, L.CWD_DEPTH)]]
        cwd = "/" + "/".join(reversed(parts))
        exe = _str(v[20])
        if exe and not exe.startswith("/"):
            exe = (cwd.rstrip("/") + "/" + exe.removeprefix("./")) if cwd else exe
        e.exe, e.argv, e.cmdline, e.cwd = exe, argv, cmdline, cwd
        return e

    def _fork(self, buf: memoryview | bytes, off: int) -> Event:
        v = _FORK.unpack_from(buf, off)
        e = self._base(v, "process.fork")
        e.child_pid = v[15]
        return e

    def _exit(self, buf: memoryview | bytes, off: int) -> Event:
        v = _EXIT.unpack_from(buf, off)
        e = self._base(v, "process.exit")
        raw = v[15]
        e.exit_code = (raw >> 8) & 0xFF
        sig = raw & 0x7F
        if sig:
            e.signal = sig
        return e

    def _net(self, buf: memoryview | bytes, off: int) -> Event:
        v = _NET.unpack_from(buf, off)
        kind = L.Kind(v[0])
        result, family, proto, sport, dport, saddr, daddr = v[15], v[16], v[17], v[18], v[19], v[21], v[22]
        fam = "ipv6" if family == socket.AF_INET6 else "ipv4"
        pname = PROTOS.get(proto, str(proto))
        if kind is L.Kind.CONNECT:
            info = NetInfo(proto=pname, family=fam, dst_ip=_addr(family, daddr), dst_port=dport,
                           src_port=sport or None, result=result)
            name = "net.connect"
        elif kind is L.Kind.ACCEPT:
            info = NetInfo(proto=pname, family=fam, src_ip=_addr(family, daddr), src_port=dport,
                           dst_ip=_addr(family, saddr), dst_port=sport, result=0)
            name = "net.accept"
        elif kind is L.Kind.BIND:
            info = NetInfo(proto=pname, family=fam, src_ip=_addr(family, daddr), src_port=dport, result=result)
            name = "net.bind"
        else:
            info = NetInfo(proto=pname, family=fam, src_ip=_addr(family, saddr), src_port=sport, result=0)
            name = "net.listen"
        e = self._base(v, name)
        e.net = info
        return e

    def _dns(self, buf: memoryview | bytes, off: int) -> Event:
        v = _DNS.unpack_from(buf, off)
        e = self._base(v, "dns.query")
        family, dport, n, daddr, payload = v[15], v[16], v[17], v[18], v[19]
        parsed = parse_dns_name(payload[:n])
        name, qtype = parsed if parsed else ("", None)
        e.dns = DnsInfo(name=name, qtype=qtype, server_ip=_addr(family, daddr), server_port=dport)
        if parsed is None:
            e.attrs = {"dns_unparsed": True}
        return e

    def _file(self, buf: memoryview | bytes, off: int) -> Event:
        v = _FILE.unpack_from(buf, off)
        kind = L.Kind(v[0])
        flags, path, path2 = v[15], _str(v[17]), _str(v[18])
        if kind is L.Kind.OPEN:
            e = self._base(v, "file.open")
            e.file = FileInfo(path=path, intent=intent_of(flags), flags=flags)
        elif kind is L.Kind.UNLINK:
            e = self._base(v, "file.unlink")
            e.file = FileInfo(path=path, intent="write", flags=flags)
        elif kind is L.Kind.RENAME:
            e = self._base(v, "file.rename")
            e.file = FileInfo(path=path, intent="write", new_path=path2, flags=flags)
        else:
            e = self._base(v, "file.memfd")
            e.file = FileInfo(path=f"memfd:{path}", name=path, flags=flags)
        return e

    def _cgroup(self, buf: memoryview | bytes, off: int) -> Event:
        v = _CGROUP.unpack_from(buf, off)
        e = self._base(v, "cgroup.mkdir")
        e.attrs = {"cgroup_id": v[15], "level": v[16], "path": _str(v[18])}
        return e

    def _priv(self, buf: memoryview | bytes, off: int) -> Event:
        v = _PRIV.unpack_from(buf, off)
        kind = L.Kind(v[0])
        op, a0, a1 = v[15], v[17], v[18]
        if kind in (L.Kind.SETUID, L.Kind.SETGID):
            opname = PRIV_OPS.get(op, str(op))
            uid_like = kind is L.Kind.SETUID
            single = opname in ("setuid", "setgid")
            first, second = _opt(a0), (_opt(a0) if single else _opt(a1))
            info = (PrivInfo(op=opname, uid=first, euid=second) if uid_like
                    else PrivInfo(op=opname, gid=first, egid=second))
            name = "priv.setuid" if uid_like else "priv.setgid"
        elif kind is L.Kind.CAPSET:
            info = PrivInfo(op="capset", cap_effective=v[20] | v[21] << 32, cap_permitted=v[22] | v[23] << 32,
                            cap_inheritable=v[24] | v[25] << 32)
            name = "priv.capset"
        elif kind is L.Kind.MOUNT:
            info = PrivInfo(op="mount", target=_str(v[26]), source=_str(v[27]), fstype=_str(v[28]) or None,
                            mount_flags=a0 & 0xFFFFFFFF)
            name = "priv.mount"
        elif kind is L.Kind.PTRACE:
            info = PrivInfo(op="ptrace", request=a0, target_pid=a1)
            name = "priv.ptrace"
        elif kind is L.Kind.UNSHARE:
            info = PrivInfo(op="unshare", ns_flags=a0 & 0xFFFFFFFF)
            name = "priv.unshare"
        else:
            info = PrivInfo(op="setns", ns_flags=a0 & 0xFFFFFFFF)
            name = "priv.setns"
        e = self._base(v, name)
        e.priv = info
        return e
