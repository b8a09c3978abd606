"""OpenAI Agents SDK, zero-code: sync and async ``@function_tool`` calls, three in parallel in one turn."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from runwatch.testing.capture import LiveCapture

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
    calls = tools.drive(tmp_path, AGENT, SCRIPT, live)
    assert [c[0] for c in calls] == ["call_0_0_0", "call_0_0_1", "call_0_0_2", "call_0_1_0", "call_0_1_1"]
    events = live.settle()
    tools.one_start_per_call(events, calls)
    tools.check(events, calls, "prober", framework="OpenAI Agents SDK (function_tool)", parallel=3)
