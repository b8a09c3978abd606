"""``report`` from the OCSF lake: the same events and alerts written to a store and, through the
real LakeWriter, to a lake give the same report and the same reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from report_synthetic import AGENT_ID, MS, SPIFFE, T0, alerts, events

from runwatch.alerts.model import Alert
from runwatch.alerts.render import to_json as alert_json
from runwatch.events import Event, to_json
from runwatch.lake.output import LakeOutput
from runwatch.report.build import build_report
from runwatch.report.render_json import render as render_json
from runwatch.store import source
from runwatch.store.source import LakeDir
from runwatch.store.sqlite import SqliteStore

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, Path, list[Event], list[Alert]]:
    """The synthetic events and alerts in a store and in a lake (three flushes: several files
    per partition)."""
    evs, als = events(), alerts()
    with SqliteStore(tmp_path / "events.db") as store:
        store.write(evs)
        store.write_alerts(als)
        store.flush()
    out = LakeOutput(tmp_path / "lake", hostname="node-a")
    out.open()
    for part in (evs[:7], evs[7:19], evs[19:]):
        out.write(part)
        out.flush()
    out.write_alerts(als)
    out.close()
    return tmp_path / "events.db", tmp_path / "lake", evs, als


@pytest.fixture
def synthetic_db(written: tuple[Path, Path, list[Event], list[Alert]]) -> Path:
    return written[0]


@pytest.fixture
def lake(written: tuple[Path, Path, list[Event], list[Alert]]) -> Path:
    return written[1]


def report_json(src: source.Source, workload: str, **window: int) -> dict[str, object]:
    r = json.loads(render_json(build_report(src, workload, now_ns=T0, **window)))
    r.pop("db")
    return r


@pytest.mark.parametrize("workload", ["agent-7", "ml/agent-7", SPIFFE, "bystander"])
def test_the_report_from_the_lake_is_the_report_from_the_store(synthetic_db: Path, lake: Path, workload: str) -> None:
    assert report_json(LakeDir(str(lake)), workload) == report_json(synthetic_db, workload)
    window = {"since_ns": T0 + 5 * MS, "until_ns": T0 + 27 * MS}
    assert report_json(LakeDir(str(lake)), workload, **window) == report_json(synthetic_db, workload, **window)


def test_reads_match_the_store_with_every_filter(synthetic_db: Path, lake: Path) -> None:
    src = LakeDir(str(lake))
    assert source.query_containers(src) == source.query_containers(synthetic_db)
    for filters in ({}, {"container": AGENT_ID[:6]}, {"container": "agent"}, {"workload": "ml/agent-7"},
                    {"workload": SPIFFE}, {"kinds": ["process.exec", "dns.query"]}, {"pid": 100},
                    {"since_ns": T0 + 3 * MS, "until_ns": T0 + 21 * MS}, {"order": "desc", "limit": 5}):
        assert source.query_events(src, **filters) == source.query_events(synthetic_db, **filters), filters
    every = source.query_events(src)
    assert len(every) == 36
    for filters in ({}, {"rule": "secret_read_then_new_egress"}, {"since_ns": T0 + 20 * MS},
                    {"workload": "agent-7"}, {"container": "bystander"}, {"severity": "critical"}):
        assert source.query_alerts(src, **filters) == source.query_alerts(synthetic_db, **filters), filters
    assert [a.id for a in source.query_alerts(src)] == ["al-2", "al-1"]


def test_raw_data_is_the_original_json(written: tuple[Path, Path, list[Event], list[Alert]]) -> None:
    _, lake, evs, als = written
    rows = {}
    for path in lake.glob("class_uid=*/day=*/hour=*/*.parquet"):
        t = pq.read_table(path, columns=["record_id", "raw_data"]).to_pydict()
        rows.update(zip(t["record_id"], t["raw_data"], strict=True))
    expected = {e.id: to_json(e).decode() for e in evs} | {a.id: alert_json(a).decode() for a in als}
    assert rows == expected and len(rows) == 38


def test_report_lake_on_the_command_line(synthetic_db: Path, lake: Path) -> None:
    def rw(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([RUNWATCH, "report", "--workload", "agent-7", "--format", "json", *args],
                              capture_output=True, text=True, timeout=60)

    a, b = rw("--lake", str(lake)), rw("--db", str(synthetic_db))
    assert (a.returncode, b.returncode) == (0, 0), a.stderr + b.stderr
    x, y = json.loads(a.stdout), json.loads(b.stdout)
    assert x.pop("db") == str(lake) and y.pop("db") == str(synthetic_db)
    x.pop("generated_ns"), y.pop("generated_ns")
    assert x == y
    missing = rw("--lake", str(lake.parent / "absent"))
    assert (missing.returncode, missing.stderr.strip().splitlines()) == (
        1, [f"runwatch: error: {lake.parent / 'absent'}: no such lake directory"])
