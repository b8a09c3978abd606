"""End to end: an SDK agent in a runc container under ``runwatch run --policy`` asks for
challenged tools; one challenge is approved from the console's page in Chromium and its tool
runs, the next is rejected there and its tool does not. The answers went over the control
socket: each decision records who answered (the console's credentials) and the name typed
into the page as its note."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from console_browser import VIEWPORT, log_in, shot
from console_synthetic import TOKEN

from runwatch.console.app import ConsoleConfig
from runwatch.console.serve import ConsoleServer
from runwatch.store.sqlite_read import query_events, query_runs

pytestmark = pytest.mark.kernel
pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency (scripts/install.sh)")

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))
DRIVER = str(Path(__file__).resolve().parents[1] / "policy" / "e2e_driver.py")

AGENT = (Path(__file__).resolve().parents[1] / "policy" / "tool_agent.py").read_text()

POLICY = """
id: console-7
selector: {container: [console-agent]}
mode: enforce
fail: closed
challenge_timeout: 90s
tools:
  allow: [search]
  challenge: [send_email, wire_money]
"""


def _wait_store(db: Path, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if query_runs(db):
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{db} never held a run")


def _answer_from_the_page(page: Any, proc: subprocess.Popen[str], tool: str, verb: str) -> tuple[str, str]:
    """Wait for ``tool``'s challenge on the page, then answer it as ana; (challenge id, result line)."""
    deadline = time.monotonic() + 60
    while page.locator(f'tr.challenge:has(td.tool:text-is("{tool}"))').count() == 0:
        assert time.monotonic() < deadline and proc.poll() is None, f"no challenge for {tool} appeared"
        time.sleep(0.2)
        page.goto(page.url.split("?")[0])
    assert page.text_content("#challenge-count") == "1"
    row = page.locator("tr.challenge")
    cid = row.get_attribute("data-id") or ""
    assert [t.strip() for t in row.locator("td").all_text_contents()[1:6]] == [
        tool, "console-7", f"tools.challenge:{tool}", "console-agent", "console-agent"]
    if verb == "approve":
        shot(page, "challenges")
    row.locator("form.answer input.by").fill("ana")
    row.locator(f"button.{verb}").click()
    page.wait_for_selector("#done")
    return cid, page.text_content("#done") or ""


def test_a_challenge_approved_from_the_page_lets_the_tool_run(tmp_path: Path, browser: Any) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    sock, control, db = tmp_path / "sock", tmp_path / "control.sock", tmp_path / "tools.db"
    cfg = {"name": "console-agent", "binds": [[str(sock), "/run/runwatch-sdk", False]],
           "env": {"RUNWATCH_SOCKET": "/run/runwatch-sdk/sdk.sock",
                   "RUNWATCH_POLICY_SOCKET": "/run/runwatch-sdk/policy.sock"},
           "steps": [["{python}", "-c", AGENT, "console-agent", "7", "search", "send_email", "wire_money"]]}
    args = [RUNWATCH, "run", "--db", str(db), "--no-rules", "--sdk-socket", str(sock / "sdk.sock"),
            "--control-socket", str(control), "--policy", str(tmp_path / "policy.yaml"),
            "--", sys.executable, DRIVER, json.dumps(cfg)]
    with open(tmp_path / "runwatch.log", "w") as err:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            _wait_store(db, proc)
            console = ConsoleConfig(db=str(db), token=TOKEN, acks=str(tmp_path / "acks"), control_socket=str(control))
            with ConsoleServer(console, "127.0.0.1", 0) as server:
                ctx = browser.new_context(viewport=VIEWPORT)
                page = ctx.new_page()
                log_in(page, server.url + "/challenges")
                cid, done = _answer_from_the_page(page, proc, "send_email", "approve")
                rid, rejected = _answer_from_the_page(page, proc, "wire_money", "reject")
                ctx.close()
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log = (tmp_path / "runwatch.log").read_text()
    assert proc.returncode == 0, log
    assert done == f"challenge {cid} approved: tool 'send_email' of console-agent -> allow", done
    assert rejected == f"challenge {rid} rejected: tool 'wire_money' of console-agent -> deny", rejected
    result = json.loads(out.strip().splitlines()[-1])
    assert json.loads(result["steps"][0]["out"]) == [
        ["search", "ran"], ["send_email", "ran"], ["wire_money", "denied", "reject"],
        ["side-search", "side-send_email"]]  # the rejected tool's side effect never happened
    decided = [e.decision for e in query_events(db, kinds=["policy.decision"]) if e.decision is not None]
    assert [(d.verdict, d.target, d.challenge_id) for d in decided] == [
        ("allow", "search", None), ("challenge", "send_email", cid), ("approve", "send_email", cid),
        ("challenge", "wire_money", rid), ("reject", "wire_money", rid)]
    for d, word in ((decided[2], "approved"), (decided[4], "rejected")):
        reason = d.reason or ""
        assert reason.startswith(f"{word} by ") and reason.endswith("; note 'runwatch console (ana)'"), reason
    started = [e.tool_call.name for e in query_events(db, kinds=["tool.start"]) if e.tool_call is not None]
    assert started == ["search", "send_email"]
