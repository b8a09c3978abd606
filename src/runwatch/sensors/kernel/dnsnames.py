"""Names the workload resolved, put on its connections: ``net.connect``/``net.send`` get
``attrs["dest_name"]`` from the ``dns.answer`` that gave the destination address.

Answers are remembered per cgroup (a container resolves for itself), bounded: the oldest
address is forgotten first. A connection to an address no answer gave gets no name.
"""

from __future__ import annotations

from collections import OrderedDict

from runwatch.events import Event

#: Kinds that carry a destination address to name.
NAMED_KINDS = frozenset({"net.connect", "net.send"})


class ResolvedNames:
    """The last name each (cgroup, address) was resolved from; names connections as they pass."""

    def __init__(self, limit: int = 8192) -> None:
        self.limit = limit
        self._names: OrderedDict[tuple[int | None, str], str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._names)

    def observe(self, e: Event) -> None:
        """Learn from a ``dns.answer``; name a connection; leave every other event alone."""
        if e.kind == "dns.answer":
            if e.dns is None or not e.dns.name or not e.attrs:
                return
            for ip in e.attrs.get("answers") or ():
                key = (e.cgroup_id, str(ip))
                self._names[key] = e.dns.name
                self._names.move_to_end(key)
            while len(self._names) > self.limit:
                self._names.popitem(last=False)
        elif e.kind in NAMED_KINDS and e.net is not None and e.net.dst_ip:
            name = self._names.get((e.cgroup_id, e.net.dst_ip))
            if name is not None:
                e.attrs = {**(e.attrs or {}), "dest_name": name}
