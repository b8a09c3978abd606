"""OpenAI Agents SDK, zero-code: sync and async ``@function_tool`` calls, three in parallel in one turn."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from runwatch.testing.capture import LiveCapture
from runwatch.testing.fake_openai import FINAL_ANSWER, FakeOpenAI

AGENT = textwrap.dedent('''
    import asyncio, os, subprocess
    from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled
    from openai import AsyncOpenAI

    set_tracing_disabled(True)

    @function_tool
    def probe(tag: str) -> str:
        """Run /usr/bin/true with the tag (sync: the SDK runs it on a worker thread)."""
        subprocess.run(["/usr/bin/true", tag], check=True)
        return tag

    @function_tool
    async def aprobe(tag: str) -> str:
        """Run /usr/bin/true with the tag (async: runs in its task)."""
        subprocess.run(["/usr/bin/true", tag], check=True)
        return tag

    client = AsyncOpenAI(base_url=os.environ["OPENAI_BASE_URL"], api_key="test")
    model = OpenAIChatCompletionsModel(model="scripted-tools-1", openai_client=client)
    agent = Agent(name="prober", instructions="Probe.", tools=[probe, aprobe], model=model)
    print(asyncio.run(Runner.run(agent, "probe the five tags")).final_output)
''')

SCRIPT = [[("probe", {"tag": "agents-a"}), ("aprobe", {"tag": "agents-b"}), ("probe", {"tag": "agents-c"})],
          [("aprobe", {"tag": "agents-d"}), ("probe", {"tag": "agents-e"})]]


@pytest.mark.kernel
def test_function_tools_are_attributed_zero_code(tmp_path: Path, live: LiveCapture, tools: Any) -> None:
    with FakeOpenAI(SCRIPT) as server:
        out = tools.run_agent(tmp_path, AGENT, live, OPENAI_BASE_URL=server.base_url)
    assert out == FINAL_ANSWER + "\n"
    calls = tools.issued(server)
    assert [c[0] for c in calls] == ["call_0_0_0", "call_0_0_1", "call_0_0_2", "call_0_1_0", "call_0_1_1"]
    events = live.settle()
    starts = sorted((e.tool_call.call_id, e.tool_call.name) for e in events
                    if e.kind == "tool.start" and e.tool_call is not None)
    assert starts == sorted((cid, name) for cid, name, _ in calls)  # one start per call, none twice
    tools.check(events, calls, "prober", framework="OpenAI Agents SDK (function_tool)", parallel=3)
