"""Physical layout of the SQLite event store: schema versions, migrations, the grouped insert.

Used by :mod:`runwatch.store.sqlite` (the store itself); nothing here starts threads. Every
function that takes a connection expects the caller to hold a write transaction
(``BEGIN IMMEDIATE``) where it writes, and to own the connection (no sharing across threads).
"""

from __future__ import annotations

import sqlite3
import time
from itertools import chain
from typing import Any

import msgspec

from runwatch.events import KINDS, SCHEMA_VERSION, Event
from runwatch.store.runs import RUN_COLUMNS

#: Version of the on-disk layout (independent of the event schema version).
STORE_SCHEMA_VERSION = 5

#: The oldest layout readers read without migrating it (layout 4: no processes table, so every
#: event row holds its whole process context; see :mod:`runwatch.store.sqlite_read`).
OLDEST_READABLE = 4


#: A container in the ``containers`` table: (id, name, pod, namespace, spiffe_id, data), data
#: being the msgpack of the whole Container (labels, image, ...), which layout 5 stores there
#: once instead of in every event.
BoxKey = tuple[str, str | None, str | None, str | None, str | None, bytes]

#: A process context's identity: (pid, proc_start, exe, cmdline, argv, ancestry, pcmdline).
ProcKey = tuple[int, int | None, str, str, tuple[str, ...] | None, tuple[str, ...], str | None]

#: A process context not yet in ``procs``: its key and its stored form (see PROC_FIELDS).
NewProc = tuple[ProcKey, bytes]

# A row as the caller thread builds it: (id, time, kind, pid, container, tool_call_id, data,
# proc). ``kind`` is the integer code from the ``kinds`` table, or the kind string when this
# store has not seen it yet; ``container`` is the integer key from ``containers``, a BoxKey not
# yet seen, or None; ``proc`` is the integer key from ``procs``, a NewProc, or None (the event
# has no process context). The writer replaces strings, BoxKeys and NewProcs by codes inside
# its transaction. ``data`` is the event without its process context when ``proc`` is set.
Row = tuple[str, int, int | str, int, int | BoxKey | None, str | None, bytes, int | NewProc | None]

#: The event fields kept once per process context in ``procs`` (layout 5), in stored order.
PROC_FIELDS = ("exe", "cmdline", "argv", "ancestry", "pcmdline")



def process_context(e: Event) -> ProcKey | None:
    """The key of ``e``'s process context (PROC_FIELDS with pid and proc_start), or None when
    it has none."""
    argv = e.argv
    if e.exe or e.cmdline or argv is not None or e.ancestry or e.pcmdline is not None:
        return (e.pid, e.proc_start, e.exe, e.cmdline, None if argv is None else tuple(argv), tuple(e.ancestry),
                e.pcmdline)
    return None


_NO_CONTEXT: dict[str, Any] = {"exe": "", "cmdline": "", "argv": None, "ancestry": [], "pcmdline": None}
_NO_BOX: dict[str, Any] = {"container": None}
_NEITHER = {**_NO_CONTEXT, **_NO_BOX}


def stripped(e: Event, context: bool, box: bool) -> Event:
    """A copy of ``e`` without its process context (``context``) and container (``box``), or
    ``e`` itself when neither goes."""
    if context:
        return msgspec.structs.replace(e, **(_NEITHER if box else _NO_CONTEXT))
    return msgspec.structs.replace(e, **_NO_BOX) if box else e


def without_context(e: Event) -> Event:
    """``e`` as its row's data holds it in layout 5: without the process context (stored once
    per process in ``procs``) and the container (stored once in ``containers``)."""
    return stripped(e, process_context(e) is not None, e.container is not None)


def stored_size(e: Event) -> int:
    """The bytes ``e`` takes in a writer's queue item (or its spool): the row's data and, for a
    process context or container the store has not seen yet, that too."""
    key = process_context(e)
    size = len(_ENCODE(without_context(e)))
    if key is not None:
        size += len(_ENCODE(key[2:]))
    if e.container is not None:
        size += len(_ENCODE(e.container))
    return size


_ENCODE = msgspec.msgpack.Encoder().encode

# Every row of a transaction carries its batch number (``batches.seq``), written into the
# statement as a literal so the rows the caller built need no extra column.
_COLUMNS = "(id, time, kind, pid, ck, tool_call_id, data, proc, batch)"
_ONE_ROW = "(?,?,?,?,?,?,?,?,{batch})"
# Rows per multi-row INSERT. One statement step per row costs ~1 us/event more than one step
# per 128 rows (per-step overhead in the sqlite3 module, and a GIL release/reacquire per step
# that wakes the caller thread). 128 rows x 8 columns stays far below SQLite's 32766 parameters.
GROUP_ROWS = 128
_INSERT_ONE = f"INSERT OR IGNORE INTO events {_COLUMNS} VALUES {_ONE_ROW}"
_INSERT_GROUP = f"INSERT OR IGNORE INTO events {_COLUMNS} VALUES " + ",".join([_ONE_ROW] * GROUP_ROWS)

# Layout 2, chosen by measurement (CPU time per event on one core of the 2-core dev VM, SQLite
# 3.40, realistic mixed events of ~430 bytes; insert cost alone, then end to end with the writer
# thread in bench/store_throughput.py):
#   layout 1: (time,id) table + unique id + (kind,time) + (container_id,time) indexes, text
#             columns, JSON, 4 KiB pages, one statement step per row: ~11 us/event end to end
#   layout 2: (time,id) table + unique id + one (kind,ck,time) index, integer kind and container
#             codes, msgpack, 16 KiB pages, 128-row statements: ~5 us/event end to end
# What each change bought (inserts only): one statement step per 128 rows instead of per row
# -1 us; dropping a secondary index -0.6..1 us (width hardly matters, so kind and container
# share one composite index); 16 KiB pages -0.3..1 us; msgpack is 20% smaller than JSON and a
# little faster to encode. Tried and not kept: a partial unique index (only for ids that do not
# start with their own time) instead of the full one, blobs stored per batch instead of per
# row, larger wal_autocheckpoint, mmap, bigger or smaller page cache: no gain beyond noise.
# A kind filter is a prefix range of the composite index; a container-only filter becomes
# ``kind IN (all codes) AND ck IN (...)`` (one range per kind, a few dozen at most).
# Uniqueness of ``id`` needs its own index (ids from other sources need not be time-sortable, so
# the (time, id) key alone would not make ids unique). INSERT OR IGNORE is the cheapest
# duplicate check: a separate lookup per row would cost another B-tree descent.
EVENTS_V2 = (
    "CREATE TABLE {name} ("
    " time INTEGER NOT NULL,"  # ns since the epoch
    " id TEXT NOT NULL,"
    " kind INTEGER NOT NULL,"  # kinds.code
    " pid INTEGER NOT NULL,"
    " ck INTEGER,"  # containers.ck; NULL on the host
    " tool_call_id TEXT,"
    " data BLOB NOT NULL,"  # msgpack of the full Event (msgspec)
    " PRIMARY KEY (time, id)) WITHOUT ROWID"
)
EVENTS_V2_INDEXES = (
    "CREATE UNIQUE INDEX events_id ON events(id)",
    "CREATE INDEX events_kind_ck ON events(kind, ck, time)",
)


class StoreError(Exception):
    """Any store failure, with a one-line message naming the file."""


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS events ("
        " id TEXT NOT NULL, time INTEGER NOT NULL, kind TEXT NOT NULL, pid INTEGER NOT NULL,"
        " container_id TEXT, container_name TEXT, tool_call_id TEXT, data BLOB NOT NULL,"  # data: JSON
        " PRIMARY KEY (time, id)) WITHOUT ROWID"
    )
    conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS events_id ON events(id)")
    conn.execute("CREATE INDEX IF NOT EXISTS events_kind ON events(kind, time)")
    conn.execute(
        "CREATE INDEX IF NOT EXISTS events_container ON events(container_id, time) WHERE container_id IS NOT NULL"
    )
    conn.execute(
        "CREATE TABLE IF NOT EXISTS runs ("
        " id TEXT PRIMARY KEY, started INTEGER NOT NULL, ended INTEGER, command TEXT NOT NULL,"
        " exit_code INTEGER, stats TEXT NOT NULL)"  # stats: JSON object
    )


def kind_code(conn: sqlite3.Connection, name: str) -> int:
    """The code of kind ``name``, assigned now if new (call inside a write transaction)."""
    conn.execute("INSERT OR IGNORE INTO kinds (name) VALUES (?)", (name,))
    code: int = conn.execute("SELECT code FROM kinds WHERE name = ?", (name,)).fetchone()[0]
    return code


def container_key(conn: sqlite3.Connection, cid: str, name: str | None) -> int:
    """The key of container (id, name) in a layout-2 to -4 table (the migration to layout 2)."""
    row = conn.execute("SELECT ck FROM containers WHERE id = ? AND name IS ?", (cid, name)).fetchone()
    if row is not None:
        return int(row[0])
    cur = conn.execute("INSERT INTO containers (id, name) VALUES (?, ?)", (cid, name))
    assert cur.lastrowid is not None
    return cur.lastrowid


def box_key(conn: sqlite3.Connection, box: BoxKey) -> int:
    """The key of container ``box`` (layout 5), assigned now if new (call inside a write
    transaction). A container whose facts changed (its pod or labels became known) gets a
    second key."""
    row = conn.execute("SELECT ck FROM containers WHERE id = ? AND data = ?", (box[0], box[5])).fetchone()
    if row is not None:
        return int(row[0])
    cur = conn.execute("INSERT INTO containers (id, name, pod, namespace, spiffe_id, data) VALUES (?, ?, ?, ?, ?, ?)",
                       box)
    assert cur.lastrowid is not None
    return cur.lastrowid


def proc_key(conn: sqlite3.Connection, proc: NewProc, t: int) -> int:
    """The key of process context ``proc`` (seen at event time ``t``), assigned now if new
    (call inside a write transaction)."""
    (pid, start, *_), data = proc
    row = conn.execute("SELECT pk FROM procs WHERE pid = ? AND start IS ? AND data = ?", (pid, start, data)).fetchone()
    if row is not None:
        return int(row[0])
    cur = conn.execute("INSERT INTO procs (pid, start, last, data) VALUES (?, ?, ?, ?)", (pid, start, t, data))
    assert cur.lastrowid is not None
    return cur.lastrowid


def begin_batch(conn: sqlite3.Connection) -> int:
    """A new ``batches`` row for the open write transaction; returns its seq."""
    cur = conn.execute("INSERT INTO batches (rows) VALUES (0)")
    assert cur.lastrowid is not None
    return cur.lastrowid


def end_batch(conn: sqlite3.Connection, seq: int, tmin: int, tmax: int, rows: int,
              procs: dict[int, int]) -> list[int]:
    """Record batch ``seq``'s time span and row count, and the newest time each process context
    was used (``procs``: pk -> time), before its transaction commits. Returns the keys of the
    contexts that are no longer there (pruned meanwhile by another process; the writer puts
    them back under the same key, which AUTOINCREMENT never hands to another context)."""
    conn.execute("UPDATE batches SET tmin = ?, tmax = ?, rows = ?, committed = ? WHERE seq = ?",
                 (tmin, tmax, rows, time.time_ns(), seq))
    if not procs:
        return []
    updated = conn.executemany("UPDATE procs SET last = max(last, ?) WHERE pk = ?",
                               [(t, pk) for pk, t in procs.items()]).rowcount
    if updated == len(procs):
        return []
    marks = ",".join(str(int(pk)) for pk in procs)
    have = {int(r[0]) for r in conn.execute(f"SELECT pk FROM procs WHERE pk IN ({marks})")}
    return [pk for pk in procs if pk not in have]


def restore_proc(conn: sqlite3.Connection, pk: int, key: ProcKey, t: int) -> None:
    """Put process context ``key`` back under its old key ``pk`` (see end_batch)."""
    conn.execute("INSERT INTO procs (pk, pid, start, last, data) VALUES (?, ?, ?, ?, ?)",
                 (pk, key[0], key[1], t, _ENCODE(key[2:])))


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    # kinds and containers: small side tables so the event rows and index hold small integers.
    conn.execute("CREATE TABLE kinds (code INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
    conn.execute("CREATE TABLE containers (ck INTEGER PRIMARY KEY, id TEXT NOT NULL, name TEXT)")
    conn.execute("CREATE INDEX containers_id ON containers(id, name)")
    conn.executemany("INSERT INTO kinds (name) VALUES (?)", [(k,) for k in KINDS])
    conn.execute(EVENTS_V2.format(name="events_v2"))
    kinds: dict[str, int] = {}
    boxes: dict[tuple[str, str | None], int] = {}
    dec = msgspec.json.Decoder(Event)
    enc = msgspec.msgpack.Encoder()
    cur = conn.execute(
        "SELECT id, time, kind, pid, container_id, container_name, tool_call_id, data FROM events ORDER BY time, id"
    )
    while chunk := cur.fetchmany(10_000):
        out: list[tuple[Any, ...]] = []  # a layout-2 row
        for eid, t, kind, pid, cid, cname, tcid, data in chunk:
            try:
                blob = enc.encode(dec.decode(data))
            except msgspec.DecodeError as exc:
                raise StoreError(f"cannot migrate event {eid}: stored JSON does not decode: {exc}") from None
            code = kinds.get(kind)
            if code is None:
                code = kinds[kind] = kind_code(conn, kind)
            ck = None
            if cid is not None:
                ck = boxes.get((cid, cname))
                if ck is None:
                    ck = boxes[(cid, cname)] = container_key(conn, cid, cname)
            out.append((eid, t, code, pid, ck, tcid, blob))
        conn.executemany(
            "INSERT INTO events_v2 (id, time, kind, pid, ck, tool_call_id, data) VALUES (?, ?, ?, ?, ?, ?, ?)", out
        )
    conn.execute("DROP TABLE events")  # drops its v1 indexes too
    conn.execute("ALTER TABLE events_v2 RENAME TO events")
    for ddl in EVENTS_V2_INDEXES:  # built after the copy: one sort instead of random inserts
        conn.execute(ddl)


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    # alerts: one row per emitted alert (a throttle summary replaces nothing: it has its own id).
    conn.execute(
        "CREATE TABLE alerts (id TEXT PRIMARY KEY, time INTEGER NOT NULL, rule TEXT NOT NULL, "
        "severity TEXT NOT NULL, workload_id TEXT, count INTEGER NOT NULL, data BLOB NOT NULL)"
    )
    conn.execute("CREATE INDEX alerts_time ON alerts(time)")
    conn.execute("CREATE INDEX alerts_rule ON alerts(rule, time)")


def _migrate_3_to_4(conn: sqlite3.Connection) -> None:
    # runs: the owner (pid, start time, boot id), what it committed, and whether it crashed
    # (runwatch.store.runs); add-only, so a version-3 reader's columns are all still there.
    have = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    for column in RUN_COLUMNS:
        if column.split()[0] not in have:
            conn.execute(f"ALTER TABLE runs ADD COLUMN {column}")


# Layout 5: the process context (PROC_FIELDS) stored once per process and exec, not per event
# (it was 56% of the stored bytes: every file open or connect carried its argv, cmdline and
# ancestry), and likewise the whole container (labels, image, SPIFFE id, ...) once per
# container in ``containers``, with its workload names (pod, namespace, SPIFFE id) as columns
# so a workload filter is a lookup in that small table; one ``batches`` row per write transaction (its time span)
# so ``--follow`` reads exactly the rows each new transaction added; and an alerts index by
# container for the report's queries. Rows of layout 4 keep ``proc`` NULL: their ``data``
# still holds the whole event, and readers take it as it is.
PROCS_DDL = (
    "CREATE TABLE IF NOT EXISTS procs (pk INTEGER PRIMARY KEY AUTOINCREMENT,"  # never reused (see end_batch)
    " pid INTEGER NOT NULL, start INTEGER,"
    " last INTEGER NOT NULL,"  # the newest event time that refers to it (retention prunes by it)
    " data BLOB NOT NULL)"  # msgpack array of PROC_FIELDS
)
BATCHES_DDL = (
    "CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY, tmin INTEGER, tmax INTEGER,"
    " rows INTEGER NOT NULL DEFAULT 0, committed INTEGER)"  # committed: ns since the epoch
)


def _migrate_4_to_5(conn: sqlite3.Connection) -> None:
    # Add-only and idempotent: a layout-4 reader's columns are all still there.
    conn.execute(PROCS_DDL)
    conn.execute("CREATE INDEX IF NOT EXISTS procs_pid ON procs(pid, start)")
    conn.execute("CREATE INDEX IF NOT EXISTS procs_last ON procs(last)")
    conn.execute(BATCHES_DDL)
    conn.execute("CREATE INDEX IF NOT EXISTS batches_tmax ON batches(tmax)")
    _add_columns(conn, "events", ("proc INTEGER", "batch INTEGER"))  # procs.pk (NULL: data holds it all), batches.seq
    # data: msgpack of the whole Container; NULL for containers of layout-4 rows (theirs is in the row)
    _add_columns(conn, "containers", ("pod TEXT", "namespace TEXT", "spiffe_id TEXT", "data BLOB"))
    conn.execute("CREATE INDEX IF NOT EXISTS containers_pod ON containers(pod)")
    conn.execute("CREATE INDEX IF NOT EXISTS alerts_workload ON alerts(workload_id, time)")
    for ck, facts in container_facts(conn).items():
        conn.execute("UPDATE containers SET pod = ?, namespace = ?, spiffe_id = ?, data = ? WHERE ck = ?", (*facts, ck))


def _add_columns(conn: sqlite3.Connection, table: str, columns: tuple[str, ...]) -> None:
    have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    for column in columns:
        if column.split()[0] not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")


_DECODE_EVENT = msgspec.msgpack.Decoder(Event)


def container_facts(conn: sqlite3.Connection) -> dict[int, tuple[str | None, str | None, str | None, bytes]]:
    """(pod, namespace, spiffe_id, container data) per container key of a layout-4 file, from
    one stored event of each (layout 4 kept only id and name in ``containers``)."""
    codes = ",".join(str(int(r[0])) for r in conn.execute("SELECT code FROM kinds"))
    out: dict[int, tuple[str | None, str | None, str | None, bytes]] = {}
    for ck in [r[0] for r in conn.execute("SELECT ck FROM containers")]:
        row = conn.execute(f"SELECT data FROM events WHERE kind IN ({codes}) AND ck = ? LIMIT 1", (ck,)).fetchone()
        if row is None:
            continue
        try:
            box = _DECODE_EVENT.decode(row[0]).container
        except msgspec.DecodeError:
            continue
        if box is not None:
            out[int(ck)] = (box.pod, box.namespace, box.spiffe_id, _ENCODE(box))
    return out


INSERT_ALERT = (
    "INSERT OR REPLACE INTO alerts (id, time, rule, severity, workload_id, count, data) VALUES (?, ?, ?, ?, ?, ?, ?)"
)

#: ``_MIGRATIONS[v]`` upgrades a file at version ``v`` to ``v + 1``. Only ever append.
_MIGRATIONS = (_migrate_0_to_1, _migrate_1_to_2, _migrate_2_to_3, _migrate_3_to_4, _migrate_4_to_5)
assert len(_MIGRATIONS) == STORE_SCHEMA_VERSION


def read_version(conn: sqlite3.Connection, path: str) -> int:
    """The file's schema version; 0 for a file runwatch never initialised."""
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if not has_meta:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        return 0
    try:
        return int(row[0])
    except (TypeError, ValueError):
        raise StoreError(f"{path}: corrupt schema_version {row[0]!r} in meta table") from None


def note_event_schema(conn: sqlite3.Connection) -> None:
    """Record ``meta.event_schema``: the oldest event schema (``events.SCHEMA_VERSION``) the
    file's events may be written in. Set once: a file that already holds events from before
    the key existed holds schema 1; a fresh file holds this runwatch's schema. A newer writer
    never raises it, since the older events stay in the file.
    """
    if conn.execute("SELECT 1 FROM meta WHERE key = 'event_schema'").fetchone() is not None:
        return
    old = conn.execute("SELECT 1 FROM events LIMIT 1").fetchone() is not None
    conn.execute("INSERT INTO meta (key, value) VALUES ('event_schema', ?)", (str(1 if old else SCHEMA_VERSION),))


def read_event_schema(conn: sqlite3.Connection) -> int:
    """The oldest event schema the file may hold (1 when it predates the ``event_schema`` key).

    Readers upgrade each event (``events.upgrade``) when this is below ``SCHEMA_VERSION``; a
    higher value is readable as is, since the event schema only ever gains fields.
    """
    row = conn.execute("SELECT value FROM meta WHERE key = 'event_schema'").fetchone()
    try:
        return int(row[0]) if row is not None else 1
    except (TypeError, ValueError):
        raise StoreError(f"corrupt event_schema {row[0]!r} in meta table") from None


def check_not_newer(version: int, path: str) -> None:
    if version > STORE_SCHEMA_VERSION:
        raise StoreError(
            f"{path}: store schema version {version} is newer than this runwatch supports "
            f"({STORE_SCHEMA_VERSION}); upgrade runwatch to read it"
        )


def ensure_schema(conn: sqlite3.Connection, path: str) -> None:
    """Create or migrate the schema inside one immediate transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = read_version(conn, path)
        check_not_newer(version, path)
        if version < STORE_SCHEMA_VERSION:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            for step in _MIGRATIONS[version:]:
                step(conn)
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(STORE_SCHEMA_VERSION),),
            )
        note_event_schema(conn)
        # Kinds added to the schema since the file was created get their codes now, so the
        # writer's fast path knows every standard kind.
        conn.executemany("INSERT OR IGNORE INTO kinds (name) VALUES (?)", [(k,) for k in KINDS])
        conn.execute("COMMIT")
    except StoreError as exc:
        conn.execute("ROLLBACK")
        raise StoreError(f"{path}: {exc}") from None
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def insert_events(conn: sqlite3.Connection, rows: list[Row], batch: int) -> int:
    """Insert ``rows`` (every code resolved; duplicate ids are skipped) as part of batch
    ``batch``; returns how many were new."""
    whole = len(rows) - len(rows) % GROUP_ROWS
    flat = chain.from_iterable
    inserted = 0
    if whole:
        group = _INSERT_GROUP.format(batch=int(batch))
        for i in range(0, whole, GROUP_ROWS):
            inserted += conn.execute(group, list(flat(rows[i : i + GROUP_ROWS]))).rowcount
    if whole < len(rows):
        inserted += conn.executemany(_INSERT_ONE.format(batch=int(batch)), rows[whole:]).rowcount
    return inserted
