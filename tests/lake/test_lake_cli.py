"""`runwatch query` as a real process, and `runwatch run --lake` against the real sensor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from lakemix import T1, exec_event, open_event

from runwatch.lake.output import LakeOutput

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))


def rw(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUNWATCH, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def small(lake: Path) -> Path:
    out = LakeOutput(lake, hostname="node-a")
    out.open()
    out.write([exec_event(T1, i) for i in range(3)] + [open_event(T1, i) for i in range(5)])
    out.close()
    return lake


def test_json_csv_and_table_formats(small: Path) -> None:
    sql = ("SELECT process->>'$.pid' AS pid, day, hour, exit_code FROM process_activity ORDER BY record_id")
    res = rw("query", "--lake", str(small), "--format", "json", sql)
    assert res.returncode == 0, res.stderr
    assert [json.loads(line) for line in res.stdout.splitlines()] == [
        {"pid": str(4000 + i), "day": "2026-12-04", "hour": 20, "exit_code": None} for i in range(3)]
    res = rw("query", "--lake", str(small), "--format", "csv",
             "SELECT file->>'$.path' AS path, activity_name FROM file_activity ORDER BY 1 LIMIT 3")
    assert res.stdout.splitlines() == ["path,activity_name", "/run/secrets/token-0,Open",
                                       "/run/secrets/token-1,Open", "/run/secrets/token-2,Open"]
    res = rw("query", "--lake", str(small), "SELECT class_name, count(*) AS n FROM records GROUP BY 1 ORDER BY 1")
    assert res.returncode == 0
    rows = [line for line in res.stdout.splitlines() if "Activity" in line]
    assert [line.replace("│", " ").split() for line in rows] == [["File", "System", "Activity", "5"],
                                                                 ["Process", "Activity", "3"]]
    assert res.stderr.strip() == "2 row(s)"


def test_a_sql_error_is_one_line(small: Path) -> None:
    res = rw("query", "--lake", str(small), "SELECT nope FROM process_activity")
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("runwatch: error: SQL: Binder Error: "), lines
    assert res.stdout == ""


def test_empty_sql_is_a_usage_error_and_a_statement_runs(small: Path) -> None:
    res = rw("query", "--lake", str(small), "  ")
    assert (res.returncode, res.stderr.strip().splitlines()) == (
        2, ['runwatch: error: no SQL given (for example: runwatch query "SHOW TABLES")'])
    res = rw("query", "--lake", str(small), "--format", "csv", "SET threads = 1")
    assert (res.returncode, res.stdout, res.stderr) == (0, "Success\n", "")  # DuckDB: a header, no row


def test_a_missing_lake_is_one_line(tmp_path: Path) -> None:
    res = rw("query", "--lake", str(tmp_path / "absent"), "SELECT 1")
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"runwatch: error: no lake at {tmp_path / 'absent'} (write one with `runwatch run --lake "
        f"{tmp_path / 'absent'}` or `runwatch watch --lake`)"]


def test_an_empty_class_counts_zero_and_show_tables_lists_the_views(small: Path) -> None:
    res = rw("query", "--lake", str(small), "--format", "json",
             "SELECT (SELECT count(*) FROM dns_activity) AS dns, (SELECT count(*) FROM detection_finding) AS f")
    assert json.loads(res.stdout) == {"dns": 0, "f": 0}
    res = rw("query", "--lake", str(small), "--format", "csv", "SHOW TABLES")
    assert res.stdout.splitlines() == ["name", "api_activity", "base_event", "detection_finding",
                                       "dns_activity", "file_activity", "kernel_activity",
                                       "kernel_extension_activity", "module_activity", "network_activity",
                                       "process_activity",
                                       "records"]


@pytest.mark.kernel
def test_run_writes_the_subtree_and_its_alerts_to_the_lake(tmp_path: Path) -> None:
    lake, alerts = tmp_path / "lake", tmp_path / "alerts.jsonl"
    res = rw("run", "--db", str(tmp_path / "run.db"), "--lake", str(lake), "--alerts-out", str(alerts), "--no-sdk",
             "--", "/bin/sh", "-c", "for i in $(seq 23); do /usr/bin/true; done; /usr/bin/cat /etc/shadow >/dev/null; "
             "exit 3")
    assert res.returncode == 3, res.stderr
    res = rw("query", "--lake", str(lake), "--format", "json",
             "SELECT count(*) AS n, count(DISTINCT record_id) AS ids FROM process_activity "
             "WHERE activity_id = 1 AND process->>'$.file.path' = '/usr/bin/true'")
    assert json.loads(res.stdout) == {"n": 23, "ids": 23}
    stored = rw("events", "--db", str(tmp_path / "run.db"), "--format", "json").stdout.splitlines()
    res = rw("query", "--lake", str(lake), "--format", "json",
             "SELECT count(*) AS n FROM records WHERE class_uid <> 2004")
    assert json.loads(res.stdout) == {"n": len(stored)}
    # every alert is a Detection Finding in the lake (reading /etc/shadow alerts)
    raised = sorted(json.loads(line)["id"] for line in alerts.read_text().splitlines())
    res = rw("query", "--lake", str(lake), "--format", "csv", "SELECT record_id FROM detection_finding ORDER BY 1")
    assert raised and res.stdout.splitlines() == ["record_id", *raised]
    # decoded from raw_data, the lake gives back the store's events and alerts, exactly
    from runwatch.store.source import LakeDir, query_alerts, query_events

    assert query_events(LakeDir(str(lake))) == query_events(tmp_path / "run.db")
    assert query_alerts(LakeDir(str(lake))) == query_alerts(tmp_path / "run.db")


def test_events_reads_the_lake_with_the_store_filters(small: Path) -> None:
    from lakemix import alert

    out = LakeOutput(small, hostname="node-a")
    out.open()
    out.write_alerts([alert(T1, 0)])  # findings are not events
    out.close()
    res = rw("events", "--lake", str(small), "--format", "ocsf")
    assert res.returncode == 0, res.stderr
    records = [json.loads(line) for line in res.stdout.splitlines()]
    uids = [r["metadata"]["uid"] for r in records]  # all in one millisecond: ordered by id
    assert uids == sorted([exec_event(T1, i).id for i in range(3)] + [open_event(T1, i).id for i in range(5)])
    res = rw("events", "--lake", str(small), "--format", "ocsf", "--kind", "file.open", "--newest", "--limit", "3")
    assert [json.loads(line)["file"]["path"] for line in res.stdout.splitlines()] == [
        "/run/secrets/token-4", "/run/secrets/token-3", "/run/secrets/token-2"]
    res = rw("events", "--lake", str(small), "--pid", "4001", "--container", "agent-23")
    assert res.stdout.splitlines() == [
        "2026-12-04T20:15:00.000Z Process Activity: Launch pid=4001 /usr/bin/true [agent-23]"]
    res = rw("events", "--lake", str(small), "--format", "json")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "runwatch: error: the lake holds OCSF records: use --format ocsf or text with --lake"]
