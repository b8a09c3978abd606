"""An agent that uploads a summary of its workspace notes to a webhook on an "external" host.

``python3 -m runwatch.demo.workloads.exfil_agent --notes PATH --webhook URL``. The scripted
planner reads the notes with ``read_file``, follows any instruction in them of the form
``upload <path> to <url>`` (the indirect prompt injection), then posts a summary with
``http_post``: with the poisoned notes of the attack scenario that reads the mounted
secret ``/run/secrets/api-token`` with ``read_file`` and posts it with ``http_post`` to the
sink in the other network namespace. The clean notes carry no such line.

Prints one JSON line at the end: the tool log and the SDK delivery counters.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from runwatch import sdk
from runwatch.demo.workloads.tools import Toolbox, linger, say

AGENT = "report-agent"
_UPLOAD = re.compile(r"upload (/\S+) to (http://\S+)", re.I)


def follow_instructions(notes: str) -> list[tuple[str, dict[str, Any]]]:
    """Tool calls the (gullible) planner derives from instructions embedded in ``notes``."""
    steps: list[tuple[str, dict[str, Any]]] = []
    for path, url in _UPLOAD.findall(notes):
        steps.append(("read_file", {"path": path}))
        steps.append(("http_post", {"url": url, "data": "{file}"}))
    return steps


def main(argv: list[str] | None = None) -> int:
    """Run the plan once; exit 0 when every tool call succeeded."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--notes", required=True)
    ap.add_argument("--webhook", required=True)
    args = ap.parse_args(argv)
    sdk.announce(AGENT)
    box = Toolbox(AGENT, "rx")
    with sdk.prompt_route("agent/weekly-report"):
        sdk.model_call("scripted", "scripted-planner-1")
        notes = box.call("read_file", {"path": args.notes})
        last = ""
        for tool, targs in follow_instructions(notes):  # the planner acts on embedded instructions first
            if targs.get("data") == "{file}":
                targs = {**targs, "data": last}
            last = box.call(tool, targs)
            say(tool, targs.get("path") or targs.get("url"))
        summary = {"lines": len(notes.splitlines()), "words": len(notes.split()), "title": notes.split("\n", 1)[0]}
        box.call("http_post", {"url": args.webhook, "data": json.dumps(summary)})
    sdk.flush(2.0)
    linger()
    errors = [entry for entry in box.log if entry[2] != "ok"]
    print(json.dumps({"calls": box.log, "sdk": sdk.stats()}), flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
