"""Who may answer a challenge: the control socket's peer, never the asking workload itself.

Real processes over real unix sockets: the requester is a child of the test process that
asks on the decide socket; approvers are that requester itself, a child of it, or a sibling.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runwatch.events import Container, Event
from runwatch.host import procfs
from runwatch.policy import load_policy_texts
from runwatch.policy.decide import Decider
from runwatch.policy.peers import Peer, Requester, cgroup_within, refusal, same_container
from runwatch.policy.server import PolicyServer
from runwatch.sdk.policy import PolicyClient

SELF_EXE = os.readlink("/proc/self/exe")
SRC = str(Path(__file__).resolve().parents[2] / "src")
POLICY = f"""\
- id: agent-tools
  selector: {{process: {json.dumps(SELF_EXE)}}}
  mode: enforce
  fail: closed
  challenge_timeout: 60s
  tools:
    challenge: [send_email]
"""

APPROVER = """\
import json, os, sys
from runwatch.sdk.policy import PolicyClient
control, cid, verb = sys.argv[1:4]
answer = PolicyClient(control, timeout_s=10).request("POST", f"/v1/challenges/{cid}/{verb}", {"by": "the-agent-itself"})
print(json.dumps({"pid": os.getpid(), "answer": list(answer)}), flush=True)
"""

REQUESTER = """\
import json, os, subprocess, sys
from runwatch.sdk.policy import PolicyClient
decide, control, how, verb, approver = sys.argv[1:6]
cgroup = os.environ.get("RW_TEST_CGROUP")
if cgroup:
    with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
        f.write("0")
status, ans = PolicyClient(decide, timeout_s=10).request("POST", "/v1/decide", {"tool": "send_email"})
cid = ans["challenge_id"]
out = {"pid": os.getpid(), "cid": cid}
if how == "self":
    answer = PolicyClient(control, timeout_s=10).request("POST", f"/v1/challenges/{cid}/{verb}",
                                                        {"by": "the-agent-itself"})
    out["answer"] = {"pid": os.getpid(), "answer": list(answer)}
elif how == "child":
    child = subprocess.run([sys.executable, "-c", approver, control, cid, verb], capture_output=True, text=True,
                           timeout=30)
    out["answer"] = json.loads(child.stdout)
print(json.dumps(out), flush=True)
sys.stdin.read()  # stay alive until the test closes stdin
"""

@dataclass
class Served:
    decider: Decider
    server: PolicyServer
    events: list[Event]
    decide_sock: str
    control_sock: str


@pytest.fixture
def served() -> Iterator[Served]:
    d = tempfile.mkdtemp(prefix="rwans")
    events: list[Event] = []
    decider = Decider(load_policy_texts([(POLICY, "t.yaml")]), emit=events.append)
    server = PolicyServer(decider, f"{d}/policy.sock", f"{d}/control.sock").start()
    try:
        yield Served(decider, server, events, f"{d}/policy.sock", f"{d}/control.sock")
    finally:
        server.stop()
        shutil.rmtree(d, ignore_errors=True)


def _requester(s: Served, env: dict[str, str], how: str, verb: str = "approve") -> tuple[subprocess.Popen[str],
                                                                                        dict[str, Any]]:
    proc = subprocess.Popen([sys.executable, "-c", REQUESTER, s.decide_sock, s.control_sock, how, verb, APPROVER],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"requester exited with {proc.poll()}"
    return proc, json.loads(line)


def _finish(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(OSError):
        assert proc.stdin is not None
        proc.stdin.close()
    proc.wait(timeout=30)


def _pending(s: Served) -> list[str]:
    status, ans = PolicyClient(s.control_sock, timeout_s=5).request("GET", "/v1/challenges")
    assert status == 200
    return [c["id"] for c in ans["challenges"]]


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


@pytest.mark.parametrize("verb", ["approve", "reject"])
def test_a_child_of_the_requester_cannot_answer_its_challenge(served: Served, requester_env: dict[str, str],
                                                              verb: str) -> None:
    proc, out = _requester(served, requester_env, "child", verb)
    try:
        rpid, cid, child = out["pid"], out["cid"], out["answer"]
        assert child["pid"] != rpid
        assert child["answer"] == [403, {"error": f"pid {child['pid']} may not answer challenge {cid}: it descends "
                                                  f"from the process that asked (pid {rpid})"}]
        assert _pending(served) == [cid]
        ch = served.decider.challenges.get(cid)
        assert ch is not None and ch.state == "pending" and ch.approver is None
        assert [(r["pid"], r["uid"]) for r in ch.to_dict()["refused"]] == [(child["pid"], os.getuid())]  # type: ignore[union-attr]
        assert served.decider.counts.get("answer_refused") == 1
        assert [e.decision.verdict for e in served.events if e.decision] == ["challenge"]
    finally:
        _finish(proc)


def test_the_requester_itself_cannot_answer_its_challenge(served: Served, requester_env: dict[str, str]) -> None:
    proc, out = _requester(served, requester_env, "self")
    try:
        rpid, cid = out["pid"], out["cid"]
        assert out["answer"] == {"pid": rpid, "answer": [
            403, {"error": f"pid {rpid} may not answer challenge {cid}: it is the process that asked (pid {rpid})"}]}
        assert _pending(served) == [cid]
        ch = served.decider.challenges.get(cid)
        assert ch is not None and ch.state == "pending"
        assert ch.to_dict()["requester"] == {"pid": rpid, "cgroup": procfs.cgroup_path(rpid)}
        assert served.decider.counts.get("answer_refused") == 1
    finally:
        _finish(proc)


def test_an_unrelated_process_approves_and_is_recorded_by_its_credentials(
        served: Served, requester_env: dict[str, str]) -> None:
    proc, out = _requester(served, requester_env, "wait")
    try:
        cid = out["cid"]
        sibling = subprocess.run([sys.executable, "-c", APPROVER, served.control_sock, cid, "approve"],
                                 capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHONPATH": SRC})
        got = json.loads(sibling.stdout)
        status, ans = got["answer"]
        pid = got["pid"]
        assert status == 200, ans
        cgroup = procfs.cgroup_path(os.getpid())  # the sibling's: it ran in the test's cgroup
        assert ans["approver"] == {"uid": os.getuid(), "gid": os.getgid(), "pid": pid, "exe": SELF_EXE,
                                   "cgroup": cgroup}
        by = f"{_user(os.getuid())} (uid {os.getuid()}, pid {pid}, {SELF_EXE})"
        assert (ans["state"], ans["outcome"], ans["by"], ans["note"]) == ("approve", "allow", by, "the-agent-itself")
        assert ans["refused"] == []
        assert _pending(served) == []
        resolved = [e.decision for e in served.events if e.decision and e.decision.verdict == "approve"]
        assert [d.reason for d in resolved] == [f"approved by {by}; note 'the-agent-itself'"]
        assert served.decider.counts.get("answer_refused") is None
    finally:
        _finish(proc)


def test_cgroup_rule_covers_the_requesters_cgroup_and_below_unless_it_is_the_root() -> None:
    assert cgroup_within("/agents/a", "/agents/a") and cgroup_within("/agents/a/tool", "/agents/a")
    assert not cgroup_within("/agents/ab", "/agents/a") and not cgroup_within("/agents", "/agents/a")
    me = Peer(pid=os.getpid(), uid=os.getuid(), gid=os.getgid(), exe=SELF_EXE, cgroup="/agents/a/x")
    # Over TCP no requester pid is known: only the cgroup / container rules can apply.
    assert refusal(me, Requester(pid=None, cgroup="/agents/a"), "c1") == (
        f"pid {os.getpid()} may not answer challenge c1: it runs in the asking workload's cgroup /agents/a")
    assert refusal(me, Requester(pid=None, cgroup="/"), "c1") is None
    assert refusal(me, Requester(pid=None, cgroup=None), "c1") is None
    assert refusal(me, Requester(pid=me.pid + 1_000_000, cgroup="/other"), "c1") is None
    assert refusal(me, Requester(pid=os.getppid(), cgroup=None), "c1") == (
        f"pid {os.getpid()} may not answer challenge c1: it descends from the process that asked (pid {os.getppid()})")


def test_a_challenge_asked_over_tcp_has_no_requester_and_only_the_container_rule(tmp_path: Path) -> None:
    events: list[Event] = []
    text = "- id: web\n  selector: {container: 'web-*'}\n  mode: enforce\n  tools: {challenge: [send_email]}\n"
    decider = Decider(load_policy_texts([(text, "t.yaml")]), emit=events.append)
    control = str(tmp_path / "control.sock")
    with PolicyServer(decider, None, control, tcp_port=0) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.tcp_port, timeout=5)
        try:
            conn.request("POST", "/v1/decide", body=json.dumps({"tool": "send_email", "container": "web-23",
                                                                "pid": os.getpid()}))
            cid = json.loads(conn.getresponse().read())["challenge_id"]
        finally:
            conn.close()
        ch = decider.challenges.get(cid)
        assert ch is not None and ch.requester is None  # the claimed pid proves nothing
        status, ans = PolicyClient(control, timeout_s=5).request("POST", f"/v1/challenges/{cid}/approve", {})
    assert status == 200, ans
    assert (ans["requester"], ans["approver"]["pid"], ans["note"]) == (None, os.getpid(), None)
    web = Container(id="3f9a2c1d4b5e" + "0" * 52, runtime="docker", name="web-23")
    assert same_container(web, Container(id="web-23", runtime="claimed", name="web-23"))
    assert same_container(web, Container(id="3f9a2c1d4b5e", runtime="claimed"))
    assert not same_container(web, Container(id="3f9a2c1d", runtime="claimed", name="web-24"))
