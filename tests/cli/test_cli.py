"""The runwatch command line, run as a real process against the real sensor."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))


def rw(*args: str, timeout: float = 120, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUNWATCH, *args], capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]


def test_help_lists_every_command():
    res = rw("--help")
    assert res.returncode == 0
    for cmd in ("run", "watch", "events", "doctor", "demo"):
        assert f"  {cmd} " in res.stdout


def test_unknown_flag_is_one_line_and_exit_2():
    res = rw("run", "--no-such-flag", "--", "true")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "no-such-flag" in lines[0]


def test_missing_store_is_one_line(tmp_path):
    res = rw("events", "--db", str(tmp_path / "absent.db"))
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [f"runwatch: error: event store not found: {tmp_path / 'absent.db'}"]


def test_unknown_kind_is_rejected(tmp_path):
    res = rw("events", "--db", str(tmp_path / "x.db"), "--kind", "process.teleport")
    assert res.returncode == 2
    assert "unknown event kind 'process.teleport'" in res.stderr


@pytest.mark.kernel
def test_run_records_exactly_the_subtree_and_keeps_the_exit_code(tmp_path):
    db = tmp_path / "run.db"
    out = tmp_path / "events.jsonl"
    res = rw("run", "--db", str(db), "--events-out", str(out), "--",
             "/bin/sh", "-c", "for i in $(seq 23); do /usr/bin/true; done; exit 5")
    assert res.returncode == 5, res.stderr
    assert "drops 0" in res.stderr
    events = [json.loads(line) for line in rw("events", "--db", str(db), "--format", "json").stdout.splitlines()]
    trues = [e for e in events if e["kind"] == "process.exec" and e["exe"] == "/usr/bin/true"]
    assert len(trues) == 23
    # exe is the executed file: /bin/sh is a symlink to dash; the name given is exec_name
    shell = [e for e in events if e["kind"] == "process.exec" and e["exe"] == "/usr/bin/dash"]
    assert len(shell) == 1 and shell[0]["exec_name"] == "/bin/sh"
    assert all(t["ppid"] == shell[0]["pid"] and t["ancestry"][0] == "/usr/bin/dash" for t in trues)
    exits = [e for e in events if e["kind"] == "process.exit" and e["pid"] == shell[0]["pid"]]
    assert [e["exit_code"] for e in exits] == [5]
    # Only the subtree: every event belongs to the shell or one of its children (true, seq).
    stray = [e for e in events if shell[0]["pid"] not in (e["pid"], e["ppid"])]
    assert stray == [], stray
    assert len([e for e in events if e["kind"] == "process.exec" and e["exe"] == "/usr/bin/seq"]) == 1
    # The JSONL output holds the same events.
    assert sorted(json.loads(line)["id"] for line in out.read_text().splitlines()) == sorted(e["id"] for e in events)
    ocsf = [json.loads(line) for line in rw("events", "--db", str(db), "--format", "ocsf", "--kind",
                                            "process.exec").stdout.splitlines()]
    assert len(ocsf) == 25 and {o["class_uid"] for o in ocsf} == {1007}  # sh, seq, 23 x true
    runs = sqlite3.connect(db).execute("SELECT command, exit_code FROM runs").fetchall()
    assert runs == [("/bin/sh -c for i in $(seq 23); do /usr/bin/true; done; exit 5", 5)]


@pytest.mark.kernel
def test_command_not_found_exits_127(tmp_path):
    res = rw("run", "--db", str(tmp_path / "x.db"), "--", "no-such-command-23")
    assert res.returncode == 127
    assert "no-such-command-23: command not found" in res.stderr


@pytest.mark.kernel
def test_sigint_drains_flushes_and_exits_with_the_child(tmp_path):
    db = tmp_path / "int.db"
    proc = subprocess.Popen([RUNWATCH, "run", "--db", str(db), "--", "/usr/bin/sleep", "30"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not subprocess.run(["pgrep", "-x", "-P", str(proc.pid), "sleep"], capture_output=True).stdout:
        assert time.monotonic() < deadline and proc.poll() is None, "the command never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    events = [json.loads(line) for line in rw("events", "--db", str(db), "--format", "json").stdout.splitlines()]
    sleeps = [e for e in events if e["exe"] == "/usr/bin/sleep"]
    assert [e["kind"] for e in sleeps] == ["process.exec", "process.exit"]
    assert sleeps[1]["signal"] == 2


@pytest.mark.kernel
def test_doctor_reports_every_hook_active(tmp_path):
    from runwatch.sensors.kernel.loader import PROGRAMS
    from runwatch.testing.tracepins import absent_hooks

    missing = absent_hooks()  # syscalls this kernel lacks (init_module without module support) cannot be hooked
    res = rw("doctor", "--format", "json", "--db", str(tmp_path / "none.db"))
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["source"] == "kernel"
    assert sorted(report["hooks_active"]) == sorted(p.name for p in PROGRAMS if p.name not in missing)
    assert set(report["hooks_refused"]) == missing
    kept = {k for p in PROGRAMS if p.name not in missing for k in p.provides}
    lost = {k for p in PROGRAMS for k in p.provides} - kept
    assert report["kinds_lost"] == sorted(lost)


@pytest.mark.kernel
def test_doctor_shows_drops_of_recorded_runs(tmp_path):
    db = tmp_path / "d.db"
    assert rw("run", "--db", str(db), "--", "/usr/bin/true").returncode == 0
    res = rw("doctor", "--db", str(db))
    assert "ring buffer drops" in res.stdout
    assert "0 events dropped over 1 recorded runs" in res.stdout


@pytest.mark.kernel
def test_watch_for_a_duration_writes_stats(tmp_path):
    stats = tmp_path / "stats.json"
    res = rw("watch", "--db", str(tmp_path / "w.db"), "--duration", "1", "--stats-json", str(stats))
    assert res.returncode == 0, res.stderr
    data = json.loads(stats.read_text())
    assert data["drops"] == 0
    assert data["source"] == "kernel+sdk"  # the eBPF sensor plus the agent-SDK collector
    assert isinstance(data["events"], int)


@pytest.mark.kernel
def test_proc_fallback_source_when_asked(tmp_path):
    db = tmp_path / "p.db"
    res = rw("run", "--source", "proc", "--db", str(db), "--", "/bin/sh", "-c", "/usr/bin/true; exit 4")
    assert res.returncode == 4, res.stderr
    assert "fallback source (proc connector + /proc) cannot see" in res.stderr
    events = [json.loads(line) for line in rw("events", "--db", str(db), "--format", "json").stdout.splitlines()]
    assert {e["source"] for e in events} == {"proc"}
    assert any(e["kind"] == "process.exit" and e.get("exit_code") == 4 for e in events)


def nobody_may_join_cn_proc() -> bool:
    """Whether this kernel lets an unprivileged user join the proc connector's group."""
    probe = ("import socket\ns = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 11)\n"
             "try:\n    s.bind((0, 1))\nexcept PermissionError:\n    raise SystemExit(1)\n")
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", probe],
                          capture_output=True, timeout=30).returncode == 0


@pytest.mark.kernel
def test_not_root_says_so_in_one_line_then_falls_back():
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    shared = Path(tempfile.mkdtemp(prefix="rw-nonroot-", dir="/tmp"))  # pytest's tmp is root-only
    try:
        shared.chmod(0o777)
        res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", RUNWATCH, "run",
                              "--db", str(shared / "n.db"), "--", "/bin/sh", "-c", "/usr/bin/true; exit 3"],
                             capture_output=True, text=True, timeout=60, cwd=shared)
        events = [json.loads(line) for line in
                  rw("events", "--db", str(shared / "n.db"), "--format", "json").stdout.splitlines()]
    finally:
        shutil.rmtree(shared)
    if not nobody_may_join_cn_proc():
        # this kernel keeps the proc connector from unprivileged users too: nothing can run
        assert res.returncode == 1, res.stderr
        assert res.stderr == ("runwatch: error: no event source can run here: eBPF sensor: not running as root "
                              "(needs CAP_BPF, CAP_PERFMON); proc connector: proc connector needs CAP_NET_ADMIN: "
                              "joining the CN_PROC group was refused ([Errno 1] Operation not permitted)\n")
        assert events == []
        return
    assert res.returncode == 3, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines[0] == ("runwatch: eBPF sensor: not running as root (needs CAP_BPF, CAP_PERFMON) "
                        "-> falling back to the proc connector")
    assert lines[1].startswith("runwatch: fallback source (proc connector + /proc) cannot see: network")
    assert {e["source"] for e in events} == {"proc"}
    assert sorted(e.get("exit_code", 0) for e in events if e["kind"] == "process.exit") == [0, 3]


AGENT = """
import subprocess
from runwatch.sdk import tool_call
with tool_call("run_shell", call_id="c-5", agent="cli-agent"):
    for _ in range(5):
        subprocess.run(["/usr/bin/true"])
for _ in range(3):
    subprocess.run(["/usr/bin/false"])
"""


@pytest.mark.kernel
def test_run_joins_kernel_events_with_sdk_tool_calls(tmp_path):
    db = tmp_path / "agent.db"
    sock = tmp_path / "sdk" / "sdk.sock"
    res = rw("run", "--db", str(db), "--sdk-socket", str(sock), "--", sys.executable, "-c", AGENT)
    assert res.returncode == 0, res.stderr
    events = [json.loads(line) for line in rw("events", "--db", str(db), "--format", "json").stdout.splitlines()]
    trues = [e for e in events if e["kind"] == "process.exec" and e["exe"] == "/usr/bin/true"]
    falses = [e for e in events if e["kind"] == "process.exec" and e["exe"] == "/usr/bin/false"]
    assert [t["tool_call"] for t in trues] == [{"name": "run_shell", "call_id": "c-5", "agent": "cli-agent"}] * 5
    assert [(f.get("tool_call"), f.get("unattested")) for f in falses] == [(None, True)] * 3
    assert [e["kind"] for e in events if e["kind"].startswith("tool.")] == ["tool.start", "tool.end"]


OTEL_AGENT = """
import os, subprocess
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
provider = TracerProvider(resource=Resource.create({"process.pid": os.getpid(), "service.name": "otel-agent"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=os.environ["RW_OTLP"] + "/v1/traces")))
tracer = provider.get_tracer("agent")
attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "web_fetch", "gen_ai.tool.call.id": "call-7",
         "gen_ai.agent.name": "otel-agent"}
with tracer.start_as_current_span("execute_tool web_fetch", attributes=attrs):
    for _ in range(7):
        subprocess.run(["/usr/bin/true"])
provider.shutdown()
"""


@pytest.mark.kernel
def test_run_joins_kernel_events_with_otlp_genai_spans(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = tmp_path / "otlp.db"
    env = {**os.environ, "RW_OTLP": f"http://127.0.0.1:{port}"}
    res = rw("run", "--db", str(db), "--no-sdk", "--otlp-listen", f"127.0.0.1:{port}", "--",
             sys.executable, "-c", OTEL_AGENT, env=env)
    assert res.returncode == 0, res.stderr
    events = [json.loads(line) for line in rw("events", "--db", str(db), "--format", "json").stdout.splitlines()]
    trues = [e for e in events if e["kind"] == "process.exec" and e["exe"] == "/usr/bin/true"]
    call = {"name": "web_fetch", "call_id": "call-7", "agent": "otel-agent"}
    assert [t.get("tool_call") for t in trues] == [call] * 7
    tools = [e for e in events if e["kind"].startswith("tool.")]
    assert [(e["kind"], e["source"]) for e in tools] == [("tool.start", "otlp"), ("tool.end", "otlp")]


def test_bad_otlp_listen_is_a_usage_error():
    res = rw("run", "--otlp-listen", "nope", "--", "true")
    assert res.returncode == 2
    assert "expected HOST:PORT" in res.stderr
