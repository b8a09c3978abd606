"""Retention: pruning a store by age and by size, with counts of what went.

:func:`prune` deletes the oldest events (and the alerts, process contexts and batch records
that only they needed) until none is older than ``max_age_ns`` and the store's used pages fit
in ``max_bytes``. It works in chunks, each its own short ``BEGIN IMMEDIATE`` transaction, so a
live writer on the same file waits for one chunk at most, never for the whole prune.

Size is what the file's pages hold (``page_count - freelist_count``, times the page size):
freed pages are reused by later writes, so the file stops growing at the bound; ``VACUUM``
(``runwatch prune --vacuum``) gives them back to the filesystem.

A process context (``procs``) goes once no stored event can refer to it: its ``last`` (the
newest event time that used it) is older than every event kept. The caller owns ``conn`` and
must not hold a transaction open.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

_CHUNK_MIN = 1_000  # events per delete transaction at least (size pruning sizes it by the excess)
_CHUNK_MAX = 200_000


@dataclass(frozen=True)
class Retention:
    """How much a store keeps: events no older than ``max_age_ns`` and at most ``max_bytes``
    of used pages (None: no bound of that kind)."""

    max_age_ns: int | None = None
    max_bytes: int | None = None

    def __bool__(self) -> bool:
        return self.max_age_ns is not None or self.max_bytes is not None


@dataclass
class Pruned:
    """What pruning deleted: events, alerts, process contexts and batch records."""

    events: int = 0
    alerts: int = 0
    processes: int = 0
    batches: int = 0

    def add(self, other: Pruned) -> None:
        self.events += other.events
        self.alerts += other.alerts
        self.processes += other.processes
        self.batches += other.batches

    def as_dict(self) -> dict[str, int]:
        return {"events": self.events, "alerts": self.alerts, "processes": self.processes}

    def line(self) -> str:
        """One line: ``pruned 3 events, 1 alert and 2 process records``."""
        def n(count: int, what: str) -> str:
            return f"{count:,} {what}{'' if count == 1 else 's'}"
        return f"pruned {n(self.events, 'event')}, {n(self.alerts, 'alert')} and {n(self.processes, 'process record')}"


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes the file's pages in use hold (free pages not counted)."""
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    return (pages - free) * int(conn.execute("PRAGMA page_size").fetchone()[0])


def prune(conn: sqlite3.Connection, retention: Retention, now_ns: int | None = None) -> Pruned:
    """Apply ``retention`` to the (layout-5) store on ``conn``; returns what was deleted."""
    done = Pruned()
    if retention.max_age_ns is not None:
        cutoff = (time.time_ns() if now_ns is None else now_ns) - retention.max_age_ns
        while True:
            bound = _nth_time(conn, _CHUNK_MAX, cutoff)
            done.add(_delete_before(conn, cutoff if bound is None else bound, cutoff))
            if bound is None:
                break
    if retention.max_bytes is not None:
        while (excess := used_bytes(conn) - retention.max_bytes) > 0:
            per_event = used_bytes(conn) / max(1, _count(conn))
            chunk = max(_CHUNK_MIN, min(_CHUNK_MAX, int(excess / max(per_event, 1.0)) + 1))
            bound = _nth_time(conn, chunk, None)
            if bound is None:  # fewer events than a chunk: all go
                newest = conn.execute("SELECT max(time) FROM events").fetchone()[0]
                if newest is None:
                    break
                bound = int(newest) + 1
            done.add(_delete_before(conn, bound, bound))
    return done


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def _nth_time(conn: sqlite3.Connection, n: int, below: int | None) -> int | None:
    """The time of the ``n``-th oldest event (below ``below``), or None when there are fewer."""
    if below is None:
        row = conn.execute("SELECT time FROM events ORDER BY time LIMIT 1 OFFSET ?", (n,)).fetchone()
    else:
        row = conn.execute("SELECT time FROM events WHERE time < ? ORDER BY time LIMIT 1 OFFSET ?",
                           (below, n)).fetchone()
    return None if row is None else int(row[0])


def _delete_before(conn: sqlite3.Connection, bound: int, others_before: int) -> Pruned:
    """In one transaction: events before ``bound``; alerts and batches before ``others_before``;
    process contexts no event kept can refer to."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        out = Pruned()
        out.events = conn.execute("DELETE FROM events WHERE time < ?", (bound,)).rowcount
        out.alerts = conn.execute("DELETE FROM alerts WHERE time < ?", (others_before,)).rowcount
        out.batches = conn.execute("DELETE FROM batches WHERE tmax < ?", (bound,)).rowcount
        oldest = conn.execute("SELECT min(time) FROM events").fetchone()[0]
        keep_from = min(bound, int(oldest)) if oldest is not None else bound
        out.processes = conn.execute("DELETE FROM procs WHERE last < ?", (keep_from,)).rowcount
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return out
