"""Tool calls from the OpenInference and Traceloop span conventions, and thread attribution by thread.id.

OpenInference spans come from the real packages: ``openinference-instrumentation-openai``
instruments the real ``openai`` client (LLM spans) talking to a local fake endpoint, and
``openinference-instrumentation``'s ``OITracer.tool`` decorator makes the TOOL spans; the real
OpenTelemetry SDK exports them over OTLP/HTTP to a real receiver. ``traceloop-sdk`` cannot be
installed beside the pinned OpenTelemetry 1.45.2 / 0.66b2 (it needs the gRPC exporter and
instrumentations released only for older ``opentelemetry-instrumentation``), so its spans are
rebuilt here as its 0.62.4 decorators emit them (span ``NAME.KIND``, ``traceloop.span.kind``,
``traceloop.entity.name``, ``gen_ai.tool.name`` on tools, ``traceloop.workflow.name`` and
``gen_ai.agent.name`` from the span processor), with the attribute names taken from the real
``opentelemetry-semantic-conventions-ai`` package.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import openai
from openinference.instrumentation import OITracer, TraceConfig
from openinference.instrumentation.openai import OpenAIInstrumentor
from openinference.semconv.trace import OpenInferenceSpanKindValues, SpanAttributes
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.semconv_ai import SpanAttributes as TraceloopAttributes
from opentelemetry.semconv_ai import TraceloopSpanKindValues

from runwatch.events import Event, ToolCall
from runwatch.sensors.ingest.otlp import OtlpReceiver
from runwatch.testing.sources import drain


@contextmanager
def provider_to(rx: OtlpReceiver, service: str) -> Iterator[TracerProvider]:
    """A real OTel SDK provider batching spans to ``rx`` (this process's pid), as agents export.

    The agent of a tool span is looked up among the spans of its export request: a batch holds
    the agent span with its tools (a span exported alone at its end, before its parent, would not).
    """
    provider = TracerProvider(resource=Resource({"service.name": service, "process.pid": os.getpid()}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{rx.endpoint}/v1/traces")))
    try:
        yield provider
    finally:
        provider.shutdown()


def tool_calls(events: list[Event], kind: str) -> list[ToolCall | None]:
    return [e.tool_call for e in events if e.kind == kind]


def test_the_names_read_are_the_ones_the_convention_packages_define() -> None:
    assert (SpanAttributes.OPENINFERENCE_SPAN_KIND, SpanAttributes.TOOL_NAME, SpanAttributes.TOOL_ID,
            SpanAttributes.AGENT_NAME, SpanAttributes.LLM_MODEL_NAME) == (
        "openinference.span.kind", "tool.name", "tool.id", "agent.name", "llm.model_name")
    assert (OpenInferenceSpanKindValues.TOOL.value, OpenInferenceSpanKindValues.LLM.value) == ("TOOL", "LLM")
    assert (TraceloopAttributes.TRACELOOP_SPAN_KIND, TraceloopAttributes.TRACELOOP_ENTITY_NAME) == (
        "traceloop.span.kind", "traceloop.entity.name")
    assert [v.value for v in (TraceloopSpanKindValues.TOOL, TraceloopSpanKindValues.AGENT)] == ["tool", "agent"]


CALLS = [("call_oi1", "get_weather", '{"city": "Oslo"}'), ("call_oi2", "search_flights", '{"to": "OSL"}'),
         ("call_oi3", "run_shell", '{"cmd": "true"}')]


def test_openinference_instrumented_openai_agent_gives_its_llm_and_tool_calls(
        receiver: OtlpReceiver, fake_openai: Any) -> None:
    with fake_openai(CALLS) as server, provider_to(receiver, "oi-agent") as provider:
        instrumentor = OpenAIInstrumentor()
        instrumentor.instrument(tracer_provider=provider)
        try:
            tracer = OITracer(provider.get_tracer("oi-agent"), config=TraceConfig())
            client = openai.OpenAI(base_url=server.base_url, api_key="sk-test")

            def run_tool(call_id: str, name: str, args: str) -> str:
                @tracer.tool(name=name)
                def tool(arguments: str) -> str:
                    trace.get_current_span().set_attribute(SpanAttributes.TOOL_ID, call_id)
                    return f"{name} ok"

                return tool(args)

            with tracer.start_as_current_span("planner", openinference_span_kind="agent",
                                              attributes={SpanAttributes.AGENT_NAME: "oi-planner"}):
                messages: list[Any] = [{"role": "user", "content": "plan a trip"}]
                first = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
                calls = first.choices[0].message.tool_calls or []
                messages.append(first.choices[0].message.model_dump(exclude_none=True))
                for call in calls:
                    out = run_tool(call.id, call.function.name, call.function.arguments)
                    messages.append({"role": "tool", "tool_call_id": call.id, "content": out})
                final = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
            assert final.choices[0].message.content == "done"
        finally:
            instrumentor.uninstrument()
    events = drain(receiver)
    expected = [ToolCall(name=name, call_id=cid, agent="oi-planner") for cid, name, _ in CALLS]
    assert tool_calls(events, "tool.start") == tool_calls(events, "tool.end") == expected
    models = [e for e in events if e.kind == "model.call"]
    assert [(m.ai.operation, m.ai.model, m.ai.input_tokens, m.ai.output_tokens, m.ai.agent)
            for m in models if m.ai is not None] == [
        ("invoke_agent", None, None, None, "oi-planner"),
        ("llm", "gpt-4o-mini", 11, 7, "oi-planner"), ("llm", "gpt-4o-mini", 11, 7, "oi-planner")]
    assert {e.attrs["convention"] for e in events if e.attrs} == {"openinference"}
    assert {e.pid for e in events} == {os.getpid()}
    assert server.requests == 2


def test_traceloop_decorated_workflow_agent_task_and_tools(receiver: OtlpReceiver) -> None:
    tl = TraceloopAttributes
    with provider_to(receiver, "tl-agent") as provider:
        tracer = provider.get_tracer("traceloop.tracer")

        @contextmanager
        def entity(name: str, kind: TraceloopSpanKindValues, agent: str | None = None) -> Iterator[None]:
            attrs: dict[str, Any] = {tl.TRACELOOP_SPAN_KIND: kind.value, tl.TRACELOOP_ENTITY_NAME: name,
                                     tl.TRACELOOP_WORKFLOW_NAME: "trip"}
            if kind is TraceloopSpanKindValues.TOOL:
                attrs["gen_ai.tool.name"] = name
                attrs[tl.TRACELOOP_ENTITY_PATH] = f"plan.{name}"
            if agent is not None:
                attrs["gen_ai.agent.name"] = agent
            with tracer.start_as_current_span(f"{name}.{kind.value}", attributes=attrs):
                yield

        with entity("trip", TraceloopSpanKindValues.WORKFLOW), \
                entity("tl-planner", TraceloopSpanKindValues.AGENT, agent="tl-planner"):
            with entity("plan", TraceloopSpanKindValues.TASK, agent="tl-planner"):
                for name in ("get_weather", "search_flights", "book_hotel", "convert_currency"):
                    with entity(name, TraceloopSpanKindValues.TOOL, agent="tl-planner"):
                        pass
            with entity("run_shell", TraceloopSpanKindValues.TOOL):  # no agent name of its own: from the ancestor
                pass
    events = drain(receiver)
    names = ["get_weather", "search_flights", "book_hotel", "convert_currency", "run_shell"]
    expected = [ToolCall(name=n, agent="tl-planner") for n in names]
    assert tool_calls(events, "tool.start") == tool_calls(events, "tool.end") == expected
    models = [e for e in events if e.kind == "model.call"]
    assert [(m.ai.operation, m.ai.agent) for m in models if m.ai is not None] == [("invoke_agent", "tl-planner")]
    stats = receiver.stats()
    assert (stats["spans"], stats["spans_ignored"], stats["events"]) == (8, 2, 11)
    assert stats["requests"] == 1  # workflow and task ignored


def test_thread_id_that_is_an_os_thread_keys_the_call_to_that_thread(receiver: OtlpReceiver) -> None:
    barrier, ended, exported = threading.Barrier(3), threading.Barrier(4), threading.Event()
    native: dict[str, int] = {}
    with provider_to(receiver, "threaded-agent") as provider:
        tracer = provider.get_tracer("threaded")

        def worker(name: str) -> None:
            native[name] = threading.get_native_id()
            with tracer.start_as_current_span(f"execute_tool {name}", attributes={
                    "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name,
                    "thread.id": threading.get_native_id(), "thread.name": threading.current_thread().name}):
                barrier.wait(10)  # the three calls overlap
            ended.wait(10)
            exported.wait(10)  # the thread lives until its span was exported and its thread.id checked

        threads = [threading.Thread(target=worker, args=(n,), name=f"w-{n}") for n in ("alpha", "beta", "gamma")]
        for t in threads:
            t.start()
        ended.wait(10)
        provider.force_flush()
        exported.set()
        for t in threads:
            t.join(20)
        with tracer.start_as_current_span("execute_tool handle", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "handle",
                "thread.id": threading.get_ident()}):  # what OTel's logging handler puts there: no OS id
            pass
        with tracer.start_as_current_span("execute_tool managed", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "managed", "thread.id": 4194301}):
            pass
    events = {e.tool_call.name: e for e in drain(receiver) if e.kind == "tool.start" and e.tool_call}
    for name in ("alpha", "beta", "gamma"):
        e = events[name]
        assert (e.vtid, e.tid) == (native[name], native[name])  # runwatch shares the sender's pid namespace
        assert e.attrs is not None and e.attrs["thread_name"] == f"w-{name}" and "thread_unresolved" not in e.attrs
    assert len({native[n] for n in ("alpha", "beta", "gamma")}) == 3
    handle, managed = events["handle"], events["managed"]
    assert (handle.vtid, handle.tid, managed.vtid, managed.tid) == (None, 0, None, 0)
    assert handle.attrs is not None and handle.attrs["thread_unresolved"] == (
        f"thread.id {threading.get_ident()} is past the pid range (a thread handle, not an OS thread id)")
    assert managed.attrs is not None and managed.attrs["thread_unresolved"] == (
        f"thread.id 4194301 is no thread of process {os.getpid()}")


def test_span_conventions_round_trip_as_json(receiver: OtlpReceiver) -> None:
    # OTLP JSON with an OpenInference TOOL span whose name is its only tool name.
    import http.client
    doc = {"resourceSpans": [{"resource": {"attributes": [{"key": "process.pid", "value": {"intValue": os.getpid()}}]},
                              "scopeSpans": [{"spans": [{
                                  "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "a1b2c3d4e5f60799",
                                  "name": "lookup", "startTimeUnixNano": "1767225600000000023",
                                  "endTimeUnixNano": "1767225600000000029",
                                  "attributes": [{"key": "openinference.span.kind", "value": {"stringValue": "TOOL"}},
                                                 {"key": "tool.id", "value": {"stringValue": "call_j23"}}]}]}]}]}
    body = json.dumps(doc).encode()
    conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=10)
    conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/json",
                                                            "Content-Length": str(len(body))})
    assert conn.getresponse().status == 200
    conn.close()
    events = drain(receiver)
    assert [(e.kind, e.tool_call, e.time) for e in events] == [
        ("tool.start", ToolCall(name="lookup", call_id="call_j23"), 1767225600000000023),
        ("tool.end", ToolCall(name="lookup", call_id="call_j23"), 1767225600000000029)]
