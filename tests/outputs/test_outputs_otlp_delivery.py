"""The OTLP exporter's delivery: compression on or off, headers, a down collector counted, a bounded exit."""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from runwatch.events import AiInfo, Event, ToolCall, new_id
from runwatch.outputs.delivery import RetryPolicy
from runwatch.outputs.http import TlsOptions, read_headers
from runwatch.outputs.otlp import OtlpOutput
from runwatch.testing.receivers import HttpReceiver, free_port

T0 = 1767225600000000000
ME, TID = os.getpid(), threading.get_native_id()
NS = os.stat("/proc/self/ns/pid").st_ino
FAST = RetryPolicy(initial_s=0.02, max_s=0.1)


def tool_calls(n: int) -> list[Event]:
    """``n`` SDK tool calls, each a start and an end: ``n`` spans."""
    out = []
    for i in range(n):
        call = ToolCall(name=f"tool_{i}", call_id=f"c-{i}", agent="planner")
        for kind, t in (("tool.start", T0 + i * 1000), ("tool.end", T0 + i * 1000 + 500)):
            out.append(Event(id=new_id(t), time=t, kind=kind, source="sdk", pid=ME, tid=TID, pidns=NS, vpid=ME,
                             vtid=TID, tool_call=call, ai=AiInfo(span=i + 1, status="ok")))
    return out


def span_names(bodies: list[bytes]) -> list[str]:
    names = []
    for body in bodies:
        req = ExportTraceServiceRequest.FromString(body)
        names += [s.name for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
    return names


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_compression_and_headers_reach_the_collector(tmp_path: Path, compression: str) -> None:
    headers_file = tmp_path / "otlp.headers"
    headers_file.write_text("# the collector's token\nAuthorization: Bearer tok-23\n\nX-Tenant: t7\n")
    with HttpReceiver() as rx:
        out = OtlpOutput(rx.url, compression=compression, headers=read_headers(str(headers_file)), retry=FAST,
                         schedule_delay_ms=50)
        out.open()
        out.write(tool_calls(7))
        out.close()
        requests = list(rx.requests)
    assert requests and {r.path for r in requests} == {"/v1/traces"}
    assert {r.headers.get("content-encoding") for r in requests} == {None if compression == "none" else "gzip"}
    assert {(r.headers["authorization"], r.headers["x-tenant"]) for r in requests} == {("Bearer tok-23", "t7")}
    assert {r.headers["content-type"] for r in requests} == {"application/x-protobuf"}
    if compression == "none":
        assert all(r.raw == r.body for r in requests)
    assert sorted(span_names([r.body for r in requests])) == sorted(f"execute_tool tool_{i}" for i in range(7))
    st = out.output_stats()
    assert (st["sent"], st["spans"], st["failures"], st["dropped"]) == (len(requests), 7, 0, 0)


def test_a_down_collector_is_counted_in_one_line_and_the_exit_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    out = OtlpOutput(f"http://127.0.0.1:{port}", compression="none", retry=FAST, close_timeout=0.5,
                     schedule_delay_ms=50)
    out.open()
    with caplog.at_level(logging.DEBUG):
        out.write(tool_calls(5))
        time.sleep(0.3)
        started = time.monotonic()
        out.close()
        took = time.monotonic() - started
    assert took < 2.0, took
    st = out.output_stats()
    assert st["sent"] == 0 and st["failures"] >= 1 and st["spans"] == 5
    assert st["dropped"] >= 1 and set(st["dropped_by_reason"]) == {"not_sent"}  # no spool configured
    assert st["last_error"] == f"POST http://127.0.0.1:{port}/v1/traces: Connection refused"
    assert [r for r in caplog.records if r.name.startswith("opentelemetry")] == []


def test_a_spooled_batch_reaches_the_collector_on_the_next_start(tmp_path: Path) -> None:
    port = free_port()
    first = OtlpOutput(f"http://127.0.0.1:{port}", compression="none", retry=FAST, close_timeout=0.3,
                       spool_dir=str(tmp_path / "otlp"), schedule_delay_ms=50)
    first.open()
    first.write(tool_calls(3))
    first.close()
    left = first.output_stats()["pending"]
    assert left >= 1 and first.output_stats()["sent"] == 0
    with HttpReceiver(port) as rx:
        second = OtlpOutput(rx.url, compression="none", retry=FAST, spool_dir=str(tmp_path / "otlp"))
        second.open()
        second.close()
        assert sorted(span_names(rx.bodies())) == [f"execute_tool tool_{i}" for i in range(3)]
    st = second.output_stats()
    assert (st["recovered"], st["sent"], st["pending"]) == (left, left, 0)


def test_otlp_export_over_https_with_a_client_certificate(pki: dict[str, str],
                                                          tls_server: Callable[[bool], ssl.SSLContext]) -> None:
    with HttpReceiver(tls=tls_server(True)) as rx:
        out = OtlpOutput(rx.url, compression="none", schedule_delay_ms=50, retry=FAST,
                         tls=TlsOptions(pki["ca"], pki["client_cert"], pki["client_key"]))
        out.open()
        out.write(tool_calls(3))
        out.close()
        assert sorted(span_names(rx.bodies())) == [f"execute_tool tool_{i}" for i in range(3)]
