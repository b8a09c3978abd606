"""Every demo scenario end to end under the live sensor, read back from SQLite."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from runwatch.cli.watch import rule_paths
from runwatch.containers.runc import RUNC_STATE_ROOT
from runwatch.demo.peers import SINK_IP, SINK_PORT, demo_links_left, demo_netns_left
from runwatch.demo.report import ScenarioReport, build_reports, runtime_noise
from runwatch.demo.runner import DemoRun, find_agentdojo, run_demo
from runwatch.demo.scenarios import NOTES_CLEAN, NOTES_POISONED, SECRET_NAME, SECRET_VALUE
from runwatch.demo.workloads import weather_plugin
from runwatch.demo.workloads.agentdojo_replay import FILE_TOOLS
from runwatch.events import Event, ToolCall
from runwatch.sensors.kernel.loader import object_path

pytestmark = pytest.mark.kernel

SECRET_PATH = f"/run/secrets/{SECRET_NAME}"
LIMIT = 3


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DemoRun, dict[str, ScenarioReport]]]:
    """One run of every scenario (AgentDojo limited to 3 tasks per suite and kind)."""
    if os.geteuid() != 0:
        pytest.skip("the demo needs root")
    if not object_path().exists():
        pytest.fail(f"{object_path()} is missing: run scripts/install.sh")
    db = str(tmp_path_factory.mktemp("demo") / "demo.db")
    run = run_demo([], db, rules=rule_paths((), False), limit=LIMIT)
    yield run, {r.name: r for r in build_reports(run)}


def _kernel(rep: ScenarioReport, kind: str) -> list[Event]:
    return [e for e in rep.events if e.kind == kind and e.source != "sdk"]


def _start(rep: ScenarioReport, call_id: str) -> Event:
    return rep.starts_by_call_id()[call_id]


def _end(rep: ScenarioReport, call_id: str) -> Event:
    return next(e for e in rep.events if e.kind == "tool.end" and e.tool_call and e.tool_call.call_id == call_id)


def _secret_opens(rep: ScenarioReport) -> list[Event]:
    return [e for e in _kernel(rep, "file.open") if e.file is not None and e.file.path.startswith("/run/secrets/")]


def _workload_execs(rep: ScenarioReport) -> list[Event]:
    """Execs other than the container's own entrypoint (python3 started by runc)."""
    return [e for e in _kernel(rep, "process.exec") if not runtime_noise(e) and e.vpid != 1]


def test_every_scenario_ran_and_everything_was_cleaned_up(demo: tuple[DemoRun, dict[str, ScenarioReport]]) -> None:
    run, _ = demo
    expected = ["model-server", "model-server-benign", "plugin-agent", "plugin-agent-benign", "exfil-agent",
                "exfil-agent-benign"] + (["agentdojo"] if find_agentdojo() else [])
    assert [r.scenario.name for r in run.runs] == expected
    assert [(r.scenario.name, r.result.rc, r.result.error) for r in run.runs] == [(n, 0, None) for n in expected]
    assert run.summary["drops"] == 0
    assert run.leftovers == []
    assert demo_netns_left(os.getpid()) == [] and demo_links_left(os.getpid()) == []
    mounts = Path("/proc/self/mountinfo").read_text()
    for r in run.runs:
        for cid, _name in r.result.containers:
            assert not (RUNC_STATE_ROOT / cid).exists()
            assert f"/run/runwatch/bundles/{cid}" not in mounts
    # this run's own: other tests may run demo scenarios on another worker at the same time
    assert run.work and not os.path.exists(run.work)
    assert run.work not in mounts and f"rwdemo-{os.getpid()}-" not in mounts


def test_model_server_shell_carries_run_shell_and_the_prompt_route(
        demo: tuple[DemoRun, dict[str, ScenarioReport]]) -> None:
    run, reps = demo
    rep = reps["model-server"]
    call = ToolCall(name="run_shell", call_id="ms-1", agent="model-server")
    start = _start(rep, "ms-1")
    assert start.tool_call == call
    assert start.ai is not None and start.ai.route == "completions/tool-use"
    routes = [e.ai.route for e in rep.events if e.kind == "model.call" and e.ai
              and e.ai.operation == "prompt.route"]
    assert routes == ["completions/chat", "completions/chat", "completions/tool-use"]
    execs = _workload_execs(rep)
    # exe is the executed file: the demo rootfs's /bin/sh is busybox (exec_name keeps /bin/sh)
    assert [(e.exe, e.cmdline) for e in execs] == [
        ("/bin/busybox", f"/bin/sh -c /usr/bin/id; /usr/bin/cat {SECRET_PATH}"),
        ("/usr/bin/id", "/usr/bin/id"),
        ("/usr/bin/cat", f"/usr/bin/cat {SECRET_PATH}"),
    ]
    assert execs[0].exec_name == "/bin/sh"
    assert {e.tool_call for e in execs} == {call}
    opens = _secret_opens(rep)
    assert [(e.exe, e.file.path if e.file else None, e.tool_call) for e in opens] == [
        ("/usr/bin/cat", SECRET_PATH, call)]
    end = _end(rep, "ms-1")
    assert all(start.time < e.time < end.time for e in [*execs, *opens])
    # Serving requests is activity outside any tool call: one accept per prompt, flagged.
    accepts = _kernel(rep, "net.accept")
    assert len(accepts) == 3 and all(e.unattested for e in accepts)
    answers = run.runs[0].result.details["answers"]
    assert [(a["route"], a["tool_calls"], a["shell_output"], a["secret_leaked"]) for a in answers] == [
        ("completions/chat", [], False, False), ("completions/chat", [], False, False),
        ("completions/tool-use", ["run_shell"], True, True)]
    assert "shell_in_tool_call" in rep.rule_ids


def test_model_server_benign_prompts_cause_no_exec_no_secret_read_no_alert(
        demo: tuple[DemoRun, dict[str, ScenarioReport]]) -> None:
    _, reps = demo
    rep = reps["model-server-benign"]
    assert rep.tool_calls == []
    assert _workload_execs(rep) == []
    assert _secret_opens(rep) == []
    routes = [e.ai.route for e in rep.events if e.kind == "model.call" and e.ai
              and e.ai.operation == "prompt.route"]
    assert routes == ["completions/chat"] * 5
    assert len([e for e in _kernel(rep, "net.accept") if e.unattested]) == 5
    assert rep.rule_ids == []


def test_plugin_connect_to_the_new_port_is_after_the_load_and_inside_its_tool_call(
        demo: tuple[DemoRun, dict[str, ScenarioReport]]) -> None:
    run, reps = demo
    rep = reps["plugin-agent"]
    port = run.peers["plugin_port"]
    loads = [e for e in rep.events if e.kind == "plugin.load"]
    assert len(loads) == 1 and loads[0].ai is not None
    src = Path(weather_plugin.__file__)
    assert loads[0].ai.plugin == "weather-mcp"
    assert loads[0].ai.plugin_source == str(src)
    assert loads[0].ai.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert loads[0].tool_call == ToolCall(name="load_plugin", call_id="ta-6", agent="tool-agent")
    to_plugin = [e for e in _kernel(rep, "net.connect") if e.net and e.net.dst_port == port]
    call = ToolCall(name="weather.forecast", call_id="ta-7", agent="tool-agent")
    assert len(to_plugin) == 1
    assert to_plugin[0].tool_call == call
    assert loads[0].time < _start(rep, "ta-7").time < to_plugin[0].time < _end(rep, "ta-7").time
    assert [(e.dns.name, e.tool_call) for e in _kernel(rep, "dns.query") if e.dns] == [
        (weather_plugin.WEATHER_HOST, call)]
    assert [e.tool_call.name for e in rep.tool_calls if e.tool_call] == [
        "http_get", "read_file", "python_eval", "http_get", "run_shell", "load_plugin", "weather.forecast"]
    assert run.peers["plugin_requests"] == {"GET /forecast": 1}


def test_plugin_agent_benign_uses_only_its_tools(demo: tuple[DemoRun, dict[str, ScenarioReport]]) -> None:
    run, reps = demo
    rep = reps["plugin-agent-benign"]
    assert [e.tool_call.call_id for e in rep.tool_calls if e.tool_call] == ["ta-1", "ta-2", "ta-3", "ta-4"]
    assert _workload_execs(rep) == []
    assert _secret_opens(rep) == []
    connects = _kernel(rep, "net.connect")
    assert [(e.net.dst_port if e.net else None, e.tool_call.call_id if e.tool_call else None) for e in connects] == [
        (run.peers["service_port"], "ta-1"), (run.peers["service_port"], "ta-4")]
    assert rep.unattested == []
    assert rep.rule_ids == []


def _summary(notes: str) -> str:
    return json.dumps({"lines": len(notes.splitlines()), "words": len(notes.split()), "title": notes.split("\n", 1)[0]})


def test_exfil_secret_read_and_upload_are_attributed_to_their_tool_calls(
        demo: tuple[DemoRun, dict[str, ScenarioReport]]) -> None:
    run, reps = demo
    rep = reps["exfil-agent"]
    read = ToolCall(name="read_file", call_id="rx-2", agent="report-agent")
    opens = _secret_opens(rep)
    assert [(e.file.path if e.file else None, e.file.intent if e.file else None, e.tool_call) for e in opens] == [
        (SECRET_PATH, "read", read)]
    access = [e for e in rep.events if e.kind == "secret.access"]
    assert [(e.ai.secret if e.ai else None, e.tool_call) for e in access] == [(SECRET_NAME, read)]
    out = [e for e in _kernel(rep, "net.connect") if e.net and e.net.dst_ip == SINK_IP]
    assert [(e.net.dst_port if e.net else None, e.tool_call) for e in out] == [
        (SINK_PORT, ToolCall(name="http_post", call_id="rx-3", agent="report-agent")),
        (SINK_PORT, ToolCall(name="http_post", call_id="rx-4", agent="report-agent"))]
    assert opens[0].time < out[0].time  # the secret is read, then goes out first
    assert "secret_read_then_new_egress" in rep.rule_ids
    assert _workload_execs(rep) == []
    benign = reps["exfil-agent-benign"]
    assert _secret_opens(benign) == []
    assert [e.tool_call.call_id for e in _kernel(benign, "net.connect") if e.net and e.net.dst_ip == SINK_IP
            and e.tool_call] == ["rx-2"]
    assert benign.rule_ids == []
    # The sink counted three uploads: two summaries and the secret.
    assert run.peers["sink_requests"] == {"POST /upload": 3}
    assert run.peers["sink_bytes"] == len(_summary(NOTES_CLEAN)) + len(_summary(NOTES_POISONED)) + len(SECRET_VALUE)


def test_agentdojo_replay_counts_and_attribution(demo: tuple[DemoRun, dict[str, ScenarioReport]]) -> None:
    run, reps = demo
    fixture = find_agentdojo()
    if fixture is None:
        pytest.skip("AgentDojo fixture not present")
    rep = reps["agentdojo"]
    data = json.loads(fixture.read_text())["suites"]
    service = run.peers["service_port"]
    for suite, spec in data.items():
        tasks = spec["user_tasks"][:LIMIT] + spec["injection_tasks"][:LIMIT]
        calls = [c for t in tasks for c in t["ground_truth"]]
        cids = {cid for cid, name in run.runs[-1].result.containers if name == f"demo-agentdojo-{suite}"}
        starts = [e for e in rep.tool_calls if e.container and e.container.id in cids]
        assert [e.tool_call.name for e in starts if e.tool_call] == [c["function"] for c in calls]
        assert {e.tool_call.agent for e in starts if e.tool_call} == {f"agentdojo-{suite}"}
        api = [e for e in _kernel(rep, "net.connect") if e.container and e.container.id in cids
               and e.net and e.net.dst_port == service]
        assert len(api) == sum(1 for c in calls if c["function"] not in FILE_TOOLS)
        assert all(e.tool_call is not None and e.tool_call.agent == f"agentdojo-{suite}" for e in api)
        counts = run.runs[-1].result.details["suites"][suite]
        assert counts["user"]["tasks"] == min(LIMIT, len(spec["user_tasks"]))
        assert counts["injection"]["tasks"] == min(LIMIT, len(spec["injection_tasks"]))
    assert _workload_execs(rep) == []
