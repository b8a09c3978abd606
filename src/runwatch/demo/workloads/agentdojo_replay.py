"""Replays AgentDojo ground-truth tool-call sequences through tools that really act.

``python3 -m runwatch.demo.workloads.agentdojo_replay --fixture FILE --suite S --service URL
--workspace DIR [--limit N]``. For each user task and each injection task of suite ``S``
(at most ``N`` of each), in fixture order: a ``prompt_route`` naming the task, a
``model_call``, then every ground-truth call inside ``sdk.tool_call(function,
call_id="<task id>#<step>", agent="agentdojo-<suite>")``.

Tools act for real: file tools (create, append, read, list, search, delete, share) work on
files below ``DIR``; every other tool (email, calendar, banking, travel, Slack, web) is an
HTTP request over loopback to the mock service at ``URL`` (``POST /api/<suite>/<tool>``
with the arguments as JSON, or ``GET`` for read-only tools), like an agent calling SaaS
APIs. The fixture data is from AgentDojo (MIT licence, see docs/demo.md).

Prints one JSON line at the end: per task kind, tasks, tool calls and failed calls.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from runwatch import sdk
from runwatch.demo.workloads.tools import Toolbox, ToolError, http_get, http_post, linger

READ_ONLY_PREFIXES = ("get_", "search_", "read_", "list_", "check_")
FILE_TOOLS = frozenset({"append_to_file", "create_file", "delete_file", "get_file_by_id", "list_files",
                        "search_files", "search_files_by_filename", "share_file", "read_file"})
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class Workspace:
    """Files of one suite below ``root``; names are flattened so nothing escapes ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        """The file for ``name`` (any id, title or path) inside the workspace."""
        flat = _SAFE.sub("_", os.path.basename(str(name))).strip("._") or "unnamed"
        return self.root / flat

    def act(self, function: str, args: dict[str, Any]) -> str:
        """Perform a file tool; returns what an agent would see."""
        name = str(args.get("filename") or args.get("file_id") or args.get("file_path") or args.get("id") or "")
        if function == "create_file":
            self.path(name).write_text(str(args.get("content", "")))
            return f"created {name}"
        if function == "append_to_file":
            with open(self.path(name), "a") as fh:
                fh.write(str(args.get("content", "")))
            return f"appended to {name}"
        if function in ("get_file_by_id", "read_file"):
            target = self.path(name)
            return target.read_text() if target.exists() else f"no file {name}"
        if function == "delete_file":
            self.path(name).unlink(missing_ok=True)
            return f"deleted {name}"
        if function == "share_file":
            self.path(name).with_suffix(".shared").write_text(json.dumps(args))
            return f"shared {name}"
        query = str(args.get("query") or args.get("filename") or "").lower()
        names = sorted(p.name for p in self.root.iterdir())
        return "\n".join(n for n in names if query in n.lower()) if query else "\n".join(names)


def _api_tool(suite: str, function: str, service: str) -> Any:
    def call(**args: Any) -> str:
        if function in ("get_webpage", "post_webpage"):
            url = urllib.parse.quote(str(args.get("url", "")), safe="")
            if function == "get_webpage":
                return http_get(f"{service}/web?url={url}")
            return http_post(f"{service}/web?url={url}", json.dumps(args))
        if function.startswith(READ_ONLY_PREFIXES):
            query = urllib.parse.urlencode({k: json.dumps(v) for k, v in args.items()})
            return http_get(f"{service}/api/{suite}/{function}" + (f"?{query}" if query else ""))
        return http_post(f"{service}/api/{suite}/{function}", json.dumps(args))
    return call


def replay(fixture: dict[str, Any], suite: str, service: str, workspace: Workspace,
           limit: int | None) -> dict[str, dict[str, int]]:
    """Run the suite's tasks; returns counters per task kind (``user``, ``injection``)."""
    spec = fixture["suites"][suite]
    box = Toolbox(f"agentdojo-{suite}", suite, tools={})
    for function in spec["tools"]:
        if function in FILE_TOOLS:
            box.tools[function] = lambda _f=function, **a: workspace.act(_f, a)
        else:
            box.tools[function] = _api_tool(suite, function, service)
    counts: dict[str, dict[str, int]] = {}
    for kind, key in (("user", "user_tasks"), ("injection", "injection_tasks")):
        tasks = spec.get(key, [])[: limit if limit is not None else None]
        c = counts[kind] = {"tasks": 0, "tool_calls": 0, "failed": 0}
        for task in tasks:
            c["tasks"] += 1
            with sdk.prompt_route(f"agentdojo/{suite}/{task['id']}"):
                sdk.model_call("scripted", "agentdojo-ground-truth")
                for step, call in enumerate(task["ground_truth"]):
                    out = box.call(call["function"], dict(call.get("args") or {}), call_id=f"{task['id']}#{step}")
                    c["tool_calls"] += 1
                    c["failed"] += out.startswith("error:")
    return counts


def main(argv: list[str] | None = None) -> int:
    """Replay one suite; exit 0 unless the fixture cannot be read."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fixture", required=True)
    ap.add_argument("--suite", required=True)
    ap.add_argument("--service", required=True)
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args(argv)
    try:
        fixture = json.loads(Path(args.fixture).read_text())
        if args.suite not in fixture["suites"]:
            raise ToolError(f"suite {args.suite!r} is not in {args.fixture}")
    except (OSError, ValueError, KeyError, ToolError) as exc:
        print(f"agentdojo replay: {exc}", file=sys.stderr)
        return 2
    sdk.announce(f"agentdojo-{args.suite}")
    counts = replay(fixture, args.suite, args.service, Workspace(Path(args.workspace)), args.limit)
    sdk.flush(2.0)
    linger()
    print(json.dumps({"suite": args.suite, "counts": counts, "sdk": sdk.stats()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
