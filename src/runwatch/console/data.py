"""What the console's pages show, read from the store (read-only, :mod:`runwatch.store.sqlite_read`).

Workloads are the stored containers grouped by pod (``namespace/pod``), or one per container
outside a pod; each is named so that :func:`runwatch.report.workload.select` finds it again.
Until the store offers a workloads listing and metrics of its own, they are derived here.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from runwatch.alerts.model import SEVERITY_ORDER, Alert
from runwatch.events import Container, Event
from runwatch.store.runs import RunRecord
from runwatch.store.sqlite_read import query_alerts, query_containers, query_events, query_runs

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
    last_seen: int | None = None


def workload_name(c: Container) -> str:
    """The name a container's workload goes by: ``namespace/pod``, pod, container name or id."""
    if c.pod:
        return f"{c.namespace}/{c.pod}" if c.namespace else c.pod
    return c.name or c.id


def containers(db: str | os.PathLike[str]) -> list[Container]:
    """One description per stored container id: the store keeps one per (id, name) pair, and a
    container seen before its name or pod was known has a bare one too; the fullest is kept."""
    best: dict[str, Container] = {}
    for c in query_containers(db):
        old = best.get(c.id)
        if old is None or (c.pod is not None, c.name is not None) >= (old.pod is not None, old.name is not None):
            best[c.id] = c
    return list(best.values())


def _overdue(review_by: str | None, today: datetime.date) -> bool:
    if not review_by:
        return False
    try:
        return datetime.date.fromisoformat(review_by) < today
    except ValueError:
        return False


def _last_seen(db: str | os.PathLike[str], cid: str) -> int | None:
    newest = query_events(db, container=cid, order="desc", limit=1)
    return newest[0].time if newest else None


def workloads(db: str | os.PathLike[str], alerts: Sequence[Alert] | None = None,
              today: datetime.date | None = None) -> list[WorkloadRow]:
    """Every workload the store holds events of, by name, with alert counts and policies seen."""
    day = today or datetime.datetime.now(datetime.UTC).date()
    rows: dict[str, WorkloadRow] = {}
    by_id: dict[str, WorkloadRow] = {}
    for c in containers(db):
        name = workload_name(c)
        row = rows.get(name)
        if row is None:
            row = rows[name] = WorkloadRow(name=name, pod=c.pod, namespace=c.namespace)
        by_id[c.id] = row
        row.containers.append(c)
        row.spiffe_id = row.spiffe_id or c.spiffe_id
        row.spiffe_source = row.spiffe_source or c.spiffe_source
        row.role = row.role or c.role
        row.owner = row.owner or c.owner
        row.escalation = row.escalation or c.escalation
        row.review_by = row.review_by or c.review_by
        if c.owner_kind and c.owner_name:
            row.controller = row.controller or f"{c.owner_kind}/{c.owner_name}"
        seen = _last_seen(db, c.id)
        if seen is not None and (row.last_seen is None or seen > row.last_seen):
            row.last_seen = seen
    for row in rows.values():
        names = {c.name for c in row.containers if c.name}
        row.siblings = sorted({s for c in row.containers for s in (c.siblings or [])} - names)
        row.overdue = _overdue(row.review_by, day)
    for e in query_events(db, kinds=["policy.decision"]):
        row = by_id.get(e.container.id) if e.container is not None else None
        if row is not None and e.decision is not None and e.decision.policy not in row.policies:
            row.policies.append(e.decision.policy)
    for a in alerts if alerts is not None else query_alerts(db):
        row = by_id.get(a.workload.id or "")
        if row is not None:
            row.alerts += 1
            row.alerts_by_severity[a.severity] = row.alerts_by_severity.get(a.severity, 0) + 1
    return sorted(rows.values(), key=lambda r: r.name)


def workload_of_alert(a: Alert, names: dict[str, str]) -> str | None:
    """The workload name of an alert (``names``: container id -> workload name)."""
    return names.get(a.workload.id or "")


def container_names(db: str | os.PathLike[str]) -> dict[str, str]:
    """Container id -> workload name, for every stored container."""
    return {c.id: workload_name(c) for c in containers(db)}


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


def find_alert(db: str | os.PathLike[str], alert_id: str) -> Alert | None:
    """The stored alert with id ``alert_id``, or None."""
    return next((a for a in query_alerts(db) if a.id == alert_id), None)


def evidence(db: str | os.PathLike[str], a: Alert) -> list[Event]:
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

    def __init__(self, db: str | os.PathLike[str], start_ns: int) -> None:
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


def health(db: str | os.PathLike[str]) -> list[RunHealth]:
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
