"""A run whose process was killed (SIGKILL) is found and marked crashed, with its stored counts.

A real ``runwatch run`` is killed with ``kill -9`` after it stored some events; the next read
shows it crashed, the next writer open marks it so in the file, and ``runwatch doctor`` lists
it as crashed with the events and alerts it stored, never as ``events 0``. A run whose owner
is alive, or whose pid now belongs to another process, is left alone.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runwatch.host import procfs
from runwatch.store.runs import Owner, boot_id
from runwatch.store.sqlite import SqliteStore, query_alerts, query_events, query_runs
from runwatch.testing.runs import runs_so_far

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))



RULE = """
- rule: crash-test-true
  desc: a tagged true ran
  condition: kind = process.exec and proc.name = true
  severity: low
"""


def _tagged_execs(db: Path) -> int:
    return sum(1 for e in query_events(db, kinds=["process.exec"]) if (e.argv or [""])[-1].startswith("crash-"))


@pytest.mark.kernel
@pytest.mark.skipif(os.geteuid() != 0, reason="the kernel sensor needs root")
def test_a_killed_run_is_marked_crashed_with_its_stored_counts(tmp_path: Path) -> None:
    db, rules = tmp_path / "crash.db", tmp_path / "rules.yaml"
    rules.write_text(RULE)
    script = "for i in $(seq 1 23); do /bin/true crash-$i; done; exec sleep 60"
    proc = subprocess.Popen([RUNWATCH, "run", "--db", str(db), "--rules", str(rules), "--no-sdk", "--",
                             "sh", "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (runs_so_far(db) and _tagged_execs(db) == 23
                                                   and len(query_alerts(db)) >= 1):
            time.sleep(0.1)
        assert _tagged_execs(db) == 23
        time.sleep(0.5)  # the commit that carries the run's counts with them
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sleeping command too
        proc.wait(10)
    stored, alerts = len(query_events(db)), len(query_alerts(db))
    assert alerts >= 1  # the 23 execs fold into one alert per process (deduplication)
    [seen] = query_runs(db)  # read-only: shown crashed before anything wrote to the file
    assert (seen.crashed, seen.ended is not None) == (True, True)
    assert (seen.stats["events"], seen.stats["alerts"]) == (stored, alerts)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT ended, crashed, stored_events FROM runs").fetchone() == (None, 0, stored)

    res = subprocess.run([RUNWATCH, "doctor", "--db", str(db), "--format", "json"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    [shown] = json.loads(res.stdout)["runs"]
    assert (shown["state"], shown["events"], shown["alerts"]) == ("crashed", stored, alerts)
    with sqlite3.connect(db) as conn:  # doctor marked it in the file
        ended, crashed, stats = conn.execute("SELECT ended, crashed, stats FROM runs").fetchone()
    assert crashed == 1 and ended is not None
    recorded = json.loads(stats)
    assert (recorded["events"], recorded["alerts"], recorded["crashed"]) == (stored, alerts, True)

    text = subprocess.run([RUNWATCH, "doctor", "--db", str(db)], capture_output=True, text=True, timeout=120,
                          check=False).stdout
    [row] = [line for line in text.splitlines() if "crashed" in line and "sh -c" in line]
    assert f" {stored} " in row


def _open_run(db: Path, owner: tuple[int, int | None, str | None]) -> str:
    with SqliteStore(db) as store:
        rid = store.record_run(started_ns=1_000, command="agent --serve")
        store.write([])
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET pid = ?, pid_start = ?, boot_id = ?, stored_events = 29 WHERE id = ?",
                     (*owner, rid))
    return rid


def test_a_reused_pid_or_another_boot_is_not_the_owner(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        live = procfs.start_ticks(sleeper.pid)
        cases = {
            "alive": (sleeper.pid, live, boot_id()),
            "pid reused": (sleeper.pid, (live or 0) - 7, boot_id()),
            "other boot": (sleeper.pid, live, "00000000-0000-0000-0000-000000000023"),
        }
        marked = {}
        for name, owner in cases.items():
            db = tmp_path / f"{name.replace(' ', '-')}.db"
            _open_run(db, owner)
            lines = SqliteStore(db).recovered_runs
            marked[name] = (len(lines), query_runs(db)[0].crashed)
            if lines:
                assert lines[0].endswith("marked crashed; 29 events and 0 alerts stored")
        assert marked == {"alive": (0, False), "pid reused": (1, True), "other boot": (1, True)}
        assert Owner(sleeper.pid, live, boot_id()).alive()
    finally:
        sleeper.kill()
        sleeper.wait()
