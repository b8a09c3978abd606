"""The store on a full filesystem or under another writer's lock: nothing is lost uncounted.

Real faults only: the database lives on a small tmpfs that is filled up with a file (ENOSPC
for real) and freed again, and a second real SQLite connection holds ``BEGIN EXCLUSIVE`` for
longer than the writer's busy timeout. Events the writer cannot commit wait in the bounded
spool and are written once the store recovers; what does not fit is counted as lost, per
reason.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runwatch.events import Event
from runwatch.store.spool import ROW_OVERHEAD, SpoolLimits
from runwatch.store.sqlite import SqliteStore, query_events
from runwatch.store.sqlite_layout import stored_size

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")

PAD = "x" * 3000  # a big event: the WAL must grow (allocate tmpfs pages) for every batch


def _events(start: int, n: int) -> list[Event]:
    return [Event(id=f"ev-{i:05d}", time=1_000_000 + i, kind="process.exec", source="kernel", pid=4000 + i,
                  cmdline=f"/bin/true {PAD} {i}") for i in range(start, start + n)]


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, unmounted afterwards."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full (a real ENOSPC); returns it."""
    path = directory / "filler"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    return path


def wait_until(cond: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)
    assert cond(), "condition not reached in time"  # type: ignore[operator]


def test_disk_full_spools_then_writes_everything_after_space_is_freed(small_fs: Path) -> None:
    db = small_fs / "events.db"
    with SqliteStore(db) as store:
        store.write(_events(0, 23))
        store.flush()
        filler = fill(small_fs)
        for start in range(23, 64, 7):  # 41 events in batches of 7 (the last one 6)
            store.write(_events(start, min(7, 64 - start)))
        store.flush()  # returns: the events wait in the spool, nothing raises
        st = store.stats()
        assert st["fault"] == "disk_full"
        assert st["spooled"] == 41 and st["lost"] == 0
        assert st["first_fault"].startswith("disk_full: OperationalError: database or disk is full")
        filler.unlink()
        wait_until(lambda: store.stats()["spooled"] == 0)
        store.write(_events(64, 7))
    st = store.stats()
    assert (st["written"], st["recovered"], st["lost"], st["lost_by_reason"]) == (71, 41, 0, {})
    assert st["fault"] is None
    assert [e.id for e in query_events(db)] == [f"ev-{i:05d}" for i in range(71)]


def test_a_full_spool_counts_what_it_could_not_keep(small_fs: Path) -> None:
    db = small_fs / "events.db"
    with SqliteStore(db, spool=SpoolLimits(events=29, bytes=64 << 20)) as store:
        store.write(_events(0, 23))
        store.flush()
        filler = fill(small_fs)
        for start in range(23, 64, 7):
            store.write(_events(start, min(7, 64 - start)))
        store.flush()
        st = store.stats()
        # batches of 7 while they fit: 4 batches (28 events); the 29-event bound refuses the rest
        assert (st["spooled"], st["lost"], st["lost_by_reason"]) == (28, 13, {"disk_full": 13})
        filler.unlink()
        wait_until(lambda: store.stats()["spooled"] == 0)
    st = store.stats()
    assert (st["written"], st["recovered"], st["lost"], st["lost_by_reason"]) == (51, 28, 13, {"disk_full": 13})
    assert len(query_events(db)) == 51


def test_spool_bound_in_bytes(small_fs: Path) -> None:
    db = small_fs / "events.db"
    evs = _events(0, 31)
    cost = [stored_size(e) + ROW_OVERHEAD for e in evs]
    with SqliteStore(db, spool=SpoolLimits(events=1000, bytes=sum(cost[:11]) + cost[11] - 1)) as store:
        filler = fill(small_fs)
        for e in evs:
            store.write([e])
        store.flush()
        st = store.stats()
        assert (st["spooled"], st["lost"], st["lost_by_reason"]) == (11, 20, {"disk_full": 20})
        filler.unlink()
        wait_until(lambda: store.stats()["spooled"] == 0)
    assert [e.id for e in query_events(db)] == [e.id for e in evs[:11]]


def _hold_lock(db: Path, seconds: float, locked: threading.Event) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_a_lock_held_longer_than_the_busy_timeout_spools_then_recovers(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with SqliteStore(db) as store:
        store.write(_events(0, 23))
        store.flush()
        locked = threading.Event()
        holder = threading.Thread(target=_hold_lock, args=(db, 3.0, locked))
        holder.start()
        assert locked.wait(5)
        began = time.monotonic()
        for start in range(23, 54, 1):  # 31 single-event batches while the lock is held
            store.write(_events(start, 1))
        store.flush()
        assert time.monotonic() - began < 2.9, "the writer waited out the lock instead of spooling"
        st = store.stats()
        assert st["fault"] == "locked" and st["spooled"] == 31
        holder.join()
        wait_until(lambda: store.stats()["spooled"] == 0)
    st = store.stats()
    assert (st["written"], st["recovered"], st["lost"]) == (54, 31, 0)
    assert len(query_events(db)) == 54


def test_locked_past_the_spool_counts_lost_as_locked(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with SqliteStore(db, spool=SpoolLimits(events=17, bytes=64 << 20)) as store:
        locked = threading.Event()
        holder = threading.Thread(target=_hold_lock, args=(db, 2.5, locked))
        holder.start()
        assert locked.wait(5)
        for start in range(31):
            store.write(_events(start, 1))
        store.flush()
        holder.join()
        wait_until(lambda: store.stats()["spooled"] == 0)
    st = store.stats()
    assert (st["written"], st["lost"], st["lost_by_reason"]) == (17, 14, {"locked": 14})
    assert len(query_events(db)) == 17


def test_still_full_at_close_counts_the_spool_as_lost(small_fs: Path) -> None:
    db = small_fs / "events.db"
    store = SqliteStore(db)
    store.write(_events(0, 5))
    store.flush()
    fill(small_fs)
    store.write(_events(5, 19))
    store.close()  # nothing raises: the loss is in the counters
    st = store.stats()
    assert (st["written"], st["spooled"], st["lost"], st["lost_by_reason"]) == (5, 0, 19, {"disk_full": 19})
