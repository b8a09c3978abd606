"""An SDK agent for the end-to-end tool tests: ``tool_agent.py AGENT N TOOL...``.

Runs each tool as a tool call of ``AGENT`` (args ``{"n": N}``) whose body writes
``/tmp/side-TOOL``; prints one JSON list: ``[tool, "ran"]`` or ``[tool, "denied", recorded]``
per tool, then the side files that exist. The tests pass this file's text to ``python -c``.
"""

import json
import os
import pathlib
import sys

from runwatch import sdk

agent, n, tools = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
out: list[object] = []
for tool in tools:
    try:
        with sdk.tool_call(tool, agent=agent, args={"n": n}):
            pathlib.Path("/tmp/side-" + tool).write_text("done")
        out.append([tool, "ran"])
    except sdk.ToolDenied as exc:
        out.append([tool, "denied", exc.decision.recorded])
out.append(sorted(f for f in os.listdir("/tmp") if f.startswith("side-")))
print(json.dumps(out))
