"""Layout 5: the process context once per process and exec, joined back on read; layout-4
files read as they are and migrated; workload filters; --follow's batches."""

from __future__ import annotations

import queue
import sqlite3
import threading
from pathlib import Path

import msgspec
import pytest

from runwatch.events import Container, Event
from runwatch.store.sqlite import SqliteStore, StoreError, iter_events, query_events
from runwatch.store.sqlite_layout import without_context

SHOP = Container(id="5b0p" + "0" * 60, runtime="runc", name="api", pod="shop-0", namespace="prod",
                 spiffe_id="spiffe://example.org/ns/prod/sa/shop")
SIDE = Container(id="51de" + "1" * 60, runtime="runc", name="proxy", pod="shop-0", namespace="prod")
OTHER = Container(id="0the" + "2" * 60, runtime="runc", name="api", pod="shop-0", namespace="staging")


def _proc(i: int, pid: int, **kw: object) -> Event:
    """An event of process ``pid`` (one of three command lines), with its full context."""
    return Event(id=f"p-{i:03d}", time=1_000_000 + i, kind="file.open" if i % 2 else "net.connect", pid=pid,
                 proc_start=500 + pid, exe=f"/usr/bin/tool{pid}", cmdline=f"tool{pid} --serve {pid}",
                 argv=[f"tool{pid}", "--serve", str(pid)], ancestry=["/usr/bin/bash", "/usr/bin/containerd-shim"],
                 pcmdline="bash -c serve", **kw)  # type: ignore[arg-type]


def _count(db: Path, table: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def test_context_is_stored_once_per_process_and_joined_back(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    evs = [_proc(i, 7 + i % 3, container=SHOP if i % 2 else None) for i in range(23)]
    evs.append(Event(id="p-023", time=1_000_023, kind="sensor.notice", attrs={"n": 1}))  # no context at all
    with SqliteStore(db) as store:
        store.write(evs[:9])
        store.write(evs[9:])
    assert query_events(db) == evs
    assert _count(db, "procs") == 3
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT id, proc, data FROM events ORDER BY time").fetchall()
        lasts = conn.execute("SELECT pid, last FROM procs ORDER BY pid").fetchall()
    finally:
        conn.close()
    assert [r[1] is None for r in rows].count(True) == 1  # only the notice has no context
    assert lasts == [(7, 1_000_021), (8, 1_000_022), (9, 1_000_020)]
    full = sum(len(msgspec.msgpack.encode(e)) for e in evs)
    stored = sum(len(r[2]) for r in rows)
    assert stored == sum(len(msgspec.msgpack.encode(without_context(e))) for e in evs[:23]) + len(
        msgspec.msgpack.encode(evs[23]))
    assert stored < full * 0.6


def test_an_exec_starts_a_new_context_and_a_second_writer_reuses_the_old(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    before = [_proc(i, 7) for i in range(5)]
    after = [Event(id=f"x-{i}", time=2_000_000 + i, kind="file.open", pid=7, proc_start=507, exe="/usr/bin/python3",
                   cmdline="python3 agent.py", argv=["python3", "agent.py"], ancestry=["/usr/bin/bash"])
             for i in range(3)]
    with SqliteStore(db) as store:
        store.write(before)
        store.write(after)
    with SqliteStore(db) as store:  # its caches are empty: the file's rows are found, not copied
        store.write([_proc(101, 7)])
    assert _count(db, "procs") == 2
    assert query_events(db) == [*before, _proc(101, 7), *after]


def _as_layout_4(db: Path) -> None:
    """Turn a layout-5 file into what layout 4 wrote: whole events per row, no procs/batches."""
    full = query_events(db)
    enc = msgspec.msgpack.Encoder()
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        for e in full:
            conn.execute("UPDATE events SET data = ? WHERE id = ?", (enc.encode(e), e.id))
        for index in ("procs_pid", "procs_last", "batches_tmax", "containers_pod", "alerts_workload"):
            conn.execute(f"DROP INDEX {index}")
        conn.execute("DROP TABLE procs")
        conn.execute("DROP TABLE batches")
        conn.execute("DELETE FROM sqlite_sequence")
        for table, column in (("events", "proc"), ("events", "batch"), ("containers", "pod"),
                              ("containers", "namespace"), ("containers", "spiffe_id")):
            conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
        conn.execute("VACUUM")
    finally:
        conn.close()


def test_a_layout_4_file_is_read_as_it_is_then_migrated(tmp_path: Path) -> None:
    db = tmp_path / "v4.db"
    evs = [_proc(i, 7 + i % 3, container=(SHOP, SIDE, OTHER, None)[i % 4]) for i in range(19)]
    with SqliteStore(db) as store:
        store.write(evs)
    _as_layout_4(db)
    assert query_events(db) == evs  # read-only, not migrated
    assert [e.id for e in query_events(db, workload="prod/shop-0")] == [e.id for e in evs if i_of(e) % 4 in (0, 1)]
    with pytest.raises(StoreError, match="following needs store layout 5"):
        next(iter_events(db, follow=True))
    with SqliteStore(db) as store:  # migrates: old rows keep their whole data, new ones share procs
        store.write([_proc(101, 7, container=SHOP)])
    assert query_events(db) == [*evs, _proc(101, 7, container=SHOP)]
    assert _count(db, "procs") == 1
    assert len(query_events(db, workload="spiffe://example.org/ns/prod/sa/shop")) == 6


def i_of(e: Event) -> int:
    return int(e.id.split("-")[1])


def test_workload_and_container_filters(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    evs = [_proc(i, 7 + i % 3, container=(SHOP, SIDE, OTHER, None)[i % 4]) for i in range(29)]
    with SqliteStore(db) as store:
        store.write(evs)

    def ids(**kw: object) -> list[int]:
        return [i_of(e) for e in query_events(db, **kw)]  # type: ignore[arg-type]

    assert ids(workload="prod/shop-0") == [i for i in range(29) if i % 4 in (0, 1)]
    assert ids(workload="shop-0") == [i for i in range(29) if i % 4 in (0, 1, 2)]  # the pod in any namespace
    assert ids(workload="spiffe://example.org/ns/prod/sa/shop") == list(range(0, 29, 4))
    assert ids(workload="api") == [i for i in range(29) if i % 4 in (0, 2)]  # a container name
    assert ids(workload="proxy", kinds=["file.open"]) == list(range(1, 29, 4))
    assert ids(workload="staging/shop-0", since_ns=1_000_010, until_ns=1_000_019) == [10, 14, 18]
    assert ids(workload="nobody") == []
    assert ids(container="51de", workload="shop-0") == list(range(1, 29, 4))
    assert ids(container="api", workload="prod/shop-0") == list(range(0, 29, 4))


def test_follow_yields_each_later_transaction_once(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    got: queue.Queue[str] = queue.Queue()
    with SqliteStore(db) as store:
        store.write([_proc(i, 7, container=SHOP if i % 2 else None) for i in range(5)])
        store.flush()
        stream = iter_events(db, workload="prod/shop-0", follow=True, poll_s=0.02)

        def consume() -> None:
            for e in stream:
                got.put(e.id)

        threading.Thread(target=consume, daemon=True).start()
        first = [got.get(timeout=10) for _ in range(2)]
        # late rows (times before what was shown) and rows outside the workload
        store.write([_proc(i, 8, container=SHOP if i % 3 else OTHER) for i in range(100, 107)])
        store.flush()
        store.write([Event(id="late", time=5, kind="file.open", pid=9, container=SHOP)])
        store.flush()
        later = [got.get(timeout=10) for _ in range(6)]
    assert first == ["p-001", "p-003"]
    assert later == ["p-100", "p-101", "p-103", "p-104", "p-106", "late"]
    assert got.empty()
