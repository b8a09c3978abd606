"""The embedded default event store: one SQLite file, one writer thread.

Write side (:class:`SqliteStore`):

* Callers never touch the write connection. :meth:`SqliteStore.write` encodes the events in
  the caller's thread (so a bad event is reported to the caller at once and the stored copy is
  a snapshot) and queues the rows; a single writer thread inserts each batch as it arrives,
  128 rows per ``INSERT`` statement, inside a ``BEGIN IMMEDIATE`` transaction that it commits
  after 100k rows, after 0.2 s, or at once for :meth:`~SqliteStore.flush` and ``close()``.
  Readers therefore see written events within about 0.2 s, or right after ``flush()``.
* Backpressure, not loss: while more than 32k rows wait for the writer, ``write()`` blocks
  until it has caught up (normally milliseconds). Nothing is ever dropped by the store. If the
  writer has failed, ``write()`` raises :class:`StoreError` instead of blocking forever.
* The journal is WAL with ``synchronous=NORMAL``: readers never block the writer and a
  committed batch survives a process crash (the last batches may be lost on power loss).
* Ordering: batches are committed in the order they were enqueued.

Read side: :func:`query_events` and :func:`query_runs` open the file read-only
(``file:...?mode=ro``) and may run in any thread or process while the writer is active.

Schema: a ``meta`` table holds ``schema_version``. A file written by a newer runwatch is
refused with a one-line error; an older one is migrated in place when opened for writing.
The physical layout (and why) is in :mod:`runwatch.store.sqlite_layout`.

Throughput (bench/store_throughput.py, realistic mixed events of ~430 bytes, writer and caller
pinned to one core of the 2-core dev VM): layout 1 took ~10 us of CPU per event (~100k
events/s); layout 2 with this write path takes ~5 us (~200k events per CPU-second).
"""

from __future__ import annotations

import contextlib
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

from runwatch.alerts.model import Alert
from runwatch.alerts.render import from_json as alert_from_json
from runwatch.alerts.render import to_json as alert_json
from runwatch.events import UPGRADE_BELOW, Container, Event, upgrade
from runwatch.privatefile import ensure_private
from runwatch.store.sqlite_layout import (
    INSERT_ALERT,
    STORE_SCHEMA_VERSION,
    Row,
    StoreError,
    check_not_newer,
    container_key,
    ensure_schema,
    insert_events,
    kind_code,
    read_event_schema,
    read_version,
)

__all__ = [
    "STORE_SCHEMA_VERSION", "RunRecord", "SqliteStore", "StoreError", "query_alerts", "query_events", "query_runs",
]


_QUEUE_MAX_ROWS = 32_768  # rows waiting for the writer; write() blocks beyond (see write())
_TXN_MAX_ROWS = 100_000  # rows per transaction at most
_TXN_MAX_S = 0.2  # a transaction is committed at most this long (s) after it began
_BUSY_TIMEOUT_MS = 10_000
_PAGE_SIZE = 16_384  # bytes; applies to new files only (an existing file keeps its page size)
_CACHE_KIB = 32_768  # writer page cache; the hot right edges of the three B-trees stay resident

_INSERT_RUN = (
    "INSERT OR REPLACE INTO runs (id, started, ended, command, exit_code, stats) VALUES (?, ?, ?, ?, ?, ?)"
)


class RunRecord(msgspec.Struct, frozen=True):
    """One ``runwatch run``/``watch`` session: times in ns since the epoch, stats as recorded."""

    id: str
    started: int
    ended: int | None
    command: str
    exit_code: int | None
    stats: dict[str, Any]


class _Flush:
    """Queue marker: set once everything enqueued before it is committed (or failed)."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class _Stop:
    """Queue marker: the writer commits what it has and exits."""


class _Txn:
    """The writer's open transaction: what it holds so far (all lost if it fails)."""

    __slots__ = ("boxes", "deadline", "inserted", "kinds", "rows", "runs")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline  # time.monotonic() by which it commits
        self.rows = 0
        self.inserted = 0  # rows - inserted = duplicates
        self.runs = 0
        self.kinds: dict[str, int] = {}  # codes assigned in this transaction
        self.boxes: dict[tuple[str, str | None], int] = {}


class _NewNames(list[Row]):
    """Queue item: rows of which some still carry a kind string or a container pair."""


_STOP = _Stop()
_QueueItem = list[Row] | tuple[Any, ...] | _Flush | _Stop


class SqliteStore:
    """The embedded event store. See the module docstring for the threading contract.

    Public methods are safe to call from any thread. ``close()`` is idempotent and safe in
    ``finally`` blocks. ``stats()`` is a point-in-time snapshot of monotonically growing
    counters (plus the current queue depth).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        try:
            if self.path != ":memory:" and not self.path.startswith("file:"):
                ensure_private(self.path)  # 0600, and SQLite gives its -wal and -shm files the same mode
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except OSError as exc:
            raise StoreError(f"cannot open event store {self.path}: {exc.strerror or exc}") from None
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open event store {self.path}: {exc}") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                conn.execute(f"PRAGMA page_size = {_PAGE_SIZE}")  # a new file: set before WAL fixes it
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: cannot enable WAL journal (got {mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            ensure_schema(conn, self.path)
            kind_codes = {str(n): int(c) for n, c in conn.execute("SELECT name, code FROM kinds")}
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot open event store {self.path}: {exc}") from None
        except BaseException:
            conn.close()
            raise
        # From here on only the writer thread uses ``conn``.
        self._conn: sqlite3.Connection | None = conn
        self._queue: queue.Queue[_QueueItem] = queue.Queue()  # bounded by _queued_rows
        # Rows in the queue or not yet inserted. A small bound keeps the rows the writer inserts
        # warm in the CPU cache (inserting rows encoded long ago costs measurably more).
        self._room = threading.Condition()  # guards _queued_rows
        self._queued_rows = 0
        self._encoder = msgspec.msgpack.Encoder()
        self._lock = threading.Lock()  # guards _closed and the encoder
        # Name -> code caches. Callers read them (under _lock); only the writer adds entries, and
        # only after the transaction that assigned the codes has committed.
        self._kind_codes: dict[str, int] = kind_codes
        self._container_keys: dict[tuple[str, str | None], int] = {}
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

    def _encode(self, events: Sequence[Event]) -> tuple[list[Row], list[str]]:
        with self._lock:
            enc = self._encoder.encode
            kinds = self._kind_codes
            boxes = self._container_keys
            rows: list[Row] = []
            append = rows.append
            new_names = False
            try:
                for e in events:
                    k: int | str | None = kinds.get(e.kind)
                    if k is None:
                        k, new_names = self._check_kind(e.kind), True
                    c = e.container
                    ck: int | tuple[str, str | None] | None = None
                    if c is not None:
                        ck = boxes.get((c.id, c.name))
                        if ck is None:
                            ck, new_names = self._check_container(c), True
                    tc = e.tool_call
                    append((e.id, e.time, k, e.pid, ck, None if tc is None else tc.call_id, enc(e)))
                return (_NewNames(rows) if new_names else rows), []
            except Exception:  # fall through to the per-event path for a precise error
                pass
            rows = _NewNames()
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
                            kinds.get(e.kind) or self._check_kind(e.kind),
                            e.pid,
                            None if c is None else self._check_container(c),
                            None if tc is None else tc.call_id,
                            enc(e),
                        )
                    )
                except Exception as exc:
                    ident = getattr(e, "id", "?")
                    bad.append(f"event {ident}: {type(exc).__name__}: {exc}")
            return rows, bad

    @staticmethod
    def _check_container(c: Container) -> tuple[str, str | None]:
        if not isinstance(c.id, str) or not isinstance(c.name, str | None):
            raise TypeError(f"container id and name must be strings, not {c.id!r}, {c.name!r}")
        return (c.id, c.name)

    @staticmethod
    def _check_kind(kind: object) -> str:
        if not isinstance(kind, str) or not kind:
            raise TypeError(f"kind must be a non-empty string, not {kind!r}")
        return kind

    def _put(self, item: _QueueItem) -> None:
        if self._closed:
            raise StoreError(f"{self.path}: store is closed")
        if isinstance(item, list):
            n = len(item)
            with self._room:
                # One batch larger than the bound still goes through when nothing is waiting.
                while self._queued_rows and self._queued_rows + n > _QUEUE_MAX_ROWS and self._error is None:
                    self._room.wait(0.25)
                self._queued_rows += n
        if self._error is not None:
            raise StoreError(f"{self.path}: writer failed: {self._error}")
        self._queue.put(item)

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

    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        """Enqueue alerts (stored as their contract JSON, one row each, keyed by alert id)."""
        if alerts:
            rows = [(a.id, a.time, a.rule, a.severity, a.workload.id, a.count, alert_json(a)) for a in alerts]
            self._put(("alerts", rows))

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
            self._queue.put(_STOP)  # the queue itself is unbounded
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
        txn: _Txn | None = None  # the open transaction, if any
        try:
            while True:
                # Inserts go in as batches arrive (their rows are still warm); the transaction
                # commits at _TXN_MAX_ROWS, after _TXN_MAX_S, or at once for flush/close.
                try:
                    item = get() if txn is None else get(timeout=max(0.0, txn.deadline - time.monotonic()))
                except queue.Empty:
                    item = None
                if isinstance(item, list):
                    if self._error is None:
                        txn = self._insert(conn, txn, item)
                    else:
                        self._lost += len(item)
                    with self._room:
                        self._queued_rows -= len(item)
                        self._room.notify_all()
                elif isinstance(item, tuple) and self._error is None:
                    txn = self._insert(conn, txn, item)
                if txn is not None and (
                    not isinstance(item, list | tuple) or txn.rows >= _TXN_MAX_ROWS or time.monotonic() >= txn.deadline
                ):
                    self._commit(conn, txn)
                    txn = None
                if isinstance(item, _Flush):
                    item.done.set()
                elif isinstance(item, _Stop):
                    break
        finally:
            if txn is not None:  # only when an unexpected exception escaped
                self._abort(conn, txn, RuntimeError("writer thread stopped"), 0)
            self._drain_after_stop()
            conn.close()
            self._conn = None

    def _begin(self, conn: sqlite3.Connection) -> _Txn:
        for attempt in range(5):
            try:
                conn.execute("BEGIN IMMEDIATE")
                return _Txn(time.monotonic() + _TXN_MAX_S)
            except sqlite3.OperationalError as exc:
                # busy_timeout already waited; retry a few times on lock contention only.
                if "locked" not in str(exc) or attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _insert(self, conn: sqlite3.Connection, txn: _Txn | None, item: list[Row] | tuple[Any, ...]) -> _Txn | None:
        """Add one queue item to the open transaction (opened here if needed); None on failure."""
        try:
            if txn is None:
                txn = self._begin(conn)
            if isinstance(item, list):
                # Codes are assigned inside the transaction (so several writers on one file
                # agree) and reach the shared caches only once it has committed.
                rows = self._resolve(conn, item, txn.kinds, txn.boxes) if type(item) is _NewNames else item
                txn.inserted += insert_events(conn, rows)
                txn.rows += len(item)
            elif item[0] == "alerts":
                conn.executemany(INSERT_ALERT, item[1])
            else:
                conn.execute(_INSERT_RUN, item[1:])
                txn.runs += 1
            return txn
        except sqlite3.Error as exc:
            self._abort(conn, txn, exc, len(item) if isinstance(item, list) else 0)
            return None

    def _commit(self, conn: sqlite3.Connection, txn: _Txn) -> None:
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._abort(conn, txn, exc, 0)
            return
        self._kind_codes.update(txn.kinds)
        self._container_keys.update(txn.boxes)
        self._written += txn.inserted
        self._duplicates += txn.rows - txn.inserted
        self._runs += txn.runs
        self._transactions += 1

    def _abort(self, conn: sqlite3.Connection, txn: _Txn | None, exc: BaseException, extra_rows: int) -> None:
        """Roll back (if a transaction is open) and mark the writer failed; its rows are lost."""
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the failure below is what gets reported
                conn.execute("ROLLBACK")
        self._fail(exc, (0 if txn is None else txn.rows) + extra_rows)

    def _resolve(
        self,
        conn: sqlite3.Connection,
        rows: list[Row],
        new_kinds: dict[str, int],
        new_boxes: dict[tuple[str, str | None], int],
    ) -> list[Row]:
        """``rows`` with every kind string and container pair replaced by its code."""
        kinds, boxes = self._kind_codes, self._container_keys
        out: list[Row] = []
        for r in rows:
            kind, box = r[2], r[4]
            if isinstance(kind, str):
                code = kinds.get(kind) or new_kinds.get(kind)
                if code is None:
                    code = new_kinds[kind] = kind_code(conn, kind)
                kind = code
            if isinstance(box, tuple):
                ck = boxes.get(box) or new_boxes.get(box)
                if ck is None:
                    ck = new_boxes[box] = container_key(conn, *box)
                box = ck
            out.append((r[0], r[1], kind, r[3], box, r[5], r[6]))
        return out

    def _fail(self, exc: BaseException, nrows: int) -> None:
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


def query_alerts(path: str | os.PathLike[str], *, rule: str | None = None, since_ns: int | None = None,
                 limit: int | None = None) -> list[Alert]:
    """Stored alerts, oldest first (optionally one rule's, from ``since_ns``)."""
    conn, shown = _connect_ro(path)
    where: list[str] = []
    params: list[Any] = []
    if rule is not None:
        where.append("rule = ?")
        params.append(rule)
    if since_ns is not None:
        where.append("time >= ?")
        params.append(since_ns)
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
