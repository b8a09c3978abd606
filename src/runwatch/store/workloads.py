"""The workloads a store has seen: one :class:`WorkloadRow` per container id, read-only.

What each row says of the container is what its newest stored event says (the enrichment only
adds facts as they become known: a pod the Kubernetes API reported late, a policy loaded since);
``events`` and ``last_seen`` cover all its events, ``alerts`` counts its stored alerts by
severity (a throttled alert counts once, whatever its ``count``), and ``policy`` is the policy
of its newest ``policy.decision`` (None when no decision was recorded; ``runwatch workloads
--policy`` selects from policy files instead).

Every query goes through the ``(kind, ck, time)`` index: a container's rows are one range per
kind, its newest time comes from the index alone.
"""

from __future__ import annotations

import datetime
import os
import sqlite3

import msgspec

from runwatch.alerts.model import SEVERITY_ORDER
from runwatch.enrich.governance import review_status
from runwatch.events import Container, Event
from runwatch.store.sqlite_layout import StoreError
from runwatch.store.sqlite_read import _connect_ro, stored_container

_DECODE = msgspec.msgpack.Decoder(Event).decode
SEVERITIES: tuple[str, ...] = tuple(sorted(SEVERITY_ORDER, key=lambda s: -SEVERITY_ORDER[s]))
"""Severities, most severe first (the key order of :attr:`WorkloadRow.alerts`)."""


class WorkloadRow(msgspec.Struct, kw_only=True):
    """One container the store has seen and what is known of it (``runwatch workloads`` JSON)."""

    id: str
    name: str | None
    runtime: str
    pod: str | None
    namespace: str | None
    siblings: list[str]
    spiffe_id: str | None
    spiffe_source: str | None
    role: str | None
    owner: str | None
    escalation: str | None
    review_by: str | None
    review: str  # ok | overdue | missing (see runwatch.enrich.governance.review_status)
    policy: str | None
    alerts: dict[str, int]
    events: int
    last_seen: str  # ISO 8601 UTC, milliseconds
    container: Container  # the full container of the newest event (not in the JSON form)


def query_workloads(path: str | os.PathLike[str], today: datetime.date) -> list[WorkloadRow]:
    """Every container of the store at ``path``, ordered by namespace, pod, name and id."""
    conn, shown = _connect_ro(path)
    try:
        return _rows(conn, today)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read workloads from {shown}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise StoreError(f"{shown}: a stored event does not decode: {exc}") from None
    finally:
        conn.close()


def _rows(conn: sqlite3.Connection, today: datetime.date) -> list[WorkloadRow]:
    codes = {name: code for code, name in conn.execute("SELECT code, name FROM kinds")}
    kinds = ",".join(str(int(c)) for c in codes.values()) or "NULL"
    boxes: dict[str, list[int]] = {}
    for ck, cid in conn.execute("SELECT ck, id FROM containers ORDER BY ck"):
        boxes.setdefault(cid, []).append(int(ck))
    alerts = _alert_counts(conn)
    decision = codes.get("policy.decision")
    out: list[WorkloadRow] = []
    for cid, cks in boxes.items():
        in_cks = ",".join(str(ck) for ck in cks)
        where = f"kind IN ({kinds}) AND ck IN ({in_cks})"
        count, last = conn.execute(f"SELECT count(*), max(time) FROM events WHERE {where}").fetchone()
        if not count:
            continue
        row = conn.execute(f"SELECT data, ck FROM events WHERE {where} AND time = ? ORDER BY id DESC LIMIT 1",
                           (last,)).fetchone()
        c = _DECODE(row[0]).container or stored_container(conn, int(row[1]))  # layout 5 keeps it apart
        if c is None:
            continue
        policy = None
        if decision is not None:
            found = conn.execute(f"SELECT data FROM events WHERE kind = ? AND ck IN ({in_cks}) "
                                 "ORDER BY time DESC LIMIT 1", (decision,)).fetchone()
            d = _DECODE(found[0]).decision if found is not None else None
            policy = d.policy if d is not None else None
        out.append(WorkloadRow(
            id=cid, name=c.name, runtime=c.runtime, pod=c.pod, namespace=c.namespace,
            siblings=list(c.siblings or ()), spiffe_id=c.spiffe_id, spiffe_source=c.spiffe_source, role=c.role,
            owner=c.owner, escalation=c.escalation, review_by=c.review_by, review=review_status(c.review_by, today),
            policy=policy, alerts={s: alerts.get((cid, s), 0) for s in SEVERITIES}, events=int(count),
            last_seen=_iso(int(last)), container=c))
    out.sort(key=lambda r: (r.namespace or "", r.pod or "", r.name or "", r.id))
    return out


def _alert_counts(conn: sqlite3.Connection) -> dict[tuple[str, str], int]:
    try:
        rows = conn.execute("SELECT workload_id, severity, count(*) FROM alerts "
                            "WHERE workload_id IS NOT NULL GROUP BY workload_id, severity").fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return {}  # written by a version before alerts were stored
        raise
    return {(str(w), str(s)): int(n) for w, s, n in rows}


def _iso(ns: int) -> str:
    secs, rest = divmod(ns, 1_000_000_000)
    stamp = datetime.datetime.fromtimestamp(secs, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{rest // 1_000_000:03d}Z"
