"""MCP over stdio: an instrumented agent and the server it starts, with and without the kernel sensor."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from runwatch.events import Event, ToolCall
from runwatch.sensors.inproc.collector import SdkCollector
from runwatch.testing.capture import LiveCapture

SERVER = textwrap.dedent('''
    import subprocess
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("rw-test-server", version="0.23.0")

    @server.tool()
    def echo_text(text: str) -> str:
        """Echo the text in capitals."""
        return text.upper()

    @server.tool()
    def run_true(times: int) -> int:
        """Run /usr/bin/true ``times`` times."""
        for _ in range(times):
            subprocess.run(["/usr/bin/true", "mcp"], check=True)
        return times

    if __name__ == "__main__":
        server.run("stdio")
''')

AGENT = textwrap.dedent('''
    import asyncio, json, sys
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    async def main():
        params = StdioServerParameters(command=sys.executable, args=[sys.argv[1]])
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                first = await session.call_tool("echo_text", {"text": "hi23"})
                second = await session.call_tool("run_true", {"times": 3})
                print(json.dumps([first.content[0].text, second.content[0].text]))

    asyncio.run(main())
''')

SERVER_NAME = "rw-test-server"


def _scripts(tmp_path: Path) -> tuple[Path, Path]:
    server, agent = tmp_path / "server.py", tmp_path / "agent.py"
    server.write_text(SERVER)
    agent.write_text(AGENT)
    return server, agent


def _by_pid(events: list[Event]) -> tuple[int, int]:
    """(agent pid, server pid): the agent announces as 'agent', the server with no name."""
    hellos = {e.pid: (e.ai.agent if e.ai else None) for e in events if e.kind == "sensor.notice"}
    agent = [p for p, name in hellos.items() if name == "agent"]
    server = [p for p, name in hellos.items() if name != "agent"]
    assert len(agent) == 1 and len(server) == 1, hellos
    return agent[0], server[0]


def _check_sdk_side(events: list[Event], server: Path) -> tuple[int, int, str]:
    agent_pid, server_pid = _by_pid(events)
    agent_tools = [(e.kind, e.tool_call) for e in events if e.pid == agent_pid and e.kind.startswith("tool.")]
    server_tools = [(e.kind, e.tool_call) for e in events if e.pid == server_pid and e.kind.startswith("tool.")]
    assert [(k, c.name if c else None, c.agent if c else None) for k, c in agent_tools] == [
        ("tool.start", "echo_text", SERVER_NAME), ("tool.end", "echo_text", SERVER_NAME),
        ("tool.start", "run_true", SERVER_NAME), ("tool.end", "run_true", SERVER_NAME)]
    # The server opened its calls under the ids the client generated and passed in _meta.
    assert server_tools == agent_tools
    ids = [c.call_id for _, c in agent_tools if c is not None]
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[0] != ids[2]
    assert all(i is not None and i.startswith("mcp-") and len(i) == 20 for i in ids)
    loads = [e for e in events if e.kind == "plugin.load" and e.source == "sdk"]
    assert len(loads) == 1 and loads[0].pid == agent_pid and loads[0].ai is not None
    assert loads[0].ai.plugin == SERVER_NAME
    assert loads[0].ai.plugin_source == f"mcp+stdio:{sys.executable} {server}"
    assert loads[0].ai.plugin_version == "0.23.0"
    run_true = next(c for _, c in agent_tools if c is not None and c.name == "run_true")
    # Server-side audit: three execs of /usr/bin/true inside run_true, nothing else attributed.
    audit_execs = [e for e in events if e.source == "audit" and e.kind == "process.exec" and e.pid == server_pid]
    assert [(e.argv, e.tool_call) for e in audit_execs] == [(["/usr/bin/true", "mcp"], run_true)] * 3
    # Agent-side audit: the server's start-up, outside any tool call.
    spawn = [e for e in events if e.source == "audit" and e.kind == "process.exec" and e.pid == agent_pid]
    assert [(e.argv, e.tool_call) for e in spawn] == [([sys.executable, str(server)], None)]
    return agent_pid, server_pid, str(run_true.call_id)


def test_mcp_tool_calls_on_both_sides_through_the_collector(tmp_path: Path, collector: SdkCollector,
                                                            helpers: Any) -> None:
    server, agent = _scripts(tmp_path)
    env = helpers.child_env(collector.path)
    plain = helpers.run_py([str(agent), str(server)], env)
    res = helpers.run_py(["-m", "runwatch.sdk.run", str(agent), str(server)], env)
    assert (res.returncode, res.stdout) == (plain.returncode, plain.stdout) == (0, '["HI23", "3"]\n')
    events = helpers.drain(collector)
    _check_sdk_side(events, server)
    assert collector.stats()["malformed"] == 0


def test_propagation_can_be_turned_off(tmp_path: Path, collector: SdkCollector, helpers: Any) -> None:
    server, agent = _scripts(tmp_path)
    env = helpers.child_env(collector.path, RUNWATCH_PROPAGATE="0")
    res = helpers.run_py(["-m", "runwatch.sdk.run", str(agent), str(server)], env)
    assert (res.returncode, res.stdout) == (0, '["HI23", "3"]\n')
    events = helpers.drain(collector)
    assert len({e.pid for e in events}) == 1  # only the agent: its server was started uninstrumented
    assert sorted(e.kind for e in events if e.kind.startswith("tool.")) == ["tool.end"] * 2 + ["tool.start"] * 2


# -- with the live kernel sensor -----------------------------------------------------------------


@pytest.fixture
def live(live_sensor: LiveCapture) -> LiveCapture:
    live_sensor.quiet, live_sensor.limit = 0.5, 20.0
    return live_sensor


@pytest.mark.kernel
def test_server_side_execs_are_attributed_by_the_join(tmp_path: Path, live: LiveCapture, helpers: Any) -> None:
    server, agent = _scripts(tmp_path)
    res = helpers.run_py(["-m", "runwatch.sdk.run", str(agent), str(server)],
                         helpers.child_env(live.collector.path))
    assert (res.returncode, res.stdout) == (0, '["HI23", "3"]\n'), res.stderr
    events = live.settle()
    sdk_events = [e for e in events if e.source in ("sdk", "audit")]
    agent_pid, server_pid, call_id = _check_sdk_side(sdk_events, server)
    run_true = ToolCall("run_true", call_id, SERVER_NAME)
    kernel = [e for e in events if e.source == "kernel"]
    trues = [e for e in kernel if e.kind == "process.exec" and e.exe == "/usr/bin/true"]
    assert len(trues) == 3
    assert all(e.ppid == server_pid for e in trues)
    assert [e.tool_call for e in trues] == [run_true] * 3
    # The server process was spawned by the agent before any call: lineage alone would not attribute
    # its work; the server's own instrumentation does. Its start is agent activity outside a call.
    server_exec = [e for e in kernel if e.kind == "process.exec" and e.pid == server_pid]
    assert len(server_exec) == 1 and server_exec[0].tool_call is None and server_exec[0].unattested is True
    assert server_exec[0].ppid == agent_pid
    forks = [e for e in kernel if e.kind == "process.fork" and e.pid == server_pid
             and e.child_pid in {t.pid for t in trues}]
    assert len(forks) == 3 and all(f.tool_call == run_true for f in forks)
