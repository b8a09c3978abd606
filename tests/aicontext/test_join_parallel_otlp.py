"""Parallel OTLP tool calls in one process: no single tool is named unless the span says which thread.

An agent runs three tool calls at once (the real OpenTelemetry SDK exports their
``execute_tool`` spans over OTLP/HTTP to a real receiver); during the overlap one of its
threads spawns a shell that connects out. Without ``thread.id`` the calls are process-wide and
the join cannot tell which the shell belongs to: every event, the child's included, lists all
three candidates and none names a tool, and the default pack's ``shell_in_tool_call`` alert
names none but lists all three. With ``thread.id`` (an OS thread id of the sender) each event
is attributed to its own thread's call exactly.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from runwatch.enrich.aicontext import ToolCallJoin
from runwatch.events import Event, ToolCall
from runwatch.host import procfs
from runwatch.rules import Engine, load_rules
from runwatch.rules.default import default_rule_paths
from runwatch.sensors.ingest.otlp import OtlpReceiver

TOOLS = ("fetch_page", "probe_port", "summarize")
CHILD = 3_900_023  # the shell's host pid (no such process is needed: the join keys by the fork)


def export_parallel_calls(with_thread: bool) -> tuple[list[Event], dict[str, int], int]:
    """Three overlapping execute_tool spans on three threads; (OTLP events, tool -> native tid, overlap time)."""
    rx = OtlpReceiver("127.0.0.1", 0)
    rx.start()
    provider = TracerProvider(resource=Resource({"service.name": "par-agent", "process.pid": os.getpid()}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{rx.endpoint}/v1/traces")))
    tracer = provider.get_tracer("par")
    inside, ended, exported = threading.Barrier(4), threading.Barrier(4), threading.Event()
    native: dict[str, int] = {}
    overlap: list[int] = []

    def worker(i: int, name: str) -> None:
        native[name] = threading.get_native_id()
        attrs: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name,
                                 "gen_ai.tool.call.id": f"call_p{i}", "gen_ai.agent.name": "par-agent"}
        if with_thread:
            attrs["thread.id"] = threading.get_native_id()
        with tracer.start_as_current_span(f"execute_tool {name}", attributes=attrs):
            inside.wait(10)  # all three open
            inside.wait(10)  # the main thread noted the overlap time
        ended.wait(10)
        exported.wait(10)

    try:
        threads = [threading.Thread(target=worker, args=(i, n)) for i, n in enumerate(TOOLS, 1)]
        for t in threads:
            t.start()
        inside.wait(10)
        overlap.append(time.time_ns())
        inside.wait(10)
        ended.wait(10)
        provider.force_flush()
        exported.set()
        for t in threads:
            t.join(20)
    finally:
        provider.shutdown()
        rx.stop()
    events: list[Event] = []
    while batch := rx.poll(0.0):
        events.extend(batch)
    return events, native, overlap[0]


def kernel_activity(native: dict[str, int], t: int) -> list[Event]:
    """What the kernel reports during the overlap: probe_port's thread forks a shell that execs and connects."""
    ns = procfs.pidns("self")
    me, tid = os.getpid(), native["probe_port"]
    return [
        Event(id="k-fork", time=t + 1, kind="process.fork", pid=me, tid=tid, pidns=ns, vpid=me, vtid=tid,
              child_pid=CHILD),
        Event(id="k-exec", time=t + 2, kind="process.exec", pid=CHILD, tid=CHILD, ppid=me, pidns=ns, vpid=CHILD,
              vtid=CHILD, exe="/usr/bin/dash", exec_name="/bin/sh", cmdline="/bin/sh -c id",
              argv=["/bin/sh", "-c", "id"], ancestry=["/usr/bin/python3.11"]),
        Event(id="k-open", time=t + 3, kind="file.open", pid=me, tid=native["summarize"], pidns=ns, vpid=me,
              vtid=native["summarize"], exe="/usr/bin/python3.11"),
    ]


def joined(with_thread: bool) -> tuple[dict[str, Event], dict[str, int]]:
    otlp, native, t = export_parallel_calls(with_thread)
    assert sorted(e.tool_call.name for e in otlp if e.kind == "tool.start" and e.tool_call) == sorted(TOOLS)
    join = ToolCallJoin(hold_ms=0)
    out = join(otlp) + join(kernel_activity(native, t)) + join.flush()
    return {e.id: e for e in out if e.source == "kernel"}, native


def test_three_parallel_process_wide_calls_mark_every_event_and_name_none() -> None:
    got, _ = joined(with_thread=False)
    candidates = [ToolCall(name=n, call_id=f"call_p{i}", agent="par-agent") for i, n in enumerate(TOOLS, 1)]
    for key in ("k-fork", "k-exec", "k-open"):  # the agent's own events and its child's
        e = got[key]
        assert e.tool_call is None, key
        assert e.ai is not None and e.ai.tool_call_candidates == 3 and e.ai.candidates == candidates, key
        assert e.unattested is None, key
    engine = Engine(load_rules(default_rule_paths()))
    alerts = engine.process_batch(got.values())
    shell = [a for a in alerts if a.rule == "shell_in_tool_call"]
    assert len(shell) == 1
    (alert,) = shell
    assert alert.tool_call is None
    assert alert.tools == sorted(TOOLS)
    assert [c.name for c in alert.tool_candidates] == list(TOOLS)
    assert "inside tool fetch_page,probe_port,summarize " in alert.output
    assert not [a for a in alerts if a.rule == "shell_spawned_by_model_server"]


def test_with_thread_ids_each_event_gets_its_own_threads_call_exactly() -> None:
    got, _ = joined(with_thread=True)
    probe = ToolCall(name="probe_port", call_id="call_p2", agent="par-agent")
    assert got["k-fork"].tool_call == probe
    assert got["k-exec"].tool_call == probe  # the child, by lineage from the forking thread
    assert got["k-open"].tool_call == ToolCall(name="summarize", call_id="call_p3", agent="par-agent")
    assert all(e.ai is None for e in got.values())
    alerts = Engine(load_rules(default_rule_paths())).process_batch(got.values())
    (alert,) = [a for a in alerts if a.rule == "shell_in_tool_call"]
    assert alert.tool_call is not None and alert.tool_call.name == "probe_port"
    assert alert.tools == ["probe_port"] and alert.tool_candidates == []
