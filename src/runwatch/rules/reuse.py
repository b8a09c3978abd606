"""Engine state for ``identity.reused_by``: one SPIFFE identity active in two workloads at once.

A *workload* is what one identity is meant for: the namespace, the pod's controller (or, without
one, the pod) and the container's name, so the replicas of one Deployment, which share their
identity by design, are one workload; without Kubernetes facts each container is its own. An
identity is *active* in a workload while events (of :data:`REUSE_KINDS`) of one of its containers carrying that
``spiffe_id`` arrive less than ``window_ns`` apart. :meth:`IdentityReuse.observe` returns, on the
first event that shows an identity active in a second workload, that other workload's
container (its name, else its id); once per pair of workloads while both stay active, so the
rule on it alerts once, not on every event.

Bounded: at most ``max_ids`` identities (least recently seen forgotten first), each with at
most ``max_workloads`` active workloads. Not thread-safe: one per engine.
"""

from __future__ import annotations

from collections import OrderedDict

from runwatch.events import Container, Event

REUSE_KINDS: frozenset[str] = frozenset({"process.exec", "net.connect", "file.open", "dns.query", "tool.start",
                                         "model.call", "secret.access", "sensor.notice"})
"""The kinds that show an identity active (the ``reuse_kinds`` list of the default rules says the same)."""

REUSE_WINDOW_NS = 60 * 1_000_000_000
"""How long an identity stays active in a workload after its last event there."""

_Key = tuple[str | None, ...]


def workload_key(c: Container) -> _Key:
    """The workload a container belongs to (see the module)."""
    if c.owner_name or c.pod:
        return (c.namespace, c.owner_kind or "Pod", c.owner_name or c.pod, c.name)
    return ("container", c.id)


class IdentityReuse:
    """Which workloads each SPIFFE identity is active in (see the module)."""

    def __init__(self, window_ns: int = REUSE_WINDOW_NS, max_ids: int = 65_536, max_workloads: int = 64) -> None:
        self.window_ns = window_ns
        self.max_ids = max_ids
        self.max_workloads = max_workloads
        # spiffe id -> workload -> (last event time, the container seen last)
        self._active: OrderedDict[str, OrderedDict[_Key, tuple[int, str]]] = OrderedDict()
        self._reported: dict[str, set[frozenset[_Key]]] = {}
        self.reuses = 0
        self.evicted = 0

    def observe(self, e: Event) -> str | None:
        c = e.container
        if c is None or not c.spiffe_id or e.kind not in REUSE_KINDS:
            return None
        sid, key, t = c.spiffe_id, workload_key(c), e.time
        active = self._active.get(sid)
        if active is None:
            if len(self._active) >= self.max_ids:
                old, _ = self._active.popitem(last=False)
                self._reported.pop(old, None)
                self.evicted += 1
            active = self._active[sid] = OrderedDict()
        else:
            self._active.move_to_end(sid)
        reported = self._reported.setdefault(sid, set())
        for k in [k for k, (last, _) in active.items() if t - last > self.window_ns]:
            del active[k]
            _forget(reported, k)
        other: str | None = None
        for k, (_, label) in active.items():
            if k != key and frozenset((k, key)) not in reported:
                reported.add(frozenset((k, key)))
                other = label
                self.reuses += 1
                break
        active[key] = (t, c.name or c.id)
        active.move_to_end(key)
        while len(active) > self.max_workloads:
            _forget(reported, active.popitem(last=False)[0])
        return other


def _forget(reported: set[frozenset[_Key]], key: _Key) -> None:
    """Drop the reported pairs that include workload ``key`` (it is no longer active)."""
    for pair in [p for p in reported if key in p]:
        reported.discard(pair)
