"""``runwatch run``/``watch`` with the store on a full filesystem or locked by another writer.

Real processes, a real tmpfs filled up by the watched command itself, and a real second SQLite
connection holding ``BEGIN EXCLUSIVE``. The JSONL output on another filesystem must keep every
event throughout; the store writes what it spooled once it can, and what it could not keep is
counted, said in one line, and makes the exit status non-zero.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runwatch.store.sqlite import query_events, query_runs
from runwatch.testing.runs import runs_so_far

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))



pytestmark = [pytest.mark.kernel, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

COMMAND = """
for i in $(seq 1 23); do /bin/true before-$i; done
sleep 0.6
dd if=/dev/zero of={fs}/filler bs=4k 2>/dev/null || true
for i in $(seq 1 29); do /bin/true during-$i; done
sleep 1
rm {fs}/filler
sleep {pause}
for i in $(seq 1 31); do /bin/true after-$i; done
"""


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "fs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _tags(lines: list[dict[str, object]]) -> dict[str, int]:
    out = {"before": 0, "during": 0, "after": 0}
    for e in lines:
        argv = e.get("argv") or []
        if e["kind"] == "process.exec" and isinstance(argv, list) and argv[:1] == ["/bin/true"] and len(argv) > 1:
            tag = str(argv[1]).split("-")[0]
            if tag in out:
                out[tag] += 1
    return out


def _run(tmp_path: Path, fs: Path, *extra: str, pause: float = 1.5) -> tuple[subprocess.CompletedProcess[str],
                                                                              list[dict[str, object]], Path]:
    script = tmp_path / "cmd.sh"
    script.write_text(COMMAND.format(fs=fs, pause=pause))
    db, jsonl = fs / "run.db", tmp_path / "events.jsonl"
    res = subprocess.run([RUNWATCH, "run", "--db", str(db), "--events-out", str(jsonl), "--no-rules", "--no-sdk",
                          *extra, "--", "sh", str(script)], capture_output=True, text=True, timeout=120, check=False)
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    return res, lines, db


def test_run_on_a_full_disk_keeps_every_event_and_stores_them_once_space_is_back(tmp_path: Path,
                                                                                small_fs: Path) -> None:
    res, lines, db = _run(tmp_path, small_fs)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _tags(lines) == {"before": 23, "during": 29, "after": 31}
    stored = query_events(db)
    assert sorted(e.id for e in stored) == sorted(str(e["id"]) for e in lines)  # every event, JSONL and store
    [run] = query_runs(db)
    store = run.stats["store"]
    assert (store["lost"], store["fault"]) == (0, None) and store["recovered"] > 0
    assert store["first_fault"].startswith("disk_full: OperationalError: database or disk is full")
    assert run.stored_events == len(stored) and not run.crashed
    notes = [line for line in res.stderr.splitlines() if "could not write for a while" in line]
    assert len(notes) == 1 and "; none lost" in notes[0], res.stderr[-3000:]
    assert "lost" not in res.stderr.splitlines()[-2]


def test_run_whose_spool_overflows_counts_the_loss_and_exits_non_zero(tmp_path: Path, small_fs: Path) -> None:
    res, lines, db = _run(tmp_path, small_fs, "--spool-events", "7")
    assert res.returncode == 1, res.stderr[-3000:]
    assert _tags(lines) == {"before": 23, "during": 29, "after": 31}  # the JSONL output kept everything
    stored = query_events(db)
    lost = len(lines) - len(stored)
    assert lost > 7
    [run] = query_runs(db)
    assert run.stats["store"]["lost"] == lost and run.stats["store"]["lost_by_reason"] == {"disk_full": lost}
    errors = [line for line in res.stderr.splitlines() if line.startswith("runwatch: error:")]
    assert len(errors) == 1, res.stderr[-3000:]
    assert errors[0].startswith(f"runwatch: error: the store {db} lost {lost} event(s) (disk_full {lost}; "
                                "spool 7 events / 64 MiB")
    assert f"; lost {lost}; stored in {db}" in res.stderr
    stored_tags = _tags([{"kind": e.kind, "exe": e.exe, "argv": e.argv} for e in stored])
    assert stored_tags["before"] == 23 and stored_tags["after"] == 31


def test_watch_under_a_lock_held_past_the_busy_timeout_loses_nothing(tmp_path: Path) -> None:
    db, jsonl, stats = tmp_path / "watch.db", tmp_path / "watch.jsonl", tmp_path / "stats.json"
    watch = subprocess.Popen([RUNWATCH, "watch", "--db", str(db), "--events-out", str(jsonl), "--no-rules",
                              "--no-sdk", "--duration", "9", "--stats-json", str(stats)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if runs_so_far(db):
                break
            time.sleep(0.1)
        holder = subprocess.Popen([sys.executable, "-c", (
            "import sqlite3, sys, time\n"
            f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
            "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(3.5); c.execute('COMMIT')\n")],
            stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        for i in range(23):
            subprocess.run(["/bin/true", f"locked-{i}"], check=True)
        assert holder.wait(10) == 0
        _out, err = watch.communicate(timeout=60)
    finally:
        if watch.poll() is None:
            watch.kill()
    assert watch.returncode == 0, err[-3000:]
    summary = json.loads(stats.read_text())
    store = summary["store"]
    assert (store["lost"], store["fault"]) == (0, None), store
    assert store["first_fault"].startswith("locked: OperationalError: database is locked"), store
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert sorted(e.id for e in query_events(db)) == sorted(str(e["id"]) for e in lines)
    locked = [e for e in lines if e["kind"] == "process.exec" and str((e.get("argv") or ["", ""])[-1]).startswith(
        "locked-")]
    assert len(locked) == 23
