"""The console over the demo's live store, in Chromium: while the demo's agents run, the
Alerts page is open and the exfiltration alert arrives over server-sent events; afterwards
each page shows the recorded run's workloads, tool calls and the alert's evidence."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from console_browser import VIEWPORT, log_in
from console_synthetic import TOKEN

from runwatch.cli.watch import rule_paths
from runwatch.console.app import ConsoleConfig
from runwatch.console.serve import ConsoleServer
from runwatch.demo.runner import DemoRun, run_demo
from runwatch.sensors.kernel.loader import object_path
from runwatch.store.sqlite_read import query_runs

pytestmark = pytest.mark.kernel
pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency (scripts/install.sh)")

RULE = "secret_read_then_new_egress"


def _wait_store(db: str, worker: threading.Thread, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and worker.is_alive():
        try:
            if query_runs(db):
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{db} never held a run")


def test_a_live_alert_arrives_while_the_demo_runs(tmp_path: Path, browser: Any) -> None:
    if os.geteuid() != 0:
        pytest.skip("the demo needs root")
    if not object_path().exists():
        pytest.fail(f"{object_path()} is missing: run scripts/install.sh")
    db = str(tmp_path / "demo.db")
    done: list[DemoRun | BaseException] = []

    def demo() -> None:
        try:
            done.append(run_demo(["exfil-agent-benign", "exfil-agent"], db, rules=rule_paths((), False)))
        except BaseException as exc:
            done.append(exc)

    worker = threading.Thread(target=demo, daemon=True)
    worker.start()
    _wait_store(db, worker)
    cfg = ConsoleConfig(db=db, token=TOKEN, acks=str(tmp_path / "acks"), control_socket=str(tmp_path / "c.sock"),
                        poll_s=0.2)
    with ConsoleServer(cfg, "127.0.0.1", 0) as server:
        page = browser.new_context(viewport=VIEWPORT).new_page()
        log_in(page, server.url + "/alerts")
        page.wait_for_selector("#live.on")
        before = page.locator("tr.alert").count()
        page.wait_for_selector("tr.alert.fresh", timeout=240_000)  # added by the page's stream, not the server
        worker.join(timeout=240)
        assert done and isinstance(done[0], DemoRun), done
        run = done[0]
        assert [(r.scenario.name, r.result.rc, r.result.error) for r in run.runs] == [
            ("exfil-agent-benign", 0, None), ("exfil-agent", 0, None)]
        assert before == 0
        assert [t.strip() for t in page.locator("tr.alert.fresh td").all_text_contents()[1:4]] == [
            "high", RULE, "demo-exfil-agent"]
        assert page.text_content("#alert-count") == "1"
        # Follow it to its evidence.
        page.click("tr.alert.fresh a.evidence")
        page.wait_for_url("**/alerts/*")
        assert page.text_content("#rule") == RULE
        kinds = [t.strip() for t in page.locator("tr.event td:nth-child(2)").all_text_contents()]
        assert "file.open" in kinds and "net.connect" in kinds
        assert page.text_content("#evidence-count") == str(len(kinds))
        # The workloads and the agent's tool calls.
        page.click("nav >> text=Workloads")
        names = [t.strip() for t in page.locator("a.wname").all_text_contents()]
        # each container once, by its name (also those first seen before their name was known)
        assert names == ["demo-exfil-agent", "demo-exfil-agent-benign"]
        assert [t.strip() for t in page.locator("a.alert-count").all_text_contents()] == ["1", "0"]
        page.click("text=demo-exfil-agent >> nth=0")
        assert [t.strip() for t in page.locator("details.span strong.tool").all_text_contents()] == [
            "read_file", "read_file", "http_post", "http_post"]
        assert page.text_content("#count-calls") == "4"
        page.click("p.wnav >> text=Process tree")
        assert page.text_content("#count-processes") == "1"
