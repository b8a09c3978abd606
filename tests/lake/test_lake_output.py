"""The lake output: a known mix of events and alerts, counted per class with `runwatch query`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
from lakemix import T1, T2, connect_event, exec_event, mix, parquet_files

from runwatch.lake.output import LakeOutput
from runwatch.lake.query import iter_records, run_sql
from runwatch.lake.schema import CLASSES
from runwatch.outputs.base import output_factory
from runwatch.testing.ocsf_check import violations

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))
COUNTS = ("SELECT (SELECT count(*) FROM process_activity) AS process, (SELECT count(*) FROM network_activity) "
          "AS network, (SELECT count(*) FROM file_activity) AS file, (SELECT count(*) FROM detection_finding) "
          "AS finding, (SELECT count(*) FROM dns_activity) AS dns, (SELECT count(*) FROM records) AS total")


def query(lake: Path, sql: str, *fmt: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUNWATCH, "query", "--lake", str(lake), *fmt, sql], capture_output=True, text=True,
                          timeout=120)


def write_mix(lake: Path) -> LakeOutput:
    events, alerts = mix()
    out = output_factory("lake")(lake, hostname="node-a")
    assert isinstance(out, LakeOutput)
    out.open()
    out.write(events[:20])
    out.write_alerts(alerts)
    out.write(events[20:])
    assert out.flush() == 44
    out.close()
    return out


def test_the_mix_is_counted_per_class_by_runwatch_query(lake: Path) -> None:
    write_mix(lake)
    res = query(lake, COUNTS, "--format", "json")
    assert res.returncode == 0, res.stderr
    assert [json.loads(line) for line in res.stdout.splitlines()] == [
        {"process": 23, "network": 11, "file": 7, "finding": 3, "dns": 0, "total": 44}]


def test_partition_directories_are_class_day_hour_and_files_are_whole(lake: Path) -> None:
    write_mix(lake)
    dirs = sorted({str(Path(f).parent) for f in parquet_files(lake)})
    assert dirs == ["class_uid=1001/day=2026-12-04/hour=20", "class_uid=1007/day=2026-12-04/hour=20",
                    "class_uid=1007/day=2026-12-05/hour=3", "class_uid=2004/day=2026-12-05/hour=3",
                    "class_uid=4001/day=2026-12-04/hour=20"]
    # one file per partition and flush, named part-<uuid>.parquet; nothing hidden left behind
    assert len(parquet_files(lake)) == 5
    assert all(Path(f).name.startswith("part-") and len(Path(f).stem) == 37 for f in parquet_files(lake))
    assert [p for p in lake.rglob(".*")] == []
    res = query(lake, "SELECT class_uid, day, hour, count(*) AS n FROM records GROUP BY ALL ORDER BY ALL",
                "--format", "csv")
    assert res.stdout.splitlines() == ["class_uid,day,hour,n", "1001,2026-12-04,20,7", "1007,2026-12-04,20,15",
                                       "1007,2026-12-05,3,8", "2004,2026-12-05,3,3", "4001,2026-12-04,20,11"]


def test_every_file_has_its_class_schema(lake: Path) -> None:
    write_mix(lake)
    for f in parquet_files(lake):
        uid = int(f.split("/")[0].removeprefix("class_uid="))
        assert pq.read_schema(lake / f).remove_metadata() == CLASSES[uid].arrow_schema, f


def test_every_record_validates_and_keeps_its_id(lake: Path) -> None:
    write_mix(lake)
    events, alerts = mix()
    records = list(iter_records(lake))
    assert len(records) == 44
    bad = {r["metadata"]["uid"]: v for r in records if (v := violations(r))}
    assert bad == {}
    assert sorted(r["metadata"]["uid"] for r in records) == sorted([e.id for e in events] + [a.id for a in alerts])
    _, rows = run_sql(lake, "SELECT count(*) FROM records WHERE record_id = metadata->>'$.uid'")
    assert rows == [(44,)]


def test_a_record_reads_back_as_the_mapping_made_it(lake: Path) -> None:
    from runwatch.events import to_json
    from runwatch.outputs.ocsf import to_ocsf

    e = exec_event(T1, 7)
    out = LakeOutput(lake, hostname="node-a")
    out.open()
    out.write([e])
    out.close()
    # the mapping's record, with the original event in raw_data
    assert list(iter_records(lake, "process_activity")) == [{**to_ocsf(e, hostname="node-a"),
                                                             "raw_data": to_json(e).decode()}]
    _, rows = run_sql(lake, "SELECT process->>'$.cmd_line', container->>'$.name', time FROM process_activity")
    assert rows == [("true 7", "agent-23", (T1 + 7) // 1_000_000)]


def test_a_restart_appends_and_a_redelivered_record_is_not_written_twice(lake: Path) -> None:
    first = write_mix(lake)
    events, _ = mix()
    assert first.writer.stats()["duplicates"] == 0
    again = LakeOutput(lake, hostname="node-a")
    again.open()
    fresh = [connect_event(T2, i) for i in range(5)]
    again.write(events[3:12] + fresh)  # 9 redelivered, 5 new
    again.write(fresh[:2])  # redelivered within the same run
    again.close()
    assert again.writer.stats() == {"records": 5, "files": 1, "buffered": 0, "duplicates": 11, "folded": 0,
                                    "rejected": 0, "refused": 0, "write_errors": 0}
    res = query(lake, COUNTS, "--format", "json")
    assert json.loads(res.stdout) == {"process": 23, "network": 16, "file": 7, "finding": 3, "dns": 0, "total": 49}
    _, rows = run_sql(lake, "SELECT count(DISTINCT record_id), count(*) FROM records")
    assert rows == [(49, 49)]


def test_run_and_watch_take_lake_and_the_session_adds_the_output(tmp_path: Path) -> None:
    from runwatch.session import Session, SessionOptions

    for cmd in ("run", "watch"):
        res = subprocess.run([RUNWATCH, cmd, "--help"], capture_output=True, text=True, timeout=60)
        assert "--lake DIR" in res.stdout, cmd
    session = Session(SessionOptions(db=None, lake=str(tmp_path / "l"), source="proc"))
    names = [type(o).__name__ for o in session._outputs()]
    assert names.count("LakeOutput") == 1


def test_the_lake_is_its_owners_only(lake: Path) -> None:
    write_mix(lake)
    modes = {p.stat().st_mode & 0o777 for p in lake.rglob("*.parquet")}
    dirs = {p.stat().st_mode & 0o777 for p in [lake, *lake.rglob("*")] if p.is_dir()}
    assert (modes, dirs) == ({0o600}, {0o700})
