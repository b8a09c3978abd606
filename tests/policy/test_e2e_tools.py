"""End to end through the real CLI: tool calls of an agent in a runc container are decided
before they run, over the decide socket mounted into the container; challenges are
answered with ``runwatch approve`` / ``runwatch reject`` while the agent waits, or time out."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.kernel

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))
DRIVER = str(Path(__file__).with_name("e2e_driver.py"))

AGENT = Path(__file__).with_name("tool_agent.py").read_text()

POLICY = """
id: agent-23
selector: {container: [e2e-agent]}
mode: enforce
fail: closed
challenge_timeout: 2s
tools:
  allow: [search]
  deny: [run_shell]
  challenge: [send_email, wire_money, delete_repo]
"""

TOOLS = ["search", "run_shell", "send_email", "wire_money", "delete_repo"]


def rw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUNWATCH, *args], capture_output=True, text=True, timeout=30, check=False)


def pending(control: Path) -> list[dict[str, Any]]:
    res = rw("challenges", "--format", "json", "--control-socket", str(control))
    return [json.loads(line) for line in res.stdout.splitlines()] if res.returncode == 0 else []


def wait_challenge(control: Path, tool: str, proc: subprocess.Popen[str], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for c in pending(control):
            if c["tool"] == tool:
                return c
        time.sleep(0.05)
    raise AssertionError(f"no challenge for {tool} appeared")


def test_tools_decided_before_they_run_with_challenges_approved_rejected_and_timed_out(tmp_path):  # type: ignore[no-untyped-def]
    (tmp_path / "policy.yaml").write_text(POLICY)
    sock = tmp_path / "sock"
    control = tmp_path / "control.sock"
    cfg = {"name": "e2e-agent", "binds": [[str(sock), "/run/runwatch-sdk", False]],
           "env": {"RUNWATCH_SOCKET": "/run/runwatch-sdk/sdk.sock",
                   "RUNWATCH_POLICY_SOCKET": "/run/runwatch-sdk/policy.sock"},
           "steps": [["{python}", "-c", AGENT, "e2e-agent", "23", *TOOLS]]}
    args = [RUNWATCH, "run", "--db", str(tmp_path / "tools.db"), "--no-rules", "--sdk-socket", str(sock / "sdk.sock"),
            "--control-socket", str(control), "--policy", str(tmp_path / "policy.yaml"),
            "--", sys.executable, DRIVER, json.dumps(cfg)]
    with open(tmp_path / "runwatch.log", "w") as err:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            first = wait_challenge(control, "send_email", proc)
            assert (first["policy"], first["container"]) == ("agent-23", "e2e-agent")
            res = rw("approve", first["id"], "--by", "tester", "--control-socket", str(control))
            assert res.returncode == 0 and res.stdout.startswith(f"challenge {first['id']} approved"), res.stderr
            second = wait_challenge(control, "wire_money", proc)
            res = rw("reject", second["id"], "--control-socket", str(control))
            assert res.returncode == 0 and f"challenge {second['id']} rejected" in res.stdout, res.stderr
            third = wait_challenge(control, "delete_repo", proc)  # left to time out (fail: closed)
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log = (tmp_path / "runwatch.log").read_text()
    assert proc.returncode == 0, log
    result = json.loads(out.strip().splitlines()[-1])
    assert json.loads(result["steps"][0]["out"]) == [
        ["search", "ran"], ["run_shell", "denied", "deny"], ["send_email", "ran"],
        ["wire_money", "denied", "reject"], ["delete_repo", "denied", "timeout"],
        ["side-search", "side-send_email"],  # the denied tools' side effects never happened
    ]
    ev = rw("events", "--db", str(tmp_path / "tools.db"), "--kind", "policy.decision", "--format", "json")
    got = [json.loads(line) for line in ev.stdout.splitlines()]
    assert [(d["decision"]["verdict"], d["decision"]["target"], d["decision"].get("challenge_id")) for d in got] == [
        ("allow", "search", None), ("deny", "run_shell", None),
        ("challenge", "send_email", first["id"]), ("approve", "send_email", first["id"]),
        ("challenge", "wire_money", second["id"]), ("reject", "wire_money", second["id"]),
        ("challenge", "delete_repo", third["id"]), ("timeout", "delete_repo", third["id"]),
    ]
    assert {d["container"]["name"] for d in got} == {"e2e-agent"}
    assert {d["tool_call"]["agent"] for d in got} == {"e2e-agent"}
    # Only the tools that ran have tool.start events.
    starts = rw("events", "--db", str(tmp_path / "tools.db"), "--kind", "tool.start", "--format", "json")
    started = [json.loads(line) for line in starts.stdout.splitlines()]
    assert [s["tool_call"]["name"] for s in started] == ["search", "send_email"]
    # each carries the decision that admitted it: the policy, not a rule list, says it was approved
    assert [(s["decision"]["policy"], s["decision"]["verdict"], s["decision"]["rule"]) for s in started] == [
        ("agent-23", "allow", "tools.allow:search"), ("agent-23", "approve", "tools.challenge:send_email")]
    assert "POLICY DENY [tool] run_shell policy=agent-23 rule=tools.deny:run_shell" in log
    line = f"POLICY CHALLENGE [tool] send_email policy=agent-23 rule=tools.challenge:send_email challenge={first['id']}"
    assert line in log


def test_approve_without_a_running_runwatch_is_one_line(tmp_path):  # type: ignore[no-untyped-def]
    res = rw("approve", "abc123", "--control-socket", str(tmp_path / "none.sock"))
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"runwatch: error: {tmp_path / 'none.sock'}: no runwatch is serving policy decisions here "
        "(start `runwatch run --policy ...` or `runwatch watch --policy ...`)"]
