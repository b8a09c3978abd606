"""The decide/control endpoint over real unix sockets, the SDK's decide and tool_call, challenges."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runwatch import sdk
from runwatch.argskey import ArgsKey
from runwatch.events import AiInfo, Event
from runwatch.listeners import BoundedThreads
from runwatch.policy import load_policy_texts
from runwatch.policy.cli import PolicyCliError, cli_approve, cli_challenges, cli_reject, format_challenges
from runwatch.policy.decide import Decider
from runwatch.policy.server import PolicyServer
from runwatch.sdk import policy as sdk_policy

SELF_EXE = os.readlink("/proc/self/exe")
SRC = str(Path(__file__).resolve().parents[2] / "src")


def _policies(mode: str = "enforce", fail: str = "closed", timeout: str = "20s") -> str:
    return f"""\
- id: agent-tools
  selector: {{process: {json.dumps(SELF_EXE)}}}
  mode: {mode}
  fail: {fail}
  challenge_timeout: {timeout}
  tools:
    allow: [search, write_note]
    deny: [run_shell]
    challenge: [send_email]
"""


@dataclass
class Served:
    decider: Decider
    server: PolicyServer
    events: list[Event]
    decide_sock: str
    control_sock: str


@pytest.fixture
def serve() -> Iterator[Any]:
    started: list[tuple[PolicyServer, str]] = []

    def start(text: str, tcp: bool = False) -> Served:
        d = tempfile.mkdtemp(prefix="rwpol")
        events: list[Event] = []
        decider = Decider(load_policy_texts([(text, "t.yaml")]), emit=events.append)
        server = PolicyServer(decider, f"{d}/policy.sock", f"{d}/control.sock", tcp_port=0 if tcp else None,
                              args_key=ArgsKey(f"{d}/args.key"))
        started.append((server, d))
        server.start()
        return Served(decider, server, events, f"{d}/policy.sock", f"{d}/control.sock")

    try:
        yield start
    finally:
        sdk_policy.configure(None)
        for server, d in started:
            server.stop()
            shutil.rmtree(d, ignore_errors=True)


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("runwatch", timeout=5)
        self.path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(self.path)
        self.sock = s


def _http(path: str, method: str, target: str, body: Any = None) -> tuple[int, Any]:
    conn = _UnixHTTP(path)
    try:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        conn.request(method, target, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_decide_over_http_on_the_unix_socket(serve: Any) -> None:
    s = serve(_policies())
    status, ans = _http(s.decide_sock, "POST", "/v1/decide", {"tool": "run_shell", "args": {"cmd": "id"},
                                                               "agent": "planner", "call_id": "c-23"})
    assert status == 200
    assert {k: ans[k] for k in ("verdict", "recorded", "policy", "rule", "mode", "fail")} == {
        "verdict": "deny", "recorded": "deny", "policy": "agent-tools", "rule": "tools.deny:run_shell",
        "mode": "enforce", "fail": "closed"}
    assert _http(s.decide_sock, "POST", "/v1/decide", {"tool": "search"})[1]["verdict"] == "allow"
    # The workload is the peer process, whatever the body claims.
    assert _http(s.decide_sock, "POST", "/v1/decide", {"tool": "x", "pid": 1, "exe": "/sbin/init"})[1]["rule"] == (
        "tools.default")
    e = s.events[0]
    assert (e.pid, e.exe, e.tool_call.agent if e.tool_call else None) == (os.getpid(), SELF_EXE, "planner")
    assert e.ai is not None and e.ai.args_digest == sdk.args_digest({"cmd": "id"}, ArgsKey(
        os.path.join(os.path.dirname(s.decide_sock), "args.key")).key)
    assert _http(s.decide_sock, "POST", "/v1/decide", b"{not json")[0] == 400
    assert _http(s.decide_sock, "POST", "/v1/decide", b'{"a":' * 5000 + b"1" + b"}" * 5000)[0] == 400
    assert _http(s.decide_sock, "POST", "/v1/decide", {"args": {}}) == (
        400, {"error": "'tool' (a non-empty string) is required"})
    assert _http(s.decide_sock, "GET", "/v1/nothing")[0] == 404
    assert _http(s.decide_sock, "GET", "/v1/health") == (200, {"ok": True, "policies": 1})
    assert _http(s.decide_sock, "GET", "/v1/challenges") == (
        403, {"error": "challenge answers are only accepted on the control socket"})
    assert _http(s.decide_sock, "POST", "/v1/challenges/abc/approve", {})[0] == 403
    assert _http(s.control_sock, "POST", "/v1/challenges/abc/approve", {}) == (404, {"error": "no challenge 'abc'"})
    assert oct(os.stat(s.control_sock).st_mode & 0o777) == "0o600"
    assert [ev.decision.verdict for ev in s.events if ev.decision] == ["deny", "allow", "deny"]


def test_tcp_listener_takes_the_gateways_claims(serve: Any) -> None:
    s = serve("- id: web\n  selector: {container: 'web-*'}\n  mode: enforce\n  tools: {allow: [search]}\n", tcp=True)
    conn = http.client.HTTPConnection("127.0.0.1", s.server.tcp_port, timeout=5)
    try:
        conn.request("POST", "/v1/decide", body=json.dumps({"tool": "run_shell", "container": "web-23"}))
        ans = json.loads(conn.getresponse().read())
        conn.request("POST", "/v1/challenges/x/approve", body=b"{}")
        resp = conn.getresponse()
        assert resp.status == 403
        resp.read()
    finally:
        conn.close()
    assert (ans["verdict"], ans["policy"], ans["rule"]) == ("deny", "web", "tools.default")
    assert s.events[0].container is not None and s.events[0].container.name == "web-23"


def test_sdk_tool_call_denied_before_its_body_runs(serve: Any, tmp_path: Path) -> None:
    s = serve(_policies())
    sdk_policy.configure(s.decide_sock)
    ran = tmp_path / "ran"
    with pytest.raises(sdk.ToolDenied) as info, sdk.tool_call("run_shell", args={"cmd": "touch"}):
        ran.write_text("side effect")
    assert not ran.exists()
    assert info.value.decision.rule == "tools.deny:run_shell"
    assert str(info.value) == ("tool 'run_shell' denied by policy 'agent-tools' (tools.deny:run_shell): "
                               "tool 'run_shell' is denied (tools.deny:run_shell)")

    @sdk.tool_call("http_get")
    def http_get() -> None:
        ran.write_text("decorated")

    with pytest.raises(sdk.ToolDenied):
        http_get()
    assert not ran.exists()

    async def run_async() -> None:
        async with sdk.tool_call("run_shell"):
            ran.write_text("async")

    with pytest.raises(sdk.ToolDenied):
        asyncio.run(run_async())
    assert not ran.exists()

    with sdk.tool_call("write_note"):
        ran.write_text("allowed")
    assert ran.read_text() == "allowed"
    verdicts = [(e.tool_call.name if e.tool_call else "", e.decision.verdict if e.decision else "") for e in s.events]
    assert verdicts == [("run_shell", "deny"), ("http_get", "deny"), ("run_shell", "deny"), ("write_note", "allow")]
    assert all(e.decision and e.decision.latency_ns and e.decision.latency_ns > 0 for e in s.events)
    assert s.events[0].ai == AiInfo(args_digest=sdk.args_digest({"cmd": "touch"}))


def test_tool_call_in_another_process_consults_the_env_socket(serve: Any, tmp_path: Path) -> None:
    s = serve(_policies())
    ran = tmp_path / "ran"
    script = (
        "import sys, pathlib\nfrom runwatch import sdk\n"
        "try:\n    with sdk.tool_call(sys.argv[2], agent='child'):\n        pathlib.Path(sys.argv[1]).write_text('x')\n"
        "except sdk.ToolDenied as e:\n    print(e.decision.rule); sys.exit(3)\n"
    )
    env = {**os.environ, "RUNWATCH_POLICY_SOCKET": s.decide_sock, "PYTHONPATH": SRC}
    denied = subprocess.run([sys.executable, "-c", script, str(ran), "run_shell"], env=env, capture_output=True,
                            text=True, timeout=30)
    assert (denied.returncode, denied.stdout.strip()) == (3, "tools.deny:run_shell")
    assert not ran.exists()
    allowed = subprocess.run([sys.executable, "-c", script, str(ran), "search"], env=env, timeout=30)
    assert allowed.returncode == 0 and ran.read_text() == "x"
    assert [(e.pid > 0 and e.pid != os.getpid(), e.decision.verdict if e.decision else "") for e in s.events] == [
        (True, "deny"), (True, "allow")]


def test_unreachable_runwatch_follows_fail(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    try:
        sdk_policy.configure(str(tmp_path / "absent.sock"), fail="closed")
        with pytest.raises(sdk.ToolDenied) as info, sdk.tool_call("search"):
            ran.write_text("x")
        assert not ran.exists()
        assert (info.value.decision.source, info.value.decision.recorded) == ("local", "fail_closed")
        sdk_policy.configure(str(tmp_path / "absent.sock"), fail="open")
        with sdk.tool_call("search"):
            ran.write_text("x")
        assert ran.exists()
    finally:
        sdk_policy.configure(None)


def _answer_when_pending(control: str, how: Any) -> threading.Thread:
    def run() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pending = cli_challenges(control)
            if pending:
                how(pending[0]["id"])
                return
            time.sleep(0.02)

    t = threading.Thread(target=run)
    t.start()
    return t


AGENT = """\
import os, pathlib, sys
cgroup = os.environ.get("RW_TEST_CGROUP")
if cgroup:
    with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
        f.write("0")
from runwatch import sdk
from runwatch.argskey import ArgsKey
try:
    with sdk.tool_call("send_email"):
        pathlib.Path(sys.argv[1]).write_text("sent")
except sdk.ToolDenied as exc:
    print(exc.decision.recorded)
    sys.exit(3)
print("ran")
"""


def _agent(s: Served, env: dict[str, str], ran: Path) -> subprocess.CompletedProcess[str]:
    """The asking agent: a child process (its answers must come from outside it)."""
    return subprocess.run([sys.executable, "-c", AGENT, str(ran)], env={**env, "RUNWATCH_POLICY_SOCKET": s.decide_sock},
                          capture_output=True, text=True, timeout=30)


def test_challenge_approved_through_the_control_socket(serve: Any, tmp_path: Path,
                                                       requester_env: dict[str, str]) -> None:
    s = serve(_policies())
    ran = tmp_path / "ran"
    answers: list[str] = []
    t = _answer_when_pending(s.control_sock, lambda cid: answers.append(cli_approve(cid, s.control_sock, by="ops")))
    agent = _agent(s, requester_env, ran)
    t.join()
    assert (agent.returncode, agent.stdout.strip()) == (0, "ran"), agent.stderr
    assert ran.read_text() == "sent"
    assert len(answers) == 1 and answers[0].endswith(f"tool 'send_email' of {SELF_EXE} -> allow")
    assert [e.decision.verdict for e in s.events if e.decision] == ["challenge", "approve"]
    me = f"{pwd.getpwuid(os.getuid()).pw_name} (uid {os.getuid()}, pid {os.getpid()}, {SELF_EXE})"
    assert s.events[1].decision is not None and s.events[1].decision.reason == f"approved by {me}; note 'ops'"
    with pytest.raises(PolicyCliError, match="already resolved: approve"):
        cli_approve(s.events[0].decision.challenge_id or "", s.control_sock)  # type: ignore[union-attr]


def test_challenge_rejected_from_another_process(serve: Any, tmp_path: Path, requester_env: dict[str, str]) -> None:
    s = serve(_policies())
    ran = tmp_path / "ran"
    outputs: list[subprocess.CompletedProcess[str]] = []

    def reject(cid: str) -> None:
        code = "import sys\nfrom runwatch.policy.cli import cli_reject\nprint(cli_reject(sys.argv[1], sys.argv[2]))"
        outputs.append(subprocess.run([sys.executable, "-c", code, cid, s.control_sock], capture_output=True,
                                      text=True, timeout=30, env={**os.environ, "PYTHONPATH": SRC}))

    t = _answer_when_pending(s.control_sock, reject)
    agent = _agent(s, requester_env, ran)
    t.join()
    assert not ran.exists()
    assert outputs[0].returncode == 0 and "rejected" in outputs[0].stdout, outputs[0].stderr
    assert (agent.returncode, agent.stdout.strip()) == (3, "reject"), agent.stderr
    assert [e.decision.verdict for e in s.events if e.decision] == ["challenge", "reject"]


@pytest.mark.parametrize(("fail", "verdict"), [("open", "allow"), ("closed", "deny")])
def test_challenge_timeout_follows_fail(serve: Any, fail: str, verdict: str) -> None:
    s = serve(_policies(fail=fail, timeout="300ms"))
    sdk_policy.configure(s.decide_sock)
    t0 = time.monotonic()
    d = sdk.decide("send_email", {"to": "x@example.com"})
    assert time.monotonic() - t0 >= 0.3
    assert (d.verdict, d.recorded) == (verdict, "timeout")
    assert [e.decision.verdict for e in s.events if e.decision] == ["challenge", "timeout"]
    assert cli_challenges(s.control_sock) == []
    assert format_challenges([]) == "no pending challenges"


def test_control_helpers_report_a_missing_runwatch(tmp_path: Path) -> None:
    with pytest.raises(PolicyCliError, match="no runwatch is serving policy decisions here"):
        cli_reject("abcd1234", str(tmp_path / "control.sock"))


def test_monitor_mode_over_the_endpoint_allows_and_records(serve: Any, tmp_path: Path) -> None:
    s = serve(_policies(mode="monitor"))
    sdk_policy.configure(s.decide_sock)
    ran = tmp_path / "ran"
    with sdk.tool_call("run_shell"):
        ran.write_text("ran")
    assert ran.exists()
    assert [e.decision.verdict for e in s.events if e.decision] == ["would_deny"]


def test_keep_alive_survives_error_answers_with_bodies(serve: Any) -> None:
    s = serve(_policies())
    body = json.dumps({"by": "agent"}).encode()
    decide = json.dumps({"tool": "search"}).encode()
    raw = (b"POST /v1/challenges/abc/approve HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(body)).encode()
           + b"\r\n\r\n" + body
           + b"POST /v1/decide HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(decide)).encode()
           + b"\r\nConnection: close\r\n\r\n" + decide)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(5)
        c.connect(s.decide_sock)
        c.sendall(raw)  # two pipelined requests
        got = b""
        while chunk := c.recv(65536):
            got += chunk
    first, second = got.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"403 Forbidden\r\n")
    assert second.startswith(b"200 OK\r\n") and b"Connection: close" in second
    assert json.loads(second.split(b"\r\n\r\n", 1)[1])["verdict"] == "allow"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(5)
        c.connect(s.decide_sock)
        c.sendall(b"DELETE /v1/decide HTTP/1.0\r\n\r\n")
        assert c.recv(65536).startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")


def test_idle_and_lying_connections_are_bounded(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BoundedThreads, "idle_timeout", 0.5)
    monkeypatch.setattr(BoundedThreads, "max_connections", 21)
    s = serve(_policies())
    idle = []
    for _ in range(21):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(s.decide_sock)
        idle.append(c)
    time.sleep(0.1)
    extra = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    extra.settimeout(5)
    extra.connect(s.decide_sock)
    assert extra.recv(64) == b""  # over the bound: closed at once, no thread
    extra.close()
    liar = idle[0]  # claims a body it never sends
    liar.sendall(b"POST /v1/decide HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"tool\":")
    liar.settimeout(5)
    start = time.monotonic()
    assert liar.recv(64) == b""  # the read timed out: the connection is closed
    assert time.monotonic() - start < 3
    for c in idle:
        c.close()
    deadline = time.monotonic() + 5
    while threading.active_count() > 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _http(s.decide_sock, "GET", "/v1/health")[0] == 200  # still serving
    assert s.server.stats()["refused_connections"] == 1
