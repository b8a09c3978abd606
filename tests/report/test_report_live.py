"""The report on a real recorded run: the demo's "agent reads its secret and posts it to a
sink" scenario (and its benign twin) under the live sensor, read back from SQLite (and from the
OCSF lake the same session wrote)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runwatch.cli.watch import rule_paths
from runwatch.demo.peers import SINK_IP, SINK_NAME, SINK_PORT
from runwatch.demo.runner import DemoRun, run_demo
from runwatch.demo.scenarios import SECRET_NAME
from runwatch.report.build import build_report
from runwatch.report.render_html import render as render_html
from runwatch.report.render_json import render as render_json
from runwatch.report.render_md import render as render_md
from runwatch.sensors.kernel.loader import object_path
from runwatch.store.source import LakeDir, query_alerts, query_events

pytestmark = pytest.mark.kernel

SECRET_PATH = f"/run/secrets/{SECRET_NAME}"
CALLS = [("rx-1", "read_file"), ("rx-2", "read_file"), ("rx-3", "http_post"), ("rx-4", "http_post")]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    if os.geteuid() != 0:
        pytest.skip("the demo needs root")
    if not object_path().exists():
        pytest.fail(f"{object_path()} is missing: run scripts/install.sh")
    db = str(tmp_path_factory.mktemp("report") / "demo.db")
    run = run_demo(["exfil-agent", "exfil-agent-benign"], db, rules=rule_paths((), False), lake=db + ".lake")
    assert [(r.scenario.name, r.result.rc, r.result.error) for r in run.runs] == [
        ("exfil-agent", 0, None), ("exfil-agent-benign", 0, None)]
    yield run


def test_the_secret_the_sink_and_the_tool_call_that_sent_it(recorded: DemoRun) -> None:
    r = json.loads(render_json(build_report(recorded.db, "demo-exfil-agent")))
    assert [c["id"] for c in r["containers"]] == [cid for cid, _ in recorded.runs[0].result.containers]
    assert r["data_left"] is True and r["bytes_known"] is False
    secrets = [(s["secret"], s["how"], s["sources"], s["call_id"], s["tool"], s["egress_total"]) for s in r["secrets"]]
    assert secrets == [
        (SECRET_PATH, "file", ["kernel", "sdk"], "rx-2", "read_file", 2)]
    out = [(x["destination"], x["name"], x["call_id"], x["tool"], x["connected"], x["bytes"])
           for x in r["secrets"][0]["egress"]]
    assert out == [(f"{SINK_IP}:{SINK_PORT}", SINK_NAME, "rx-3", "http_post", True, None),
                   (f"{SINK_IP}:{SINK_PORT}", SINK_NAME, "rx-4", "http_post", True, None)]
    assert r["secrets"][0]["time"] < r["secrets"][0]["egress"][0]["time"]
    assert [(d["destination"], d["kind"], d["count"], d["after_secret"]) for d in r["destinations"]] == [
        (SINK_NAME, "dns.query", 2, True), (f"{SINK_IP}:{SINK_PORT}", "net.connect", 2, True)]
    assert [(t["call_id"], t["name"]) for t in r["tool_calls"]] == CALLS
    assert r["tool_calls"][1]["kinds"] == {"file.open": 1}
    assert [(x["route"], x["tool_calls"]) for x in r["routes"]] == [("agent/weekly-report", [c for c, _ in CALLS])]
    # The agent runs no program: its entrypoint is the one exec and the one process.
    assert (r["counts"]["execs"], r["counts"]["processes"], r["counts"]["tool_calls"]) == (1, 1, 4)
    assert r["processes"][0]["cmdline"].startswith("python3 -m runwatch.demo.workloads.exfil_agent")
    assert [(a["rule"], a["tool_call"]["call_id"]) for a in r["alerts"]] == [("secret_read_then_new_egress", "rx-3")]


def test_the_benign_twin_read_no_secret(recorded: DemoRun) -> None:
    r = build_report(recorded.db, "demo-exfil-agent-benign")
    assert (r.secrets, r.data_left, r.alerts) == ([], False, [])
    assert [(d.destination, d.tools) for d in r.destinations if d.kind == "net.connect"] == [
        (f"{SINK_IP}:{SINK_PORT}", ["http_post"])]
    assert "- no secret was read in this window; the workload sent to 1 destination(s): 10.23.0.2:8080" in render_md(r)


def test_the_recorded_run_renders_in_chromium(recorded: DemoRun, tmp_path: Path, browser: Any) -> None:
    rep = build_report(recorded.db, "demo-exfil-agent")
    page_file = tmp_path / "r.html"
    page_file.write_text(render_html(rep))
    page = browser.new_page()
    page.goto(page_file.as_uri())
    assert page.locator("svg.proctree g.proc").count() == len(rep.processes) == 1
    assert page.locator("svg.timeline g.mark.call").count() == 4
    assert page.locator("svg.timeline g.mark.secret").count() == 1
    assert SECRET_PATH in page.locator("body").inner_text()
    page.close()


def test_the_lake_the_same_session_wrote_gives_the_same_report(recorded: DemoRun) -> None:
    lake = LakeDir(recorded.db + ".lake")
    assert len(query_events(lake)) == len(query_events(recorded.db)) > 0
    assert query_alerts(lake) == query_alerts(recorded.db)
    for workload in ("demo-exfil-agent", "demo-exfil-agent-benign"):
        store = json.loads(render_json(build_report(recorded.db, workload, now_ns=1)))
        from_lake = json.loads(render_json(build_report(lake, workload, now_ns=1)))
        assert (store.pop("db"), from_lake.pop("db")) == (recorded.db, lake.path)
        assert from_lake == store and store["counts"]["events"] > 0
    # the secret the agent read is in no column of any record (raw_data included)
    import pyarrow.parquet as pq

    from runwatch.demo.scenarios import SECRET_VALUE

    files = sorted(Path(lake.path).glob("class_uid=*/day=*/hour=*/*.parquet"))
    text = "".join(str(pq.read_table(f).to_pylist()) for f in files)
    assert files and SECRET_NAME in text and SECRET_VALUE.decode() not in text
