"""Physical layout of the SQLite event store: schema versions, migrations, the grouped insert.

Used by :mod:`runwatch.store.sqlite` (the store itself); nothing here starts threads. Every
function that takes a connection expects the caller to hold a write transaction
(``BEGIN IMMEDIATE``) where it writes, and to own the connection (no sharing across threads).
"""

from __future__ import annotations

import sqlite3
from itertools import chain

import msgspec

from runwatch.events import KINDS, SCHEMA_VERSION, Event
from runwatch.store.runs import RUN_COLUMNS

#: Version of the on-disk layout (independent of the event schema version).
STORE_SCHEMA_VERSION = 4


# A row as the caller thread builds it: (id, time, kind, pid, container, tool_call_id, data).
# ``kind`` is the integer code from the ``kinds`` table, or the kind string when this store has
# not seen it yet; ``container`` is the integer key from ``containers``, an ``(id, name)`` pair
# not yet seen, or None. The writer replaces strings and pairs by codes inside its transaction.
Row = tuple[str, int, int | str, int, int | tuple[str, str | None] | None, str | None, bytes]

INSERT_EVENT = (
    "INSERT OR IGNORE INTO events (id, time, kind, pid, ck, tool_call_id, data) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# Rows per multi-row INSERT. One statement step per row costs ~1 us/event more than one step
# per 128 rows (per-step overhead in the sqlite3 module, and a GIL release/reacquire per step
# that wakes the caller thread). 128 rows x 7 columns stays far below SQLite's 32766 parameters.
GROUP_ROWS = 128
INSERT_GROUP = INSERT_EVENT.replace(
    "VALUES (?, ?, ?, ?, ?, ?, ?)", "VALUES " + ",".join(["(?,?,?,?,?,?,?)"] * GROUP_ROWS)
)

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
    """The key of container (id, name), assigned now if new (call inside a write transaction)."""
    row = conn.execute("SELECT ck FROM containers WHERE id = ? AND name IS ?", (cid, name)).fetchone()
    if row is not None:
        return int(row[0])
    cur = conn.execute("INSERT INTO containers (id, name) VALUES (?, ?)", (cid, name))
    assert cur.lastrowid is not None
    return cur.lastrowid


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
        out: list[Row] = []
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


INSERT_ALERT = (
    "INSERT OR REPLACE INTO alerts (id, time, rule, severity, workload_id, count, data) VALUES (?, ?, ?, ?, ?, ?, ?)"
)

#: ``_MIGRATIONS[v]`` upgrades a file at version ``v`` to ``v + 1``. Only ever append.
_MIGRATIONS = (_migrate_0_to_1, _migrate_1_to_2, _migrate_2_to_3, _migrate_3_to_4)
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


def insert_events(conn: sqlite3.Connection, rows: list[Row]) -> int:
    """Insert ``rows`` (duplicate ids are skipped); returns how many were new."""
    whole = len(rows) - len(rows) % GROUP_ROWS
    flat = chain.from_iterable
    inserted = 0
    for i in range(0, whole, GROUP_ROWS):
        inserted += conn.execute(INSERT_GROUP, list(flat(rows[i : i + GROUP_ROWS]))).rowcount
    if whole < len(rows):
        inserted += conn.executemany(INSERT_EVENT, rows[whole:]).rowcount
    return inserted
