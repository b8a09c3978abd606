"""The embedded default event store: one SQLite file, one writer thread.

Write side (:class:`SqliteStore`):

* Callers never touch the write connection. :meth:`SqliteStore.write` encodes the events in
  the caller's thread (so a bad event is reported to the caller at once and the stored copy is
  a snapshot) and puts the rows on a bounded queue; a single writer thread drains the queue
  and inserts everything it finds in one ``BEGIN IMMEDIATE`` transaction (``executemany``).
* Backpressure, not loss: when the queue is full, ``write()`` blocks until the writer has
  caught up (normally milliseconds). Nothing is ever dropped by the store. If the writer has
  failed, ``write()`` raises :class:`StoreError` instead of blocking forever.
* The journal is WAL with ``synchronous=NORMAL``: readers never block the writer and a
  committed batch survives a process crash (the last batches may be lost on power loss).
* Ordering: batches are committed in the order they were enqueued.

Read side: :func:`query_events` and :func:`query_runs` open the file read-only
(``file:...?mode=ro``) and may run in any thread or process while the writer is active.

Schema: a ``meta`` table holds ``schema_version``. A file written by a newer runwatch is
refused with a one-line error; an older one is migrated in place when opened for writing.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec

from runwatch.events import Event

#: Version of the on-disk layout (independent of the event schema version).
STORE_SCHEMA_VERSION = 1

_QUEUE_MAX_ITEMS = 1024  # queue items (batches); see write() for the blocking contract
_TXN_MAX_ROWS = 50_000  # rows coalesced into one transaction at most
_BUSY_TIMEOUT_MS = 10_000

_Row = tuple[str, int, str, int, str | None, str | None, str | None, bytes]

_INSERT_EVENT = (
    "INSERT OR IGNORE INTO events "
    "(id, time, kind, pid, container_id, container_name, tool_call_id, data) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_RUN = (
    "INSERT OR REPLACE INTO runs (id, started, ended, command, exit_code, stats) VALUES (?, ?, ?, ?, ?, ?)"
)


class StoreError(Exception):
    """Any store failure, with a one-line message naming the file."""


class RunRecord(msgspec.Struct, frozen=True):
    """One ``runwatch run``/``watch`` session: times in ns since the epoch, stats as recorded."""

    id: str
    started: int
    ended: int | None
    command: str
    exit_code: int | None
    stats: dict[str, Any]


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    # Clustered by (time, id): events arrive roughly in time order, so inserts append at the
    # right edge and time-range scans need no separate index. ``id`` stays unique via its index.
    conn.execute(
        "CREATE TABLE IF NOT EXISTS events ("
        " id TEXT NOT NULL,"
        " time INTEGER NOT NULL,"  # ns since the epoch
        " kind TEXT NOT NULL,"
        " pid INTEGER NOT NULL,"
        " container_id TEXT,"
        " container_name TEXT,"
        " tool_call_id TEXT,"
        " data BLOB NOT NULL,"  # msgspec JSON of the full Event
        " PRIMARY KEY (time, id)) WITHOUT ROWID"
    )
    conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS events_id ON events(id)")
    conn.execute("CREATE INDEX IF NOT EXISTS events_kind ON events(kind, time)")
    conn.execute(
        "CREATE INDEX IF NOT EXISTS events_container ON events(container_id, time)"
        " WHERE container_id IS NOT NULL"
    )
    conn.execute(
        "CREATE TABLE IF NOT EXISTS runs ("
        " id TEXT PRIMARY KEY,"
        " started INTEGER NOT NULL,"
        " ended INTEGER,"
        " command TEXT NOT NULL,"
        " exit_code INTEGER,"
        " stats TEXT NOT NULL)"  # JSON object
    )


#: ``_MIGRATIONS[v]`` upgrades a file at version ``v`` to ``v + 1``. Only ever append.
_MIGRATIONS = (_migrate_0_to_1,)
assert len(_MIGRATIONS) == STORE_SCHEMA_VERSION


def _read_version(conn: sqlite3.Connection, path: str) -> int:
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


def _check_not_newer(version: int, path: str) -> None:
    if version > STORE_SCHEMA_VERSION:
        raise StoreError(
            f"{path}: store schema version {version} is newer than this runwatch supports "
            f"({STORE_SCHEMA_VERSION}); upgrade runwatch to read it"
        )


def _ensure_schema(conn: sqlite3.Connection, path: str) -> None:
    """Create or migrate the schema inside one immediate transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _read_version(conn, path)
        _check_not_newer(version, path)
        if version < STORE_SCHEMA_VERSION:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            for step in _MIGRATIONS[version:]:
                step(conn)
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(STORE_SCHEMA_VERSION),),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class _Flush:
    """Queue marker: set once everything enqueued before it is committed (or failed)."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class _Stop:
    """Queue marker: the writer commits what it has and exits."""


_STOP = _Stop()
_QueueItem = list[_Row] | tuple[Any, ...] | _Flush | _Stop


class SqliteStore:
    """The embedded event store. See the module docstring for the threading contract.

    Public methods are safe to call from any thread. ``close()`` is idempotent and safe in
    ``finally`` blocks. ``stats()`` is a point-in-time snapshot of monotonically growing
    counters (plus the current queue depth).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open event store {self.path}: {exc}") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: cannot enable WAL journal (got {mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            _ensure_schema(conn, self.path)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot open event store {self.path}: {exc}") from None
        except BaseException:
            conn.close()
            raise
        # From here on only the writer thread uses ``conn``.
        self._conn: sqlite3.Connection | None = conn
        self._queue: queue.Queue[_QueueItem] = queue.Queue(maxsize=_QUEUE_MAX_ITEMS)
        self._encoder = msgspec.json.Encoder()
        self._lock = threading.Lock()  # guards _closed and the encoder
        self._closed = False
        self._error: str | None = None  # set by the writer on a fatal database error
        self._written = 0
        self._duplicates = 0
        self._transactions = 0
        self._runs = 0
        self._lost = 0
        self._thread = threading.Thread(target=self._run, name=f"runwatch-store:{self.path}", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- write side

    def write(self, events: Sequence[Event]) -> None:
        """Enqueue events for insertion; returns once they are queued, not committed.

        Blocks while the queue is full (backpressure; nothing is dropped). Raises
        :class:`StoreError` if the store is closed or its writer failed, or after enqueuing
        every valid event if some events could not be encoded (the message names the first).
        """
        if not events:
            return
        rows, bad = self._encode(events)
        if rows:
            self._put(rows)
        if bad:
            raise StoreError(f"{self.path}: {len(bad)} of {len(events)} events rejected; first: {bad[0]}")

    def _encode(self, events: Sequence[Event]) -> tuple[list[_Row], list[str]]:
        with self._lock:
            enc = self._encoder.encode
            try:
                rows: list[_Row] = [
                    (
                        e.id,
                        e.time,
                        e.kind,
                        e.pid,
                        None if e.container is None else e.container.id,
                        None if e.container is None else e.container.name,
                        None if e.tool_call is None else e.tool_call.call_id,
                        enc(e),
                    )
                    for e in events
                ]
                return rows, []
            except Exception:  # fall through to the per-event path for a precise error
                pass
            rows = []
            bad: list[str] = []
            for e in events:
                try:
                    if not isinstance(e, Event):
                        raise TypeError(f"expected Event, got {type(e).__name__}")
                    c, tc = e.container, e.tool_call
                    rows.append(
                        (
                            e.id,
                            e.time,
                            e.kind,
                            e.pid,
                            None if c is None else c.id,
                            None if c is None else c.name,
                            None if tc is None else tc.call_id,
                            enc(e),
                        )
                    )
                except Exception as exc:
                    ident = getattr(e, "id", "?")
                    bad.append(f"event {ident}: {type(exc).__name__}: {exc}")
            return rows, bad

    def _put(self, item: _QueueItem) -> None:
        if self._closed:
            raise StoreError(f"{self.path}: store is closed")
        while True:
            if self._error is not None:
                raise StoreError(f"{self.path}: writer failed: {self._error}")
            try:
                self._queue.put(item, timeout=0.25)
                return
            except queue.Full:
                continue

    def record_run(
        self,
        *,
        started_ns: int,
        command: str | Sequence[str],
        ended_ns: int | None = None,
        exit_code: int | None = None,
        stats: Mapping[str, Any] | None = None,
        run_id: str | None = None,
    ) -> str:
        """Enqueue one run record (replacing any earlier record with the same id); returns its id.

        ``stats`` is a JSON-able mapping, conventionally with ``sources``, ``hooks`` (``active``
        / ``refused`` lists), ``events`` and ``drops``. Call it at start (without ``ended_ns``)
        and again at the end with the same ``run_id`` so a crashed run still shows up.
        """
        rid = run_id or uuid.uuid4().hex
        cmd = command if isinstance(command, str) else " ".join(command)
        try:
            stats_json = msgspec.json.encode(dict(stats or {})).decode()
        except (TypeError, msgspec.EncodeError) as exc:
            raise StoreError(f"{self.path}: run {rid}: stats are not JSON-encodable: {exc}") from None
        self._put(("run", rid, started_ns, ended_ns, cmd, exit_code, stats_json))
        return rid

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything enqueued before this call is committed.

        Raises :class:`StoreError` on timeout or if the writer failed.
        """
        if self._closed and not self._thread.is_alive():
            self._raise_if_failed()
            return
        marker = _Flush()
        self._put(marker)
        if not marker.done.wait(timeout):
            raise StoreError(f"{self.path}: flush timed out after {timeout}s")
        self._raise_if_failed()

    def close(self) -> None:
        """Flush, stop the writer and close the file. Idempotent.

        Raises :class:`StoreError` (once the writer has stopped) if the writer failed and
        events were lost, so a failure is never silent.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._thread.is_alive():
            # Ignore the closed flag for the stop marker; block until it fits.
            while self._thread.is_alive():
                try:
                    self._queue.put(_STOP, timeout=0.25)
                    break
                except queue.Full:
                    continue
            self._thread.join()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise StoreError(f"{self.path}: writer failed ({self._lost} events lost): {self._error}")

    def stats(self) -> dict[str, int]:
        """Counters: ``written``, ``duplicates`` (ids already stored), ``transactions``,
        ``runs``, ``lost`` (only after a writer failure), ``queued`` (batches waiting)."""
        return {
            "written": self._written,
            "duplicates": self._duplicates,
            "transactions": self._transactions,
            "runs": self._runs,
            "lost": self._lost,
            "queued": self._queue.qsize(),
        }

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- writer thread

    def _run(self) -> None:
        conn = self._conn
        assert conn is not None
        get = self._queue.get
        get_nowait = self._queue.get_nowait
        try:
            while True:
                item = get()
                rows: list[_Row] = []
                runs: list[tuple[Any, ...]] = []
                markers: list[_Flush] = []
                stop = False
                # Coalesce everything already waiting into one transaction.
                while True:
                    if isinstance(item, list):
                        rows.extend(item)
                    elif isinstance(item, tuple):
                        runs.append(item[1:])
                    elif isinstance(item, _Flush):
                        markers.append(item)
                    else:
                        stop = True
                        break
                    if len(rows) >= _TXN_MAX_ROWS:
                        break
                    try:
                        item = get_nowait()
                    except queue.Empty:
                        break
                if self._error is None and (rows or runs):
                    self._commit(conn, rows, runs)
                elif rows:
                    self._lost += len(rows)
                for m in markers:
                    m.done.set()
                if stop:
                    break
        finally:
            self._drain_after_stop()
            conn.close()
            self._conn = None

    def _commit(self, conn: sqlite3.Connection, rows: list[_Row], runs: list[tuple[Any, ...]]) -> None:
        for attempt in range(5):
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    inserted = conn.executemany(_INSERT_EVENT, rows).rowcount if rows else 0
                    if runs:
                        conn.executemany(_INSERT_RUN, runs)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                # busy_timeout already waited; retry a few times on lock contention only.
                if "locked" in str(exc) and attempt < 4:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                self._fail(exc, len(rows))
                return
            except sqlite3.Error as exc:
                self._fail(exc, len(rows))
                return
            self._written += inserted
            self._duplicates += len(rows) - inserted
            self._runs += len(runs)
            self._transactions += 1
            return

    def _fail(self, exc: Exception, nrows: int) -> None:
        self._error = f"{type(exc).__name__}: {exc}"
        self._lost += nrows

    def _drain_after_stop(self) -> None:
        """Release any flush waiters that raced with close(); count stray rows as lost."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Flush):
                item.done.set()
            elif isinstance(item, list):
                self._lost += len(item)


# -------------------------------------------------------------------- read side


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
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        version = _read_version(conn, shown)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read event store {shown}: {exc}") from None
    try:
        _check_not_newer(version, shown)
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


_DECODER = msgspec.json.Decoder(Event)


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
    where: list[str] = []
    params: list[Any] = []
    if kinds is not None:
        kind_list = list(kinds)
        if not kind_list:
            return []
        where.append(f"kind IN ({','.join('?' * len(kind_list))})")
        params.extend(kind_list)
    if container is not None:
        if len(container) >= 4:
            where.append("(container_name = ? OR container_id = ? OR substr(container_id, 1, ?) = ?)")
            params.extend([container, container, len(container), container])
        else:
            where.append("(container_name = ? OR container_id = ?)")
            params.extend([container, container])
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
    conn, shown = _connect_ro(path)
    try:
        rows = conn.execute(sql, params).fetchall()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read event store {shown}: {exc}") from None
    finally:
        conn.close()
    if not rows:
        return []
    try:
        return _DECODER.decode_lines(b"\n".join(r[0] for r in rows))
    except msgspec.DecodeError:
        pass
    # Slow path only to name the bad row precisely.
    out: list[Event] = []
    for n, (data,) in enumerate(rows):
        try:
            out.append(_DECODER.decode(data))
        except msgspec.DecodeError as exc:
            raise StoreError(f"{shown}: stored event #{n} does not decode: {exc}") from None
    return out


def query_runs(path: str | os.PathLike[str]) -> list[RunRecord]:
    """All run records, oldest first."""
    conn, shown = _connect_ro(path)
    try:
        rows = conn.execute(
            "SELECT id, started, ended, command, exit_code, stats FROM runs ORDER BY started, id"
        ).fetchall()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read event store {shown}: {exc}") from None
    finally:
        conn.close()
    return [
        RunRecord(
            id=r[0],
            started=r[1],
            ended=r[2],
            command=r[3],
            exit_code=r[4],
            stats=msgspec.json.decode(r[5]),
        )
        for r in rows
    ]
