"""The embedded default event store: one SQLite file, one writer thread.

Write side (:class:`SqliteStore`):

* Callers never touch the write connection. :meth:`SqliteStore.write` encodes the events in
  the caller's thread (so a bad event is reported to the caller at once and the stored copy is
  a snapshot) and queues the rows; a single writer thread inserts each batch as it arrives,
  128 rows per ``INSERT`` statement, inside a ``BEGIN IMMEDIATE`` transaction that it commits
  after 100k rows, after 0.2 s, or at once for :meth:`~SqliteStore.flush` and ``close()``.
  Readers therefore see written events within about 0.2 s, or right after ``flush()``.
* Backpressure, not loss: while more than 32k rows wait for the writer, ``write()`` blocks
  until it has caught up (normally milliseconds).
* Faults that pass (a full filesystem, another writer holding the lock for more than 1 s, an
  I/O error, a read-only remount) never reach the caller: the failed transaction's items and
  everything after them wait in a bounded spool (:mod:`runwatch.store.spool`, default 100k
  events / 64 MiB) and are written, in order, when a retry succeeds (after 0.25 s, doubling
  to 5 s between tries; ``close()`` retries for up to 3 s more). What does not fit in the
  spool, or is still in it when ``close()`` gives up, is counted as lost per reason
  (:meth:`SqliteStore.stats`). Any other database error is fatal: from then on ``write()``
  and ``flush()`` raise :class:`StoreError` and everything queued is counted as lost.
* The journal is WAL with ``synchronous=NORMAL``: readers never block the writer and a
  committed batch survives a process crash (the last batches may be lost on power loss).
* Ordering: batches are committed in the order they were enqueued (the spool included).
* Runs: :meth:`SqliteStore.record_run` names this process as the run's owner, and every
  commit adds its counts to the run's row; opening a store marks the runs of dead owners
  crashed (:mod:`runwatch.store.runs`).
* What rows repeat is stored once (layout 5): the caller thread keys each event's process
  context and container, and the writer puts a context or container it has not seen into
  ``procs`` / ``containers`` inside the transaction; the row's data is the event without them.
* Retention (``retention=``, :mod:`runwatch.store.retention`): the writer prunes by age and
  size at open, every minute and on :meth:`SqliteStore.prune_now`, between transactions;
  what went is counted in :meth:`SqliteStore.stats` (``pruned``).

Read side (:mod:`runwatch.store.sqlite_read`, re-exported here): :func:`query_events`,
:func:`query_alerts` and :func:`query_runs` open the file read-only and may run in any thread
or process while the writer is active.

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
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from runwatch.alerts.model import Alert
from runwatch.alerts.render import to_json as alert_json
from runwatch.events import Container, Event
from runwatch.privatefile import ensure_private
from runwatch.store.retention import Pruned, Retention, prune
from runwatch.store.runs import ADD_STORED, UPSERT_RUN, Owner, RunRecord, recover_crashed
from runwatch.store.spool import Spool, SpoolLimits, fault_reason
from runwatch.store.sqlite_layout import (
    INSERT_ALERT,
    STORE_SCHEMA_VERSION,
    BoxKey,
    NewProc,
    ProcKey,
    Row,
    StoreError,
    begin_batch,
    box_key,
    end_batch,
    ensure_schema,
    insert_events,
    kind_code,
    proc_key,
    process_context,
    restore_proc,
    stripped,
)
from runwatch.store.sqlite_read import (
    BUSY_TIMEOUT_MS,
    iter_alerts,
    iter_events,
    mark_crashed_runs,
    query_alerts,
    query_events,
    query_runs,
)

__all__ = [
    "STORE_SCHEMA_VERSION", "Pruned", "Retention", "RunRecord", "SpoolLimits", "SqliteStore", "StoreError",
    "iter_alerts", "iter_events", "mark_crashed_runs", "query_alerts", "query_events", "query_runs",
]


_QUEUE_MAX_ROWS = 32_768  # rows waiting for the writer; write() blocks beyond (see write())
_TXN_MAX_ROWS = 100_000  # rows per transaction at most
_TXN_MAX_S = 0.2  # a transaction is committed at most this long (s) after it began
_WRITE_BUSY_MS = 1_000  # the writer's wait for another writer's lock; longer waits spool instead
_RETRY_FIRST_S = 0.25  # first retry of the spool after a fault; doubled per failed retry
_RETRY_MAX_S = 5.0
_CLOSE_RETRY_S = 3.0  # at close, a held spool is retried this long before it counts as lost
_PAGE_SIZE = 16_384  # bytes; applies to new files only (an existing file keeps its page size)
_CACHE_KIB = 32_768  # writer page cache; the hot right edges of the three B-trees stay resident
_BOX_IDS_MAX = 4_096  # Container objects whose keys callers remember by identity
_PROC_CACHE_MAX = 100_000  # process contexts whose keys callers remember; beyond, the cache starts over
_NO_TIME = -1 << 63
_PRUNE_EVERY_S = 60.0  # how often the writer applies the retention

class _Flush:
    """Queue marker: set once everything enqueued before it is committed (or failed)."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class _Stop:
    """Queue marker: the writer commits what it has and exits."""


class _Prune(_Flush):
    """Queue marker: the writer commits what it has, applies the retention now, and sets
    ``done`` with what it pruned in ``result``."""

    __slots__ = ("result",)

    def __init__(self) -> None:
        super().__init__()
        self.result = Pruned()


class _Txn:
    """The writer's open transaction: what it holds so far (all lost if it fails)."""

    __slots__ = ("alerts", "batch", "boxes", "deadline", "inserted", "items", "kinds", "procs", "rows", "runs",
                 "tmax", "tmin", "used")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline  # time.monotonic() by which it commits
        self.items: list[Any] = []  # the queue items it holds (to the spool if it fails)
        self.rows = 0
        self.inserted = 0  # rows - inserted = duplicates
        self.alerts = 0
        self.runs = 0
        self.kinds: dict[str, int] = {}  # codes assigned in this transaction
        self.boxes: dict[BoxKey, int] = {}
        self.procs: dict[ProcKey, int] = {}  # process-context keys assigned in this transaction
        self.batch: int | None = None  # its batches.seq, once it holds events
        self.tmin = -_NO_TIME
        self.tmax = _NO_TIME
        self.used: dict[int, int] = {}  # procs.pk -> newest event time that uses it


class _Rows(list[Row]):
    """Queue item: encoded rows, with their time span and the process contexts they use.

    ``new`` is set when some rows still carry a kind string, a BoxKey or a NewProc.
    """

    __slots__ = ("new", "tmax", "tmin", "used")

    def __init__(self) -> None:
        super().__init__()
        self.new = False
        self.tmin = -_NO_TIME
        self.tmax = _NO_TIME
        self.used: dict[int, int] = {}  # procs.pk -> newest time among these rows


_STOP = _Stop()
_QueueItem = list[Row] | tuple[Any, ...] | _Flush | _Prune | _Stop


class SqliteStore:
    """The embedded event store. See the module docstring for the threading contract.

    Public methods are safe to call from any thread. ``close()`` is idempotent and safe in
    ``finally`` blocks. ``stats()`` is a point-in-time snapshot of monotonically growing
    counters (plus the current queue depth).
    """

    def __init__(self, path: str | os.PathLike[str], *, spool: SpoolLimits | None = None,
                 retention: Retention | None = None) -> None:
        self.path = str(path)
        self.retention = retention or Retention()
        self.owner = Owner.this_process()
        try:
            if self.path != ":memory:" and not self.path.startswith("file:"):
                ensure_private(self.path)  # 0600, and SQLite gives its -wal and -shm files the same mode
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except OSError as exc:
            raise StoreError(f"cannot open event store {self.path}: {exc.strerror or exc}") from None
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open event store {self.path}: {exc}") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                conn.execute(f"PRAGMA page_size = {_PAGE_SIZE}")  # a new file: set before WAL fixes it
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: cannot enable WAL journal (got {mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            ensure_schema(conn, self.path)
            self.recovered_runs = recover_crashed(conn)  # runs of dead owners, marked crashed
            conn.execute(f"PRAGMA busy_timeout = {_WRITE_BUSY_MS}")
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
        self._container_keys: dict[BoxKey, int] = {}
        self._proc_keys: dict[ProcKey, int] = {}
        self._box_ids: dict[int, tuple[Container, int]] = {}  # id(Container) -> (it, its key): callers only
        self._closed = False
        self._error: str | None = None  # set by the writer on a fatal database error
        self._written = 0
        self._duplicates = 0
        self._transactions = 0
        self._runs = 0
        self._fatal_lost = 0  # rows lost after a fatal error (the writer stopped writing)
        # While a fault that may pass lasts: the spool, the reason, and when to retry (writer only).
        self._spool = Spool(spool)
        self.spool_limits = self._spool.limits
        self._fault: str | None = None
        self._first_fault: str | None = None
        self._faults = 0
        self._retry_at = 0.0  # time.monotonic()
        self._backoff = _RETRY_FIRST_S
        self._recovered = 0
        self._run_id: str | None = None  # the run whose row gets this store's stored counts
        self._pruned = Pruned()  # what retention deleted so far
        self._prune_at = time.monotonic()  # when the retention is applied next (writer only)
        self._prune_fault: str | None = None  # the last prune that failed, one line
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

    def _encode(self, events: Sequence[Event]) -> tuple[_Rows, list[str]]:
        rows = _Rows()
        with self._lock:
            try:
                for e in events:
                    self._row(e, rows)
                return rows, []
            except Exception:  # start over per event, for a precise error
                pass
            rows = _Rows()
            bad: list[str] = []
            for e in events:
                try:
                    if not isinstance(e, Event):
                        raise TypeError(f"expected Event, got {type(e).__name__}")
                    self._row(e, rows)
                except Exception as exc:
                    ident = getattr(e, "id", "?")
                    bad.append(f"event {ident}: {type(exc).__name__}: {exc}")
            return rows, bad

    def _row(self, e: Event, rows: _Rows) -> None:
        """Append ``e``'s row to ``rows`` (raises for an event that cannot be stored).

        The process context (``PROC_FIELDS``) goes into ``procs`` once per process and exec;
        the row's data is then the event without it.
        """
        k: int | str | None = self._kind_codes.get(e.kind)
        if k is None:
            k, rows.new = self._check_kind(e.kind), True
        c = e.container
        ck: int | BoxKey | None = None
        if c is not None:
            seen = self._box_ids.get(id(c))
            if seen is not None and seen[0] is c:  # the enrichment hands out one object per container
                ck = seen[1]
            else:
                box = self._check_container(c)
                ck = self._container_keys.get(box)
                if ck is None:
                    ck, rows.new = box, True
                else:
                    if len(self._box_ids) >= _BOX_IDS_MAX:
                        self._box_ids.clear()
                    self._box_ids[id(c)] = (c, ck)
        t = e.time
        if t < rows.tmin:
            rows.tmin = t
        if t > rows.tmax:
            rows.tmax = t
        proc: int | NewProc | None = None
        key = process_context(e)
        if key is not None:
            pk = self._proc_keys.get(key)
            if pk is None:
                proc, rows.new = (key, self._encoder.encode(key[2:])), True
            else:
                proc = pk
                if t > rows.used.get(pk, _NO_TIME):
                    rows.used[pk] = t
        data = self._encoder.encode(stripped(e, key is not None, c is not None))
        tc = e.tool_call
        rows.append((e.id, t, k, e.pid, ck, None if tc is None else tc.call_id, data, proc))

    def _check_container(self, c: Container) -> BoxKey:
        names = (c.name, c.pod, c.namespace, c.spiffe_id)
        if not isinstance(c.id, str) or not all(isinstance(v, str | None) for v in names):
            raise TypeError(f"container id, name, pod, namespace and spiffe_id must be strings, not {(c.id, *names)!r}")
        return (c.id, *names, self._encoder.encode(c))

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

        The run's owner is this process (:class:`~runwatch.store.runs.Owner`); everything this
        store commits from then on is counted in the run's row (``stored_events``, ...).

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
        o = self.owner
        self._put(("run", rid, started_ns, ended_ns, cmd, exit_code, stats_json, o.pid, o.start, o.boot))
        return rid

    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        """Enqueue alerts (stored as their contract JSON, one row each, keyed by alert id)."""
        if alerts:
            rows = [(a.id, a.time, a.rule, a.severity, a.workload.id, a.count, alert_json(a)) for a in alerts]
            self._put(("alerts", rows))

    def prune_now(self, timeout: float | None = None) -> Pruned:
        """Apply the retention now (after everything enqueued before is committed); returns what
        this call pruned. The writer also applies it at open and every minute."""
        marker = _Prune()
        self._put(marker)
        if not marker.done.wait(timeout):
            raise StoreError(f"{self.path}: prune timed out after {timeout}s")
        self._raise_if_failed()
        return marker.result

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything enqueued before this call is committed, or held in the spool
        while the store cannot write (see :meth:`stats`); a due retry of the spool runs first.

        Raises :class:`StoreError` on timeout or if the writer failed for good.
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

        A spool still held is retried for up to ``_CLOSE_RETRY_S``; what cannot be written by
        then is counted as lost (:meth:`stats`), not raised. Raises :class:`StoreError` (once
        the writer has stopped) if the writer failed for good, so a failure is never silent.
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
            raise StoreError(f"{self.path}: writer failed ({self._fatal_lost} events lost): {self._error}")

    def stats(self) -> dict[str, Any]:
        """A snapshot of the writer's counters.

        ``written`` (rows committed), ``duplicates`` (ids already stored), ``transactions``,
        ``runs``, ``queued`` (batches waiting); the spool: ``spooled`` (rows held now),
        ``spool_peak``, ``spooled_total``, ``recovered`` (rows committed from the spool);
        ``lost`` (rows given up in all), ``lost_by_reason`` (``disk_full``, ``locked``, ...,
        ``error`` after a fatal error), ``alerts_lost``; ``fault`` (the reason the store
        cannot write now, or None), ``faults`` (failed attempts), ``first_fault`` (one line);
        ``pruned`` (what the retention deleted: ``events``, ``alerts``, ``processes``) and
        ``prune_fault`` (why the last prune failed, one line, or None).
        """
        spool = self._spool
        lost = dict(spool.lost)
        if self._fatal_lost:
            lost["error"] = lost.get("error", 0) + self._fatal_lost
        return {
            "written": self._written,
            "duplicates": self._duplicates,
            "transactions": self._transactions,
            "runs": self._runs,
            "queued": self._queue.qsize(),
            "spooled": spool.events,
            "spool_peak": spool.peak,
            "spooled_total": spool.spooled,
            "recovered": self._recovered,
            "lost": sum(lost.values()),
            "lost_by_reason": lost,
            "alerts_lost": sum(spool.lost_alerts.values()),
            "fault": self._fault,
            "faults": self._faults,
            "first_fault": self._first_fault,
            "pruned": self._pruned.as_dict(),
            "prune_fault": self._prune_fault,
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
                # commits at _TXN_MAX_ROWS, after _TXN_MAX_S, or at once for flush/close. While
                # the spool holds items, the writer wakes for the next retry.
                wait = self._wait_s(txn)
                try:
                    item = get() if wait is None else get(timeout=wait)
                except queue.Empty:
                    item = None
                if isinstance(item, list | tuple):
                    txn = self._take(conn, txn, item)
                    if isinstance(item, list):
                        with self._room:
                            self._queued_rows -= len(item)
                            self._room.notify_all()
                if txn is not None and (
                    not isinstance(item, list | tuple) or txn.rows >= _TXN_MAX_ROWS or time.monotonic() >= txn.deadline
                ):
                    self._commit(conn, txn)
                    txn = None
                if self._spool and time.monotonic() >= self._retry_at:
                    self._retry(conn)
                if txn is None and (isinstance(item, _Prune) or self._prune_due()):
                    pruned = self._prune(conn)
                    if isinstance(item, _Prune):
                        item.result = pruned
                if isinstance(item, _Flush):
                    item.done.set()
                elif isinstance(item, _Stop):
                    self._last_retries(conn)
                    break
        finally:
            if txn is not None:  # only when an unexpected exception escaped
                self._rollback(conn)
                self._fail(RuntimeError("writer thread stopped"), txn.rows)
            self._drain_after_stop()
            conn.close()
            self._conn = None

    def _wait_s(self, txn: _Txn | None) -> float | None:
        """How long the writer may wait for the next item (None: until one comes)."""
        due = [txn.deadline] if txn is not None else []
        if self._spool and self._error is None:
            due.append(self._retry_at)
        if self.retention and txn is None:
            due.append(self._prune_at)
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _take(self, conn: sqlite3.Connection, txn: _Txn | None, item: list[Row] | tuple[Any, ...]) -> _Txn | None:
        """Add one queue item to the open transaction (opened here if needed), or to the spool
        while the store cannot write; returns the open transaction (None after a failure)."""
        if self._error is not None:
            self._fatal_lost += len(item) if isinstance(item, list) else 0
            return txn
        if self._spool:  # keep the order: nothing overtakes what waits for a retry
            self._spool.add(item, self._fault or "error")
            return txn
        try:
            if txn is None:
                txn = self._begin(conn)
            self._insert(conn, txn, item)
            txn.items.append(item)
            return txn
        except sqlite3.Error as exc:
            self._failed(conn, txn, exc, [item])
            return None

    def _begin(self, conn: sqlite3.Connection) -> _Txn:
        conn.execute("BEGIN IMMEDIATE")  # waits up to _WRITE_BUSY_MS for another writer
        return _Txn(time.monotonic() + _TXN_MAX_S)

    def _insert(self, conn: sqlite3.Connection, txn: _Txn, item: list[Row] | tuple[Any, ...]) -> None:
        """Add one queue item to ``txn``; raises sqlite3.Error (the caller rolls back)."""
        if isinstance(item, list):
            # Codes are assigned inside the transaction (so several writers on one file
            # agree) and reach the shared caches only once it has committed.
            if txn.batch is None:
                txn.batch = begin_batch(conn)
            rows = self._resolve(conn, item, txn) if isinstance(item, _Rows) and item.new else item
            txn.inserted += insert_events(conn, rows, txn.batch)
            txn.rows += len(item)
            if isinstance(item, _Rows) and item:
                txn.tmin, txn.tmax = min(txn.tmin, item.tmin), max(txn.tmax, item.tmax)
                used = txn.used
                for pk, t in item.used.items():
                    if t > used.get(pk, _NO_TIME):
                        used[pk] = t
        elif item[0] == "alerts":
            conn.executemany(INSERT_ALERT, item[1])
            txn.alerts += len(item[1])
        else:
            conn.execute(UPSERT_RUN, item[1:])
            self._run_id = item[1]  # what this store commits from now on counts for this run
            txn.runs += 1

    def _commit(self, conn: sqlite3.Connection, txn: _Txn) -> bool:
        """Commit ``txn`` (with the run's stored counts); on failure its items go to the spool."""
        try:
            self._end(conn, txn)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._failed(conn, txn, exc, [])
            return False
        self._learn(txn)
        self._written += txn.inserted
        self._duplicates += txn.rows - txn.inserted
        self._runs += txn.runs
        self._transactions += 1
        return True

    def _prune_due(self) -> bool:
        return bool(self.retention) and not self._spool and self._error is None and time.monotonic() >= self._prune_at

    def _prune(self, conn: sqlite3.Connection) -> Pruned:
        """Apply the retention (writer thread, no transaction open); a failure is noted, not fatal."""
        self._prune_at = time.monotonic() + _PRUNE_EVERY_S
        if not self.retention or self._spool or self._error is not None:
            return Pruned()
        try:
            pruned = prune(conn, self.retention)
        except sqlite3.Error as exc:
            self._rollback(conn)
            self._prune_fault = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            return Pruned()
        self._pruned.add(pruned)
        if pruned.processes:  # keys of pruned contexts must not be handed to new rows
            self._proc_keys.clear()
        return pruned

    def _end(self, conn: sqlite3.Connection, txn: _Txn) -> None:
        """What every transaction writes last: the run's stored counts, the batch's span."""
        if self._run_id is not None and (txn.inserted or txn.alerts):
            conn.execute(ADD_STORED, (txn.inserted, txn.alerts, time.time_ns(), self._run_id))
        if txn.batch is not None:
            missing = end_batch(conn, txn.batch, txn.tmin, txn.tmax, txn.rows, txn.used)
            if missing:  # pruned by another process while this one still knew their keys
                known = {pk: key for key, pk in (*self._proc_keys.items(), *txn.procs.items())}
                for pk in missing:
                    if pk in known:
                        restore_proc(conn, pk, known[pk], txn.used[pk])

    def _learn(self, txn: _Txn) -> None:
        """After a commit: the codes the transaction assigned reach the callers' caches."""
        self._kind_codes.update(txn.kinds)
        self._container_keys.update(txn.boxes)
        if len(self._proc_keys) + len(txn.procs) > _PROC_CACHE_MAX:
            self._proc_keys.clear()
        self._proc_keys.update(txn.procs)

    def _rollback(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the failure itself is what gets reported
                conn.execute("ROLLBACK")

    def _failed(self, conn: sqlite3.Connection, txn: _Txn | None, exc: sqlite3.Error, extra: list[Any]) -> None:
        """Roll back; the transaction's items (and ``extra``) go to the spool when the fault may
        pass, else the writer has failed for good and they are lost."""
        self._rollback(conn)
        items = (txn.items if txn is not None else []) + extra
        reason = fault_reason(exc)
        if reason is None:
            self._fail(exc, sum(len(i) for i in items if isinstance(i, list)))
            return
        self._note_fault(reason, exc)
        for item in items:
            self._spool.add(item, reason)

    def _note_fault(self, reason: str, exc: BaseException) -> None:
        self._fault = reason
        self._faults += 1
        if self._first_fault is None:
            self._first_fault = f"{reason}: {type(exc).__name__}: {' '.join(str(exc).split())}"
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, _RETRY_MAX_S)

    def _retry(self, conn: sqlite3.Connection) -> bool:
        """Write everything the spool holds in one transaction; True once it is committed."""
        txn: _Txn | None = None
        try:
            txn = self._begin(conn)
            for item in self._spool.items():
                self._insert(conn, txn, item)
            self._end(conn, txn)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback(conn)
            reason = fault_reason(exc)
            if reason is None:
                self._fail(exc, self._spool.events)
                self._spool.clear()
            else:
                self._note_fault(reason, exc)
            return False
        self._learn(txn)
        self._written += txn.inserted
        self._duplicates += txn.rows - txn.inserted
        self._recovered += txn.rows
        self._runs += txn.runs
        self._transactions += 1
        self._spool.clear()
        self._fault, self._backoff = None, _RETRY_FIRST_S
        return True

    def _last_retries(self, conn: sqlite3.Connection) -> None:
        """At close: retry the spool at once, then with backoff for up to _CLOSE_RETRY_S; what is
        left after that is counted as lost."""
        deadline = time.monotonic() + _CLOSE_RETRY_S
        self._retry_at = min(self._retry_at, time.monotonic())
        while self._spool and self._error is None:
            pause = max(self._retry_at - time.monotonic(), 0.0)
            if time.monotonic() + pause > deadline:
                break
            time.sleep(pause)
            self._retry(conn)
        if self._spool:
            self._spool.drop_all(self._fault or "error")

    def _resolve(self, conn: sqlite3.Connection, rows: list[Row], txn: _Txn) -> list[Row]:
        """``rows`` with every kind string, BoxKey and NewProc replaced by its code."""
        kinds, boxes, procs = self._kind_codes, self._container_keys, self._proc_keys
        new_kinds, new_boxes, new_procs, used = txn.kinds, txn.boxes, txn.procs, txn.used
        out: list[Row] = []
        for r in rows:
            kind, box, proc = r[2], r[4], r[7]
            if isinstance(kind, str):
                code = kinds.get(kind) or new_kinds.get(kind)
                if code is None:
                    code = new_kinds[kind] = kind_code(conn, kind)
                kind = code
            if isinstance(box, tuple):
                ck = boxes.get(box) or new_boxes.get(box)
                if ck is None:
                    ck = new_boxes[box] = box_key(conn, box)
                box = ck
            if isinstance(proc, tuple):
                pk = procs.get(proc[0]) or new_procs.get(proc[0])
                if pk is None:
                    pk = new_procs[proc[0]] = proc_key(conn, proc, r[1])
                if r[1] > used.get(pk, _NO_TIME):
                    used[pk] = r[1]
                proc = pk
            out.append((r[0], r[1], kind, r[3], box, r[5], r[6], proc))
        return out

    def _fail(self, exc: BaseException, nrows: int) -> None:
        self._error = f"{type(exc).__name__}: {exc}"
        self._fatal_lost += nrows

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
                self._fatal_lost += len(item)


