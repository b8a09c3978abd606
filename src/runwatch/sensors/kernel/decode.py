"""Decode ring-buffer records (see ``layout.py``) into :class:`runwatch.events.Event`.

Hot path: each record is copied out of the ring once (``bytes``), then one small
``struct.unpack_from`` for the header and one for the fixed payload fields; C strings are
cut at their NUL with ``bytes.find`` so only their used part is decoded. Offsets come from
the ctypes mirrors in ``layout.py`` (checked against the object's BTF by a test).
Unknown kinds and short records raise :class:`DecodeError` so the caller counts them.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import socket
import struct
import time
from collections.abc import Callable

from runwatch import eventkinds, exepath
from runwatch.bpf.layout import struct_of
from runwatch.events import DnsInfo, Event, FileInfo, NetInfo, PrivInfo
from runwatch.sensors.kernel import layout as L

PROTOS = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6", 255: "raw", 0: "ip"}
QTYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV",
          65: "HTTPS", 255: "ANY"}
PRIV_OPS = {1: "setuid", 2: "setreuid", 3: "setresuid", 4: "setgid", 5: "setregid", 6: "setresgid",
            7: "init_module", 8: "finit_module", 9: "bpf", 10: "userfaultfd", 11: "io_uring_setup"}
FAMILIES = {socket.AF_INET: "ipv4", socket.AF_INET6: "ipv6", socket.AF_UNIX: "unix", 17: "packet",
            16: "netlink", 40: "vsock", 38: "alg", 31: "bluetooth", 29: "can", 44: "xdp"}
SOCK_TYPES = {1: "stream", 2: "dgram", 3: "raw", 4: "rdm", 5: "seqpacket", 10: "packet"}
S_ISUID, S_ISGID = 0o4000, 0o2000
O_ACCMODE, O_CREAT, O_TRUNC = 3, 0o100, 0o1000
K = L.Kind

_HDR = struct.Struct("<IIQQIIIIIIIIII16s")
assert _HDR.size == struct_of(L.RwHdr).size
H = _HDR.size


def _off(record: type, name: str) -> int:
    return int(getattr(record, name).offset)


# Fixed-size payload fields (strings are sliced separately at their offsets).
_EXEC = struct.Struct("<QIIII")  # ino, dev, args_len, args_full, cwd_depth
_EXEC_FILENAME, _EXEC_ARGS, _EXEC_CWD = (_off(L.RwExec, f) for f in ("filename", "args", "cwd"))
_EXE_WALK = struct.Struct("<II")  # exe_len, exe_flags
_EXEC_WALK, _EXEC_EXE = _off(L.RwExec, "exe_len"), _off(L.RwExec, "exe")
_EXEC_CREDS, _CREDS = _off(L.RwExec, "tty"), struct.Struct("<IIQQ")  # tty, loginuid, cap_effective, cap_permitted
_U32 = struct.Struct("<I")
_NET = struct.Struct("<iHHHHI16s16s")  # result, family, proto, sport, dport, pad, saddr, daddr
_DNS = struct.Struct("<HHI16s")  # family, dport, len, daddr
_DNS_PAYLOAD = _off(L.RwDns, "payload")
_FILE_PATH, _FILE_PATH2 = _off(L.RwFile, "path"), _off(L.RwFile, "path2")
_FILE_INO = _off(L.RwFile, "ino")
_FILE_ID = struct.Struct("<QIIi")  # rw_file.ino, dev, fattrs, result
_PRIV = struct.Struct("<IIqqqIIIIII")  # op, pad, arg[3], cap_eff[2], cap_prm[2], cap_inh[2]
_PRIV_PATH, _PRIV_PATH2, _PRIV_FSTYPE = (_off(L.RwPriv, f) for f in ("path", "path2", "fstype"))
_CGROUP = struct.Struct("<QII")  # id, level, pad
_CGROUP_PATH = _off(L.RwCgroup, "path")
_ENV = struct.Struct("<IIII")  # count, len, truncated, pad
_ENV_DATA = _off(L.RwEnv, "data")
_SOCK = struct.Struct("<iiHHHH16s")  # fd, oldfd, family, type, proto, dport, daddr

#: Decoder family (``KindSpec.decoder``) -> the record struct it reads.
_RECORDS: dict[str, type[ctypes.Structure]] = {
    "exec": L.RwExec, "fork": L.RwFork, "exit": L.RwExit, "net": L.RwNet, "dns": L.RwDns, "file": L.RwFile,
    "priv": L.RwPriv, "cgroup": L.RwCgroup, "sock": L.RwSock, "exec_failed": L.RwFile,
    "dns_answer": L.RwDns, "exec_env": L.RwEnv,
}
#: Record kind (``rw_hdr.kind``) -> (event kind, decoder family), from the event table.
_KINDS: dict[int, tuple[str, str]] = {
    int(K.__members__[k.record]): (k.name, k.decoder) for k in eventkinds.kernel_kinds() if k.record and k.decoder
}
_MIN_SIZE = {code: ctypes.sizeof(_RECORDS[family]) for code, (_, family) in _KINDS.items()}


class DecodeError(ValueError):
    """A record that cannot be decoded (unknown kind or wrong size)."""


def _cstr(rec: bytes, start: int, maxlen: int) -> str:
    """The NUL-terminated string at ``rec[start:start+maxlen]``."""
    end = rec.find(b"\0", start, start + maxlen)
    return rec[start:end if end >= 0 else start + maxlen].decode("utf-8", "replace")


def _addr(family: int, raw: bytes) -> str:
    if family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw[:16])
    return socket.inet_ntop(socket.AF_INET, raw[:4])


def _opt(value: int) -> int | None:
    """An id argument, or None for -1 ("leave unchanged")."""
    return None if value == -1 else value


def user_dev(s_dev: int) -> int:
    """A kernel ``s_dev`` (major << 20 | minor) as userspace's ``st_dev``."""
    return os.makedev(s_dev >> 20, s_dev & 0xFFFFF)


def exe_of(raw: bytes, flags: int) -> tuple[str, dict[str, bool]]:
    """(``exe``, attrs to add) from the record's path walk: NUL-terminated components, leaf first.

    attrs: ``exe_truncated`` (the top of a too-long path is missing, shown as ``/...``),
    ``exe_detached`` (the path is the file's within a filesystem no mount reaches).
    """
    parts = raw.decode("utf-8", "replace").split("\0")
    if parts and parts[-1] == "":
        parts.pop()
    marks: dict[str, bool] = {}
    if flags & L.ExeFlag.TRUNCATED:
        marks["exe_truncated"] = True
        if parts:
            parts.pop()  # the top component may have been cut
    parts.reverse()
    detached = bool(flags & L.ExeFlag.DETACHED)
    if detached and not exepath.is_memfd(parts, detached=True):
        marks["exe_detached"] = True
    exe = exepath.compose(parts, unlinked=bool(flags & L.ExeFlag.UNLINKED), detached=detached)
    return ("/..." + exe if "exe_truncated" in marks else exe), marks


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


def _skip_name(payload: bytes, pos: int) -> int:
    """The position after the (possibly compressed) name at ``pos``, or -1."""
    while pos < len(payload):
        n = payload[pos]
        if n == 0:
            return pos + 1
        if n & 0xC0 == 0xC0:
            return pos + 2
        pos += 1 + n
    return -1


def parse_dns_answer(payload: bytes) -> tuple[str, str | None, int, list[str]] | None:
    """(question name, qtype, rcode, A/AAAA addresses) from a DNS response's head, or None.

    Answers cut off by the copied length are left out; the ones before stay.
    """
    if len(payload) < 12 or not payload[2] & 0x80:  # QR: a response
        return None
    question = parse_dns_name(payload)
    if question is None:
        return None
    rcode = payload[3] & 0x0F
    qdcount, ancount = int.from_bytes(payload[4:6], "big"), int.from_bytes(payload[6:8], "big")
    pos = 12
    for _ in range(qdcount):
        pos = _skip_name(payload, pos)
        if pos < 0:
            return (*question, rcode, [])
        pos += 4
    addrs: list[str] = []
    for _ in range(ancount):
        pos = _skip_name(payload, pos)
        if pos < 0 or pos + 10 > len(payload):
            break
        rtype, rdlen = int.from_bytes(payload[pos:pos + 2], "big"), int.from_bytes(payload[pos + 8:pos + 10], "big")
        pos += 10
        if pos + rdlen > len(payload):
            break
        if rtype == 1 and rdlen == 4:
            addrs.append(socket.inet_ntop(socket.AF_INET, payload[pos:pos + 4]))
        elif rtype == 28 and rdlen == 16:
            addrs.append(socket.inet_ntop(socket.AF_INET6, payload[pos:pos + 16]))
        pos += rdlen
    return question[0], question[1], rcode, addrs


class Decoder:
    """Turns raw records into events. ``clock_offset`` maps monotonic ns to epoch ns.

    Event ids are ``{time:016x}-{tag}-{seq:x}``: time-sortable and unique per decoder.
    Not thread safe; one per consumer thread.
    """

    def __init__(self, clock_offset: int | None = None) -> None:
        self.clock_offset = (time.time_ns() - time.monotonic_ns()) if clock_offset is None else clock_offset
        self._tag = f"-{os.getpid() & 0xFFFF:04x}{id(self) & 0xFFF:03x}-"
        self._seq = itertools.count(1)
        families: dict[str, Callable[[bytes, Event], None]] = {
            "exec": self._exec, "fork": self._fork, "exit": self._exit, "net": self._net, "dns": self._dns,
            "file": self._file, "priv": self._priv, "cgroup": self._cgroup, "sock": self._sock,
            "exec_failed": self._exec_failed, "dns_answer": self._dns_answer, "exec_env": self._exec_env,
        }
        self._env: dict[int, dict[str, str]] = {}  # tid -> allow-listed environment of its coming exec
        self._by_kind = {code: families[family] for code, (_, family) in _KINDS.items()}
        self._names = {code: name for code, (name, _) in _KINDS.items()}

    def decode(self, buf: memoryview | bytes, off: int = 0, size: int | None = None) -> Event:
        """Decode the record at ``buf[off:off+size]`` (size defaults to the kind's size)."""
        if len(buf) - off < H:
            raise DecodeError(f"record of {len(buf) - off} bytes is shorter than its header")
        kind = _U32.unpack_from(buf, off)[0]
        need = _MIN_SIZE.get(kind)
        if need is None:
            raise DecodeError(f"unknown record kind {kind}")
        end = off + (need if size is None else size)
        if end - off < need or end > len(buf):
            raise DecodeError(f"record kind {kind}: {end - off} bytes, expected {need}")
        rec = buf[off:end]
        rec = rec.tobytes() if isinstance(rec, memoryview) else rec
        (_, _, ts, cgid, pid, tid, ppid, uid, euid, gid, pidns, vpid, vtid, _, comm) = _HDR.unpack_from(rec, 0)
        t = ts + self.clock_offset
        nul = comm.find(b"\0")
        e = Event(id=f"{t:016x}{self._tag}{next(self._seq):x}", time=t, kind=self._names[kind], cgroup_id=cgid,
                  pid=pid, tid=tid, ppid=ppid, uid=uid, euid=euid, gid=gid, pidns=pidns, vpid=vpid, vtid=vtid,
                  comm=(comm[:nul] if nul >= 0 else comm).decode("utf-8", "replace"))
        self._by_kind[kind](rec, e)
        if e.kind == "process.env" and e.attrs:
            if len(self._env) > 1024:  # execs whose record never came (refused program)
                self._env.clear()
            self._env[tid] = e.attrs["env"]
        elif e.kind == "process.exec":
            env = self._env.pop(tid, None)
            if env:
                e.attrs = {**(e.attrs or {}), "env": env}
        return e

    @staticmethod
    def _exec(rec: bytes, e: Event) -> None:
        ino, dev, args_len, args_full, depth = _EXEC.unpack_from(rec, H)
        raw = rec[_EXEC_ARGS:_EXEC_ARGS + min(args_len, L.ARGS_LEN)]
        argv = raw.decode("utf-8", "replace").split("\0")
        if argv and argv[-1] == "":
            argv.pop()
        cmdline = " ".join(argv)
        if args_full > args_len:
            cmdline += " ..."
            e.attrs = {"argv_truncated": True}
        parts = [_cstr(rec, _EXEC_CWD + i * L.CWD_PART, L.CWD_PART) for i in range(min(depth, L.CWD_DEPTH))]
        cwd = "/" + "/".join(reversed(parts))
        exe_len, flags = _EXE_WALK.unpack_from(rec, _EXEC_WALK)
        exe, marks = exe_of(rec[_EXEC_EXE:_EXEC_EXE + min(exe_len, L.EXE_LEN)], flags)
        if marks:
            e.attrs = {**(e.attrs or {}), **marks}
        e.exe, e.argv, e.cmdline, e.cwd = exe, argv, cmdline, cwd
        e.exec_name = _cstr(rec, _EXEC_FILENAME, L.PATH_LEN)
        e.exe_ino, e.exe_dev = ino, user_dev(dev)
        if flags & L.ExeFlag.UNLINKED:
            e.exe_deleted = True
        if flags & L.ExeFlag.UPPER:
            e.exe_upper_layer = True
        e.tty, e.loginuid, e.cap_effective, e.cap_permitted = _CREDS.unpack_from(rec, _EXEC_CREDS)

    @staticmethod
    def _exec_env(rec: bytes, e: Event) -> None:
        count, used, truncated, _pad = _ENV.unpack_from(rec, H)
        env: dict[str, str] = {}
        for item in rec[_ENV_DATA:_ENV_DATA + min(used, L.ENV_LEN)].split(b"\0")[:count]:
            name, eq, value = item.decode("utf-8", "replace").partition("=")
            if eq:
                env[name] = value
        e.attrs = {"env": env, **({"env_truncated": True} if truncated else {})}

    @staticmethod
    def _fork(rec: bytes, e: Event) -> None:
        e.child_pid = _U32.unpack_from(rec, H)[0]

    @staticmethod
    def _exit(rec: bytes, e: Event) -> None:
        raw = _U32.unpack_from(rec, H)[0]
        e.exit_code = (raw >> 8) & 0xFF
        if raw & 0x7F:
            e.signal = raw & 0x7F

    @staticmethod
    def _net(rec: bytes, e: Event) -> None:
        result, family, proto, sport, dport, _pad, saddr, daddr = _NET.unpack_from(rec, H)
        fam = "ipv6" if family == socket.AF_INET6 else "ipv4"
        pname = PROTOS.get(proto, str(proto))
        kind = e.kind
        if kind in ("net.connect", "net.send"):
            e.net = NetInfo(proto=pname, family=fam, dst_ip=_addr(family, daddr), dst_port=dport,
                            src_port=sport or None, result=result)
        elif kind == "net.accept":
            e.net = NetInfo(proto=pname, family=fam, src_ip=_addr(family, daddr), src_port=dport,
                            dst_ip=_addr(family, saddr), dst_port=sport, result=0)
        elif kind == "net.bind":
            e.net = NetInfo(proto=pname, family=fam, src_ip=_addr(family, daddr), src_port=dport, result=result)
        else:
            e.net = NetInfo(proto=pname, family=fam, src_ip=_addr(family, saddr), src_port=sport, result=0)

    @staticmethod
    def _dns(rec: bytes, e: Event) -> None:
        family, dport, n, daddr = _DNS.unpack_from(rec, H)
        parsed = parse_dns_name(rec[_DNS_PAYLOAD:_DNS_PAYLOAD + min(n, L.DNS_LEN)])
        name, qtype = parsed if parsed else ("", None)
        e.dns = DnsInfo(name=name, qtype=qtype, server_ip=_addr(family, daddr), server_port=dport)
        if parsed is None:
            e.attrs = {"dns_unparsed": True}

    @staticmethod
    def _dns_answer(rec: bytes, e: Event) -> None:
        family, dport, n, daddr = _DNS.unpack_from(rec, H)
        parsed = parse_dns_answer(rec[_DNS_PAYLOAD:_DNS_PAYLOAD + min(n, L.DNS_LEN)])
        server = _addr(family, daddr) if family in (socket.AF_INET, socket.AF_INET6) else None
        if parsed is None:
            e.dns = DnsInfo(name="", server_ip=server, server_port=dport or None)
            e.attrs = {"dns_unparsed": True}
            return
        name, qtype, rcode, addrs = parsed
        e.dns = DnsInfo(name=name, qtype=qtype, server_ip=server, server_port=dport or None)
        e.attrs = {"answers": addrs, "rcode": rcode}

    @staticmethod
    def _file(rec: bytes, e: Event) -> None:
        flags = _U32.unpack_from(rec, H)[0]
        path = _cstr(rec, _FILE_PATH, L.PATH_LEN)
        kind = e.kind
        if kind == "file.open":
            e.file = FileInfo(path=path, intent=intent_of(flags), flags=flags)
            ino, dev, fattrs, result = _FILE_ID.unpack_from(rec, _FILE_INO)
            e.attrs = {"file_ino": ino, "file_dev": dev} if result == 0 else {"result": result}
            if fattrs & L.FileAttr.TRUNCATED:
                e.attrs["path_truncated"] = True
        elif kind == "file.unlink":
            e.file = FileInfo(path=path, intent="write", flags=flags)
        elif kind == "file.rename":
            e.file = FileInfo(path=path, intent="write", new_path=_cstr(rec, _FILE_PATH2, L.PATH_LEN), flags=flags)
        elif kind == "file.memfd":
            e.file = FileInfo(path=f"memfd:{path}", name=path, flags=flags)
        elif kind in ("file.link", "file.symlink"):
            e.file = FileInfo(path=path, intent="write", new_path=_cstr(rec, _FILE_PATH2, L.PATH_LEN), flags=flags)
        elif kind == "file.chmod":
            e.file = FileInfo(path=path, intent="write", flags=flags)
            e.attrs = {"mode": f"{flags & 0o7777:04o}", "setuid": bool(flags & S_ISUID),
                       "setgid": bool(flags & S_ISGID)}
        else:  # file.mkdir (flags: mode), file.rmdir
            e.file = FileInfo(path=path, intent="write", flags=flags)

    @staticmethod
    def _exec_failed(rec: bytes, e: Event) -> None:
        e.exec_name = _cstr(rec, _FILE_PATH, L.PATH_LEN)
        e.attrs = {"errno": _U32.unpack_from(rec, H)[0]}

    @staticmethod
    def _sock(rec: bytes, e: Event) -> None:
        fd, oldfd, family, stype, proto, dport, daddr = _SOCK.unpack_from(rec, H)
        fam = FAMILIES.get(family, str(family))
        # AF_PACKET: the protocol is an ethertype in network byte order
        pname = f"0x{socket.ntohs(proto):04x}" if family == 17 else PROTOS.get(proto, str(proto))
        attrs: dict[str, object] = {"sock_type": SOCK_TYPES.get(stype & 0xF, str(stype)), "fd": fd}
        if e.kind == "net.redirect":
            attrs["socket_fd"] = oldfd
            inet = family in (socket.AF_INET, socket.AF_INET6)
            e.net = NetInfo(proto=pname, family=fam, dst_ip=_addr(family, daddr) if inet else None,
                            dst_port=dport if inet else None)
        else:
            e.net = NetInfo(proto=pname, family=fam, result=fd)
        e.attrs = attrs

    @staticmethod
    def _cgroup(rec: bytes, e: Event) -> None:
        cgid, level, _pad = _CGROUP.unpack_from(rec, H)
        e.attrs = {"cgroup_id": cgid, "level": level, "path": _cstr(rec, _CGROUP_PATH, L.PATH_LEN)}

    @staticmethod
    def _priv(rec: bytes, e: Event) -> None:
        op, _pad, a0, a1, _a2, eff0, eff1, prm0, prm1, inh0, inh1 = _PRIV.unpack_from(rec, H)
        kind = e.kind
        if kind in ("priv.setuid", "priv.setgid"):
            opname = PRIV_OPS.get(op, str(op))
            single = opname in ("setuid", "setgid")
            first, second = _opt(a0), (_opt(a0) if single else _opt(a1))
            e.priv = (PrivInfo(op=opname, uid=first, euid=second) if kind == "priv.setuid"
                      else PrivInfo(op=opname, gid=first, egid=second))
        elif kind == "priv.capset":
            e.priv = PrivInfo(op="capset", cap_effective=eff0 | eff1 << 32, cap_permitted=prm0 | prm1 << 32,
                              cap_inheritable=inh0 | inh1 << 32)
        elif kind == "priv.mount":
            e.priv = PrivInfo(op="mount", target=_cstr(rec, _PRIV_PATH, L.PATH_LEN),
                              source=_cstr(rec, _PRIV_PATH2, L.NAME_LEN),
                              fstype=_cstr(rec, _PRIV_FSTYPE, L.COMM_LEN) or None, mount_flags=a0 & 0xFFFFFFFF)
        elif kind == "priv.ptrace":
            e.priv = PrivInfo(op="ptrace", request=a0, target_pid=a1)
        elif kind == "priv.unshare":
            e.priv = PrivInfo(op="unshare", ns_flags=a0 & 0xFFFFFFFF)
        elif kind == "priv.setns":
            e.priv = PrivInfo(op="setns", ns_flags=a0 & 0xFFFFFFFF)
        else:
            Decoder._priv_load(rec, e, PRIV_OPS.get(op, str(op)), a0, a1)

    @staticmethod
    def _priv_load(rec: bytes, e: Event, op: str, a0: int, a1: int) -> None:
        """Module and BPF loads, userfaultfd, io_uring setup: the op, a target, and attrs."""
        name = _cstr(rec, _PRIV_PATH2, L.NAME_LEN)
        if op == "init_module":
            e.priv = PrivInfo(op=op)
            e.attrs = {"size": a0, "params": name}
        elif op == "finit_module":
            e.priv = PrivInfo(op=op, target=_cstr(rec, _PRIV_PATH, L.PATH_LEN) or None)
            e.attrs = {"fd": a0, "flags": a1, "params": name}
        elif op == "bpf":
            e.priv = PrivInfo(op=op, target=name or None)
            e.attrs = {"prog_type": a0, "insn_cnt": a1}
        elif op == "userfaultfd":
            e.priv = PrivInfo(op=op)
            e.attrs = {"flags": a0}
        else:
            e.priv = PrivInfo(op=op)
            e.attrs = {"entries": a0, "setup_flags": a1}
