"""The console over the OCSF lake: the same events and alerts written to the store and, through
the real LakeWriter, to a lake show the same pages."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from console_synthetic import AGENT_WORKLOAD, TOKEN, write_store
from starlette.testclient import TestClient

from runwatch.console.app import ConsoleConfig, create_app
from runwatch.lake.output import LakeOutput
from runwatch.store.source import LakeDir

BEARER = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def both(tmp_path: Path) -> tuple[TestClient, TestClient]:
    """Clients of a console over the store and of one over the lake holding the same records."""
    db, events, alerts = write_store(tmp_path / "events.db")
    out = LakeOutput(tmp_path / "lake", hostname="node-a")
    out.open()
    out.write(events[:11])
    out.flush()
    out.write(events[11:])
    out.write_alerts(alerts)
    out.close()
    clients = []
    for src, acks in ((str(db), "acks-db"), (LakeDir(str(tmp_path / "lake")), "acks-lake")):
        cfg = ConsoleConfig(db=src, token=TOKEN, acks=str(tmp_path / acks), control_socket=str(tmp_path / "c.sock"))
        c = TestClient(create_app(cfg))
        c.headers.update(BEARER)
        clients.append(c)
    return clients[0], clients[1]


def _counts(html: str) -> tuple[object, ...]:
    return (re.findall(r'<span id="(workload-count|overdue-count)">([^<]*)</span>', html),
            re.findall(r'<tr class="workload[^"]*" data-name="([^"]*)"', html),
            re.findall(r'class="alert-count"[^>]*>(\d+)<', html),
            re.findall(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z', html))


def test_the_workloads_page_from_the_lake_shows_the_same_counts(both: tuple[TestClient, TestClient]) -> None:
    store, lake = both
    a, b = store.get("/workloads"), lake.get("/workloads")
    assert (a.status_code, b.status_code) == (200, 200)
    assert _counts(b.text) == _counts(a.text)
    wc, rows, alerts, _ = _counts(b.text)
    assert wc == [("workload-count", "3"), ("overdue-count", "1")]
    assert rows[0] == AGENT_WORKLOAD and alerts == ["2", "1", "1"]
    assert b.text == a.text


def test_alerts_and_a_report_from_the_lake(both: tuple[TestClient, TestClient]) -> None:
    store, lake = both
    a, b = store.get("/alerts"), lake.get("/alerts")
    assert b.status_code == 200 and b.text == a.text
    a, b = store.get("/alerts/al-3"), lake.get("/alerts/al-3")
    assert b.status_code == 200 and b.text == a.text


def test_console_lake_on_the_command_line_needs_the_directory(tmp_path: Path) -> None:
    res = subprocess.run([str(Path(sys.executable).with_name("runwatch")), "console", "--lake",
                          str(tmp_path / "absent"), "--listen", "127.0.0.1:0"],
                         capture_output=True, text=True, timeout=60)
    assert (res.returncode, res.stderr.strip().splitlines()) == (
        1, [f"runwatch: error: {tmp_path / 'absent'}: no such lake directory"])
