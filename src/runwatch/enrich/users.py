"""User names: a uid's name in the passwd file of the process's own root (its container's).

A container's ``/etc/passwd`` is read once, through ``/proc/<pid>/root`` of the first of its
processes that needs a name, and kept per container (host processes share one entry, read
the same way from the host's root). A container's process whose root is still the host's (the
runtime before it pivots into the container's root) is not read through. A uid the file does
not list has no name; the file is not read again for it (a container's accounts are those of
its image). A process the file could not be read through is not tried again until it execs. Entries are bounded
(least recently used first out). Not thread-safe: the enrichment stage owns it.
"""

from __future__ import annotations

import os
from collections import OrderedDict

from runwatch.events import Event

UNSET_LOGINUID = 0xFFFFFFFF
"""The audit login uid of a process no login set one for."""

_HOST = ""
_MAX_FILE = 1 << 20  # a passwd file longer than this is read up to here


def parse_passwd(text: str) -> dict[int, str]:
    """uid -> name from passwd text (``name:x:uid:...`` lines; the first name of a uid wins)."""
    out: dict[int, str] = {}
    for line in text.splitlines():
        if not line or line.startswith(("#", "+", "-")):
            continue
        parts = line.split(":")
        if len(parts) < 3 or not parts[0] or not parts[2].isdigit():
            continue
        out.setdefault(int(parts[2]), parts[0])
    return out


class UserNames:
    """Fills ``Event.user`` (uid's name), ``Event.login_user`` (loginuid's name) and, on
    ``priv.setuid``, ``PrivInfo.user`` (the new uid's name).

    Args:
        proc_root: procfs mount the process roots are reached through.
        max_containers: bound on the passwd maps kept.
    """

    def __init__(self, proc_root: str = "/proc", max_containers: int = 4096) -> None:
        self.proc_root = proc_root
        self.max_containers = max_containers
        self._maps: OrderedDict[str, dict[int, str]] = OrderedDict()
        self._host_roots: set[tuple[int, int] | None] | None = None
        self._failed: set[tuple[str, int]] = set()  # (container, pid) not to read through before its next exec
        self._stats = {"passwd_reads": 0, "passwd_misses": 0, "host_root_skips": 0, "evicted": 0}

    def _root_of(self, pid: int) -> tuple[int, int] | None:
        try:
            st = os.stat(f"{self.proc_root}/{pid}/root")
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _on_host_root(self, pid: int) -> bool:
        # the host's root: init's, and runwatch's own (it may run in a mount namespace of its own)
        if self._host_roots is None:
            self._host_roots = {self._root_of(1), self._root_of(os.getpid())} - {None}
        root = self._root_of(pid)
        return root is None or root in self._host_roots

    def names(self, pid: int, key: str) -> dict[int, str] | None:
        """The uid map of the container ``key`` (``""``: the host), read through ``pid`` if new."""
        known = self._maps.get(key)
        if known is not None:
            self._maps.move_to_end(key)
            return known
        if pid <= 0:
            return None
        if (key, pid) in self._failed:
            return None
        if key != _HOST and self._on_host_root(pid):
            self._stats["host_root_skips"] += 1
            self._not_yet(key, pid)
            return None  # not in the container's root (yet): tried again at its exec
        self._stats["passwd_reads"] += 1
        try:
            with open(f"{self.proc_root}/{pid}/root/etc/passwd", encoding="utf-8", errors="replace") as f:
                text = f.read(_MAX_FILE)
        except OSError:
            self._stats["passwd_misses"] += 1
            self._not_yet(key, pid)
            return None  # gone, or no passwd: tried again with another process
        found = parse_passwd(text)
        self._maps[key] = found
        if len(self._maps) > self.max_containers:
            self._maps.popitem(last=False)
            self._stats["evicted"] += 1
        return found

    def _not_yet(self, key: str, pid: int) -> None:
        if len(self._failed) >= self.max_containers:
            self._failed.clear()
        self._failed.add((key, pid))

    def enrich(self, event: Event) -> None:
        """Set ``user`` and ``login_user`` where the passwd of the event's root names them."""
        if event.user is not None and (event.login_user is not None or event.loginuid is None) \
                and event.priv is None:
            return
        key = event.container.id if event.container is not None else _HOST
        if event.kind == "process.exec":
            self._failed.discard((key, event.pid))  # a new image, perhaps in a new root
        found = self.names(event.pid, key)
        if found is None:
            return
        if event.user is None:
            event.user = found.get(event.uid)
        if event.login_user is None and event.loginuid is not None and event.loginuid != UNSET_LOGINUID:
            event.login_user = found.get(event.loginuid)
        priv = event.priv
        if priv is not None and priv.user is None and priv.uid is not None and priv.uid >= 0 \
                and event.kind == "priv.setuid":
            priv.user = found.get(priv.uid)

    def stats(self) -> dict[str, int]:
        """Counters (passwd_reads, passwd_misses, evicted) and the number of maps held."""
        return {**self._stats, "containers": len(self._maps)}
