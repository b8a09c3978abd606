"""Runwatch events and alerts read back from the lake, for ``report`` and the console.

Every record the lake's writers make (:mod:`runwatch.lake.records`) keeps the original event or
alert as its JSON in ``raw_data``; this module decodes it, so a report or a console page built
from the lake is the one built from a store that received the same events and alerts. It offers
what those read from the store (:mod:`runwatch.store.sqlite_read`, :mod:`runwatch.store.workloads`),
with the same filters, ordering and results: :func:`iter_events`/:func:`query_events`,
:func:`query_alerts`, :func:`query_containers` and :func:`query_workloads`.

Records without ``raw_data`` (written before it was kept) are skipped and counted by
:func:`raw_missing`; ``runwatch query`` still reads them. A record id met twice (there is none
unless files were copied in by hand) is read once. The lake is read whole for each call (only
``record_id``, ``time`` and ``raw_data``; the rows outside the time window are skipped before
decoding); it is meant for what one report or page needs, ``runwatch query`` for the rest.
Read-only: safe while writers add files (a file is whole or not there).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from runwatch.alerts.model import SEVERITY_ORDER, Alert
from runwatch.alerts.render import DETECTION_FINDING
from runwatch.alerts.render import from_json as alert_from_json
from runwatch.enrich.governance import review_status
from runwatch.events import Container, Event
from runwatch.lake.schema import LakeError
from runwatch.store.workloads import SEVERITIES, WorkloadRow, _iso

_MS = 1_000_000
_EVENT = msgspec.json.Decoder(Event).decode


def _files(root: Path, alerts: bool) -> list[Path]:
    if not root.is_dir():
        raise LakeError(f"{root}: no such lake directory")
    found = sorted(root.glob("class_uid=*/day=*/hour=*/*.parquet"))
    finding = f"class_uid={DETECTION_FINDING}"
    return [p for p in found if (p.parts[-4] == finding) == alerts]


def _raw(root: str | os.PathLike[str], alerts: bool, since_ns: int | None, until_ns: int | None
         ) -> Iterator[str]:
    """The ``raw_data`` of the event records (or the Detection Findings) whose millisecond time
    may fall in the window, each record id once."""
    lo = since_ns // _MS if since_ns is not None else None
    hi = (until_ns - 1) // _MS if until_ns is not None else None
    seen: set[str] = set()
    for path in _files(Path(root), alerts):
        try:
            table = pq.read_table(path, columns=["record_id", "time", "raw_data"])
        except (OSError, pa.ArrowException) as exc:
            raise LakeError(f"cannot read {path}: {exc}") from None
        cols = table.to_pydict()
        for rid, ms, raw in zip(cols["record_id"], cols["time"], cols["raw_data"], strict=True):
            if rid in seen or (lo is not None and ms < lo) or (hi is not None and ms > hi):
                continue
            seen.add(rid)
            if raw is None:
                _MISSING[0] += 1
                continue
            yield raw


_MISSING = [0]


def raw_missing() -> int:
    """Records skipped so far (in this process) for want of ``raw_data``."""
    return _MISSING[0]


def _in_window(t: int, since_ns: int | None, until_ns: int | None) -> bool:
    return (since_ns is None or t >= since_ns) and (until_ns is None or t < until_ns)


def container_matches(c: Container | None, container: str | None, workload: str | None) -> bool:
    """Whether ``c`` passes the ``container`` (exact name, exact id, or an id prefix of at least
    4 characters) and ``workload`` (container name, pod, ``namespace/pod``, SPIFFE id) filters."""
    if container is None and workload is None:
        return True
    if c is None:
        return False
    if container is not None and not (container in (c.name, c.id) or (
            len(container) >= 4 and c.id.startswith(container))):
        return False
    return workload is None or workload in (c.name, c.pod, f"{c.namespace}/{c.pod}" if c.pod else None,
                                            c.spiffe_id)


def _events(root: str | os.PathLike[str], since_ns: int | None, until_ns: int | None) -> list[Event]:
    out: list[Event] = []
    for raw in _raw(root, False, since_ns, until_ns):
        try:
            e = _EVENT(raw)  # this schema's JSON, kept as is (the store's reader does not upgrade either)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            raise LakeError(f"{root}: a record's raw_data does not decode as an event: {exc}") from None
        if _in_window(e.time, since_ns, until_ns):
            out.append(e)
    return out


def iter_events(root: str | os.PathLike[str], *, kinds: Iterable[str] | None = None, container: str | None = None,
                workload: str | None = None, pid: int | None = None, since_ns: int | None = None,
                until_ns: int | None = None, limit: int | None = None, order: str = "asc") -> Iterator[Event]:
    """The lake's events passing the filters (as :func:`runwatch.store.sqlite_read.iter_events`:
    AND, ``until_ns`` exclusive), ordered by (time, id), ``"asc"`` or ``"desc"``; ``limit`` after
    ordering."""
    if order not in ("asc", "desc"):
        raise ValueError(f"order must be 'asc' or 'desc', not {order!r}")
    wanted = set(kinds) if kinds is not None else None
    found = [e for e in _events(root, since_ns, until_ns)
             if (wanted is None or e.kind in wanted) and (pid is None or e.pid == pid)
             and container_matches(e.container, container, workload)]
    found.sort(key=lambda e: (e.time, e.id), reverse=order == "desc")
    yield from found[:limit] if limit is not None else found


def query_events(root: str | os.PathLike[str], **filters: object) -> list[Event]:
    """The events :func:`iter_events` yields (same filters), as a list."""
    return list(iter_events(root, **filters))  # type: ignore[arg-type]


def _alerts(root: str | os.PathLike[str], since_ns: int | None, until_ns: int | None) -> list[Alert]:
    out: list[Alert] = []
    for raw in _raw(root, True, since_ns, until_ns):
        try:
            a = alert_from_json(raw)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            raise LakeError(f"{root}: a record's raw_data does not decode as an alert: {exc}") from None
        if _in_window(a.time, since_ns, until_ns):
            out.append(a)
    return out


def query_alerts(root: str | os.PathLike[str], *, rule: str | None = None, since_ns: int | None = None,
                 limit: int | None = None, until_ns: int | None = None, severity: str | None = None,
                 container: str | None = None, workload: str | None = None) -> list[Alert]:
    """The lake's alerts passing the filters (as :func:`runwatch.store.sqlite_read.iter_alerts`:
    ``severity`` this or higher; ``container`` and ``workload`` matched against the containers
    the lake holds events of), oldest first (time, id)."""
    if severity is not None and severity not in SEVERITY_ORDER:
        raise LakeError(f"unknown severity {severity!r} (known: {', '.join(SEVERITY_ORDER)})")
    ids: set[str] | None = None
    if container is not None or workload is not None:
        ids = {e.container.id for e in _events(root, None, None)
               if e.container is not None and container_matches(e.container, container, workload)}
    found = [a for a in _alerts(root, since_ns, until_ns)
             if (rule is None or a.rule == rule) and (ids is None or a.workload.id in ids)
             and (severity is None or SEVERITY_ORDER.get(a.severity, -1) >= SEVERITY_ORDER[severity])]
    found.sort(key=lambda a: (a.time, a.id))
    return found[:limit] if limit is not None else found


def _newest(events: list[Event]) -> Event:
    """The newest event (by time; the greatest id among equal times)."""
    return max(events, key=lambda e: (e.time, e.id))


def query_containers(root: str | os.PathLike[str]) -> list[Container]:
    """Every container the lake holds events of, as its newest event describes it, one per
    (id, name), ordered by id then name (as :func:`runwatch.store.sqlite_read.query_containers`)."""
    boxes: dict[tuple[str, str | None], list[Event]] = {}
    for e in _events(root, None, None):
        if e.container is not None:
            boxes.setdefault((e.container.id, e.container.name), []).append(e)
    out = []
    for key in sorted(boxes, key=lambda k: (k[0], k[1] or "")):
        c = _newest(boxes[key]).container
        assert c is not None
        out.append(c)
    return out


def query_workloads(root: str | os.PathLike[str], today: datetime.date) -> list[WorkloadRow]:
    """Every container of the lake as a :class:`~runwatch.store.workloads.WorkloadRow` (what the
    newest event says of it, its event count and last time, its alerts by severity, the policy
    of its newest decision), ordered by namespace, pod, name and id."""
    boxes: dict[str, list[Event]] = {}
    for e in _events(root, None, None):
        if e.container is not None:
            boxes.setdefault(e.container.id, []).append(e)
    counts: dict[tuple[str, str], int] = {}
    for a in _alerts(root, None, None):
        if a.workload.id:
            counts[(a.workload.id, a.severity)] = counts.get((a.workload.id, a.severity), 0) + 1
    out: list[WorkloadRow] = []
    for cid, events in boxes.items():
        newest = _newest(events)
        c = newest.container
        assert c is not None
        decisions = [e for e in events if e.kind == "policy.decision"]
        d = _newest(decisions).decision if decisions else None
        out.append(WorkloadRow(
            id=cid, name=c.name, runtime=c.runtime, pod=c.pod, namespace=c.namespace,
            siblings=list(c.siblings or ()), spiffe_id=c.spiffe_id, spiffe_source=c.spiffe_source, role=c.role,
            owner=c.owner, escalation=c.escalation, review_by=c.review_by, review=review_status(c.review_by, today),
            policy=d.policy if d is not None else None, alerts={s: counts.get((cid, s), 0) for s in SEVERITIES},
            events=len(events), last_seen=_iso(newest.time), container=c))
    out.sort(key=lambda r: (r.namespace or "", r.pod or "", r.name or "", r.id))
    return out
