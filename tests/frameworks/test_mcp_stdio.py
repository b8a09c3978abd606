"""MCP over stdio with a server runwatch does not instrument: its work is the client's open ``call_tool``.

The server is a small MCP server in JavaScript (node) and the same in Python started with
``-I -S`` (no sitecustomize, no environment): either way the server process sends runwatch
nothing, and the join attributes what it does while a call is open to that call through
the server pid the client's ``tool.start`` carries.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from runwatch.testing.capture import LiveCapture

NODE_SERVER = textwrap.dedent('''
    const { execFileSync } = require("child_process");
    const readline = require("readline");
    const send = (msg) => process.stdout.write(JSON.stringify(msg) + "\\n");
    const tool = { name: "probe", description: "Run /usr/bin/true with the tag.",
                   inputSchema: { type: "object", properties: { tag: { type: "string" } }, required: ["tag"] } };
    readline.createInterface({ input: process.stdin }).on("line", (line) => {
      const req = JSON.parse(line);
      if (req.id === undefined) return;
      if (req.method === "initialize") {
        send({ jsonrpc: "2.0", id: req.id, result: { protocolVersion: req.params.protocolVersion,
               capabilities: { tools: {} }, serverInfo: { name: "node-probe", version: "1.0.23" } } });
      } else if (req.method === "tools/list") {
        send({ jsonrpc: "2.0", id: req.id, result: { tools: [tool] } });
      } else if (req.method === "tools/call") {
        execFileSync("/usr/bin/true", [req.params.arguments.tag]);
        send({ jsonrpc: "2.0", id: req.id, result: { content: [{ type: "text", text: req.params.arguments.tag }],
               isError: false } });
      } else {
        send({ jsonrpc: "2.0", id: req.id, error: { code: -32601, message: "no method " + req.method } });
      }
    });
''')

PYTHON_SERVER = textwrap.dedent('''
    import json, subprocess, sys
    TOOL = {"name": "probe", "description": "Run /usr/bin/true with the tag.",
            "inputSchema": {"type": "object", "properties": {"tag": {"type": "string"}}, "required": ["tag"]}}
    def send(msg):
        sys.stdout.write(json.dumps(msg) + "\\n")
        sys.stdout.flush()
    for line in sys.stdin:
        req = json.loads(line)
        if "id" not in req:
            continue
        if req["method"] == "initialize":
            send({"jsonrpc": "2.0", "id": req["id"], "result": {"protocolVersion": req["params"]["protocolVersion"],
                  "capabilities": {"tools": {}}, "serverInfo": {"name": "py-probe", "version": "1.0.23"}}})
        elif req["method"] == "tools/list":
            send({"jsonrpc": "2.0", "id": req["id"], "result": {"tools": [TOOL]}})
        elif req["method"] == "tools/call":
            subprocess.run(["/usr/bin/true", req["params"]["arguments"]["tag"]], check=True)
            send({"jsonrpc": "2.0", "id": req["id"], "result": {
                "content": [{"type": "text", "text": req["params"]["arguments"]["tag"]}], "isError": False}})
        else:
            send({"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32601, "message": "no method"}})
''')

AGENT = textwrap.dedent('''
    import asyncio, json, sys
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    async def main():
        params = StdioServerParameters(command=sys.argv[1], args=sys.argv[2:])
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                out = []
                for tag in ("mcp-a", "mcp-b", "mcp-c"):
                    result = await session.call_tool("probe", {"tag": tag})
                    out.append(result.content[0].text)
                print(json.dumps(out))

    asyncio.run(main())
''')


def _server(kind: str, tmp_path: Path) -> list[str]:
    if kind == "node":
        node = shutil.which("node")
        if node is None:
            pytest.skip("node is not installed")
        (tmp_path / "server.js").write_text(NODE_SERVER)
        return [node, str(tmp_path / "server.js")]
    (tmp_path / "server.py").write_text(PYTHON_SERVER)
    return [sys.executable, "-I", "-S", str(tmp_path / "server.py")]


@pytest.mark.kernel
@pytest.mark.parametrize("kind", ["node", "python -I -S"])
def test_uninstrumented_stdio_server_work_is_the_clients_call(kind: str, tmp_path: Path, live: LiveCapture,
                                                              tools: Any) -> None:
    command = _server(kind, tmp_path)
    out = tools.run_agent(tmp_path, AGENT, live, *command)
    assert json.loads(out) == ["mcp-a", "mcp-b", "mcp-c"]
    events = live.settle()
    name = "node-probe" if kind == "node" else "py-probe"
    starts = [e for e in events if e.kind == "tool.start"]
    assert len(starts) == 3 and len({e.pid for e in starts}) == 1  # the client's three calls, none from the server
    servers = {e.pid for e in events if e.kind == "process.exec" and e.source == "kernel"
               and (e.argv or [])[:1] == [command[0]] and e.ppid in {s.pid for s in starts}}
    assert len(servers) == 1
    assert not [e for e in events if e.source in ("sdk", "audit") and e.pid in servers]
    server_pid = servers.pop()
    # The test runs in the host's pid namespace, so the pid the client reports is the host pid.
    assert [s.attrs for s in starts] == [{"server_pid": server_pid}] * 3
    calls = [(s.tool_call.call_id, "probe", tag) for s, tag in zip(starts, ("mcp-a", "mcp-b", "mcp-c"), strict=True)
             if s.tool_call is not None]
    assert all(s.tool_call is not None and s.tool_call.agent == name for s in starts)
    tools.check(events, calls, name, framework=f"MCP stdio server ({kind}, uninstrumented)")
    # The server's start-up, before any call, stays outside every call.
    spawn = [e for e in events if e.kind == "process.exec" and e.pid == server_pid and e.source == "kernel"]
    assert len(spawn) == 1 and spawn[0].tool_call is None
