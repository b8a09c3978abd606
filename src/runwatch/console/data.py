"""What the console's pages show, read from the store or the lake (read-only, :mod:`runwatch.store.source`).

Workloads are the rows of :func:`runwatch.store.workloads.query_workloads` (one per container,
as ``runwatch workloads`` lists them) grouped by pod (``namespace/pod``), or one per container
outside a pod; each is named so that :func:`runwatch.report.workload.select` finds it again.
The Health page's figures come from the run records the store keeps and, when a live session
serves the console, from that session's metrics collector (the families ``/metrics`` exports).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from runwatch.alerts.model import SEVERITY_ORDER, Alert
from runwatch.events import Container, Event
from runwatch.store.runs import RunRecord
from runwatch.store.source import Source, query_alerts, query_events, query_runs, query_workloads

EVIDENCE_LOOKBACK_NS = 3600 * 10**9
"""How far before a host alert's first match its evidence is looked for."""


@dataclass
class WorkloadRow:
    """One workload of the Workloads page."""

    name: str  # what the report and the timeline select it by
    pod: str | None
    namespace: str | None
    spiffe_id: str | None = None
    spiffe_source: str | None = None
    role: str | None = None
    owner: str | None = None
    escalation: str | None = None
    review_by: str | None = None
    overdue: bool = False
    controller: str | None = None
    containers: list[Container] = field(default_factory=list)
    siblings: list[str] = field(default_factory=list)  # the pod's containers runwatch holds no event of
    policies: list[str] = field(default_factory=list)
    alerts: int = 0
    alerts_by_severity: dict[str, int] = field(default_factory=dict)
    last_seen: str | None = None  # ISO 8601 UTC


def workload_name(c: Container) -> str:
    """The name a container's workload goes by: ``namespace/pod``, pod, container name or id."""
    if c.pod:
        return f"{c.namespace}/{c.pod}" if c.namespace else c.pod
    return c.name or c.id


def workloads(db: Source, today: datetime.date | None = None) -> list[WorkloadRow]:
    """Every workload the store holds events of, by name: its containers' rows of
    :func:`runwatch.store.workloads.query_workloads` (the ``runwatch workloads`` listing) put together."""
    day = today or datetime.datetime.now(datetime.UTC).date()
    rows: dict[str, WorkloadRow] = {}
    for w in query_workloads(db, day):
        c = w.container
        name = workload_name(c)
        row = rows.get(name)
        if row is None:
            row = rows[name] = WorkloadRow(name=name, pod=c.pod, namespace=c.namespace)
        row.containers.append(c)
        row.spiffe_id = row.spiffe_id or w.spiffe_id
        row.spiffe_source = row.spiffe_source or w.spiffe_source
        row.role = row.role or w.role
        row.owner = row.owner or w.owner
        row.escalation = row.escalation or w.escalation
        row.review_by = row.review_by or w.review_by
        row.overdue = row.overdue or w.review == "overdue"
        if c.owner_kind and c.owner_name:
            row.controller = row.controller or f"{c.owner_kind}/{c.owner_name}"
        if w.policy is not None and w.policy not in row.policies:
            row.policies.append(w.policy)
        for sev, n in w.alerts.items():
            if n:
                row.alerts += n
                row.alerts_by_severity[sev] = row.alerts_by_severity.get(sev, 0) + n
        row.last_seen = max(row.last_seen or "", w.last_seen)  # ISO 8601 UTC: ordered as text
    for row in rows.values():
        names = {c.name for c in row.containers if c.name}
        row.siblings = sorted({s for c in row.containers for s in (c.siblings or [])} - names)
    return sorted(rows.values(), key=lambda r: r.name)


def workload_of_alert(a: Alert, names: dict[str, str]) -> str | None:
    """The workload name of an alert (``names``: container id -> workload name)."""
    return names.get(a.workload.id or "")


def container_names(db: Source) -> dict[str, str]:
    """Container id -> workload name, for every stored container."""
    return {w.id: workload_name(w.container) for w in query_workloads(db, datetime.datetime.now(datetime.UTC).date())}


def frameworks_of(a: Alert) -> list[str]:
    """Every framework id an alert maps to (MITRE ATT&CK, OWASP Agentic/LLM/NHI, NIST CSF)."""
    m = a.mappings
    return [*a.attack, *m.owasp_agentic, *m.owasp_llm, *m.owasp_nhi, *m.nist_csf]


@dataclass(frozen=True)
class AlertFilter:
    """The Alerts page's filters; an empty field matches everything."""

    severity: str = ""  # at least this severity
    rule: str = ""
    workload: str = ""
    framework: str = ""

    def matches(self, a: Alert, workload: str | None) -> bool:
        """Whether ``a`` (of ``workload``) passes every filter."""
        if self.severity and SEVERITY_ORDER.get(a.severity, 0) < SEVERITY_ORDER.get(self.severity, 0):
            return False
        if self.rule and a.rule != self.rule:
            return False
        if self.workload and workload != self.workload:
            return False
        return not self.framework or self.framework in frameworks_of(a)

    def query(self) -> dict[str, str]:
        """The filters that are set, as query parameters."""
        return {k: v for k, v in (("severity", self.severity), ("rule", self.rule), ("workload", self.workload),
                                  ("framework", self.framework)) if v}


def find_alert(db: Source, alert_id: str) -> Alert | None:
    """The stored alert with id ``alert_id``, or None."""
    return next((a for a in query_alerts(db) if a.id == alert_id), None)


def evidence(db: Source, a: Alert) -> list[Event]:
    """The stored events an alert names as its evidence, in time order."""
    wanted = set(a.evidence)
    if not wanted:
        return []
    until = a.time + 1
    if a.workload.id:
        found = query_events(db, container=a.workload.id, until_ns=until)
    else:
        since = (a.first_time or a.time) - EVIDENCE_LOOKBACK_NS
        found = query_events(db, since_ns=since, until_ns=until)
    return [e for e in found if e.id in wanted]


class AlertCursor:
    """New alerts since the last look, for the live stream: by time, each id once (an alert
    stored later with a time before the newest one already sent is not streamed; a reload shows it)."""

    def __init__(self, db: Source, start_ns: int) -> None:
        self.db = db
        self.time = start_ns
        self._sent: set[str] = set()

    def prime(self, seen: Iterable[Alert]) -> None:
        """Treat ``seen`` (already on the page) as sent."""
        for a in seen:
            self._sent.add(a.id)
            self.time = max(self.time, a.time)

    def poll(self) -> list[Alert]:
        """Alerts stored since the last call (at or after the newest time seen), oldest first."""
        fresh = [a for a in query_alerts(self.db, since_ns=self.time) if a.id not in self._sent]
        if fresh:
            newest = max(a.time for a in fresh)
            at_newest = {a.id for a in fresh if a.time == newest}
            self._sent = self._sent | at_newest if newest == self.time else at_newest
            self.time = newest
        return fresh


@dataclass
class RunHealth:
    """One recorded run, as the Health page shows it."""

    run: RunRecord
    source: str | None
    hooks_active: list[str]
    hooks_refused: dict[str, Any]
    drops: int
    store: dict[str, Any]
    notices: list[str]
    source_stats: dict[str, Any]


def health(db: Source) -> list[RunHealth]:
    """Every run in the store, newest first, with its sources, hooks, drops and store counters."""
    out: list[RunHealth] = []
    for r in reversed(query_runs(db)):
        st = r.stats
        hooks = st.get("hooks") or {}
        refused = hooks.get("refused") or {}
        out.append(RunHealth(run=r, source=st.get("source"), hooks_active=list(hooks.get("active") or []),
                             hooks_refused=refused if isinstance(refused, dict) else {str(x): "" for x in refused},
                             drops=int(st.get("drops") or 0), store=dict(st.get("store") or {}),
                             notices=[str(n) for n in st.get("notices") or []],
                             source_stats={k: v for k, v in (st.get("source_stats") or {}).items()
                                           if isinstance(v, int | float | str)}))
    return out


@dataclass(frozen=True)
class LiveSample:
    """One sample of the live session's metrics, as the Health page lists it."""

    name: str
    labels: str  # key="value" pairs, comma-joined ("" for none)
    value: float


#: The live families the Health page shows: sources, hooks, drops, the ring, the pipeline, the
#: store and the outputs' spools (events and alerts by kind and rule are the other pages').
LIVE_PREFIXES: tuple[str, ...] = ("runwatch_events", "runwatch_kernel", "runwatch_pipeline",
                                  "runwatch_source", "runwatch_store", "runwatch_output", "runwatch_alerts",
                                  "runwatch_join", "runwatch_decisions")


def live_metrics(collect: Callable[[], Iterable[Any]]) -> list[LiveSample]:
    """The live session's samples of :data:`LIVE_PREFIXES`, sorted by name and labels."""
    out: list[LiveSample] = []
    for family in collect():
        for sample in family.samples:
            if not sample.name.startswith(LIVE_PREFIXES) or sample.name.endswith("_created"):
                continue
            labels = ", ".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out.append(LiveSample(sample.name, labels, float(sample.value)))
    return sorted(out, key=lambda s: (s.name, s.labels))

