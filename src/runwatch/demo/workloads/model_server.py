"""A model-serving container: ``POST /v1/completions`` answered by a scripted planner.

``python3 -m runwatch.demo.workloads.model_server --port P`` serves on 127.0.0.1:P until
SIGTERM. The "model" is deterministic: a prompt that tells it to ignore its instructions
and run a command in backticks is routed to ``completions/tool-use`` and the command runs
through the ``run_shell`` tool (the prompt-injection path real tool-enabled servers
expose); any other prompt is routed to ``completions/chat`` and gets a canned text answer
with no tool call. Each request records ``prompt_route`` and ``model_call`` first.

Requests are handled one at a time on the main thread, so every kernel event a tool call
causes comes from the thread inside the call.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import FrameType
from typing import Any

from runwatch import sdk
from runwatch.demo.workloads.tools import Toolbox, say

MODEL = "scripted-planner-1"
AGENT = "model-server"
ROUTE_CHAT = "completions/chat"
ROUTE_TOOLS = "completions/tool-use"
_INJECTION = re.compile(r"ignore (?:all )?(?:previous|prior|above) instructions.*?`([^`]+)`", re.I | re.S)
_ANSWERS = (
    ("capital", "The capital of France is Paris."),
    ("haiku", "Quiet container hums / packets cross the veth bridge / the sensor takes notes"),
    ("sum", "The sum of the first 23 squares is 4324."),
    ("summar", "Summary: the runbook says to rotate tokens monthly and to page on-call for outages."),
)


class ScriptedPlanner:
    """Maps a prompt to (route, plan, canned answer); a plan is a list of (tool, args)."""

    def plan(self, prompt: str) -> tuple[str, list[tuple[str, dict[str, Any]]], str]:
        """The route, the tool calls to make and the text answer for ``prompt``."""
        hit = _INJECTION.search(prompt)
        if hit is not None:
            return ROUTE_TOOLS, [("run_shell", {"cmd": hit.group(1)})], "Running the requested command."
        lowered = prompt.lower()
        for key, answer in _ANSWERS:
            if key in lowered:
                return ROUTE_CHAT, [], answer
        return ROUTE_CHAT, [], f"I read {len(prompt.split())} words; how can I help further?"


class _Handler(BaseHTTPRequestHandler):
    server_version = "scripted-model/1"
    planner = ScriptedPlanner()
    toolbox = Toolbox(AGENT, "ms")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the demo prints its own progress."""

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        """``/v1/completions`` with ``{"model": ..., "prompt": ...}``; anything else is 4xx."""
        if self.path != "/v1/completions":
            self._reply(404, {"error": f"no route {self.path}"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            req = json.loads(self.rfile.read(length) or b"{}")
            prompt = str(req["prompt"])
        except (ValueError, KeyError, TypeError) as exc:
            self._reply(400, {"error": f"bad request: {exc}"})
            return
        route, plan, text = self.planner.plan(prompt)
        outputs: list[str] = []
        with sdk.prompt_route(route):
            sdk.model_call("scripted", MODEL)
            for tool, args in plan:
                outputs.append(self.toolbox.call(tool, args))
        say("route", route, "tools", [t for t, _ in plan])
        self._reply(200, {"object": "text_completion", "model": MODEL, "route": route,
                          "choices": [{"index": 0, "text": "\n".join([text, *outputs]).strip()}],
                          "tool_calls": [t for t, _ in plan]})


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM; returns 0."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args(argv)
    server = HTTPServer((args.host, args.port), _Handler)
    server.timeout = 0.1
    stopping = False

    def _stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    sdk.announce(AGENT)
    say("ready", args.port)
    while not stopping:
        server.handle_request()
    server.server_close()
    sdk.flush(2.0)
    say("stopped", json.dumps(sdk.stats()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
