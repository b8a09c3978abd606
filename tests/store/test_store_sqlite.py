"""SQLite event store: real files, real threads, exact values."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import msgspec
import pytest

from runwatch.events import Container, Event, FileInfo
from runwatch.store.sqlite import (
    STORE_SCHEMA_VERSION,
    SqliteStore,
    StoreError,
    query_events,
    query_runs,
)
from runwatch.store.sqlite_layout import without_context


def _db(tmp_path: Path) -> Path:
    return tmp_path / "events.db"


def test_round_trip_exact(tmp_path: Path, events: list[Event]) -> None:
    db = _db(tmp_path)
    with SqliteStore(db) as store:
        store.write(events[:10])
        store.write(events[10:])
        store.flush()
        assert store.stats()["written"] == 23
    got = query_events(db)
    assert got == events
    assert [e.id for e in got] == [f"ev-{i:02d}" for i in range(23)]
    # nested groups survive with exact values
    assert got[1].file == FileInfo(path="/secrets/key1.pem", intent="read", flags=0)
    assert got[2].net is not None and got[2].net.dst_port == 4002
    assert got[3].dns is not None and got[3].dns.name == "host3.example.com"
    assert got[4].priv is not None and (got[4].priv.op, got[4].priv.uid) == ("setresuid", 0)
    assert got[5].attrs == {"note": "n5", "k": [1, 2]}
    assert got[0].tool_call is not None and got[0].tool_call.call_id == "call-7"
    assert got[1].container is not None and got[1].container.pod == "agent-0"
    assert got[0].argv == ["tool0", "--n", "0"]


def test_columns_hold_query_fields(tmp_path: Path, events: list[Event]) -> None:
    db = _db(tmp_path)
    with SqliteStore(db) as store:
        store.write(events)
    conn = sqlite3.connect(db)
    try:
        row = conn.execute(
            "SELECT e.id, e.time, k.name, e.pid, c.id, c.name, e.tool_call_id"
            " FROM events e JOIN kinds k ON k.code = e.kind LEFT JOIN containers c ON c.ck = e.ck"
            " WHERE e.id='ev-04'"
        ).fetchone()
        host = conn.execute("SELECT ck, tool_call_id FROM events WHERE id='ev-03'").fetchone()
        boxes = conn.execute("SELECT id, name FROM containers ORDER BY ck").fetchall()
        version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        page = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    cid = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
    assert row == ("ev-04", events[4].time, "priv.setuid", 3004, cid, "agent", "call-7")
    assert host == (None, None)
    # one side-table row per distinct container, in first-seen order
    assert boxes == [(cid, "agent"), ("ffee00112233445566778899aabbccdd", "model-server")]
    assert (version, STORE_SCHEMA_VERSION) == ("5", 5)
    assert mode == "wal"
    assert page == 16384


def test_filters(tmp_path: Path, events: list[Event]) -> None:
    db = _db(tmp_path)
    with SqliteStore(db) as store:
        store.write(events)
    by_kind = query_events(db, kinds=["dns.query", "priv.setuid"])
    assert [e.id for e in by_kind] == ["ev-03", "ev-04", "ev-09", "ev-10", "ev-15", "ev-16", "ev-21", "ev-22"]
    assert query_events(db, kinds=[]) == []
    by_name = query_events(db, container="model-server")
    assert [e.id for e in by_name] == [f"ev-{i:02d}" for i in range(2, 23, 3)]
    by_prefix = query_events(db, container="a1b2c3d4")
    assert [e.id for e in by_prefix] == [f"ev-{i:02d}" for i in range(1, 23, 3)]
    assert query_events(db, container="a1b") == []  # prefixes shorter than 4 do not match
    by_pid = query_events(db, pid=3002)
    assert [e.id for e in by_pid] == ["ev-02", "ev-07", "ev-12", "ev-17", "ev-22"]
    t0 = events[0].time
    window = query_events(db, since_ns=t0 + 5000, until_ns=t0 + 8000)
    assert [e.id for e in window] == ["ev-05", "ev-06", "ev-07"]
    combined = query_events(db, kinds=["process.exit"], container="model-server", pid=3001)
    assert [e.id for e in combined] == ["ev-11"]
    assert query_events(db, kinds=["process.exit"], container="agent") == []


def test_ordering_and_limit(tmp_path: Path, events: list[Event]) -> None:
    db = _db(tmp_path)
    with SqliteStore(db) as store:
        store.write(list(reversed(events)))  # insertion order must not matter
    assert [e.id for e in query_events(db)] == [f"ev-{i:02d}" for i in range(23)]
    newest = query_events(db, order="desc", limit=3)
    assert [e.id for e in newest] == ["ev-22", "ev-21", "ev-20"]
    assert [e.id for e in query_events(db, limit=2)] == ["ev-00", "ev-01"]
    with pytest.raises(StoreError, match="order must be"):
        query_events(db, order="sideways")


def test_duplicates_ignored_and_counted(tmp_path: Path, events: list[Event]) -> None:
    db = _db(tmp_path)
    with SqliteStore(db) as store:
        store.write(events)
        store.write(events[:7])
        store.flush()
        stats = store.stats()
    assert (stats["written"], stats["duplicates"]) == (23, 7)
    assert len(query_events(db)) == 23


def test_reopen_after_close_appends(tmp_path: Path, events: list[Event]) -> None:
    db = _db(tmp_path)
    store = SqliteStore(db)
    store.write(events[:11])
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.write(events[11:])
    store2 = SqliteStore(db)
    try:
        store2.write(events[11:])
    finally:
        store2.close()
    assert [e.id for e in query_events(db)] == [f"ev-{i:02d}" for i in range(23)]


def test_newer_schema_refused(tmp_path: Path, events: list[Event]) -> None:
    db = _db(tmp_path)
    with SqliteStore(db) as store:
        store.write(events[:3])
    conn = sqlite3.connect(db)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(STORE_SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError) as info:
        SqliteStore(db)
    msg = str(info.value)
    assert "\n" not in msg and str(db) in msg and "newer" in msg
    with pytest.raises(StoreError, match="newer"):
        query_events(db)
    # nothing was lost or changed by the refusal
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 3
    conn.close()


def test_unversioned_file_is_migrated(tmp_path: Path, events: list[Event]) -> None:
    db = _db(tmp_path)
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE unrelated (x INTEGER)")
    conn.execute("INSERT INTO unrelated VALUES (41)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a runwatch event store"):
        query_events(db)
    with SqliteStore(db) as store:
        store.write(events[:5])
    assert len(query_events(db)) == 5
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT x FROM unrelated").fetchone()[0] == 41
    conn.close()


def test_missing_and_bad_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(StoreError, match=f"event store not found: {missing}"):
        query_events(missing)
    with pytest.raises(StoreError, match="not found"):
        query_runs(missing)
    assert not missing.exists()  # reading never creates the file
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"junk\.db"):
        SqliteStore(junk)
    with pytest.raises(StoreError, match="cannot open event store"):
        SqliteStore(tmp_path / "no-such-dir" / "x.db")


def test_bad_event_rejected_good_ones_kept(tmp_path: Path, events: list[Event]) -> None:
    db = _db(tmp_path)
    bad = Event(id="ev-bad", time=events[0].time, kind="process.exec", attrs={"obj": object()})
    with SqliteStore(db) as store:
        with pytest.raises(StoreError) as info:
            store.write([*events[:4], bad, *events[4:9]])
        assert "1 of 10 events rejected" in str(info.value) and "ev-bad" in str(info.value)
        assert "\n" not in str(info.value)
    assert [e.id for e in query_events(db)] == [f"ev-{i:02d}" for i in range(9)]


def test_flush_makes_events_visible_to_readers(tmp_path: Path, events: list[Event]) -> None:
    db = _db(tmp_path)
    with SqliteStore(db) as store:
        for i in range(23):
            store.write([events[i]])
            store.flush()
            assert len(query_events(db)) == i + 1


def test_concurrent_readers_while_writing(tmp_path: Path) -> None:
    db = _db(tmp_path)
    box = Container(id="c0ffee00c0ffee00", runtime="runc", name="busy")
    total = 23 * 997
    errors: list[BaseException] = []
    seen: list[int] = []
    done = threading.Event()

    def reader() -> None:
        try:
            last = 0
            while not done.is_set():
                n = len(query_events(db, container="busy"))
                assert n >= last  # committed data never disappears
                last = n
                seen.append(n)
        except BaseException as exc:
            errors.append(exc)

    with SqliteStore(db) as store:
        store.write([Event(id="seed", time=1, kind="sensor.notice", container=box)])
        store.flush()
        readers = [threading.Thread(target=reader) for _ in range(3)]
        for t in readers:
            t.start()
        try:
            for b in range(23):
                batch = [
                    Event(id=f"b{b}-{j}", time=10 + b * 1000 + j, kind="process.fork", pid=j, container=box)
                    for j in range(997)
                ]
                store.write(batch)
            store.flush()
        finally:
            done.set()
            for t in readers:
                t.join()
    assert errors == []
    assert seen  # readers ran
    assert len(query_events(db, kinds=["process.fork"])) == total
    assert len(query_events(db, pid=996)) == 23


def test_runs_recorded(tmp_path: Path) -> None:
    db = _db(tmp_path)
    stats = {"sources": ["kernel"], "hooks": {"active": 11, "refused": ["lsm"]}, "events": 23, "drops": 0}
    with SqliteStore(db) as store:
        rid = store.record_run(started_ns=100, command=["python3", "agent.py"])
        store.record_run(
            run_id=rid,
            started_ns=100,
            ended_ns=900,
            command=["python3", "agent.py"],
            exit_code=3,
            stats=stats,
        )
        rid2 = store.record_run(started_ns=1000, command="sleep 1", exit_code=0)
    runs = query_runs(db)
    assert [r.id for r in runs] == [rid, rid2]
    first = runs[0]
    assert (first.started, first.ended, first.command, first.exit_code) == (100, 900, "python3 agent.py", 3)
    assert first.stats == stats
    assert runs[1].stats == {} and runs[1].ended is None


def test_run_stats_must_be_json(tmp_path: Path) -> None:
    with SqliteStore(_db(tmp_path)) as store, pytest.raises(StoreError, match="not JSON-encodable"):
        store.record_run(started_ns=1, command="x", stats={"bad": object()})


def test_writer_failure_is_reported_not_silent(tmp_path: Path, events: list[Event]) -> None:
    db = _db(tmp_path)
    store = SqliteStore(db)
    try:
        store.write(events[:2])
        store.flush()
        # Break the table under the writer (another process could do this; a disk could fail).
        conn = sqlite3.connect(db)
        conn.execute("DROP TABLE events")
        conn.commit()
        conn.close()
        store.write(events[2:5])
        with pytest.raises(StoreError, match="writer failed"):
            store.flush()
        with pytest.raises(StoreError, match="writer failed"):
            store.write(events[5:])
    finally:
        with pytest.raises(StoreError, match=r"3 events lost"):
            store.close()
    store.close()  # second close is quiet


def test_stored_data_is_msgspec_msgpack(tmp_path: Path, events: list[Event]) -> None:
    db = _db(tmp_path)
    with SqliteStore(db) as store:
        store.write(events[:1])
    conn = sqlite3.connect(db)
    data, proc = conn.execute("SELECT data, proc FROM events").fetchone()
    context = conn.execute("SELECT data FROM procs WHERE pk = ?", (proc,)).fetchone()[0]
    conn.close()
    # the event without its process context, which is stored once per process
    assert msgspec.msgpack.decode(data, type=Event) == without_context(events[0])
    assert msgspec.msgpack.decode(context) == [events[0].exe, events[0].cmdline, events[0].argv, events[0].ancestry,
                                               events[0].pcmdline]
