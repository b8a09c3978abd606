"""An agent with tools (http_get, run_shell, read_file, python_eval) and a plugin loader.

``python3 -m runwatch.demo.workloads.tool_agent --mode benign|plugin --service URL
--plugin-port Q``. The scripted planner answers a fixed task ("prepare the weekly notes"):

* benign: fetch the allowed documentation service twice, read a workspace note, compute a
  number with python_eval. No shell, no secret, no new endpoint.
* plugin: the same, then list the workspace with run_shell, load the ``weather-mcp`` plugin
  (``sdk.plugin_load`` with its source path and SHA-256, inside a ``load_plugin`` tool
  call), and call the plugin's ``weather.forecast`` tool, which resolves the plugin's host
  and connects to a port the agent never used before.

Prints one JSON line at the end: the tool log and the SDK delivery counters.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
from typing import Any

from runwatch import sdk
from runwatch.demo.workloads.tools import Toolbox, ToolError, linger, say

AGENT = "tool-agent"


def load_plugin(box: Toolbox, module_name: str, port: int) -> str:
    """Import the plugin module from its file, record the load and register its tools."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None or spec.loader is None:
        raise ToolError(f"plugin {module_name} not found")
    with open(spec.origin, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sdk.plugin_load(module.PLUGIN_NAME, spec.origin, digest)
    for name, fn in module.register(port).items():
        box.register(name, fn)
    return f"loaded {module.PLUGIN_NAME} ({digest[:12]})"


def plan(mode: str, service: str) -> list[tuple[str, dict[str, Any]]]:
    """The scripted planner's tool calls for ``mode``."""
    steps: list[tuple[str, dict[str, Any]]] = [
        ("http_get", {"url": f"{service}/docs/weekly-notes"}),
        ("read_file", {"path": "/workspace/notes.md"}),
        ("python_eval", {"expr": "23 * 24 * 47 // 6"}),
        ("http_get", {"url": f"{service}/docs/style-guide"}),
    ]
    if mode == "plugin":
        steps += [
            ("run_shell", {"cmd": "ls /workspace"}),
            ("load_plugin", {"module": "runwatch.demo.workloads.weather_plugin"}),
            ("weather.forecast", {"city": "Lisbon"}),
        ]
    return steps


def main(argv: list[str] | None = None) -> int:
    """Run the plan once; exit 0 when every tool call succeeded."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mode", choices=("benign", "plugin"), required=True)
    ap.add_argument("--service", required=True, help="base URL of the allowed local service")
    ap.add_argument("--plugin-port", type=int, default=0)
    args = ap.parse_args(argv)
    sdk.announce(AGENT)
    box = Toolbox(AGENT, "ta")
    box.tools["load_plugin"] = lambda module: load_plugin(box, module, args.plugin_port)
    with sdk.prompt_route("agent/weekly-notes"):
        sdk.model_call("scripted", "scripted-planner-1")
        for tool, targs in plan(args.mode, args.service):
            out = box.call(tool, targs)
            say(tool, out.splitlines()[0][:80] if out else "")
    sdk.flush(2.0)
    linger()
    errors = [entry for entry in box.log if entry[2] != "ok"]
    print(json.dumps({"calls": box.log, "sdk": sdk.stats()}), flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
