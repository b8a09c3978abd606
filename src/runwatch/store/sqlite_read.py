"""The read side of the SQLite event store: events, alerts and runs, read-only.

Events and alerts stream (:func:`iter_events`, :func:`iter_alerts`): rows are fetched in
small chunks and decoded as the caller takes them, so memory stays flat and the first row
comes at once; :func:`query_events` and :func:`query_alerts` are the same as lists. Each
event's process context (layout 5 keeps it once per process in ``procs``) is joined back in,
so readers get the same full events as were written. Files of layout 4 are read as they are
(their rows hold whole events); older ones must be opened for writing once to migrate.

Every function opens the file read-only (``file:...?mode=ro``) and may run in any thread or
process while a writer is active (WAL). :func:`mark_crashed_runs` is the one exception: it
opens the file for writing just long enough to mark runs whose owner died (see
:mod:`runwatch.store.runs`).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec

from runwatch.alerts.model import SEVERITY_ORDER, Alert
from runwatch.alerts.render import from_json as alert_from_json
from runwatch.events import UPGRADE_BELOW, Container, Event, upgrade
from runwatch.store.runs import RunRecord, read_runs, recover_crashed
from runwatch.store.sqlite_layout import (
    OLDEST_READABLE,
    STORE_SCHEMA_VERSION,
    StoreError,
    check_not_newer,
    container_facts,
    read_event_schema,
    read_version,
)

BUSY_TIMEOUT_MS = 10_000
"""How long a reader (or an open for writing) waits for a lock, in ms."""


def _connect_ro(path: str | os.PathLike[str]) -> tuple[sqlite3.Connection, str]:
    p = Path(path)
    shown = str(path)
    if not p.exists():
        raise StoreError(f"event store not found: {shown}")
    if not p.is_file():
        raise StoreError(f"event store is not a file: {shown}")
    uri = f"file:{quote(str(p.resolve()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        version = read_version(conn, shown)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read event store {shown}: {exc}") from None
    try:
        check_not_newer(version, shown)
        if version == 0:
            raise StoreError(f"{shown}: not a runwatch event store (no schema_version)")
        if version < OLDEST_READABLE:
            raise StoreError(
                f"{shown}: store schema version {version} is older than {OLDEST_READABLE}; "
                "open it once for writing (e.g. runwatch run --db) to migrate"
            )
    except BaseException:
        conn.close()
        raise
    return conn, shown


_DECODE_ONE = msgspec.msgpack.Decoder(Event).decode
_DECODE_BOX = msgspec.msgpack.Decoder(Container).decode
_DECODE_PROC = msgspec.msgpack.Decoder(tuple[str, str, list[str] | None, list[str], str | None]).decode
_PROC_CACHE_MAX = 50_000  # decoded process contexts a reader keeps; beyond, it starts over
_CHUNK = 1_024  # rows fetched per step while streaming
FOLLOW_POLL_S = 0.25
"""How often a following reader looks for newly committed rows (s)."""

_Context = tuple[str, str, list[str] | None, list[str], str | None]


def _layout(conn: sqlite3.Connection, shown: str) -> int:
    """The open file's layout version (>= OLDEST_READABLE; _connect_ro checked it)."""
    return read_version(conn, shown)


def _box_match(container: str | None, workload: str | None, layout: int) -> tuple[str, list[Any]] | None:
    """SQL over ``containers`` for the ``container`` and ``workload`` filters (see
    :func:`iter_events`), with its parameters; None without either filter."""
    where: list[str] = []
    params: list[Any] = []
    if container is not None:
        terms = ["name = ?", "id = ?"]
        params.extend([container, container])
        if len(container) >= 4:
            terms.append("substr(id, 1, ?) = ?")
            params.extend([len(container), container])
        where.append("(" + " OR ".join(terms) + ")")
    if workload is not None:
        terms = ["name = ?"]
        params.append(workload)
        if layout >= 5:
            terms += ["pod = ?", "namespace || '/' || pod = ?", "spiffe_id = ?"]
            params.extend([workload, workload, workload])
        where.append("(" + " OR ".join(terms) + ")")
    if not where:
        return None
    return " AND ".join(where), params


def _boxes(conn: sqlite3.Connection, container: str | None, workload: str | None, layout: int) -> list[int] | None:
    """The container keys the filters select (None: no container filter)."""
    match = _box_match(container, workload, layout)
    if match is None:
        return None
    sql, params = match
    found = [int(r[0]) for r in conn.execute(f"SELECT ck FROM containers WHERE {sql}", params)]
    if workload is not None and layout < 5:
        # Layout 4 kept no pod or SPIFFE id per container: read them from one event of each.
        named = {ck for ck, facts in container_facts(conn).items()
                 if workload in (facts[0], f"{facts[1]}/{facts[0]}", facts[2])}
        if container is not None:
            base = _box_match(container, None, layout)
            assert base is not None
            named &= {int(r[0]) for r in conn.execute(f"SELECT ck FROM containers WHERE {base[0]}", base[1])}
        found = sorted(set(found) | named)
    return found


def _event_filter(
    conn: sqlite3.Connection,
    layout: int,
    kinds: list[str] | None,
    container: str | None,
    workload: str | None,
    pid: int | None,
    since_ns: int | None,
    until_ns: int | None,
) -> tuple[list[str], list[Any]] | None:
    """WHERE terms and parameters for the filters; None when nothing can match."""
    where: list[str] = []
    params: list[Any] = []
    boxes = _boxes(conn, container, workload, layout)
    if boxes == []:
        return None
    if kinds is not None or boxes is not None:
        # Both filters go through the (kind, ck, time) index, so a kind constraint is always
        # given: the requested codes, or every code when only the container is filtered.
        if kinds is None:
            codes = [r[0] for r in conn.execute("SELECT code FROM kinds")]
        else:
            marks = ",".join("?" * len(kinds))
            codes = [r[0] for r in conn.execute(f"SELECT code FROM kinds WHERE name IN ({marks})", kinds)]
        if not codes:
            return None  # no event of these kinds was ever stored
        where.append(f"kind IN ({','.join(str(int(c)) for c in codes)})")
    if boxes is not None:
        where.append(f"ck IN ({','.join(str(ck) for ck in boxes)})")
    if pid is not None:
        where.append("pid = ?")
        params.append(pid)
    if since_ns is not None:
        where.append("time >= ?")
        params.append(since_ns)
    if until_ns is not None:
        where.append("time < ?")
        params.append(until_ns)
    return where, params


class _Decoder:
    """Stored rows -> Events: the process context and container joined back in, older schemas
    upgraded."""

    def __init__(self, conn: sqlite3.Connection, shown: str, layout: int) -> None:
        self.conn = conn
        self.shown = shown
        self.layout = layout
        self.boxes: dict[int, Container | None] = {}
        try:
            self.stale = read_event_schema(conn) < UPGRADE_BELOW
        except StoreError as exc:
            raise StoreError(f"{shown}: {exc}") from None
        self.contexts: dict[int, _Context | None] = {}
        self.n = 0

    def context(self, pk: int) -> _Context | None:
        ctx = self.contexts.get(pk, False)
        if ctx is False:
            if len(self.contexts) >= _PROC_CACHE_MAX:
                self.contexts.clear()
            row = self.conn.execute("SELECT data FROM procs WHERE pk = ?", (pk,)).fetchone()
            try:
                ctx = self.contexts[pk] = None if row is None else _DECODE_PROC(row[0])
            except msgspec.DecodeError as exc:
                raise StoreError(f"{self.shown}: stored process context {pk} does not decode: {exc}") from None
        return ctx  # type: ignore[return-value]

    def box(self, ck: int) -> Container | None:
        """Container ``ck`` as stored once (None where the row holds its own: layout 4)."""
        if ck in self.boxes:
            return self.boxes[ck]
        row = None
        if self.layout >= 5:
            row = self.conn.execute("SELECT data FROM containers WHERE ck = ?", (ck,)).fetchone()
        try:
            box = self.boxes[ck] = None if row is None or row[0] is None else _DECODE_BOX(row[0])
        except msgspec.DecodeError as exc:
            raise StoreError(f"{self.shown}: stored container {ck} does not decode: {exc}") from None
        return box

    def event(self, data: bytes, proc: int | None, ck: int | None = None) -> Event:
        try:
            event = _DECODE_ONE(data)
        except msgspec.DecodeError as exc:
            raise StoreError(f"{self.shown}: stored event #{self.n} does not decode: {exc}") from None
        self.n += 1
        if ck is not None and event.container is None:
            event.container = self.box(ck)  # shared: Container is frozen
        if proc is not None:
            ctx = self.context(proc)
            if ctx is not None:  # None: pruned while this row was being written; the rest stays
                exe, cmdline, argv, ancestry, pcmdline = ctx
                event.exe, event.cmdline, event.pcmdline = exe, cmdline, pcmdline
                event.argv = None if argv is None else list(argv)
                event.ancestry = list(ancestry)
        return upgrade(event) if self.stale else event


def stored_container(conn: sqlite3.Connection, ck: int) -> Container | None:
    """Container ``ck`` as layout 5 stores it once in ``containers`` (None in a layout-4 file,
    whose rows each hold their container); for readers with their own SQL over the events."""
    try:
        row = conn.execute("SELECT data FROM containers WHERE ck = ?", (ck,)).fetchone()
    except sqlite3.OperationalError:  # layout 4: no data column
        return None
    if row is None or row[0] is None:
        return None
    try:
        return _DECODE_BOX(row[0])
    except msgspec.DecodeError as exc:
        raise StoreError(f"stored container {ck} does not decode: {exc}") from None


def iter_events(
    path: str | os.PathLike[str],
    *,
    kinds: Iterable[str] | None = None,
    container: str | None = None,
    workload: str | None = None,
    pid: int | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
    limit: int | None = None,
    order: str = "asc",
    follow: bool = False,
    poll_s: float = FOLLOW_POLL_S,
) -> Iterator[Event]:
    """Stream events from a store file, as they are read (read-only; safe while a writer is
    active). Memory stays flat however many rows match.

    Filters combine with AND: ``kinds`` (exact kind strings), ``container`` (exact name, exact
    id, or an id prefix of at least 4 characters), ``workload`` (pod name,
    ``namespace/pod``, SPIFFE id or container name), ``pid``, ``since_ns`` (inclusive) and
    ``until_ns`` (exclusive). Results are ordered by (time, id), ``"asc"`` or ``"desc"``;
    ``limit`` applies after ordering (so ``order="desc", limit=n`` gives the newest n).

    ``follow``: after the stored rows (the newest ``limit`` of them, oldest first, when
    ``limit`` is given), keep yielding the rows each later write transaction commits, in the
    order they commit, every ``poll_s`` seconds, until the caller stops iterating. It needs
    ascending order and a layout-5 file (one opened for writing by this runwatch).
    """
    if order not in ("asc", "desc"):
        raise StoreError(f"order must be 'asc' or 'desc', not {order!r}")
    if limit is not None and limit < 0:
        raise StoreError(f"limit must be >= 0, not {limit}")
    if follow and order != "asc":
        raise StoreError("following needs ascending order (newest last)")
    kind_list = None if kinds is None else list(kinds)
    if kind_list == []:
        return
    conn, shown = _connect_ro(path)
    try:
        layout = _layout(conn, shown)
        if follow and layout < 5:
            raise StoreError(f"{shown}: following needs store layout 5 (this file has {layout}); "
                             "open it once for writing (e.g. runwatch run --db) to migrate")
        conn.execute("BEGIN")  # one snapshot for the stored rows and the follow watermark
        filt = _event_filter(conn, layout, kind_list, container, workload, pid, since_ns, until_ns)
        decoder = _Decoder(conn, shown, layout)
        proc = "proc" if layout >= 5 else "NULL"
        seen = 0
        if follow:
            seen = int(conn.execute("SELECT coalesce(max(seq), 0) FROM batches").fetchone()[0])
        if filt is not None:
            where, params = filt
            sql = f"SELECT data, {proc}, ck FROM events"
            if where:
                sql += " WHERE " + " AND ".join(where)
            newest_first = order == "desc" or (follow and limit is not None)
            direction = "DESC" if newest_first else "ASC"
            sql += f" ORDER BY time {direction}, id {direction}"
            if limit is not None:
                sql += f" LIMIT {int(limit)}"
            cur = conn.execute(sql, params)
            if follow and limit is not None:
                rows = [r for chunk in iter(lambda: cur.fetchmany(_CHUNK), []) for r in chunk]  # at most limit
                for data, pk, ck in reversed(rows):
                    yield decoder.event(data, pk, ck)
            else:
                while chunk := cur.fetchmany(_CHUNK):
                    for data, pk, ck in chunk:
                        yield decoder.event(data, pk, ck)
        conn.execute("COMMIT")
        if follow:
            yield from _follow(conn, shown, decoder, seen, poll_s, kind_list, container, workload, pid,
                               since_ns, until_ns)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read event store {shown}: {exc}") from None
    finally:
        conn.close()


def _follow(
    conn: sqlite3.Connection,
    shown: str,
    decoder: _Decoder,
    seen: int,
    poll_s: float,
    kinds: list[str] | None,
    container: str | None,
    workload: str | None,
    pid: int | None,
    since_ns: int | None,
    until_ns: int | None,
) -> Iterator[Event]:
    """The rows of every write transaction after batch ``seq`` ``seen``, as they commit."""
    while True:
        batches = conn.execute("SELECT seq, tmin, tmax FROM batches WHERE seq > ? AND committed IS NOT NULL"
                               " ORDER BY seq", (seen,)).fetchmany(_CHUNK)
        if not batches:
            time.sleep(poll_s)
            continue
        # Filters are worked out again: a new container or kind may have come with the batch.
        filt = _event_filter(conn, 5, kinds, container, workload, pid, since_ns, until_ns)
        for seq, tmin, tmax in batches:
            seen = seq
            if filt is None or tmin is None:
                continue
            where, params = filt
            sql = ("SELECT data, proc, ck FROM events WHERE time BETWEEN ? AND ? AND batch = ?"
                   + "".join(" AND " + w for w in where) + " ORDER BY time, id")
            cur = conn.execute(sql, [tmin, tmax, seq, *params])
            while chunk := cur.fetchmany(_CHUNK):
                for data, pk, ck in chunk:
                    yield decoder.event(data, pk, ck)


def query_events(
    path: str | os.PathLike[str],
    *,
    kinds: Iterable[str] | None = None,
    container: str | None = None,
    pid: int | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
    limit: int | None = None,
    order: str = "asc",
    workload: str | None = None,
) -> list[Event]:
    """The events :func:`iter_events` yields (same filters), as a list."""
    return list(iter_events(path, kinds=kinds, container=container, workload=workload, pid=pid,
                            since_ns=since_ns, until_ns=until_ns, limit=limit, order=order))


def severities_from(minimum: str) -> list[str]:
    """The severity names at or above ``minimum`` (StoreError for an unknown name)."""
    if minimum not in SEVERITY_ORDER:
        raise StoreError(f"unknown severity {minimum!r} (known: {', '.join(SEVERITY_ORDER)})")
    return [s for s, rank in SEVERITY_ORDER.items() if rank >= SEVERITY_ORDER[minimum]]


def iter_alerts(
    path: str | os.PathLike[str],
    *,
    rule: str | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
    severity: str | None = None,
    container: str | None = None,
    workload: str | None = None,
    limit: int | None = None,
    follow: bool = False,
    poll_s: float = FOLLOW_POLL_S,
) -> Iterator[Alert]:
    """Stream stored alerts, oldest first, as they are read (read-only).

    Filters combine with AND: ``rule``, ``since_ns`` (inclusive), ``until_ns`` (exclusive),
    ``severity`` (this severity or higher), ``container`` and ``workload`` (as for
    :func:`iter_events`, matched against the containers whose events the file holds).
    ``follow``: then keep yielding alerts as they are stored (a throttled alert whose count
    grew comes again, with its new count) until the caller stops iterating.
    """
    conn, shown = _connect_ro(path)
    try:
        layout = _layout(conn, shown)
        where: list[str] = []
        params: list[Any] = []
        if rule is not None:
            where.append("rule = ?")
            params.append(rule)
        if since_ns is not None:
            where.append("time >= ?")
            params.append(since_ns)
        if until_ns is not None:
            where.append("time < ?")
            params.append(until_ns)
        if severity is not None:
            names = severities_from(severity)
            where.append(f"severity IN ({','.join('?' * len(names))})")
            params.extend(names)
        match = _box_match(container, workload, layout)
        if match is not None:
            if workload is not None and layout < 5:
                boxes = _boxes(conn, container, workload, layout) or []
                ids = [r[0] for r in conn.execute(
                    f"SELECT DISTINCT id FROM containers WHERE ck IN ({','.join(map(str, boxes))})")]
                where.append(f"workload_id IN ({','.join('?' * len(ids))})")
                params.extend(ids)
            else:
                where.append(f"workload_id IN (SELECT id FROM containers WHERE {match[0]})")
                params.extend(match[1])
        cond = "".join(" AND " + w for w in where)
        conn.execute("BEGIN")
        try:
            top = int(conn.execute("SELECT coalesce(max(rowid), 0) FROM alerts").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return  # written by a version before alerts were stored
            raise
        sql = f"SELECT data FROM alerts WHERE rowid <= ?{cond} ORDER BY time, id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        cur = conn.execute(sql, [top, *params])
        while chunk := cur.fetchmany(_CHUNK):
            for (data,) in chunk:
                yield alert_from_json(data)
        conn.execute("COMMIT")
        while follow:
            rows = conn.execute(f"SELECT rowid, data FROM alerts WHERE rowid > ?{cond} ORDER BY rowid",
                                [top, *params]).fetchmany(_CHUNK)
            if not rows:
                top = max(top, int(conn.execute("SELECT coalesce(max(rowid), 0) FROM alerts").fetchone()[0]))
                time.sleep(poll_s)
                continue
            for rowid, data in rows:
                top = rowid
                yield alert_from_json(data)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read alerts from {shown}: {exc}") from None
    finally:
        conn.close()


def query_containers(path: str | os.PathLike[str]) -> list[Container]:
    """Every container the store holds events of, as its newest stored event describes it
    (pod, namespace, SPIFFE id, image, owner, ...), ordered by container id then name.

    One entry per stored (id, name) pair (layout 5 may keep several versions of one pair: the
    newest event's is taken). Reads one event per container key and kind through the
    ``(kind, ck, time)`` index (a ``max(time)`` lookup each), never a scan of the events.
    """
    conn, shown = _connect_ro(path)
    try:
        layout = _layout(conn, shown)
        decoder = _Decoder(conn, shown, layout)
        proc = "proc" if layout >= 5 else "NULL"
        boxes = conn.execute("SELECT ck, id, name FROM containers ORDER BY id, name").fetchall()
        codes = [int(r[0]) for r in conn.execute("SELECT code FROM kinds")]
        newest: dict[tuple[str, str | None], tuple[int, Container]] = {}
        for ck, cid, name in boxes:
            found: tuple[int, int] | None = None
            for code in codes:
                row = conn.execute("SELECT max(time) FROM events WHERE kind = ? AND ck = ?", (code, ck)).fetchone()
                if row is not None and row[0] is not None and (found is None or row[0] > found[0]):
                    found = (int(row[0]), code)
            if found is None:
                continue
            data, pk = conn.execute(f"SELECT data, {proc} FROM events WHERE kind = ? AND ck = ? AND time = ? LIMIT 1",
                                    (found[1], ck, found[0])).fetchone()
            try:
                event = decoder.event(data, pk, ck)
            except StoreError as exc:
                raise StoreError(f"{shown}: a stored event of container {cid}: {exc}") from None
            seen = newest.get((cid, name))
            if event.container is not None and (seen is None or found[0] > seen[0]):
                newest[(cid, name)] = (found[0], event.container)
        return [newest[k][1] for k in sorted(newest, key=lambda k: (k[0], k[1] or ""))]
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read event store {shown}: {exc}") from None
    finally:
        conn.close()


def query_alerts(path: str | os.PathLike[str], *, rule: str | None = None, since_ns: int | None = None,
                 limit: int | None = None, until_ns: int | None = None, severity: str | None = None,
                 container: str | None = None, workload: str | None = None) -> list[Alert]:
    """The alerts :func:`iter_alerts` yields (same filters), as a list."""
    return list(iter_alerts(path, rule=rule, since_ns=since_ns, until_ns=until_ns, severity=severity,
                            container=container, workload=workload, limit=limit))


def query_runs(path: str | os.PathLike[str]) -> list[RunRecord]:
    """All run records, oldest first (an open run whose owner is gone shows as crashed)."""
    conn, shown = _connect_ro(path)
    try:
        return read_runs(conn)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read event store {shown}: {exc}") from None
    finally:
        conn.close()


def mark_crashed_runs(path: str | os.PathLike[str]) -> list[str]:
    """Mark the runs of dead owners crashed in an existing store of the current layout; one
    line per run marked. A file that cannot be written now (read-only, locked, older layout)
    is left as it is: readers still show those runs as crashed."""
    try:
        conn, _shown = _connect_ro(path)
    except StoreError:
        return []
    conn.close()
    try:
        conn = sqlite3.connect(Path(path), isolation_level=None)
    except sqlite3.Error:
        return []
    try:
        conn.execute("PRAGMA busy_timeout = 2000")
        if read_version(conn, str(path)) != STORE_SCHEMA_VERSION:
            return []
        return recover_crashed(conn)
    except (sqlite3.Error, StoreError):
        return []
    finally:
        conn.close()
