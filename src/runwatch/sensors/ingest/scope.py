"""Which processes an OTLP sender may name: its own cgroup subtree and pid namespace.

A span's ``process.pid`` (with ``container.id``) is a claim. The receiver proves who sent it
from the connection itself (:meth:`Sender.of_connection`: ``SO_PEERCRED`` on a unix socket, the
processes holding the peer socket for TCP) and keeps a claim only when every sending process may speak for the named
one (:func:`foreign`):

- it is the sending process itself, or
- it runs in the sender's cgroup v2 or below it (without a v2 hierarchy this part is not
  checked), **and** its pid namespace is the sender's or nested inside it.

So an agent names itself, its children and the processes of its own container; a
host-network container cannot name a host process (other cgroup, parent pid namespace), and a
sender in the root cgroup of the host's pid namespace (the host itself) may name any
process. A connection whose peer cannot be found (it is on another host, or gone) may name
none. A dropped claim leaves the event unattributed (``pid`` 0, no container) with the
reason in ``attrs["pid_unresolved"]`` and ``attrs["foreign_pid"] = True``.

Reads ``/proc``; safe from any thread.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from runwatch.host import cgroup_v2_if_any, procfs
from runwatch.host.cgroups import cgroup_within
from runwatch.host.sockets import peer_cred, tcp_peer_pids


@dataclass(frozen=True, slots=True)
class Sender:
    """The processes holding the peer end of one connection (empty: not found), as host pids."""

    pids: tuple[int, ...]
    address: str = ""

    @classmethod
    def of_tcp(cls, local: tuple[str, int], remote: tuple[str, int], proc: str = procfs.PROC) -> Sender:
        """The sender of the accepted TCP connection ``local`` <- ``remote``."""
        return cls(tuple(tcp_peer_pids(local, remote, proc)), f"{remote[0]}:{remote[1]}")

    @classmethod
    def of_connection(cls, sock: socket.socket, proc: str = procfs.PROC) -> Sender:
        """The sender on an accepted connection: the kernel's peer credentials for a unix socket,
        the holders of the peer socket for TCP."""
        if sock.family == socket.AF_UNIX:
            cred = peer_cred(sock)
            return cls((cred[0],) if cred is not None else (), "the unix socket")
        local, remote = sock.getsockname(), sock.getpeername()
        return cls.of_tcp((local[0], local[1]), (remote[0], remote[1]), proc)


def foreign(sender: Sender, pid: int, proc: str = procfs.PROC) -> str | None:
    """Why ``sender`` may not name host process ``pid`` (one line), or None when it may."""
    if not sender.pids:
        return f"the sending process of {sender.address or 'the connection'} is not on this host or is gone"
    v2 = cgroup_v2_if_any()
    for holder in sender.pids:
        if holder == pid:
            continue
        if v2 is not None:
            outer, inner = procfs.cgroup_path(holder, proc), procfs.cgroup_path(pid, proc)
            if outer is None or inner is None:
                return f"the cgroup of process {pid} or of the sender (pid {holder}) cannot be read"
            if not cgroup_within(inner, outer):
                return f"process {pid} is outside the sender's cgroup {outer} (it runs in {inner})"
        ns = procfs.pidns(holder, proc)
        if ns is None or not procfs.pidns_within(pid, ns, proc):
            return f"process {pid} is outside the sender's pid namespace (sender pid {holder})"
    return None
