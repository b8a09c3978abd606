"""Agents that report their tool calls as OpenTelemetry spans, under ``runwatch run --otlp-listen``.

Two chat-completions agents against the scripted model export spans with the real
OpenTelemetry SDK and OTLP/HTTP exporter to runwatch's receiver: one writes GenAI
``execute_tool`` spans and runs each turn's calls in parallel on a thread pool (the calls of
a turn wait for each other inside their spans before and after their work, so every
call is open while any works) with ``thread.id``; the
other is traced by OpenInference (``openinference-instrumentation-openai`` for the model
calls, ``OITracer.tool`` for the tools). The session's store is read back and every call's
fork, exec and exit must carry the call.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from runwatch.events import Event, ToolCall
from runwatch.store.sqlite import query_events
from runwatch.testing.fake_openai import FINAL_ANSWER, FakeOpenAI

pytestmark = pytest.mark.kernel

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))

PROVIDER = '''
import json, os, subprocess, threading
from openai import OpenAI
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

provider = TracerProvider(resource=Resource({"service.name": "otlp-agent", "process.pid": os.getpid()}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=os.environ["RW_OTLP"] + "/v1/traces")))
client = OpenAI(base_url=os.environ["OPENAI_BASE_URL"], api_key="test")

def work(call):
    tag = json.loads(call.function.arguments)["tag"]
    subprocess.run(["/usr/bin/true", tag], check=True)
    return {"role": "tool", "tool_call_id": call.id, "content": tag}

def chat(run_turn):
    messages = [{"role": "user", "content": "probe the five tags"}]
    while True:
        message = client.chat.completions.create(model="scripted-tools-1", messages=messages).choices[0].message
        if not message.tool_calls:
            print(message.content)
            break
        messages.append(message.model_dump(exclude_none=True))
        messages += run_turn(message.tool_calls)
'''

GENAI = PROVIDER + '''
from concurrent.futures import ThreadPoolExecutor
tracer = provider.get_tracer("genai-agent")

def parallel(calls):
    together = threading.Barrier(len(calls))

    def one(call):
        attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": call.function.name,
                      "gen_ai.tool.call.id": call.id, "gen_ai.agent.name": "genai-planner"}
        if not os.environ.get("RW_NO_THREAD_ID"):
            attributes["thread.id"] = threading.get_native_id()
        with tracer.start_as_current_span(f"execute_tool {call.function.name}", attributes=attributes):
            together.wait(10)  # every call of the turn is open before any works
            result = work(call)
            together.wait(10)  # and stays open until all have worked
            return result

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(one, calls))

chat(parallel)
provider.shutdown()
'''

OPENINFERENCE = PROVIDER + '''
from openinference.instrumentation import OITracer, TraceConfig
from openinference.instrumentation.openai import OpenAIInstrumentor
from openinference.semconv.trace import SpanAttributes
from opentelemetry import trace

OpenAIInstrumentor().instrument(tracer_provider=provider)
tracer = OITracer(provider.get_tracer("oi-agent"), config=TraceConfig())

def sequential(calls):
    out = []
    for call in calls:
        @tracer.tool(name=call.function.name)
        def tool(arguments):
            trace.get_current_span().set_attribute(SpanAttributes.TOOL_ID, call.id)
            return work(call)
        out.append(tool(call.function.arguments))
    return out

with tracer.start_as_current_span("planner", openinference_span_kind="agent",
                                  attributes={SpanAttributes.AGENT_NAME: "oi-planner"}):
    chat(sequential)
provider.shutdown()
'''

SCRIPT = [[("probe", {"tag": "otlp-a"}), ("probe", {"tag": "otlp-b"}), ("probe", {"tag": "otlp-c"})],
          [("probe", {"tag": "otlp-d"}), ("probe", {"tag": "otlp-e"})]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_agent(tmp_path: Path, tools: Any, source: str, **env: str) -> tuple[list[Event], list[tuple[str, str, str]]]:
    """Run agent ``source`` under ``runwatch run --otlp-listen``; its stored events and the calls issued."""
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(source))
    port, db = free_port(), tmp_path / "otlp.db"
    with FakeOpenAI(SCRIPT) as server:
        res = subprocess.run(
            [RUNWATCH, "run", "--db", str(db), "--no-rules", "--otlp-listen", f"127.0.0.1:{port}", "--",
             sys.executable, str(script)],
            capture_output=True, text=True, timeout=180, check=False,
            env={"PATH": "/usr/bin:/bin", "RW_OTLP": f"http://127.0.0.1:{port}", "OPENAI_BASE_URL": server.base_url,
                 **env})
    assert res.returncode == 0, res.stderr[-4000:]
    assert res.stdout == FINAL_ANSWER + "\n"
    calls = tools.issued(server)
    assert len(calls) == 5
    return query_events(db), calls


@pytest.mark.parametrize(("source", "agent", "framework", "parallel"), [
    (GENAI, "genai-planner", "GenAI execute_tool spans (thread pool, thread.id)", 3),
    # an OpenInference tool span does not name its agent, and the agent's span is exported only
    # when the whole run ends, after every tool call was attributed
    (OPENINFERENCE, None, "OpenInference (openai instrumentor, OITracer.tool)", 0),
], ids=["genai", "openinference"])
def test_tool_calls_reported_over_otlp_are_attributed(tmp_path: Path, tools: Any, source: str, agent: str | None,
                                                      framework: str, parallel: int) -> None:
    events, calls = run_agent(tmp_path, tools, source)
    tools.one_start_per_call([e for e in events if e.source == "otlp"], calls)
    tools.check(events, calls, agent, framework=framework, path="OTLP", parallel=parallel)


def test_parallel_calls_without_thread_ids_name_no_tool_and_list_every_candidate(tmp_path: Path, tools: Any) -> None:
    events, calls = run_agent(tmp_path, tools, GENAI, RW_NO_THREAD_ID="1")
    kernel = [e for e in events if e.source == "kernel"]
    execs = {tuple(e.argv or ()): e for e in kernel if e.kind == "process.exec" and e.exe == tools.TRUE}
    turns = [calls[:3], calls[3:]]  # the script's two turns: three calls, then two
    for turn in turns:
        open_calls = [ToolCall("probe", cid, "genai-planner") for cid, _, _ in turn]
        for _cid, _name, tag in turn:
            exe = execs[(tools.TRUE, tag)]
            work = [e for e in kernel if e.pid == exe.pid and e.kind != "process.fork"]
            work += [e for e in kernel if e.kind == "process.fork" and e.child_pid == exe.pid]
            assert sorted(e.kind for e in work) == ["process.exec", "process.exit", "process.fork"], tag
            for e in work:
                assert e.tool_call is None, (tag, e.kind, e.tool_call)
                assert e.ai is not None and e.ai.tool_call_candidates == len(turn), (tag, e.kind, e.ai)
                assert sorted(e.ai.candidates or [], key=lambda c: c.call_id or "") == open_calls, (tag, e.kind)
