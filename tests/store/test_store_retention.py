"""Retention: pruning by age and by size, counted; process contexts go with their last event."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from runwatch.alerts.model import Alert, Workload
from runwatch.events import Event
from runwatch.store.retention import Retention, used_bytes
from runwatch.store.sqlite import SqliteStore, query_alerts, query_events

DAY = 86_400 * 10**9


def _ev(i: int, t: int, pid: int) -> Event:
    return Event(id=f"r-{i:05d}", time=t, kind="file.open", pid=pid, exe=f"/usr/bin/w{pid}",
                 cmdline=f"w{pid} --job {pid} " + "x" * 200, argv=[f"w{pid}", "--job", str(pid)],
                 ancestry=["/usr/bin/bash"])


def _alert(i: int, t: int) -> Alert:
    return Alert(id=f"a-{i}", time=t, rule="secret_read", severity="high", output=f"alert {i}",
                 workload=Workload(id="c1", name="agent"))


def _procs(db: Path) -> list[int]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT pid FROM procs ORDER BY pid")]
    finally:
        conn.close()


def test_prune_by_age_counts_what_went(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    now = time.time_ns()
    old = [_ev(i, now - 9 * DAY + i, 100 + i % 3) for i in range(13)]  # pids 100-102, all old
    new = [_ev(100 + i, now - DAY + i, 102 + i % 5) for i in range(17)]  # 102 again, and 103-106
    with SqliteStore(db) as store:
        store.write(old + new)
        store.write_alerts([_alert(i, now - 8 * DAY) for i in range(3)] + [_alert(9, now)])
    with SqliteStore(db, retention=Retention(max_age_ns=7 * DAY)) as store:
        store.flush()
        store.prune_now()  # a second pass finds nothing more
        stats = store.stats()
    assert stats["pruned"] == {"events": 13, "alerts": 3, "processes": 2}
    assert query_events(db) == new  # full contexts, pid 102's included
    assert [a.id for a in query_alerts(db)] == ["a-9"]
    assert _procs(db) == [102, 103, 104, 105, 106]


def test_prune_by_size_keeps_the_newest(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    evs = [_ev(i, 1_000_000 + i, 200 + i % 7) for i in range(20_001)]
    with SqliteStore(db) as store:
        for k in range(0, len(evs), 5_000):
            store.write(evs[k:k + 5_000])
    bound = 2 << 20
    with SqliteStore(db, retention=Retention(max_bytes=bound)) as store:
        pruned = store.prune_now()
        stats = store.stats()
    kept = query_events(db)
    conn = sqlite3.connect(db)
    try:
        assert used_bytes(conn) <= bound
    finally:
        conn.close()
    assert 0 < len(kept) < len(evs)
    assert stats["pruned"]["events"] == len(evs) - len(kept)
    assert pruned.events in (0, len(evs) - len(kept))  # the pass at open may have done it all
    assert kept == evs[len(evs) - len(kept):]  # a suffix: the oldest went first


def test_a_writer_puts_back_a_context_another_process_pruned(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    now = time.time_ns()
    with SqliteStore(db) as live:
        live.write([_ev(1, now - 9 * DAY, 300)])
        live.flush()  # the live store now knows pid 300's context by its key
        with SqliteStore(db, retention=Retention(max_age_ns=7 * DAY)) as other:
            other.prune_now()
            assert other.stats()["pruned"] == {"events": 1, "alerts": 0, "processes": 1}
        live.write([_ev(2, now, 300)])
    assert query_events(db) == [_ev(2, now, 300)]
    assert _procs(db) == [300]
