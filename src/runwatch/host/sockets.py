"""Which processes hold the other end of a connection this process accepted.

For a unix stream socket the kernel says: :func:`peer_cred` (``SO_PEERCRED``: the pid, uid and
gid of the process that connected, as this pid namespace sees it). For TCP it must be found
(:func:`tcp_peer_pids`): for an accepted connection with local address ``L`` and peer address
``R``, the peer's socket
is the one whose local address is ``R`` and remote address ``L``. It is looked up in
``/proc/<pid>/net/tcp`` (or ``tcp6``) of this process's network namespace first, then of every
other network namespace a process in ``/proc`` is in (a container on a bridge connects from
its own namespace); its inode is then searched among the ``/proc/<pid>/fd`` links
(``socket:[INODE]``) of the processes in that namespace, first of those run by the socket's
owner, then of all. Several processes hold one socket after a ``fork``; all are returned.

An IPv4 peer seen through a dual-stack IPv6 listener (``::ffff:a.b.c.d``) is searched in both
tables. Addresses are written as the kernel prints them: each 32-bit word of the address in
host byte order as hex (``0100007F`` for 127.0.0.1 on x86-64), then ``:`` and the port in hex.

Reads ``/proc`` (and socket options) only; safe from any thread. The answer is only as good as the moment it is
asked: ask while the connection is open.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import sys
from collections.abc import Iterator

from runwatch.host import procfs


def _hex_addr(ip: str, port: int) -> tuple[str, str]:
    """(table name, kernel text) of an address as ``/proc/net/tcp[6]`` prints it."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    packed = addr.packed
    words = "".join(f"{int.from_bytes(packed[i:i + 4], sys.byteorder):08X}" for i in range(0, len(packed), 4))
    return ("tcp" if addr.version == 4 else "tcp6"), f"{words}:{port:04X}"


def _forms(local: tuple[str, int], remote: tuple[str, int]) -> list[tuple[str, str, str]]:
    """(table, peer's local text, peer's remote text) to look for; mapped IPv4 in both tables."""
    out = []
    pairs = [(local[0], remote[0])]
    lip, rip = ipaddress.ip_address(local[0].split("%", 1)[0]), ipaddress.ip_address(remote[0].split("%", 1)[0])
    if isinstance(lip, ipaddress.IPv6Address) and isinstance(rip, ipaddress.IPv6Address) and \
            lip.ipv4_mapped is not None and rip.ipv4_mapped is not None:
        pairs.append((str(lip.ipv4_mapped), str(rip.ipv4_mapped)))
    for lhost, rhost in pairs:
        table, ltext = _hex_addr(lhost, local[1])
        _, rtext = _hex_addr(rhost, remote[1])
        out.append((table, rtext, ltext))
    return out


def _socket_in(table_path: str, peer_local: str, peer_remote: str) -> tuple[int, int] | None:
    """(inode, owner uid) of the live socket with that address pair in one table (inode 0: no
    socket any more, such as TIME_WAIT; any other state is the peer, half-closed or not)."""
    try:
        with open(table_path, "rb") as fh:
            lines = fh.read().decode("ascii", "replace").splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        f = line.split()
        if len(f) > 9 and f[1] == peer_local and f[2] == peer_remote and f[9] != "0" and f[7].isdigit():
            return int(f[9]), int(f[7])
    return None


def _netns(pid: int | str, proc: str) -> int | None:
    try:
        return os.stat(f"{proc}/{pid}/ns/net").st_ino
    except OSError:
        return None


def _pids(proc: str) -> Iterator[int]:
    try:
        entries = os.listdir(proc)
    except OSError:
        return
    for entry in entries:
        if entry.isdigit():
            yield int(entry)


def _owner(pid: int, proc: str) -> int | None:
    try:
        return os.stat(f"{proc}/{pid}").st_uid
    except OSError:
        return None


def _holders(inode: int, netns: int | None, proc: str, uid: int | None) -> list[int]:
    """Pids with an fd on socket ``inode`` among processes in ``netns`` (and, when ``uid`` is
    given, run by that user: the socket's creator, where a holder nearly always is)."""
    link = f"socket:[{inode}]"
    found = []
    for pid in _pids(proc):
        if (uid is not None and _owner(pid, proc) != uid) or (netns is not None and _netns(pid, proc) != netns):
            continue
        fd_dir = f"{proc}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") == link:
                    found.append(pid)
                    break
            except OSError:
                continue
    return sorted(found)


def _holders_of(found: tuple[int, int], netns: int | None, proc: str) -> list[int]:
    inode, uid = found
    return _holders(inode, netns, proc, uid) or _holders(inode, netns, proc, None)


def tcp_peer_pids(local: tuple[str, int], remote: tuple[str, int], proc: str = procfs.PROC) -> list[int]:
    """Host pids of the processes holding the peer socket of the accepted TCP connection with
    local address ``local`` and peer address ``remote`` (``(ip, port)``, as ``getsockname`` and
    ``accept`` give them); empty when no such socket is found (a remote host, or it is gone)."""
    forms = _forms((local[0], local[1]), (remote[0], remote[1]))
    own = _netns("self", proc)
    for table, peer_local, peer_remote in forms:
        found = _socket_in(f"{proc}/self/net/{table}", peer_local, peer_remote)
        if found is not None:
            return _holders_of(found, own, proc)
    seen = {own}
    for pid in _pids(proc):
        ns = _netns(pid, proc)
        if ns is None or ns in seen:
            continue
        seen.add(ns)
        for table, peer_local, peer_remote in forms:
            found = _socket_in(f"{proc}/{pid}/net/{table}", peer_local, peer_remote)
            if found is not None:
                return _holders_of(found, ns, proc)
    return []


def peer_cred(sock: socket.socket) -> tuple[int, int, int] | None:
    """(pid, uid, gid) of a unix socket's peer; None when unknown (pid 0: not in our namespace)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid, uid, gid = struct.unpack("3i", raw)
    return (pid, uid, gid) if pid > 0 else None
