"""OTLP output: runwatch's tool-attributed activity as OpenTelemetry spans over OTLP/HTTP.

What becomes a span:

- a tool call (``tool.start`` .. ``tool.end``) from the agent SDK: one span named
  ``execute_tool <tool>`` with ``gen_ai.operation.name=execute_tool``, ``gen_ai.tool.name``,
  ``gen_ai.tool.call.id``, ``gen_ai.agent.name``; status ERROR when the call failed. It is
  sent when the call ends (or at :meth:`OtlpOutput.close` for calls still open, marked
  ``runwatch.tool.incomplete``). A call nested in another is that call's child span.
- every other event that carries a ``tool_call`` (exec, connect, file open, DNS, ...): a
  zero-length child span of its tool call's span, named after the event kind, with the
  event's fields as ``runwatch.*`` attributes (plus ``process.*``, ``server.*``,
  ``dns.question.name`` where a semantic convention exists).
- ``model.call`` events from the SDK: a span ``<operation> <model>`` with
  ``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``.

Trace per agent run: all spans of one agent process (its pid namespace and pid) share one
trace id, derived from the process key and a per-output random salt, so two runwatch runs
never merge traces. Span ids of SDK tool calls are derived from the process key and the
SDK's span id, so children sent before their parent still point at it.

Calls that came in over OTLP (``source == "otlp"``) already exist in the agent's own trace:
they are not sent again (unless ``export_ingested``), and the kernel events inside them
become children of the agent's original span (its ``trace_id``/``span_id``), so the agent's
trace shows what the kernel saw under each tool span.

Resource of every span: ``service.name`` (the option), ``process.pid`` (the pid inside the
process's own pid namespace, the same convention the receiver reads), ``container.id``,
``host.name`` and ``runwatch.host_pid``.

Sending: the OpenTelemetry SDK's ``BatchSpanProcessor`` batches spans (a background thread,
bounded queue; when it is full the SDK drops spans and they are counted here as ``dropped``);
each batch is encoded as an OTLP/HTTP protobuf request and handed to a
:class:`~runwatch.outputs.delivery.Delivery`, which POSTs it (:class:`HttpTransport`: gzip or
no compression, extra headers such as ``Authorization``, TLS options, a timeout per request),
retries with backoff, keeps what the collector has not taken in a disk spool when one is
configured, and counts requests sent, retried, spooled and dropped. A failed export is
counted and its reason kept as one line (no library log lines); :meth:`OtlpOutput.close`
flushes, bounded by ``close_timeout``. Not thread safe except ``reopen``.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from runwatch.events import AiInfo, Event, ToolCall
from runwatch.outputs.base import register_output
from runwatch.outputs.delivery import Delivery, RetryPolicy
from runwatch.outputs.http import HttpTransport, TlsOptions
from runwatch.outputs.jsonl import OutputError
from runwatch.store.spool import SpoolLimits

DEFAULT_ENDPOINT = "http://127.0.0.1:4318/v1/traces"
_SCOPE = InstrumentationScope("runwatch", "1")
_AI_SOURCES = ("sdk", "otlp")
_NO_AI = AiInfo()  # read-only stand-in for an event without an ai group (never assigned to one)
_MODEL_OPS = frozenset({"chat", "text_completion", "generate_content", "embeddings", "invoke_agent", "create_agent"})
Ids = tuple[int, int]  # (trace id, span id)


class OtlpOutputError(OutputError):
    """The OTLP output was given a bad option (one-line message)."""


def traces_url(endpoint: str) -> str:
    """Full ``/v1/traces`` URL for ``endpoint`` (a base URL gets the path appended)."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise OtlpOutputError(f"OTLP endpoint must be an http:// or https:// URL, got {endpoint[:100]!r}")
    if parts.path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


class _Counting(SpanExporter):
    """Wraps the real exporter and counts spans exported and failed (thread safe)."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.lock = threading.Lock()
        self.exported = self.failed = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        with self.lock:
            if result is SpanExportResult.SUCCESS:
                self.exported += len(spans)
            else:
                self.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _DeliveryExporter(SpanExporter):
    """Encodes each batch as an OTLP/HTTP protobuf request and hands it to a :class:`Delivery`."""

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.delivery.submit(encode_spans(spans).SerializeToString())
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.delivery.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.delivery.flush(timeout_millis / 1000)


class _Open:
    """A tool call seen starting and not yet ended."""

    __slots__ = ("call", "event_id", "ids", "parent", "resource", "start")

    def __init__(self, call: ToolCall, ids: Ids, parent: int | None, resource: Resource, start: int,
                 event_id: str) -> None:
        self.call, self.ids, self.parent, self.resource = call, ids, parent, resource
        self.start, self.event_id = start, event_id


class OtlpOutput:
    """Sends tool-attributed events as OTLP spans to ``endpoint`` (see the module docstring).

    ``exporter`` replaces the OTLP/HTTP exporter (tests, other transports). ``compression`` is
    ``"gzip"`` or ``"none"``. ``max_queue`` bounds spans waiting to be sent; ``max_tracked``
    bounds the open-call and call-to-span tables (oldest forgotten first).
    """

    name = "otlp"

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, *, service_name: str = "runwatch",
                 headers: dict[str, str] | None = None, timeout: float = 10.0, compression: str = "gzip",
                 max_queue: int = 8192, schedule_delay_ms: float = 500.0, export_ingested: bool = False,
                 max_tracked: int = 65536, exporter: SpanExporter | None = None, name: str = "otlp",
                 tls: TlsOptions | None = None, spool_dir: str | None = None,
                 spool_limits: SpoolLimits | None = None, queue_max: int = 256, retry: RetryPolicy | None = None,
                 close_timeout: float = 5.0) -> None:
        self.endpoint = traces_url(endpoint)
        if compression not in ("gzip", "none"):
            raise OtlpOutputError(f"OTLP compression must be gzip or none, got {compression[:20]!r}")
        self.name = name
        self.service_name = service_name
        self.headers, self.timeout, self.compression = headers, timeout, compression
        self.tls, self.spool_dir, self.spool_limits = tls, spool_dir, spool_limits
        self.queue_max, self.retry, self.close_timeout = queue_max, retry, close_timeout
        self.delivery: Delivery | None = None
        self.max_queue, self.schedule_delay_ms = max_queue, schedule_delay_ms
        self.export_ingested, self.max_tracked = export_ingested, max_tracked
        self._exporter = exporter
        self._counting: _Counting | None = None
        self._processor: BatchSpanProcessor | None = None
        self._salt = os.urandom(16)
        self._host = os.uname().nodename
        self._open: OrderedDict[tuple[Any, int], _Open] = OrderedDict()
        self._by_call: OrderedDict[ToolCall, Ids] = OrderedDict()
        self._resources: OrderedDict[tuple[Any, ...], Resource] = OrderedDict()
        self._closed = False
        self.counters: dict[str, int] = {"submitted": 0, "tool_spans": 0, "event_spans": 0, "model_spans": 0,
                                         "orphan_events": 0, "incomplete": 0}

    # -- lifecycle ----------------------------------------------------------------------------

    def open(self) -> None:
        """Create the exporter and its background batch processor."""
        if self._closed:
            raise OtlpOutputError(f"{self.endpoint}: output is closed")
        if self._processor is not None:
            return
        inner = self._exporter
        if inner is None:
            try:
                transport = HttpTransport(self.endpoint, content_type="application/x-protobuf",
                                          gzip_body=self.compression == "gzip", headers=self.headers,
                                          timeout=self.timeout, tls=self.tls)
            except (OSError, ValueError) as exc:
                raise OtlpOutputError(f"OTLP export to {self.endpoint}: {exc}") from None
            self.delivery = Delivery(self.name, transport, spool_dir=self.spool_dir, spool_limits=self.spool_limits,
                                     queue_max=self.queue_max, retry=self.retry, close_timeout=self.close_timeout)
            self.delivery.open()
            inner = _DeliveryExporter(self.delivery)
        self._counting = _Counting(inner)
        self._processor = BatchSpanProcessor(self._counting, max_queue_size=self.max_queue,
                                             schedule_delay_millis=self.schedule_delay_ms,
                                             max_export_batch_size=min(512, self.max_queue))

    def write(self, events: Sequence[Event]) -> None:
        """Turn events into spans and queue them for sending (never blocks on the network)."""
        if self._processor is None:
            self.open()
        for e in events:
            if e.kind == "tool.start" and e.tool_call is not None:
                self._tool_start(e)
            elif e.kind == "tool.end" and e.tool_call is not None:
                self._tool_end(e)
            elif e.kind == "model.call" and e.source in _AI_SOURCES:
                self._model(e)
            elif e.tool_call is not None and e.source not in _AI_SOURCES:
                self._child(e)

    def reopen(self) -> None:
        """Nothing to reopen (network output); present for the output interface."""

    def flush(self, timeout_ms: int = 30000) -> bool:
        """Send everything queued now; True if it all went out within ``timeout_ms``."""
        return self._processor.force_flush(timeout_ms) if self._processor is not None else True

    def close(self) -> None:
        """Send calls still open (as incomplete), flush and stop the sender. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._processor is None:
            return
        for key in list(self._open):
            opened = self._open.pop(key)
            self.counters["incomplete"] += 1
            self._emit_tool(opened, opened.start, None, incomplete=True)
        self._processor.force_flush(int(self.close_timeout * 1000))
        self._processor.shutdown()  # type: ignore[no-untyped-call]

    def stats(self) -> dict[str, int]:
        """Spans built by type, exported and failed (by the sender), dropped (queue full)."""
        out = dict(self.counters)
        if self._counting is not None:
            with self._counting.lock:
                out["exported"], out["failed"] = self._counting.exported, self._counting.failed
            out["dropped"] = max(0, out["submitted"] - out["exported"] - out["failed"]) if self._closed else 0
        return out

    def output_stats(self) -> dict[str, Any]:
        """The delivery's counters (OTLP requests, each a batch of spans) and the spans built;
        empty with a replaced exporter."""
        if self.delivery is None:
            return {}
        return {**self.delivery.stats(), "spans": self.counters["submitted"]}

    # -- ids and resources --------------------------------------------------------------------

    def _hash(self, size: int, *parts: object) -> int:
        digest = hashlib.blake2b(repr(parts).encode(), key=self._salt, digest_size=size).digest()
        return int.from_bytes(digest, "big") or 1

    @staticmethod
    def _proc_key(e: Event) -> tuple[Any, ...]:
        if e.pidns is not None and e.vpid is not None:
            return ("ns", e.pidns, e.vpid)
        return ("pid", e.pid)

    def _resource(self, e: Event) -> Resource:
        vpid = e.vpid if e.vpid is not None else e.pid
        cid = e.container.id if e.container is not None else None
        key = (vpid, e.pid, cid)
        res = self._resources.get(key)
        if res is None:
            attrs: dict[str, Any] = {"service.name": self.service_name, "host.name": self._host,
                                     "runwatch.host_pid": e.pid}
            if vpid:
                attrs["process.pid"] = vpid
            if cid is not None:
                attrs["container.id"] = cid
            res = self._resources[key] = Resource(attrs)
            while len(self._resources) > 4096:
                self._resources.popitem(last=False)
        return res

    def _remember(self, call: ToolCall, ids: Ids) -> None:
        self._by_call[call] = ids
        self._by_call.move_to_end(call)
        while len(self._by_call) > self.max_tracked:
            self._by_call.popitem(last=False)

    @staticmethod
    def _ingested_ids(e: Event) -> tuple[Ids, int | None] | None:
        ai = e.ai or _NO_AI
        try:
            ids = (int(str(ai.trace_id), 16), int(str(ai.span_id), 16))
        except ValueError:  # absent (None) or not hex
            return None
        parent = ai.parent_span_id
        try:
            return ids, int(str(parent), 16) if parent else None
        except ValueError:
            return ids, None

    def _sdk_ids(self, e: Event) -> tuple[Ids, int | None, Any]:
        proc = self._proc_key(e)
        ai = e.ai or _NO_AI
        span = ai.span
        span_key = span if isinstance(span, int) else (e.tool_call, ai.start_time)
        trace = self._hash(16, "trace", proc)
        parent = ai.parent_span
        parent_id = self._hash(8, "span", proc, parent) if isinstance(parent, int) else None
        return (trace, self._hash(8, "span", proc, span_key)), parent_id, (proc, span_key)

    # -- event -> span ------------------------------------------------------------------------

    def _submit(self, span: ReadableSpan) -> None:
        assert self._processor is not None
        self.counters["submitted"] += 1
        self._processor.on_end(span)

    @staticmethod
    def _ctx(ids: Ids) -> SpanContext:
        return SpanContext(ids[0], ids[1], is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))

    def _span_ids(self, e: Event) -> tuple[Ids, int | None, Any] | None:
        """(span ids, parent span id, open-span key) of a tool event; None when not exported.

        Ingested (OTLP) tool spans keep their own ids and are remembered for attribution even
        when ``export_ingested`` is off (then None is returned).
        """
        assert e.tool_call is not None
        if e.source != "otlp":
            return self._sdk_ids(e)
        found = self._ingested_ids(e)
        if found is not None:
            self._remember(e.tool_call, found[0])
        if not self.export_ingested or found is None:
            return None
        return found[0], found[1], ("otlp", found[0][1])

    def _tool_start(self, e: Event) -> None:
        assert e.tool_call is not None
        placed = self._span_ids(e)
        if placed is None:
            return
        ids, parent, key = placed
        self._remember(e.tool_call, ids)
        self._open[key] = _Open(e.tool_call, ids, parent, self._resource(e), e.time, e.id)
        while len(self._open) > self.max_tracked:
            self._open.popitem(last=False)

    def _tool_end(self, e: Event) -> None:
        assert e.tool_call is not None
        ai = e.ai or _NO_AI
        placed = self._span_ids(e)
        if placed is None:
            return
        ids, parent, key = placed
        opened = self._open.pop(key, None)
        if opened is None:  # start not seen: rebuild from the end event
            start = ai.start_time
            opened = _Open(e.tool_call, ids, parent, self._resource(e), start if isinstance(start, int) else e.time,
                           e.id)
            self._remember(e.tool_call, ids)
        failed = ai.status == "error"
        error = ai.error if failed else None
        self._emit_tool(opened, e.time, (str(error) if error else "tool call failed") if failed else None,
                        end_id=e.id)

    def _emit_tool(self, opened: _Open, end: int, error: str | None, *, incomplete: bool = False,
                   end_id: str | None = None) -> None:
        call = opened.call
        attrs: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": call.name,
                                 "runwatch.event.id": opened.event_id}
        if call.call_id is not None:
            attrs["gen_ai.tool.call.id"] = call.call_id
        if call.agent is not None:
            attrs["gen_ai.agent.name"] = call.agent
        if end_id is not None:
            attrs["runwatch.end_event.id"] = end_id
        if incomplete:
            attrs["runwatch.tool.incomplete"] = True
        if error is not None:
            attrs["error.type"] = "tool_error"
        status = Status(StatusCode.ERROR, error) if error is not None else Status(StatusCode.UNSET)
        parent = self._ctx((opened.ids[0], opened.parent)) if opened.parent else None
        self._submit(ReadableSpan(f"execute_tool {call.name}", context=self._ctx(opened.ids), parent=parent,
                                  resource=opened.resource, attributes=attrs, kind=SpanKind.INTERNAL,
                                  status=status, start_time=opened.start, end_time=max(end, opened.start),
                                  instrumentation_scope=_SCOPE))
        self.counters["tool_spans"] += 1

    def _model(self, e: Event) -> None:
        if e.source == "otlp" and not self.export_ingested:
            return
        ai = e.ai or _NO_AI
        op = str(ai.operation or "chat")
        op = op if op in _MODEL_OPS else "chat"
        span_attrs: dict[str, Any] = {"gen_ai.operation.name": op, "runwatch.event.id": e.id}
        for value, name in ((ai.provider, "gen_ai.provider.name"), (ai.model, "gen_ai.request.model"),
                            (ai.agent, "gen_ai.agent.name")):
            if value is not None:
                span_attrs[name] = str(value)
        parent = self._by_call.get(e.tool_call) if e.tool_call is not None else None
        trace = parent[0] if parent is not None else self._hash(16, "trace", self._proc_key(e))
        ids = (trace, self._hash(8, "event", e.id))
        duration = ai.duration_ns
        end = e.time + duration if isinstance(duration, int) and duration > 0 else e.time
        model = ai.model
        self._submit(ReadableSpan(f"{op} {model}" if model else op, context=self._ctx(ids),
                                  parent=self._ctx(parent) if parent else None, resource=self._resource(e),
                                  attributes=span_attrs, kind=SpanKind.CLIENT, start_time=e.time, end_time=end,
                                  instrumentation_scope=_SCOPE))
        self.counters["model_spans"] += 1

    def _child(self, e: Event) -> None:
        assert e.tool_call is not None
        parent = self._by_call.get(e.tool_call)
        if parent is None:  # the call's start was never seen here: a stable stand-in parent
            self.counters["orphan_events"] += 1
            parent = (self._hash(16, "trace", "orphan", e.tool_call), self._hash(8, "span", "orphan", e.tool_call))
        ids = (parent[0], self._hash(8, "event", e.id))
        self._submit(ReadableSpan(e.kind, context=self._ctx(ids), parent=self._ctx(parent),
                                  resource=self._resource(e), attributes=event_attributes(e),
                                  kind=SpanKind.INTERNAL, start_time=e.time, end_time=e.time,
                                  instrumentation_scope=_SCOPE))
        self.counters["event_spans"] += 1


def event_attributes(e: Event) -> dict[str, Any]:
    """Span attributes for one kernel (or other) event inside a tool call; unset fields are left out."""
    attrs: dict[str, Any] = {"runwatch.event.id": e.id, "runwatch.event.kind": e.kind, "runwatch.source": e.source,
                             "runwatch.pid": e.pid, "runwatch.uid": e.uid}
    if e.tool_call is not None:
        attrs["runwatch.tool.name"] = e.tool_call.name
        if e.tool_call.call_id is not None:
            attrs["runwatch.tool.call_id"] = e.tool_call.call_id
    optional: dict[str, Any] = {
        "runwatch.tid": e.tid or None, "runwatch.ppid": e.ppid or None, "process.pid": e.vpid,
        "process.executable.path": e.exe or None, "process.command_line": e.cmdline or None,
        "container.id": e.container.id if e.container is not None else None,
        "runwatch.ancestry": list(e.ancestry) or None, "runwatch.child_pid": e.child_pid,
        "runwatch.exit_code": e.exit_code, "runwatch.signal": e.signal,
    }
    if e.file is not None:
        optional.update({"runwatch.file.path": e.file.path, "runwatch.file.intent": e.file.intent,
                         "runwatch.file.new_path": e.file.new_path})
    if e.net is not None:
        optional.update({"network.transport": e.net.proto, "network.type": e.net.family,
                         "server.address": e.net.dst_ip, "server.port": e.net.dst_port,
                         "client.address": e.net.src_ip, "client.port": e.net.src_port,
                         "runwatch.net.result": e.net.result})
    if e.dns is not None:
        optional.update({"dns.question.name": e.dns.name, "runwatch.dns.qtype": e.dns.qtype,
                         "runwatch.dns.server": e.dns.server_ip})
    if e.priv is not None:
        optional.update({"runwatch.priv.op": e.priv.op, "runwatch.priv.uid": e.priv.uid,
                         "runwatch.priv.target": e.priv.target, "runwatch.priv.target_pid": e.priv.target_pid,
                         "runwatch.priv.result": e.priv.result})
    attrs.update({k: v for k, v in optional.items() if v is not None})
    return attrs


register_output("otlp", OtlpOutput)
