"""OpenAI-style function calling: the dispatcher and the openai runners' tool execution inside tool calls."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_message_function_tool_call import (
    ChatCompletionMessageFunctionToolCall,
    Function,
)

from runwatch import sdk
from runwatch.events import ToolCall
from runwatch.sdk.autowrap import adispatch_tool_calls, dispatch_tool_calls
from runwatch.sdk.transport import Transport
from runwatch.sensors.inproc.collector import SdkCollector


def _message(*calls: tuple[str, str, str]) -> ChatCompletionMessage:
    return ChatCompletionMessage(role="assistant", content=None, tool_calls=[
        ChatCompletionMessageFunctionToolCall(id=cid, type="function", function=Function(name=name, arguments=args))
        for cid, name, args in calls])


def test_dispatcher_runs_each_tool_inside_its_call(collector: SdkCollector, transport: Transport,
                                                   helpers: Any) -> None:
    seen: list[tuple[str, Any]] = []

    def add(a: int, b: int) -> int:
        seen.append(("add", sdk.current_tool_call()))
        return a + b

    def shell(cmd: str) -> str:
        seen.append(("shell", sdk.current_tool_call()))
        return subprocess.run(cmd.split(), capture_output=True, text=True, check=True).stdout

    message = _message(("call_23", "add", '{"a": 2, "b": 21}'), ("call_7", "shell", '{"cmd": "/bin/echo hi"}'))
    completion = ChatCompletion(id="cmpl-1", object="chat.completion", created=0, model="scripted",
                                choices=[Choice(index=0, finish_reason="tool_calls", message=message)])
    out = dispatch_tool_calls(completion, {"add": add, "shell": shell}, agent="planner")
    assert out == [{"role": "tool", "tool_call_id": "call_23", "content": "23"},
                   {"role": "tool", "tool_call_id": "call_7", "content": "hi\n"}]
    assert seen == [("add", ("add", "call_23", "planner")), ("shell", ("shell", "call_7", "planner"))]
    assert sdk.current_tool_call() is None
    assert sdk.flush(5.0)
    events = helpers.drain(collector)
    tools = [(e.kind, e.tool_call) for e in events if e.kind.startswith("tool.")]
    assert tools == [("tool.start", ToolCall("add", "call_23", "planner")),
                     ("tool.end", ToolCall("add", "call_23", "planner")),
                     ("tool.start", ToolCall("shell", "call_7", "planner")),
                     ("tool.end", ToolCall("shell", "call_7", "planner"))]
    start = next(e for e in events if e.kind == "tool.start")
    assert start.ai is not None and start.ai.args_digest == sdk.args_digest({"a": 2, "b": 21})


def test_async_dispatcher_and_dict_messages() -> None:
    import asyncio

    async def lookup(key: str) -> dict[str, str]:
        await asyncio.sleep(0)
        current = sdk.current_tool_call()
        return {"key": key, "call": (current[1] or "") if current else ""}

    message = {"tool_calls": [{"id": "call_a", "type": "function",
                               "function": {"name": "lookup", "arguments": '{"key": "k23"}'}}]}
    out = asyncio.run(adispatch_tool_calls(message, {"lookup": lookup}))
    assert out == [{"role": "tool", "tool_call_id": "call_a",
                    "content": json.dumps({"key": "k23", "call": "call_a"})}]


@pytest.mark.parametrize(("calls", "error"), [
    ((("call_1", "add", "{}"), ("call_2", "rm_rf", "{}")), "tool call 'call_2' names unknown tool 'rm_rf'"),
    ((("call_3", "add", "{not json"),), "tool call 'call_3' (add): arguments are not a JSON object"),
    ((("call_4", "add", "[1, 2]"),), "tool call 'call_4' (add): arguments are not a JSON object"),
])
def test_bad_tool_calls_are_refused_before_any_tool_runs(calls: tuple[tuple[str, str, str], ...],
                                                         error: str) -> None:
    ran: list[str] = []
    with pytest.raises(ValueError) as info:
        dispatch_tool_calls(_message(*calls), {"add": lambda **kw: ran.append("add")})
    assert str(info.value).startswith(error) and "\n" not in str(info.value)
    assert ran == []


RUNNER_AGENT = textwrap.dedent("""
    import json, subprocess
    from types import SimpleNamespace
    from runwatch import sdk
    from runwatch.sdk import autowrap
    # openai is imported only now, after the instrumentation started: the finder patches it on import.
    from openai.lib.responses_tool_runner import ResponsesToolRunner
    from openai.types.responses import ResponseFunctionToolCall

    def execute(arguments):
        subprocess.run(["/usr/bin/true", arguments["q"]], check=True)
        return json.dumps({"in_call": sdk.current_tool_call()})

    runner = object.__new__(ResponsesToolRunner)
    runner._functions = {"search": SimpleNamespace(execute=execute)}
    run = SimpleNamespace(arguments={"call_r23": {"q": "q23"}}, cancelled=lambda: False, on_diagnostic=None)
    item = ResponseFunctionToolCall(arguments='{"q": "q23"}', call_id="call_r23", name="search", type="function_call")
    print(json.dumps(runner._execute_function(run, item)))
    print(json.dumps(autowrap.applied()["openai.lib.responses_tool_runner"]))
""")


def test_openai_responses_runner_executes_functions_inside_tool_calls(
        tmp_path: Path, collector: SdkCollector, helpers: Any) -> None:
    script = tmp_path / "runner_agent.py"
    script.write_text(RUNNER_AGENT)
    res = helpers.run_py(["-m", "runwatch.sdk.run", str(script)], helpers.child_env(collector.path))
    assert res.returncode == 0, res.stderr
    output, patched = res.stdout.splitlines()
    assert json.loads(output) == {"type": "function_call_output", "call_id": "call_r23",
                                  "output": json.dumps({"in_call": ["search", "call_r23", None]})}
    assert patched == "true"
    events = helpers.drain(collector)
    call = ToolCall("search", "call_r23")
    assert [(e.kind, e.tool_call) for e in events if e.kind.startswith("tool.")] == [
        ("tool.start", call), ("tool.end", call)]
    execs = [e for e in events if e.kind == "process.exec"]
    assert [(e.argv, e.tool_call) for e in execs] == [(["/usr/bin/true", "q23"], call)]
