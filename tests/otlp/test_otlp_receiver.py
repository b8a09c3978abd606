"""The OTLP/HTTP receiver over real loopback HTTP: fixtures, encodings, errors, identity."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from google.rpc.status_pb2 import Status as RpcStatus
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from runwatch.events import Event, ToolCall
from runwatch.host import cgroup_v2
from runwatch.listeners import BoundedThreads
from runwatch.sensors.base import source_factory
from runwatch.sensors.ingest.otlp import JSON, PROTOBUF, OtlpReceiver
from runwatch.testing.sources import drain

FIXTURES = Path(__file__).parent / "fixtures"
T0 = 1767225600000000000
CONTAINER = "3f1c9ad27be04e5c8d1f6a0b9e2c4d7f3f1c9ad27be04e5c8d1f6a0b9e2c4d7f"

#: (kind, tool, call id, agent, time, status) of the fixture's tool events, in order.
EXPECTED_TOOLS = [
    ("tool.start", "get_weather", "call_9a1Kx", "travel-planner", T0 + 1_400_000_007, None),
    ("tool.end", "get_weather", "call_9a1Kx", "travel-planner", T0 + 1_650_000_011, "ok"),
    ("tool.start", "search_flights", "call_9a2Lm", "flight-subagent", T0 + 1_700_000_013, None),
    ("tool.end", "search_flights", "call_9a2Lm", "flight-subagent", T0 + 3_100_000_017, "ok"),
    ("tool.start", "run_shell", "call_9a3Np", "travel-planner", T0 + 3_200_000_019, None),
    ("tool.end", "run_shell", "call_9a3Np", "travel-planner", T0 + 3_900_000_023, "error"),
]


def post(rx: OtlpReceiver, body: bytes, content_type: str | None = PROTOBUF, *, path: str = "/v1/traces",
         encoding: str | None = None, method: str = "POST") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", rx.port, timeout=10)
    try:
        headers = {"Content-Length": str(len(body))}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if encoding is not None:
            headers["Content-Encoding"] = encoding
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def tool_rows(events: list[Event]) -> list[tuple[Any, ...]]:
    rows = []
    for e in events:
        if e.kind in ("tool.start", "tool.end"):
            assert e.tool_call is not None and e.ai is not None
            rows.append((e.kind, e.tool_call.name, e.tool_call.call_id, e.tool_call.agent, e.time,
                         e.ai.status))
    return rows


def comparable(events: list[Event]) -> list[tuple[Any, ...]]:
    return [(e.kind, e.time, e.tool_call, e.pid, e.vpid, e.container, e.attrs, e.ai) for e in events]


def test_registered_as_otlp_source() -> None:
    assert source_factory("otlp") is OtlpReceiver


def test_protobuf_fixture_yields_the_tool_events(receiver: OtlpReceiver) -> None:
    status, headers, body = post(receiver, (FIXTURES / "agent_trace.pb").read_bytes())
    assert status == 200
    assert headers["content-type"] == PROTOBUF
    response = ExportTraceServiceResponse.FromString(body)
    assert not response.HasField("partial_success")
    events = drain(receiver)
    assert tool_rows(events) == EXPECTED_TOOLS
    assert all(e.source == "otlp" for e in events)
    ends = {e.tool_call.call_id: e.ai for e in events if e.kind == "tool.end" and e.tool_call and e.ai}
    assert ends["call_9a3Np"].error == "command exited with status 2"
    assert ends["call_9a1Kx"].duration_ns == 250_000_004
    assert ends["call_9a2Lm"].start_time == T0 + 1_700_000_013
    starts = [e for e in events if e.kind == "tool.start"]
    assert [e.ai.span_id for e in starts if e.ai] == ["a1b2c3d4e5f60733", "a1b2c3d4e5f60744",
                                                      "a1b2c3d4e5f60755"]
    assert {e.ai.trace_id for e in starts if e.ai} == {"5b8efff798038103d269b633813fc60c"}
    assert [e.ai.tool_type for e in starts if e.ai] == ["function", "extension", "function"]
    models = [(e.time, e.ai.operation, e.ai.provider, e.ai.model, e.ai.agent)
              for e in events if e.kind == "model.call" and e.ai]
    assert models == [
        (T0, "invoke_agent", "openai", "gpt-4o-2024-08-06", "travel-planner"),
        (T0 + 100_000_000, "chat", "openai", "gpt-4o-2024-08-06", "travel-planner"),
        (T0 + 4_000_000_029, "chat", "openai", "gpt-4o-2024-08-06", "travel-planner"),
    ]
    # The fixture's container does not run here: pid unresolved, said so, claimed container kept.
    for e in events:
        assert (e.pid, e.vpid, e.pidns) == (0, 4243, None)
        assert e.attrs is not None and e.attrs["pid_unresolved"] == f"no running process in container {CONTAINER}"
        assert e.container is not None and e.container.id == CONTAINER
        assert (e.attrs["service"], e.attrs["host"]) == ("travel-agent", "agent-node-7")
    stats = receiver.stats()
    assert (stats["requests"], stats["spans"], stats["events"], stats["spans_ignored"]) == (1, 7, 9, 1)
    assert (stats["bad_requests"], stats["pid_unresolved"], stats["queued"]) == (0, 9, 0)


def test_json_gives_the_same_events_as_protobuf(receiver: OtlpReceiver) -> None:
    assert post(receiver, (FIXTURES / "agent_trace.pb").read_bytes())[0] == 200
    from_pb = drain(receiver)
    status, headers, body = post(receiver, (FIXTURES / "agent_trace.json").read_bytes(), JSON)
    assert status == 200
    assert headers["content-type"] == JSON
    assert json.loads(body) == {}
    from_json = drain(receiver)
    assert len(from_json) == 9
    assert comparable(from_json) == comparable(from_pb)


def test_gzip_bodies_in_both_encodings(receiver: OtlpReceiver) -> None:
    plain = (FIXTURES / "agent_trace.pb").read_bytes()
    assert post(receiver, plain)[0] == 200
    reference = comparable(drain(receiver))
    for name, ctype in (("agent_trace.pb", PROTOBUF), ("agent_trace.json", JSON)):
        status, _, _ = post(receiver, gzip.compress((FIXTURES / name).read_bytes()), ctype, encoding="gzip")
        assert status == 200
        assert comparable(drain(receiver)) == reference
    assert receiver.stats()["requests"] == 3


def _status_message(body: bytes, ctype: str) -> str:
    if ctype == JSON:
        return str(json.loads(body)["message"])
    return str(RpcStatus.FromString(body).message)


def test_bad_payloads_get_400_and_are_counted(receiver: OtlpReceiver) -> None:
    trace_json = json.loads((FIXTURES / "agent_trace.json").read_text())
    trace_json["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "not-an-id!"
    cases: list[tuple[bytes, str, str | None, str]] = [
        (b"\xff\xff\xff\xff garbage", PROTOBUF, None, "cannot decode protobuf ExportTraceServiceRequest"),
        (b"{not json", JSON, None, "request body is not JSON"),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, JSON, None, "request body is not JSON"),  # 5,000 levels
        (b'{"resourceSpans": "\xff"}', JSON, None, "request body is not JSON"),  # not UTF-8
        (b"[1, 2, 3]", JSON, None, "OTLP JSON ExportTraceServiceRequest must be an object, got list"),
        (json.dumps(trace_json).encode(), JSON, None, "invalid OTLP JSON ExportTraceServiceRequest"),
        (json.dumps({"resourceSpans": "many"}).encode(), JSON, None, "invalid OTLP JSON"),
        (gzip.compress(b"x" * 100)[:20], PROTOBUF, "gzip", "gzip body is truncated"),
        (b"definitely not gzip", JSON, "gzip", "bad gzip body"),
    ]
    for body, ctype, encoding, message in cases:
        status, headers, reply = post(receiver, body, ctype, encoding=encoding)
        assert status == 400, message
        assert headers["content-type"] == ctype
        assert _status_message(reply, ctype).startswith(message)
    assert receiver.stats()["bad_requests"] == len(cases)
    assert drain(receiver) == []
    assert receiver.last_error is not None and receiver.last_error.startswith("400: bad gzip body")
    # still serving, on a fresh connection
    assert post(receiver, (FIXTURES / "agent_trace.pb").read_bytes())[0] == 200
    assert len(drain(receiver)) == 9


def test_unsupported_media_types_get_415(receiver: OtlpReceiver) -> None:
    body = (FIXTURES / "agent_trace.pb").read_bytes()
    for ctype in ("text/plain", "application/grpc", None):
        status, _, reply = post(receiver, body, ctype)
        assert status == 415
        assert b"unsupported Content-Type" in reply
    status, _, reply = post(receiver, body, PROTOBUF, encoding="br")
    assert status == 415
    assert _status_message(reply, PROTOBUF) == "unsupported Content-Encoding 'br' (use gzip or none)"
    assert receiver.stats()["unsupported"] == 4
    assert drain(receiver) == []


def test_size_limits_give_413() -> None:
    rx = OtlpReceiver("127.0.0.1", 0, max_body=2048)
    rx.start()
    try:
        body = (FIXTURES / "agent_trace.json").read_bytes()
        assert len(body) > 2048
        status, headers, reply = post(rx, body, JSON)
        assert status == 413
        assert headers["connection"] == "close"
        assert _status_message(reply, JSON) == f"body of {len(body)} bytes is over the 2048-byte limit"
        bomb = gzip.compress(b"\0" * (2048 * 2 + 1))
        assert len(bomb) < 2048
        status, _, reply = post(rx, bomb, PROTOBUF, encoding="gzip")
        assert status == 413
        assert _status_message(reply, PROTOBUF) == "gzip body inflates past the 4096-byte limit"
        assert rx.stats()["too_large"] == 2
        small = gzip.compress((FIXTURES / "agent_trace.pb").read_bytes())
        assert post(rx, small, PROTOBUF, encoding="gzip")[0] == 200
        assert len(drain(rx)) == 9
    finally:
        rx.stop()


def test_full_queue_answers_503_and_queues_nothing() -> None:
    rx = OtlpReceiver("127.0.0.1", 0, max_queue=11)
    rx.start()
    try:
        body = (FIXTURES / "agent_trace.pb").read_bytes()
        assert post(rx, body)[0] == 200
        status, headers, reply = post(rx, body)
        assert status == 503
        assert headers["retry-after"] == "1"
        assert _status_message(reply, PROTOBUF) == "event queue full (9 of 11); retry later"
        assert len(drain(rx)) == 9
        assert post(rx, body)[0] == 200  # the sender's retry
        assert len(drain(rx)) == 9
        assert (rx.stats()["busy"], rx.stats()["events"]) == (1, 18)
    finally:
        rx.stop()


def test_other_paths_methods_and_signals(receiver: OtlpReceiver) -> None:
    assert post(receiver, b"", PROTOBUF, path="/v1/spans")[0] == 404
    assert post(receiver, b"", None, method="GET")[0] == 405
    status, _, body = post(receiver, b"{}", JSON, path="/v1/logs")
    assert (status, json.loads(body)) == (200, {})
    assert post(receiver, b"", PROTOBUF, path="/v1/metrics")[0] == 200
    assert post(receiver, b"\xff\xff", PROTOBUF, path="/v1/logs")[0] == 400
    stats = receiver.stats()
    assert (stats["not_found"], stats["logs_requests"], stats["metrics_requests"], stats["bad_requests"]) == (1, 1, 1,
                                                                                                              1)


def _fixture_request() -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString((FIXTURES / "agent_trace.pb").read_bytes())


def test_invalid_genai_spans_are_rejected_as_partial_success(receiver: OtlpReceiver) -> None:
    request = _fixture_request()
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[2].span_id = b"\x01\x02"  # get_weather: bad span id
    del spans[3].attributes[:]  # search_flights: no attributes left, not GenAI: ignored
    spans[3].attributes.append(KeyValue(key="gen_ai.operation.name", value=AnyValue(string_value="execute_tool")))
    spans[3].name = "tool"  # no gen_ai.tool.name, no name to fall back on: rejected
    status, _, body = post(receiver, request.SerializeToString())
    assert status == 200
    partial = ExportTraceServiceResponse.FromString(body).partial_success
    assert partial.rejected_spans == 2
    assert partial.error_message == ("span 'execute_tool get_weather': trace_id must be 16 bytes and span_id 8 "
                                     "bytes; span 'tool': execute_tool without gen_ai.tool.name")
    assert tool_rows(drain(receiver)) == EXPECTED_TOOLS[4:]
    assert receiver.stats()["spans_rejected"] == 2


def test_base64_ids_and_tool_name_from_span_name(receiver: OtlpReceiver) -> None:
    doc = json.loads(json_format.MessageToJson(_fixture_request()))  # protobuf mapping: base64 ids
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[2]["attributes"] = [a for a in spans[2]["attributes"] if a["key"] != "gen_ai.tool.name"]
    assert post(receiver, json.dumps(doc).encode(), JSON)[0] == 200
    events = drain(receiver)
    assert tool_rows(events) == EXPECTED_TOOLS
    assert [e.ai.span_id for e in events if e.kind == "tool.start" and e.ai] == [
        "a1b2c3d4e5f60733", "a1b2c3d4e5f60744", "a1b2c3d4e5f60755"]


def _with_resource(request: ExportTraceServiceRequest, **attrs: Any) -> ExportTraceServiceRequest:
    resource = request.resource_spans[0].resource
    keep = [kv for kv in resource.attributes if kv.key not in attrs and kv.key != "container.id"]
    del resource.attributes[:]
    resource.attributes.extend(keep)
    for key, value in attrs.items():
        if value is not None:
            resource.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value) if isinstance(value, str)
                                                else AnyValue(int_value=value)))
    return request


def test_own_pid_resolves_to_this_process(receiver: OtlpReceiver) -> None:
    request = _with_resource(_fixture_request(), **{"process.pid": os.getpid()})
    assert post(receiver, request.SerializeToString())[0] == 200
    events = drain(receiver)
    assert len(events) == 9
    me = os.getpid()
    for e in events:
        assert (e.pid, e.vpid, e.pidns) == (me, me, os.stat("/proc/self/ns/pid").st_ino)
        assert e.uid == os.getuid()
        assert e.cgroup_id == cgroup_v2().id_of_pid(me)
        assert e.container is None and e.tid == 0 and e.vtid is None
        assert e.attrs is not None and "pid_unresolved" not in e.attrs
    assert receiver.stats()["pid_unresolved"] == 0


def test_unknown_pid_is_kept_with_a_reason(receiver: OtlpReceiver) -> None:
    free = 4_194_000
    while os.path.exists(f"/proc/{free}"):
        free -= 1
    request = _with_resource(_fixture_request(), **{"process.pid": free})
    assert post(receiver, request.SerializeToString())[0] == 200
    events = drain(receiver)
    assert [(e.pid, e.vpid) for e in events] == [(0, free)] * 9
    assert {e.attrs["pid_unresolved"] for e in events if e.attrs} == {f"no process {free} in runwatch's pid namespace"}


@pytest.mark.kernel
def test_container_pid_resolves_through_container_id(receiver: OtlpReceiver, runc_container: Any) -> None:
    c = runc_container()
    host_pid = c.start()
    request = _with_resource(_fixture_request(), **{"process.pid": 1, "container.id": c.id})
    assert post(receiver, request.SerializeToString())[0] == 200
    events = drain(receiver)
    assert len(events) == 9
    for e in events:
        assert (e.pid, e.vpid, e.pidns) == (host_pid, 1, os.stat(f"/proc/{host_pid}/ns/pid").st_ino)
        assert e.cgroup_id == c.cgroup_id
        assert e.attrs is not None and "pid_unresolved" not in e.attrs
    request = _with_resource(_fixture_request(), **{"process.pid": 23, "container.id": c.id})
    assert post(receiver, request.SerializeToString())[0] == 200
    reasons = {e.attrs["pid_unresolved"] for e in drain(receiver) if e.attrs}
    assert reasons == {f"no process with pid 23 among 1 of container {c.id}"}


def test_poll_after_stop_returns_queued_then_none() -> None:
    rx = OtlpReceiver("127.0.0.1", 0)
    rx.start()
    assert post(rx, (FIXTURES / "agent_trace.pb").read_bytes())[0] == 200
    rx.stop()
    rx.stop()
    batch = rx.poll(0.1)
    assert batch is not None and len(batch) == 9
    assert rx.poll(0.1) is None


def test_port_in_use_is_one_clear_error(receiver: OtlpReceiver) -> None:
    other = OtlpReceiver("127.0.0.1", receiver.port)
    with pytest.raises(RuntimeError, match=rf"^cannot listen for OTLP on 127\.0\.0\.1:{receiver.port}: "):
        other.start()


def test_opentelemetry_sdk_exporter_delivers_23_tool_calls(receiver: OtlpReceiver) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource({"service.name": "sdk-agent", "process.pid": os.getpid()}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{receiver.endpoint}/v1/traces")))
    tracer = provider.get_tracer("test")
    try:
        with tracer.start_as_current_span("invoke_agent sdk-agent",
                                          attributes={"gen_ai.operation.name": "invoke_agent",
                                                      "gen_ai.agent.name": "sdk-agent"}):
            for i in range(23):
                with tracer.start_as_current_span(f"execute_tool step_{i}", attributes={
                        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": f"step_{i}",
                        "gen_ai.tool.call.id": f"c-{i}", "gen_ai.agent.name": "sdk-agent"}):
                    pass
    finally:
        provider.shutdown()
    events = drain(receiver)
    starts = [e.tool_call for e in events if e.kind == "tool.start"]
    ends = [e.tool_call for e in events if e.kind == "tool.end"]
    assert starts == ends == [ToolCall(name=f"step_{i}", call_id=f"c-{i}", agent="sdk-agent") for i in range(23)]
    assert {e.pid for e in events} == {os.getpid()}
    assert receiver.stats()["requests"] == 24


def test_a_body_that_never_comes_is_let_go_and_connections_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BoundedThreads, "idle_timeout", 0.5)
    monkeypatch.setattr(BoundedThreads, "max_connections", 7)
    rx = OtlpReceiver("127.0.0.1", 0)
    rx.start()
    held: list[socket.socket] = []
    try:
        liar = socket.create_connection(("127.0.0.1", rx.port), timeout=5)
        held.append(liar)
        liar.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                     b"Content-Length: 1000000\r\n\r\nshort")
        start = time.monotonic()
        while liar.recv(4096):
            pass  # whatever answer comes, the connection then closes
        assert time.monotonic() - start < 3
        # From here on no read times out, so the only way the extra connection closes is the bound.
        monkeypatch.setattr(BoundedThreads, "idle_timeout", 30.0)
        for _ in range(7):
            held.append(socket.create_connection(("127.0.0.1", rx.port), timeout=5))
        time.sleep(0.1)
        extra = socket.create_connection(("127.0.0.1", rx.port), timeout=5)
        assert extra.recv(64) == b""  # over the bound: closed at once
        extra.close()
        assert rx._server is not None and rx._server.refused == 1
    finally:
        for s in held:
            s.close()
        rx.stop()
