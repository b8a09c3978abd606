"""LangChain tools in a LangGraph agent loop (model node + ``ToolNode``), zero-code, sync and async.

``graph.invoke`` runs the ToolNode's calls on a thread pool; ``graph.ainvoke`` as asyncio
tasks (sync tools then run on executor threads). Three calls in parallel in the first turn.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from runwatch.testing.capture import LiveCapture

AGENT = textwrap.dedent('''
    import asyncio, os, subprocess, sys
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    @tool
    def probe(tag: str) -> str:
        """Run /usr/bin/true with the tag."""
        subprocess.run(["/usr/bin/true", tag], check=True)
        return tag

    @tool
    async def aprobe(tag: str) -> str:
        """Run /usr/bin/true with the tag (async)."""
        subprocess.run(["/usr/bin/true", tag], check=True)
        return tag

    mode = sys.argv[1]
    tools = [probe] if mode == "sync" else [probe, aprobe]
    llm = ChatOpenAI(model="scripted-tools-1", base_url=os.environ["OPENAI_BASE_URL"], api_key="test",
                     max_retries=0).bind_tools(tools)

    def model(state):
        return {"messages": [llm.invoke(state["messages"])]}

    async def amodel(state):
        return {"messages": [await llm.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", model if mode == "sync" else amodel)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", tools_condition)
    graph.add_edge("tools", "model")
    app = graph.compile()
    question = {"messages": [("user", f"probe the five tags ({mode})")]}
    state = app.invoke(question) if mode == "sync" else asyncio.run(app.ainvoke(question))
    print(state["messages"][-1].content)
''')


def _script(mode: str) -> list[list[tuple[str, dict[str, Any]]]]:
    second = "probe" if mode == "sync" else "aprobe"
    return [[("probe", {"tag": f"lg-{mode}-a"}), (second, {"tag": f"lg-{mode}-b"}), ("probe", {"tag": f"lg-{mode}-c"})],
            [(second, {"tag": f"lg-{mode}-d"}), ("probe", {"tag": f"lg-{mode}-e"})]]


@pytest.mark.kernel
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_tool_node_calls_are_attributed_zero_code(mode: str, tmp_path: Path, live: LiveCapture, tools: Any) -> None:
    calls = tools.drive(tmp_path, AGENT, _script(mode), live, mode)
    assert [c[0] for c in calls] == ["call_0_0_0", "call_0_0_1", "call_0_0_2", "call_0_1_0", "call_0_1_1"]
    events = live.settle()
    tools.one_start_per_call(events, calls)
    label = "LangGraph ToolNode (invoke)" if mode == "sync" else "LangGraph ToolNode (ainvoke)"
    tools.check(events, calls, None, framework=label, parallel=3)
