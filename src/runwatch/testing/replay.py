"""Raw recordings replayed through the real enrichment stage and tool-call join.

:func:`replay_pipeline` builds the stages so that they read nothing of this host: the process
tree is not seeded from ``/proc`` and never falls back to it, containers are known only from
the recording's ``cgroup.mkdir`` records (ids and runtimes from their paths; names need the
runtime's state, which a recording does not carry), and the join's clock is the recording's
own time, so events are held and released as they were live.
"""

from __future__ import annotations

from runwatch.enrich.aicontext import ToolCallJoin
from runwatch.enrich.containers import ContainerResolver
from runwatch.enrich.proctree import ProcessTree
from runwatch.enrich.stage import Enrichment
from runwatch.events import Event
from runwatch.sensors.replay import ReplaySource

#: A root that does not exist: the resolver walks nothing and knows only learned cgroups.
_NOWHERE = "/nonexistent/runwatch-replay"


def replay_pipeline(source: ReplaySource, *, hold_ms: float = 200.0) -> tuple[Enrichment, ToolCallJoin]:
    """Enrichment and join for ``source`` that read nothing of this host (see the module docstring)."""
    tree = ProcessTree(proc_fallback=False)
    containers = ContainerResolver(cgroup_root=_NOWHERE, runc_roots=(), docker_root=_NOWHERE, storage_root=_NOWHERE,
                                   use_handles=False)
    return Enrichment(tree, containers, seed=False), ToolCallJoin(hold_ms=hold_ms, clock=source.clock)


def replay(source: ReplaySource, *, hold_ms: float = 200.0) -> list[Event]:
    """Run ``source`` to its end through :func:`replay_pipeline`; the enriched, joined events."""
    enrich, join = replay_pipeline(source, hold_ms=hold_ms)
    source.start()
    out: list[Event] = []
    try:
        while (batch := source.poll(0.0)) is not None:
            out += join(enrich(batch))
        out += join.flush()
    finally:
        source.stop()
    return out
