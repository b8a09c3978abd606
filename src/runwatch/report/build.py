"""Build a :class:`~runwatch.report.model.Report` for one workload from the event store.

Reads the store (or the lake) only through :mod:`runwatch.store.source` (containers, events, alerts).
The workload's events are its containers' events in the window, plus the agent-SDK events
that arrived without a container (their sender exited before its cgroup was read) from the
same pid namespace as a container's init.
"""

from __future__ import annotations

import bisect
import time

from runwatch.alerts.model import Alert
from runwatch.events import Container, Event
from runwatch.report.activity import (
    OUTBOUND_KINDS,
    SDK_KINDS,
    connected,
    destination,
    on_timeline,
    outbound,
    secret_touched,
    summary,
)
from runwatch.report.model import (
    Counts,
    Decision,
    Destination,
    Egress,
    Entry,
    Identity,
    Report,
    Route,
    SecretRead,
    ToolCallRecord,
    call_of,
)
from runwatch.report.proctree import build_tree
from runwatch.report.workload import select
from runwatch.store.source import Source, query_alerts, query_containers, query_events

TIMELINE_LIMIT = 2000
"""Timeline entries kept (the first ones); the rest are counted in ``timeline_omitted``."""
EGRESS_PER_SECRET = 20
"""Outbound events listed under each secret read (the first ones; ``egress_total`` counts all)."""
CALL_EVENTS_LIMIT = 50
"""Kernel events listed under each tool call (``kinds`` counts all)."""


def _mark(e: Event) -> str:
    if (e.file is not None or e.ai is not None) and secret_touched(e) is not None:
        return "secret"
    if e.kind in SDK_KINDS:
        return "ai"
    if e.kind == "process.exec":
        return "exec"
    if e.kind in OUTBOUND_KINDS and outbound(e):
        return "egress"
    if e.kind == "dns.query":
        return "dns"
    if e.kind == "policy.decision":
        return "decision"
    for prefix in ("file", "net", "priv"):
        if e.kind.startswith(prefix + "."):
            return prefix
    return "other"


def entry_of(e: Event) -> Entry:
    """The timeline entry of one event."""
    call_id, tool = call_of(e.tool_call)
    return Entry(time=e.time, kind=e.kind, source=e.source, mark=_mark(e), text=summary(e), pid=e.pid, exe=e.exe,
                 container=e.container.id if e.container else None, call_id=call_id, tool=tool,
                 unattested=bool(e.unattested))


def egress_of(e: Event) -> Egress:
    """The outbound record of a ``net.connect``/``net.send``/``dns.query``."""
    call_id, tool = call_of(e.tool_call)
    name = (e.attrs or {}).get("dest_name")
    return Egress(time=e.time, kind=e.kind, destination=destination(e), proto=e.net.proto if e.net else None,
                  name=str(name) if name else None, connected=connected(e) if e.net else True,
                  result=e.net.result if e.net else None, pid=e.pid, exe=e.exe,
                  container=e.container.id if e.container else None, call_id=call_id, tool=tool)


def identity_of(c: Container, events: list[Event]) -> Identity:
    """The header of one container, with its event count and first/last time in the window."""
    mine = [e for e in events if e.container is not None and e.container.id == c.id]
    controller = f"{c.owner_kind}/{c.owner_name}" if c.owner_kind and c.owner_name else None
    return Identity(id=c.id, runtime=c.runtime, name=c.name, pod=c.pod, namespace=c.namespace, image=c.image,
                    image_digest=c.image_digest, spiffe_id=c.spiffe_id, spiffe_source=c.spiffe_source,
                    owner=c.owner, escalation=c.escalation, controller=controller, role=c.role,
                    service_account=c.service_account, node=c.node,
                    first_ns=mine[0].time if mine else None, last_ns=mine[-1].time if mine else None,
                    events=len(mine))


def workload_events(db: Source, boxes: list[Container], since_ns: int | None,
                    until_ns: int | None) -> list[Event]:
    """The containers' events in the window and their container-less SDK events, in time order."""
    events: list[Event] = []
    for c in boxes:
        events += [e for e in query_events(db, container=c.id, since_ns=since_ns, until_ns=until_ns)
                   if e.container is not None and e.container.id == c.id]
    pidns = {e.pidns for e in events if e.vpid == 1 and e.pidns is not None}
    if pidns:
        loose = query_events(db, kinds=sorted(SDK_KINDS | {"policy.decision"}), since_ns=since_ns,
                             until_ns=until_ns)
        events += [e for e in loose if e.container is None and e.source == "sdk" and e.pidns in pidns]
    events.sort(key=lambda e: (e.time, e.id))
    return events


def _tool_calls(events: list[Event]) -> list[ToolCallRecord]:
    calls: dict[str, ToolCallRecord] = {}

    def record(e: Event) -> ToolCallRecord | None:
        tc = e.tool_call
        if tc is None or not tc.call_id:
            return None
        rec = calls.get(tc.call_id)
        if rec is None:
            rec = calls[tc.call_id] = ToolCallRecord(call_id=tc.call_id, name=tc.name, agent=tc.agent)
        return rec

    for e in events:
        rec = record(e)
        if rec is None:
            continue
        if e.kind == "tool.start":
            rec.start_ns = e.time
            rec.route = e.ai.route if e.ai else None
            if e.decision is not None:
                rec.verdict = e.decision.verdict
        elif e.kind == "tool.end":
            rec.end_ns = e.time
            rec.status = e.ai.status if e.ai else None
            if rec.start_ns is None and e.ai is not None and e.ai.start_time is not None:
                rec.start_ns = e.ai.start_time
        elif e.source != "sdk" and on_timeline(e):
            rec.kinds[e.kind] = rec.kinds.get(e.kind, 0) + 1
            if len(rec.events) < CALL_EVENTS_LIMIT:
                rec.events.append(entry_of(e))
    return sorted(calls.values(), key=lambda r: (r.start_ns if r.start_ns is not None else 0, r.call_id))


def _routes(events: list[Event], calls: list[ToolCallRecord]) -> list[Route]:
    routes: dict[str, Route] = {}
    for e in events:
        if e.kind not in ("model.call", "tool.start") or e.ai is None or e.ai.route is None:
            continue
        r = routes.setdefault(e.ai.route, Route(route=e.ai.route, first_ns=e.time))
        if e.kind == "model.call" and e.ai.operation != "prompt.route":
            r.model_calls += 1
    for c in calls:
        if c.route is not None and c.route in routes:
            routes[c.route].tool_calls.append(c.call_id)
    return sorted(routes.values(), key=lambda r: r.first_ns)


def _same_read(kernel: SecretRead, name: str, how: str, call_id: str | None) -> bool:
    """Whether an SDK ``secret.access`` of ``name`` reports the kernel's file read ``kernel``."""
    return (how == "file" and call_id is not None and kernel.call_id == call_id and "kernel" in kernel.sources
            and (kernel.secret == name or kernel.secret.endswith("/" + name)))


def _secrets(events: list[Event], sent: list[Event]) -> list[SecretRead]:
    reads: list[SecretRead] = []
    sdk: list[tuple[Event, str, str]] = []
    for e in events:
        touched = secret_touched(e)
        if touched is None:
            continue
        if e.kind == "secret.access":
            sdk.append((e, *touched))
            continue
        call_id, tool = call_of(e.tool_call)
        reads.append(SecretRead(time=e.time, secret=touched[0], how=touched[1], sources=[e.source], pid=e.pid,
                                exe=e.exe, container=e.container.id if e.container else None, call_id=call_id,
                                tool=tool))
    for e, name, how in sdk:
        call_id, tool = call_of(e.tool_call)
        same = next((r for r in reads if _same_read(r, name, how, call_id)), None)
        if same is not None:
            same.sources.append(e.source)
            continue
        reads.append(SecretRead(time=e.time, secret=name, how=how, sources=[e.source], pid=e.pid, exe=e.exe,
                                container=e.container.id if e.container else None, call_id=call_id, tool=tool))
    reads.sort(key=lambda r: r.time)
    out = [x for x in sent if x.kind in OUTBOUND_KINDS]  # in time order
    times = [x.time for x in out]
    # made_from[i]: whether any of out[i:] reached its destination
    made_from = [False] * (len(out) + 1)
    for i in range(len(out) - 1, -1, -1):
        made_from[i] = made_from[i + 1] or connected(out[i])
    for r in reads:
        at = bisect.bisect_left(times, r.time)
        r.data_left = made_from[at]
        r.egress = [egress_of(x) for x in out[at:at + EGRESS_PER_SECRET]]
        r.egress_total = len(out) - at
    return reads


def _destinations(sent: list[Event], first_secret: int | None) -> list[Destination]:
    dests: dict[tuple[str, str], Destination] = {}
    for e in sent:
        eg = egress_of(e)
        key = (eg.kind if eg.kind == "dns.query" else "net", eg.destination)
        d = dests.get(key)
        if d is None:
            d = dests[key] = Destination(destination=eg.destination, kind=eg.kind, proto=eg.proto, name=eg.name,
                                         first_ns=e.time, after_secret=first_secret is not None
                                         and e.time >= first_secret)
        d.last_ns = e.time
        d.count += 1
        d.failed += 0 if eg.connected else 1
        d.name = d.name or eg.name
        if eg.tool is not None and eg.tool not in d.tools:
            d.tools.append(eg.tool)
    return sorted(dests.values(), key=lambda d: (d.first_ns, d.destination))


def _decisions(events: list[Event]) -> list[Decision]:
    out = []
    for e in events:
        d = e.decision
        if d is None or e.kind not in ("policy.decision", "tool.start"):
            continue
        call_id, tool = call_of(e.tool_call)
        out.append(Decision(time=e.time, policy=d.policy, verdict=d.verdict, layer=d.layer, target=d.target,
                            rule=d.rule, reason=d.reason, mode=d.mode, call_id=call_id, tool=tool))
    return out


def build_report(db: Source, workload: str, *, since_ns: int | None = None,
                 until_ns: int | None = None, now_ns: int | None = None,
                 timeline_limit: int = TIMELINE_LIMIT) -> Report:
    """The report on ``workload`` between ``since_ns`` (inclusive) and ``until_ns`` (exclusive).

    Raises :class:`~runwatch.report.workload.WorkloadNotFound` when no stored container is
    ``workload`` and :class:`~runwatch.store.sqlite_layout.StoreError` when the store cannot be read.
    """
    boxes = select(query_containers(db), workload, where=str(db))
    events = workload_events(db, boxes, since_ns, until_ns)
    ids = {c.id for c in boxes}
    alerts: list[Alert] = [a for a in query_alerts(db, since_ns=since_ns, until_ns=until_ns)
                           if a.workload.id in ids]
    shown = [e for e in events if on_timeline(e)]
    sent = [e for e in events if outbound(e) or e.kind == "dns.query"]
    secrets = _secrets(events, sent)
    calls = _tool_calls(events)
    processes = build_tree(events)
    decisions = _decisions(events)
    counts = Counts(events=len(events), execs=sum(p.execs for p in processes), processes=len(processes),
                    tool_calls=len(calls), secret_reads=len(secrets),
                    egress=sum(1 for e in sent if e.kind != "dns.query"),
                    dns=sum(1 for e in sent if e.kind == "dns.query"), decisions=len(decisions),
                    alerts=len(alerts), unattested=sum(1 for e in events if e.unattested))
    return Report(workload=workload, db=str(db), since_ns=since_ns, until_ns=until_ns,
                  generated_ns=time.time_ns() if now_ns is None else now_ns,
                  first_ns=events[0].time if events else None, last_ns=events[-1].time if events else None,
                  containers=[identity_of(c, events) for c in boxes], counts=counts,
                  timeline=[entry_of(e) for e in shown[:timeline_limit]],
                  timeline_omitted=max(0, len(shown) - timeline_limit), processes=processes, tool_calls=calls,
                  routes=_routes(events, calls), secrets=secrets,
                  destinations=_destinations(sent, secrets[0].time if secrets else None),
                  decisions=decisions, alerts=alerts, data_left=any(s.data_left for s in secrets))
