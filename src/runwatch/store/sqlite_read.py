"""The read side of the SQLite event store: events, alerts and runs, read-only.

Every function opens the file read-only (``file:...?mode=ro``) and may run in any thread or
process while a writer is active (WAL). :func:`mark_crashed_runs` is the one exception: it
opens the file for writing just long enough to mark runs whose owner died (see
:mod:`runwatch.store.runs`).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec

from runwatch.alerts.model import Alert
from runwatch.alerts.render import from_json as alert_from_json
from runwatch.events import UPGRADE_BELOW, Container, Event, upgrade
from runwatch.store.runs import RunRecord, read_runs, recover_crashed
from runwatch.store.sqlite_layout import (
    STORE_SCHEMA_VERSION,
    StoreError,
    check_not_newer,
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
        if version < STORE_SCHEMA_VERSION:
            raise StoreError(
                f"{shown}: store schema version {version} is older than {STORE_SCHEMA_VERSION}; "
                "open it once for writing (e.g. runwatch run --db) to migrate"
            )
    except BaseException:
        conn.close()
        raise
    return conn, shown


_DECODE_ALL = msgspec.msgpack.Decoder(list[Event]).decode
_DECODE_ONE = msgspec.msgpack.Decoder(Event).decode


def _msgpack_array_header(n: int) -> bytes:
    """The msgpack header of an array of ``n`` items (the items follow, concatenated)."""
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


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
) -> list[Event]:
    """Read events from a store file (read-only; safe while a writer is active).

    Filters combine with AND: ``kinds`` (exact kind strings), ``container`` (exact container
    name, exact id, or an id prefix of at least 4 characters), ``pid``, ``since_ns`` (inclusive)
    and ``until_ns`` (exclusive). Results are ordered by (time, id), ``"asc"`` or ``"desc"``;
    ``limit`` applies after ordering (so ``order="desc", limit=n`` gives the newest n).
    """
    if order not in ("asc", "desc"):
        raise StoreError(f"order must be 'asc' or 'desc', not {order!r}")
    if limit is not None and limit < 0:
        raise StoreError(f"limit must be >= 0, not {limit}")
    kind_list = None if kinds is None else list(kinds)
    if kind_list == []:
        return []
    conn, shown = _connect_ro(path)
    try:
        rows = _select(conn, kind_list, container, pid, since_ns, until_ns, limit, order)
        stale = read_event_schema(conn) < UPGRADE_BELOW
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read event store {shown}: {exc}") from None
    except StoreError as exc:
        raise StoreError(f"{shown}: {exc}") from None
    finally:
        conn.close()
    if not rows:
        return []
    try:
        events: list[Event] = _DECODE_ALL(_msgpack_array_header(len(rows)) + b"".join(r[0] for r in rows))
        return [upgrade(e) for e in events] if stale else events
    except msgspec.DecodeError:
        pass
    # Slow path only to name the bad row precisely.
    out: list[Event] = []
    for n, (data,) in enumerate(rows):
        try:
            event = _DECODE_ONE(data)
            out.append(upgrade(event) if stale else event)
        except msgspec.DecodeError as exc:
            raise StoreError(f"{shown}: stored event #{n} does not decode: {exc}") from None
    return out


def _select(
    conn: sqlite3.Connection,
    kinds: list[str] | None,
    container: str | None,
    pid: int | None,
    since_ns: int | None,
    until_ns: int | None,
    limit: int | None,
    order: str,
) -> list[tuple[bytes]]:
    """The ``data`` of the matching rows, in order (see query_events for the filters)."""
    where: list[str] = []
    params: list[Any] = []
    if kinds is not None or container is not None:
        # Both filters go through the (kind, ck, time) index, so a kind constraint is always
        # given: the requested codes, or every code when only the container is filtered.
        if kinds is None:
            codes = [r[0] for r in conn.execute("SELECT code FROM kinds")]
        else:
            marks = ",".join("?" * len(kinds))
            codes = [r[0] for r in conn.execute(f"SELECT code FROM kinds WHERE name IN ({marks})", kinds)]
        if not codes:
            return []  # no event of these kinds was ever stored
        where.append(f"kind IN ({','.join(str(int(c)) for c in codes)})")
    if container is not None:
        boxes = "SELECT ck FROM containers WHERE name = ? OR id = ?"
        params.extend([container, container])
        if len(container) >= 4:
            boxes += " OR substr(id, 1, ?) = ?"
            params.extend([len(container), container])
        where.append(f"ck IN ({boxes})")
    if pid is not None:
        where.append("pid = ?")
        params.append(pid)
    if since_ns is not None:
        where.append("time >= ?")
        params.append(since_ns)
    if until_ns is not None:
        where.append("time < ?")
        params.append(until_ns)
    sql = "SELECT data FROM events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    direction = "ASC" if order == "asc" else "DESC"
    sql += f" ORDER BY time {direction}, id {direction}"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    rows: list[tuple[bytes]] = conn.execute(sql, params).fetchall()
    return rows


def query_containers(path: str | os.PathLike[str]) -> list[Container]:
    """Every container the store holds events of, as its newest stored event describes it
    (pod, namespace, SPIFFE id, image, owner, ...), ordered by container id then name.

    One row per stored (id, name) pair. Reads one event per pair and kind through the
    ``(kind, ck, time)`` index (a ``max(time)`` lookup each), never a scan of the events.
    """
    conn, shown = _connect_ro(path)
    try:
        boxes = conn.execute("SELECT ck, id, name FROM containers ORDER BY id, name").fetchall()
        codes = [int(r[0]) for r in conn.execute("SELECT code FROM kinds")]
        stale = read_event_schema(conn) < UPGRADE_BELOW
        out: list[Container] = []
        for ck, _cid, _name in boxes:
            newest: tuple[int, int] | None = None
            for code in codes:
                row = conn.execute("SELECT max(time) FROM events WHERE kind = ? AND ck = ?", (code, ck)).fetchone()
                if row is not None and row[0] is not None and (newest is None or row[0] > newest[0]):
                    newest = (int(row[0]), code)
            if newest is None:
                continue
            data = conn.execute("SELECT data FROM events WHERE kind = ? AND ck = ? AND time = ? LIMIT 1",
                                (newest[1], ck, newest[0])).fetchone()
            try:
                event = _DECODE_ONE(data[0])
            except msgspec.DecodeError as exc:
                raise StoreError(f"{shown}: a stored event of container {_cid} does not decode: {exc}") from None
            event = upgrade(event) if stale else event
            if event.container is not None:
                out.append(event.container)
        return out
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read event store {shown}: {exc}") from None
    finally:
        conn.close()


def query_alerts(path: str | os.PathLike[str], *, rule: str | None = None, since_ns: int | None = None,
                 limit: int | None = None, until_ns: int | None = None) -> list[Alert]:
    """Stored alerts, oldest first (optionally one rule's, from ``since_ns`` inclusive to
    ``until_ns`` exclusive)."""
    conn, shown = _connect_ro(path)
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
    sql = "SELECT data FROM alerts" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY time, id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    try:
        rows = conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []  # written by a version before alerts were stored
        raise StoreError(f"cannot read alerts from {shown}: {exc}") from None
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read alerts from {shown}: {exc}") from None
    finally:
        conn.close()
    return [alert_from_json(r[0]) for r in rows]


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
