"""SQLite store layout 2: migration from layout 1, kind/container side tables, grouped inserts."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import msgspec
import pytest

from runwatch.events import KINDS, Container, Event
from runwatch.store.sqlite import SqliteStore, StoreError, query_events, query_runs

# The layout-1 schema exactly as runwatch wrote it (store schema version 1).
V1_DDL = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE events (id TEXT NOT NULL, time INTEGER NOT NULL, kind TEXT NOT NULL, pid INTEGER NOT NULL,"
    " container_id TEXT, container_name TEXT, tool_call_id TEXT, data BLOB NOT NULL,"
    " PRIMARY KEY (time, id)) WITHOUT ROWID",
    "CREATE UNIQUE INDEX events_id ON events(id)",
    "CREATE INDEX events_kind ON events(kind, time)",
    "CREATE INDEX events_container ON events(container_id, time) WHERE container_id IS NOT NULL",
    "CREATE TABLE runs (id TEXT PRIMARY KEY, started INTEGER NOT NULL, ended INTEGER, command TEXT NOT NULL,"
    " exit_code INTEGER, stats TEXT NOT NULL)",
    "INSERT INTO meta VALUES ('schema_version', '1')",
)


def _write_v1(db: Path, events: list[Event], corrupt: str | None = None) -> None:
    """A layout-1 file holding ``events`` (JSON data) and one run; ``corrupt`` names an event
    whose stored JSON is cut short."""
    conn = sqlite3.connect(db)
    try:
        for ddl in V1_DDL:
            conn.execute(ddl)
        rows = []
        for e in events:
            data = msgspec.json.encode(e)
            if e.id == corrupt:
                data = data[:17]
            c = e.container
            rows.append(
                (
                    e.id,
                    e.time,
                    e.kind,
                    e.pid,
                    None if c is None else c.id,
                    None if c is None else c.name,
                    None if e.tool_call is None else e.tool_call.call_id,
                    data,
                )
            )
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("INSERT INTO runs VALUES ('run-1', 100, 900, 'python3 agent.py', 3, '{\"events\": 23}')")
        conn.commit()
    finally:
        conn.close()


def _custom(i: int, box: Container | None) -> Event:
    return Event(id=f"cx-{i:02d}", time=1_800_000_000_000_000_000 + i, kind="vendor.custom", pid=77, container=box)


def test_v1_file_is_migrated_to_v2(tmp_path: Path, events: list[Event]) -> None:
    db = tmp_path / "v1.db"
    unnamed = Container(id="a1b2c3d4e5f60718293a4b5c6d7e8f90", runtime="runc")  # same id as "agent"
    extra = [_custom(0, unnamed), _custom(1, None)]
    _write_v1(db, events + extra)
    with pytest.raises(StoreError, match=r"version 1 is older than 4; open it once for writing"):
        query_events(db)
    with SqliteStore(db) as store:
        store.write(events[:5])  # already stored: duplicates
        store.flush()
        assert (store.stats()["written"], store.stats()["duplicates"]) == (0, 5)
    assert query_events(db) == events + extra
    assert [e.id for e in query_events(db, kinds=["vendor.custom"])] == ["cx-00", "cx-01"]
    assert [e.id for e in query_events(db, kinds=["dns.query"])] == ["ev-03", "ev-09", "ev-15", "ev-21"]
    assert [e.id for e in query_events(db, container="agent")] == [f"ev-{i:02d}" for i in range(1, 23, 3)]
    by_prefix = query_events(db, container="a1b2c3d4")
    assert [e.id for e in by_prefix] == [*(f"ev-{i:02d}" for i in range(1, 23, 3)), "cx-00"]
    assert [e.id for e in query_events(db, pid=3003)] == ["ev-03", "ev-08", "ev-13", "ev-18"]
    runs = query_runs(db)
    assert [(r.id, r.ended, r.exit_code, r.stats) for r in runs] == [("run-1", 900, 3, {"events": 23})]
    conn = sqlite3.connect(db)
    try:
        version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        indexes = conn.execute(
            "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='events' AND sql IS NOT NULL ORDER BY name"
        ).fetchall()
        kinds = dict(conn.execute("SELECT name, code FROM kinds").fetchall())
        boxes = conn.execute("SELECT id, name FROM containers ORDER BY ck").fetchall()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    assert version == "5"
    assert indexes == [("events_id",), ("events_kind_ck",)]
    assert set(kinds) == {*KINDS, "vendor.custom"} and len(kinds) == len(KINDS) + 1
    assert boxes == [
        ("a1b2c3d4e5f60718293a4b5c6d7e8f90", "agent"),
        ("ffee00112233445566778899aabbccdd", "model-server"),
        ("a1b2c3d4e5f60718293a4b5c6d7e8f90", None),
    ]
    assert "events_v2" not in tables


def test_v1_file_with_bad_row_is_left_untouched(tmp_path: Path, events: list[Event]) -> None:
    db = tmp_path / "v1.db"
    _write_v1(db, events, corrupt="ev-13")
    with pytest.raises(StoreError) as info:
        SqliteStore(db)
    msg = str(info.value)
    assert "\n" not in msg and str(db) in msg and "ev-13" in msg and "cannot migrate" in msg
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "1"
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 23
        leftovers = conn.execute("SELECT count(*) FROM sqlite_master WHERE name IN ('kinds', 'events_v2')")
        assert leftovers.fetchone()[0] == 0
    finally:
        conn.close()


def test_unknown_kinds_and_container_names(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    named = Container(id="c0ffee00c0ffee00", runtime="runc", name="web")
    unnamed = Container(id="c0ffee00c0ffee00", runtime="runc")
    other = Container(id="deadbeef00112233", runtime="runc", name="c0ffee00c0ffee00")  # a name equal to an id
    evs = [_custom(i, (named, unnamed, other, None)[i % 4]) for i in range(23)]
    with SqliteStore(db) as store:
        store.write(evs[:11])
        store.write(evs[11:])
    with SqliteStore(db) as store:  # a second writer reuses the codes from the file
        store.write([_custom(23, named)])
    assert [e.id for e in query_events(db, kinds=["vendor.custom"])] == [f"cx-{i:02d}" for i in range(24)]
    assert query_events(db, kinds=["vendor.other"]) == []
    assert [e.id for e in query_events(db, container="web")] == [f"cx-{i:02d}" for i in (*range(0, 23, 4), 23)]
    by_id = query_events(db, container="c0ffee00c0ffee00")  # exact id (named or not) or exact name
    assert [e.id for e in by_id] == [*(f"cx-{i:02d}" for i in range(23) if i % 4 != 3), "cx-23"]
    by_prefix = query_events(db, container="c0ff")
    assert [e.id for e in by_prefix] == [f"cx-{i:02d}" for i in range(24) if i % 4 in (0, 1) or i == 23]
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT count(*) FROM kinds WHERE name = 'vendor.custom'").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM containers").fetchone()[0] == 3
    finally:
        conn.close()


def test_two_writers_on_one_file_agree_on_codes(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    boxes = [Container(id=f"{i:04x}beefbeef", runtime="runc", name=f"box{i}") for i in range(5)]
    errors: list[BaseException] = []

    def work(store: SqliteStore, tag: str) -> None:
        try:
            for b in range(7):
                batch = [
                    Event(id=f"{tag}-{b}-{j}", time=b * 1000 + j, kind=f"vendor.k{j % 3}", pid=j, container=box)
                    for j, box in ((j, boxes[j % 5]) for j in range(131))
                ]
                store.write(batch)
        except BaseException as exc:
            errors.append(exc)

    with SqliteStore(db) as one, SqliteStore(db) as two:
        threads = [threading.Thread(target=work, args=(s, t)) for s, t in ((one, "a"), (two, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert len(query_events(db)) == 2 * 7 * 131
    assert len(query_events(db, kinds=["vendor.k1"])) == 2 * 7 * 44
    assert len(query_events(db, container="box3")) == 2 * 7 * 26
    assert len(query_events(db, kinds=["vendor.k2"], container="0004beefbeef")) == 2 * 7 * 8
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT count(*) FROM kinds WHERE name LIKE 'vendor.%'").fetchone()[0] == 3
        assert conn.execute("SELECT count(*) FROM containers").fetchone()[0] == 5
    finally:
        conn.close()


def test_duplicates_inside_one_grouped_insert(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    # 389 rows in one write: three full 128-row statements and a 5-row tail; 131 distinct ids.
    evs = [Event(id=f"d{i % 131:03d}", time=i % 131, kind="process.fork", pid=i) for i in range(389)]
    with SqliteStore(db) as store:
        store.write(evs)
        store.flush()
        stats = store.stats()
    assert (stats["written"], stats["duplicates"]) == (131, 258)
    got = query_events(db)
    assert [e.id for e in got] == [f"d{i:03d}" for i in range(131)]
    assert [e.pid for e in got] == list(range(131))  # the first copy of each id wins


def test_bad_container_rejected_good_ones_kept(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    bad_box = Container(id=None, runtime="runc")  # type: ignore[arg-type]
    evs = [_custom(i, None) for i in range(5)]
    bad = _custom(9, bad_box)
    rejected = r"1 of 6 events rejected; first: event cx-09: TypeError: container id"
    with SqliteStore(db) as store, pytest.raises(StoreError, match=rejected):
        store.write([*evs[:2], bad, *evs[2:]])
    assert [e.id for e in query_events(db)] == [f"cx-{i:02d}" for i in range(5)]


def test_backpressure_bound_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    # 37 batches of 1009 rows exceed the 32k-row queue bound, so write() has to wait for the
    # writer; then one batch larger than the bound on its own.
    with SqliteStore(db) as store:
        for b in range(37):
            store.write([Event(id=f"p{b}-{j}", time=b * 10_000 + j, kind="file.open", pid=b) for j in range(1009)])
        store.write([Event(id=f"big-{j}", time=10**9 + j, kind="net.connect", pid=9) for j in range(40_009)])
        store.flush()
        stats = store.stats()
    assert (stats["written"], stats["duplicates"], stats["lost"]) == (37 * 1009 + 40_009, 0, 0)
    assert len(query_events(db, kinds=["file.open"])) == 37 * 1009
    assert len(query_events(db, pid=23)) == 1009
    newest = query_events(db, order="desc", limit=3)
    assert [e.id for e in newest] == ["big-40008", "big-40007", "big-40006"]


def test_alerts_are_stored_and_read_back(tmp_path):
    from runwatch.alerts.model import Alert, Workload
    from runwatch.store.sqlite import SqliteStore, query_alerts

    db = tmp_path / "a.db"
    alerts = [Alert(id=f"a-{i}", time=1_000 + i, rule="shell_in_model_server" if i % 2 else "secret_read",
                    severity="high", output=f"alert {i}", workload=Workload(id="c1", name="agent"), count=i + 1)
              for i in range(23)]
    with SqliteStore(db) as store:
        store.write_alerts(alerts[:20])
        store.write_alerts(alerts[20:])
        store.write_alerts([])
    got = query_alerts(db)
    assert [a.id for a in got] == [f"a-{i}" for i in range(23)]
    assert got[22].count == 23 and got[22].workload.name == "agent"
    assert len(query_alerts(db, rule="secret_read")) == 12
    assert [a.id for a in query_alerts(db, since_ns=1_020)] == ["a-20", "a-21", "a-22"]


def test_v2_file_gains_the_alerts_table(tmp_path):
    import sqlite3

    from runwatch.store.sqlite import SqliteStore, query_alerts

    db = tmp_path / "v2.db"
    SqliteStore(db).close()
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE alerts")
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="version 2 is older than 4"):
        query_alerts(db)
    SqliteStore(db).close()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("5",)
    assert conn.execute("SELECT count(*) FROM alerts").fetchone() == (0,)


def test_v3_file_gains_run_owners_and_keeps_its_runs(tmp_path: Path, events: list[Event]) -> None:
    db = tmp_path / "v3.db"
    with SqliteStore(db) as store:
        store.write(events[:23])
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE runs")  # the runs table exactly as layout 3 made it
    conn.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, started INTEGER NOT NULL, ended INTEGER, "
                 "command TEXT NOT NULL, exit_code INTEGER, stats TEXT NOT NULL)")
    conn.execute("INSERT INTO runs VALUES ('old-open', 100, NULL, 'sleep 9', NULL, '{\"events\": 0}')")
    conn.execute("INSERT INTO runs VALUES ('old-done', 200, 900, 'true', 0, '{\"events\": 7}')")
    conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="version 3 is older than 4"):
        query_runs(db)
    SqliteStore(db).close()
    runs = query_runs(db)
    # a run from before owners were recorded is never taken for crashed: its owner is unknown
    assert [(r.id, r.ended, r.crashed, r.pid, r.stats) for r in runs] == [
        ("old-open", None, False, None, {"events": 0}), ("old-done", 900, False, None, {"events": 7})]
    assert len(query_events(db)) == 23
