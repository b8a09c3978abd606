"""The OTLP output: span structure, and the round trip events -> OTLP/HTTP -> receiver -> events."""

from __future__ import annotations

import http.client
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from runwatch.events import AiInfo, Container, DnsInfo, Event, FileInfo, NetInfo, ToolCall, new_id
from runwatch.outputs.base import output_factory
from runwatch.outputs.otlp import OtlpOutput, OtlpOutputError, traces_url
from runwatch.sensors.ingest.otlp import PROTOBUF, OtlpReceiver
from runwatch.testing.sources import drain

FIXTURES = Path(__file__).parent / "fixtures"
T0 = 1767225600000000000
ME = os.getpid()
NS = os.stat("/proc/self/ns/pid").st_ino
TID = threading.get_native_id()

CALLS = [
    ToolCall(name="http_get", call_id="c-1", agent="planner"),
    ToolCall(name="run_shell", call_id="c-2", agent="planner"),
    ToolCall(name="read_file", call_id="c-3", agent="planner"),
]


def sdk(kind: str, t: int, call: ToolCall | None, **ai: Any) -> Event:
    return Event(id=new_id(t), time=t, kind=kind, source="sdk", pid=ME, tid=TID, pidns=NS, vpid=ME, vtid=TID,
                 tool_call=call, ai=AiInfo(**ai))


def kernel(kind: str, t: int, call: ToolCall | None, pid: int, **fields: Any) -> Event:
    return Event(id=new_id(t), time=t, kind=kind, pid=pid, tid=pid, pidns=NS, vpid=pid, ppid=ME, exe="/bin/sh",
                 cmdline="sh -c id", tool_call=call, **fields)


def agent_run() -> list[Event]:
    """Three tool calls (the third nested in the second) with 7 kernel events inside them."""
    http_get, run_shell, read_file = CALLS
    return [
        sdk("tool.start", T0 + 1_000, http_get, span=1, args_digest="d1"),
        kernel("dns.query", T0 + 1_500, http_get, ME, dns=DnsInfo(name="api.example.com", qtype="A")),
        kernel("net.connect", T0 + 2_000, http_get, ME,
               net=NetInfo(proto="tcp", family="ipv4", dst_ip="10.0.0.7", dst_port=443, result=0)),
        sdk("tool.end", T0 + 3_000, http_get, span=1, status="ok", duration_ns=2_000, start_time=T0 + 1_000),
        sdk("model.call", T0 + 3_500, None, operation="model.call", provider="openai", model="gpt-4o"),
        sdk("tool.start", T0 + 4_000, run_shell, span=2),
        kernel("process.fork", T0 + 4_100, run_shell, ME, child_pid=ME + 1),
        kernel("process.exec", T0 + 4_200, run_shell, ME + 1, container=Container(id="rw-abc", runtime="runc")),
        sdk("tool.start", T0 + 5_000, read_file, span=3, parent_span=2),
        kernel("file.open", T0 + 5_500, read_file, ME, file=FileInfo(path="/run/secrets/token", intent="read")),
        sdk("tool.end", T0 + 6_000, read_file, span=3, status="ok", duration_ns=1_000, start_time=T0 + 5_000),
        kernel("process.exit", T0 + 6_500, run_shell, ME + 1, exit_code=2),
        kernel("file.open", T0 + 6_700, run_shell, ME + 1, file=FileInfo(path="/etc/passwd", intent="read")),
        sdk("tool.end", T0 + 7_000, run_shell, span=2, status="error", error="exit status 2", duration_ns=3_000,
            start_time=T0 + 4_000),
        kernel("process.exec", T0 + 8_000, None, ME + 5),  # outside any call: not exported
    ]


def in_memory(events: list[Event], **options: Any) -> tuple[list[ReadableSpan], OtlpOutput]:
    mem = InMemorySpanExporter()
    out = OtlpOutput(exporter=mem, **options)
    out.open()
    out.write(events)
    out.close()
    return list(mem.get_finished_spans()), out


def test_registered_and_endpoint_rules() -> None:
    assert output_factory("otlp") is OtlpOutput
    assert traces_url("http://127.0.0.1:4318") == "http://127.0.0.1:4318/v1/traces"
    assert traces_url("https://collector:4318/") == "https://collector:4318/v1/traces"
    assert traces_url("http://c:1/custom/traces") == "http://c:1/custom/traces"
    with pytest.raises(OtlpOutputError, match=r"^OTLP endpoint must be an http:// or https:// URL, got 'c:4318'$"):
        OtlpOutput("c:4318")
    with pytest.raises(OtlpOutputError, match=r"^OTLP compression must be gzip or none, got 'zstd'$"):
        OtlpOutput(compression="zstd")


def test_span_tree_of_an_agent_run() -> None:
    spans, out = in_memory(agent_run())
    tools = {s.attributes["gen_ai.tool.name"]: s for s in spans if s.name.startswith("execute_tool ")}
    assert sorted(tools) == ["http_get", "read_file", "run_shell"]
    children = [s for s in spans if s.attributes and "runwatch.event.kind" in s.attributes]
    assert len(children) == 7
    traces = {s.context.trace_id for s in spans}
    assert len(traces) == 1  # one agent process: one trace
    for name, call in zip(("http_get", "run_shell", "read_file"), CALLS, strict=True):
        span = tools[name]
        assert span.attributes["gen_ai.operation.name"] == "execute_tool"
        assert span.attributes["gen_ai.tool.call.id"] == call.call_id
        assert span.attributes["gen_ai.agent.name"] == "planner"
        assert span.resource.attributes["process.pid"] == ME
    assert (tools["http_get"].start_time, tools["http_get"].end_time) == (T0 + 1_000, T0 + 3_000)
    assert tools["run_shell"].status.status_code is StatusCode.ERROR
    assert tools["run_shell"].status.description == "exit status 2"
    assert tools["http_get"].status.status_code is StatusCode.UNSET
    assert tools["read_file"].parent is not None
    assert tools["read_file"].parent.span_id == tools["run_shell"].context.span_id
    assert tools["http_get"].parent is None
    by_kind: dict[str, list[ReadableSpan]] = {}
    for child in children:
        by_kind.setdefault(child.name, []).append(child)
        assert child.start_time == child.end_time
    parent_of = {c.attributes["runwatch.event.kind"] + ":" + str(c.start_time - T0): c.parent.span_id
                 for c in children if c.parent is not None}
    assert parent_of == {
        "dns.query:1500": tools["http_get"].context.span_id,
        "net.connect:2000": tools["http_get"].context.span_id,
        "process.fork:4100": tools["run_shell"].context.span_id,
        "process.exec:4200": tools["run_shell"].context.span_id,
        "file.open:5500": tools["read_file"].context.span_id,
        "process.exit:6500": tools["run_shell"].context.span_id,
        "file.open:6700": tools["run_shell"].context.span_id,
    }
    connect = by_kind["net.connect"][0].attributes
    assert (connect["server.address"], connect["server.port"], connect["network.transport"]) == ("10.0.0.7", 443,
                                                                                                   "tcp")
    assert by_kind["dns.query"][0].attributes["dns.question.name"] == "api.example.com"
    exec_attrs = by_kind["process.exec"][0].attributes
    assert (exec_attrs["container.id"], exec_attrs["process.command_line"], exec_attrs["runwatch.pid"]) == (
        "rw-abc", "sh -c id", ME + 1)
    assert exec_attrs["runwatch.tool.call_id"] == "c-2"
    paths = sorted(c.attributes["runwatch.file.path"] for c in by_kind["file.open"])
    assert paths == ["/etc/passwd", "/run/secrets/token"]
    model = [s for s in spans if s.name == "chat gpt-4o"]
    assert len(model) == 1 and model[0].attributes["gen_ai.provider.name"] == "openai"
    assert out.stats()["tool_spans"] == 3 and out.stats()["event_spans"] == 7
    assert (out.stats()["exported"], out.stats()["failed"], out.stats()["dropped"]) == (11, 0, 0)


def test_open_calls_are_sent_incomplete_and_unknown_calls_are_orphans() -> None:
    lone = ToolCall(name="python_eval", call_id="c-9")
    events = [sdk("tool.start", T0, CALLS[0], span=41),
              kernel("process.exec", T0 + 10, lone, ME)]
    spans, out = in_memory(events)
    tool = next(s for s in spans if s.name == "execute_tool http_get")
    assert tool.attributes["runwatch.tool.incomplete"] is True
    child = next(s for s in spans if s.name == "process.exec")
    assert child.parent is not None and child.parent.span_id != tool.context.span_id
    assert (out.stats()["incomplete"], out.stats()["orphan_events"]) == (1, 1)


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_round_trip_through_the_receiver(receiver: OtlpReceiver, compression: str) -> None:
    out = OtlpOutput(receiver.endpoint, compression=compression, service_name="runwatch-test")
    out.open()
    original = agent_run()
    out.write(original)
    out.close()
    back = drain(receiver)
    sent = [(e.kind, e.time, e.tool_call) for e in original if e.kind in ("tool.start", "tool.end")]
    got = [(e.kind, e.time, e.tool_call) for e in back if e.kind in ("tool.start", "tool.end")]
    assert sorted(got, key=lambda r: (r[1], r[0])) == sorted(sent, key=lambda r: (r[1], r[0]))
    status = {e.tool_call.call_id: e.ai.status for e in back if e.kind == "tool.end" and e.tool_call
              and e.ai}
    assert status == {"c-1": "ok", "c-2": "error", "c-3": "ok"}
    for e in back:  # process.pid in the resource resolves back to this process
        assert (e.pid, e.pidns, e.vpid) == (ME, NS, ME)
        assert e.attrs is not None and e.attrs["service"] == "runwatch-test"
    nested = next(e for e in back if e.kind == "tool.start" and e.tool_call == CALLS[2])
    outer = next(e for e in back if e.kind == "tool.start" and e.tool_call == CALLS[1])
    assert nested.ai is not None and outer.ai is not None
    assert nested.ai.parent_span_id == outer.ai.span_id
    models = [e for e in back if e.kind == "model.call"]
    assert len(models) == 1 and models[0].ai is not None and models[0].ai.model == "gpt-4o"
    stats = receiver.stats()
    assert (stats["spans"], stats["spans_ignored"], stats["events"]) == (11, 7, 7)


def test_kernel_events_inside_ingested_calls_join_the_agents_own_trace(receiver: OtlpReceiver) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=10)
    body = (FIXTURES / "agent_trace.pb").read_bytes()
    conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": PROTOBUF})
    assert conn.getresponse().status == 200
    conn.close()
    ingested = drain(receiver)
    run_shell = next(e.tool_call for e in ingested if e.tool_call and e.tool_call.name == "run_shell")
    inside = kernel("process.exec", T0 + 3_500_000_000, run_shell, 777)
    spans, out = in_memory([*ingested, inside])
    assert [s.name for s in spans] == ["process.exec"]  # the agent already sent its own tool spans
    assert spans[0].context.trace_id == 0x5B8EFFF798038103D269B633813FC60C
    assert spans[0].parent is not None and spans[0].parent.span_id == 0xA1B2C3D4E5F60755
    again, _ = in_memory(ingested, export_ingested=True)
    assert sorted(s.name for s in again) == ["chat gpt-4o-2024-08-06", "chat gpt-4o-2024-08-06",
                                             "execute_tool get_weather", "execute_tool run_shell",
                                             "execute_tool search_flights", "invoke_agent gpt-4o-2024-08-06"]
    shell = next(s for s in again if s.name == "execute_tool run_shell")
    assert (shell.context.span_id, shell.start_time, shell.end_time) == (0xA1B2C3D4E5F60755, T0 + 3_200_000_019,
                                                                         T0 + 3_900_000_023)
    assert out.stats()["orphan_events"] == 0
