"""Who is on the other end of a unix socket, and whether that process may answer a challenge.

The answering process is identified by the kernel, never by what it says: ``SO_PEERCRED``
gives the pid, uid and gid of the process that connected (as the server's pid namespace
sees it), ``/proc/PID/cgroup`` its cgroup v2 path and ``/proc/PID/exe`` its executable (best
effort). A challenge keeps its :class:`Requester`, the process that asked on the decide
socket, and :func:`refusal` says why a peer may not answer it: it is that process, it
descends from it (the ``ppid`` chain in ``/proc/PID/stat``), or it runs in the requester's
cgroup or below it (unless that is the root cgroup ``/``).

A challenge asked over TCP has no requester pid (the gateway's claims are not proof), so
only the cgroup rule can apply to it, and a claimed container is compared by the decider.
Everything here reads ``/proc`` and is safe from any thread.
"""

from __future__ import annotations

import os
import pwd
import socket

import msgspec

from runwatch.events import Container
from runwatch.host import procfs
from runwatch.host.cgroups import cgroup_within
from runwatch.host.sockets import peer_cred

__all__ = ["Peer", "Requester", "cgroup_within", "descends_from", "peer_cred", "peer_of", "refusal",
           "requester_of", "same_container"]

MAX_ANCESTRY = 4096
"""Most ``ppid`` steps :func:`descends_from` walks before giving up (a chain is never this deep)."""


class Peer(msgspec.Struct, frozen=True, kw_only=True):
    """A process on the other end of a unix connection: kernel credentials plus ``/proc`` facts.

    ``exe`` and ``cgroup`` are None when ``/proc`` could not tell (gone, no v2 hierarchy).
    """

    pid: int
    uid: int
    gid: int
    exe: str | None = None
    cgroup: str | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-able view: uid, gid, pid, exe, cgroup."""
        return {"uid": self.uid, "gid": self.gid, "pid": self.pid, "exe": self.exe, "cgroup": self.cgroup}

    def describe(self) -> str:
        """``root (uid 0, pid 4242, /usr/bin/python3.12)``: the user name when the uid has one."""
        try:
            user = pwd.getpwuid(self.uid).pw_name
        except (KeyError, OverflowError):
            user = f"uid {self.uid}"
        parts = [f"uid {self.uid}", f"pid {self.pid}"] + ([self.exe] if self.exe else [])
        return f"{user} ({', '.join(parts)})"


class Requester(msgspec.Struct, frozen=True, kw_only=True):
    """The process that asked for a challenge: its pid (None over TCP) and cgroup v2 path."""

    pid: int | None = None
    cgroup: str | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-able view: pid, cgroup."""
        return {"pid": self.pid, "cgroup": self.cgroup}


def peer_of(sock: socket.socket, proc: str = procfs.PROC) -> Peer | None:
    """The peer process of a unix socket, or None when the kernel names no pid for it."""
    cred = peer_cred(sock)
    if cred is None:
        return None
    pid, uid, gid = cred
    try:
        exe: str | None = os.readlink(f"{proc}/{pid}/exe")
    except OSError:
        exe = None
    return Peer(pid=pid, uid=uid, gid=gid, exe=exe, cgroup=procfs.cgroup_path(pid, proc))


def requester_of(pid: int, proc: str = procfs.PROC) -> Requester:
    """The requester record of a live asking process."""
    return Requester(pid=pid, cgroup=procfs.cgroup_path(pid, proc))


def descends_from(pid: int, ancestor: int, proc: str = procfs.PROC) -> bool:
    """Whether ``ancestor`` is on the ``ppid`` chain of ``pid`` (not ``pid`` itself)."""
    seen = pid
    for _ in range(MAX_ANCESTRY):
        st = procfs.stat(seen, proc)
        if st is None or st.ppid <= 0:
            return False
        if st.ppid == ancestor:
            return True
        if st.ppid == 1 or st.ppid == seen:
            return False
        seen = st.ppid
    return False


def refusal(peer: Peer, requester: Requester, cid: str, proc: str = procfs.PROC) -> str | None:
    """Why ``peer`` may not answer challenge ``cid`` asked by ``requester`` (one line), or None."""
    head = f"pid {peer.pid} may not answer challenge {cid}"
    rpid = requester.pid
    if rpid is not None:
        if peer.pid == rpid:
            return f"{head}: it is the process that asked (pid {rpid})"
        if descends_from(peer.pid, rpid, proc):
            return f"{head}: it descends from the process that asked (pid {rpid})"
    outer = requester.cgroup
    if outer is not None and outer != "/":
        if peer.cgroup is None:
            return f"{head}: its cgroup cannot be read, and the asking workload runs in cgroup {outer}"
        if cgroup_within(peer.cgroup, outer):
            return f"{head}: it runs in the asking workload's cgroup {outer}"
    return None


def same_container(a: Container, b: Container) -> bool:
    """Whether two containers are one: equal ids (or an id prefix of 12+ characters), or names."""
    short, full = sorted((a.id, b.id), key=len)
    if len(short) >= 12 and full.startswith(short):
        return True
    return a.id == b.id or (a.name is not None and a.name == b.name)
