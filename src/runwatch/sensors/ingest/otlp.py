"""OTLP/HTTP receiver: AI spans (GenAI, OpenInference, Traceloop) from agents in any language as a :class:`Source`.

Endpoints (OTLP/HTTP 1.x): ``POST /v1/traces`` is decoded and converted by
:mod:`runwatch.sensors.ingest.genai`; ``POST /v1/logs`` and ``POST /v1/metrics`` are decoded
(so a bad payload still gets 400) and acknowledged, their content is not used.

Request handling:

- ``Content-Type`` ``application/x-protobuf`` (binary protobuf) or ``application/json``
  (OTLP JSON: lowerCamelCase or original field names, trace/span ids as hex; base64 ids are
  accepted too); anything else: 415.
- ``Content-Encoding`` ``gzip`` or none; others: 415. The body is limited to ``max_body``
  bytes as sent and ``max_body * 2`` after decompression: 413 over either. At most
  :data:`~runwatch.listeners.MAX_CONNECTIONS` connections, each read waiting at most
  :data:`~runwatch.listeners.IDLE_TIMEOUT_S` (see :mod:`runwatch.listeners`); at most two requests
  are decoded at once, others get 503 with ``Retry-After``.
- ``Content-Length`` is required (411 without it; chunked bodies are not read).
- With a ``token``, every request must carry ``Authorization: Bearer <token>`` (scheme case
  insensitive, token compared in constant time); any other gets 401 with
  ``WWW-Authenticate`` before its body is looked at, and is counted as ``unauthorized``.
  Without a token the receiver may only listen on a loopback address or a unix socket
  (:mod:`runwatch.sensors.ingest.access`).
- 200 with an ``ExportTraceServiceResponse`` in the request's encoding; ``partial_success``
  counts the AI spans rejected (bad ids, times or tool name) with the first reasons.
- 400 with a ``google.rpc.Status`` whose message says what could not be decoded.
- 503 with ``Retry-After: 1`` when the event queue cannot take the whole request: nothing of
  it is queued, the sender retries (OTLP exporters retry 503), so nothing is lost here.
- A span names only processes of its sender (:mod:`runwatch.sensors.ingest.scope`): the peer
  of the connection is found once per connection; a ``process.pid`` outside its cgroup
  subtree or pid namespace gives unattributed events, counted as ``foreign_pid``.
- Other paths 404, other methods 405. Any unexpected failure answers 500 and is counted; the
  server keeps running.

Thread safety: HTTP requests are served on their own threads (bounded, one per connection); the
queue and counters are guarded by one lock. ``poll`` is for one consumer thread; ``stats``
may be called from any thread. Conversion (which may read /proc) runs under a separate lock,
so it never blocks ``poll``. Events are queued whole per request, in time order within it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import socketserver
import threading
import zlib
from collections import deque
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from google.protobuf import json_format  # type: ignore[import-untyped]
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from google.rpc.status_pb2 import Status as RpcStatus  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from runwatch.events import Event
from runwatch.listeners import BoundedThreads, prepare_unix_path
from runwatch.sensors.base import register_source
from runwatch.sensors.ingest.access import UNIX, UNIX_MODE, BearerToken, check_listen
from runwatch.sensors.ingest.genai import Converter, PidResolver
from runwatch.sensors.ingest.scope import Sender

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4318
PROTOBUF = "application/x-protobuf"
JSON = "application/json"

_SIGNALS: dict[str, tuple[Any, Any, str]] = {
    "/v1/traces": (ExportTraceServiceRequest, ExportTraceServiceResponse, "traces"),
    "/v1/logs": (ExportLogsServiceRequest, ExportLogsServiceResponse, "logs"),
    "/v1/metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse, "metrics"),
}


class BadPayload(ValueError):
    """A request body that is not a valid OTLP message (one-line message)."""


class _Reply(Exception):
    """An HTTP answer other than 200, raised from inside request handling."""

    def __init__(self, code: int, message: str, *, close: bool = False, counter: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.close, self.counter = code, message, close, counter


def _id_to_b64(value: Any, size: int) -> Any:
    """OTLP JSON id (hex) -> the base64 that protobuf's JSON mapping expects; other values unchanged."""
    if not isinstance(value, str) or not value:
        return value
    if len(value) == size * 2:
        try:
            return base64.b64encode(bytes.fromhex(value)).decode()
        except ValueError:
            pass
    return value  # maybe already base64: the parser decides


def _fix_ids(doc: Any) -> None:
    """Rewrite hex trace/span ids in an OTLP JSON traces document in place."""
    if not isinstance(doc, dict):
        return
    for rs in doc.get("resourceSpans", doc.get("resource_spans", [])) or []:
        if not isinstance(rs, dict):
            continue
        for ss in rs.get("scopeSpans", rs.get("scope_spans", [])) or []:
            if not isinstance(ss, dict):
                continue
            for span in ss.get("spans", []) or []:
                if not isinstance(span, dict):
                    continue
                items = [span, *[x for x in span.get("links", []) or [] if isinstance(x, dict)]]
                for item in items:
                    for key, size in (("traceId", 16), ("trace_id", 16), ("spanId", 8), ("span_id", 8),
                                      ("parentSpanId", 8), ("parent_span_id", 8)):
                        if key in item:
                            item[key] = _id_to_b64(item[key], size)


def decode_request(body: bytes, content_type: str, message_type: Any = ExportTraceServiceRequest) -> Any:
    """Decode an OTLP export request body of ``content_type``; raises :class:`BadPayload`."""
    request = message_type()
    name = message_type.DESCRIPTOR.name
    if content_type == PROTOBUF:
        try:
            request.ParseFromString(body)
        except (DecodeError, ValueError, RuntimeError) as exc:
            raise BadPayload(f"cannot decode protobuf {name}: {' '.join(str(exc).split())[:200]}") from None
        return request
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadPayload(f"request body is not JSON: {' '.join(str(exc).split())[:200]}") from None
    if not isinstance(doc, dict):
        raise BadPayload(f"OTLP JSON {name} must be an object, got {type(doc).__name__}")
    _fix_ids(doc)
    try:
        json_format.ParseDict(doc, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, binascii.Error, RecursionError) as exc:
        raise BadPayload(f"invalid OTLP JSON {name}: {' '.join(str(exc).split())[:200]}") from None
    return request


def encode_message(message: Any, content_type: str) -> bytes:
    """A response message in the request's encoding."""
    if content_type == JSON:
        return json_format.MessageToJson(message, indent=None).encode()  # type: ignore[no-any-return]
    return message.SerializeToString()  # type: ignore[no-any-return]


UNAUTHORIZED_DRAIN = 64 << 10
"""Largest body of a request without the token that is read (and dropped) to keep its connection."""

MALFORMED = ("bad_requests", "unsupported", "too_large", "not_found")
"""The counters of requests that were not OTLP as runwatch takes it (summed as ``malformed``)."""

MAX_DECODING = 2
"""Requests inflated and parsed at once; more get 503 (each may hold ``max_body * 2`` bytes)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    sender: Sender | None = None  # the connection's peer processes, found on its first traces request

    def do_POST(self) -> None:
        self.server.receiver.handle(self)

    def _not_allowed(self) -> None:
        self.server.receiver.reply(self, 405, "only POST is supported", "text/plain", close=False)

    do_GET = do_PUT = do_DELETE = do_PATCH = _not_allowed

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr log; the receiver counts instead."""


class _Server(BoundedThreads, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: OtlpReceiver


class _UnixServer(BoundedThreads, socketserver.UnixStreamServer):
    daemon_threads = True
    receiver: OtlpReceiver

    def get_request(self) -> tuple[Any, Any]:
        conn, _ = self.socket.accept()
        return conn, ("unix", 0)  # http.server wants an (address, port) pair


class OtlpReceiver:
    """OTLP/HTTP receiver on ``host:port`` (port 0: any free port; see :attr:`port`), or on the
    unix socket ``PATH`` when ``host`` is ``unix:PATH`` (mode 0666; the sender is the kernel's
    peer credentials, so no token is needed there).

    ``max_body`` bounds a request body in bytes; ``max_queue`` bounds queued events (a request
    that does not fit whole gets 503); ``max_batch`` bounds one ``poll`` result. ``token``: the
    bearer token every request must carry (None: none, and then only a loopback ``host``).
    Raises ``ValueError`` (one line) for a listen address :func:`check_listen` refuses.
    """

    name = "otlp"

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, max_body: int = 4 << 20,
                 max_queue: int = 65536, max_batch: int = 4096, resolver: PidResolver | None = None,
                 token: str | None = None) -> None:
        check_listen(host, token)
        self.host, self.port = host, port
        self.unix_path = host[len(UNIX):] if host.startswith(UNIX) else None
        self._token = BearerToken(token) if token is not None else None
        self.max_body, self.max_inflated = max_body, max_body * 2
        self.max_queue, self.max_batch = max_queue, max_batch
        self.converter = Converter(resolver)
        self.last_error: str | None = None
        self.first_error: str | None = None  # the first malformed request's answer
        self._lock = threading.Lock()
        self._convert_lock = threading.Lock()  # the resolver's cache is not thread safe
        self._decoding = threading.BoundedSemaphore(MAX_DECODING)  # memory and CPU of inflating and parsing
        self._ready = threading.Condition(self._lock)
        self._queue: deque[Event] = deque()
        self._server: _Server | _UnixServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.counters: dict[str, int] = {
            "requests": 0, "spans": 0, "events": 0, "spans_ignored": 0, "spans_rejected": 0, "bad_requests": 0,
            "unsupported": 0, "too_large": 0, "busy": 0, "not_found": 0, "internal_errors": 0,
            "pid_unresolved": 0, "logs_requests": 0, "metrics_requests": 0, "drops": 0, "unauthorized": 0,
            "foreign_pid": 0,
        }

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Bind and serve on a background thread. Raises ``RuntimeError`` naming the address."""
        server: _Server | _UnixServer
        try:
            if self.unix_path is not None:
                prepare_unix_path(self.unix_path)
                server = _UnixServer(self.unix_path, _Handler)
                os.chmod(self.unix_path, UNIX_MODE)
            else:
                server = _Server((self.host, self.port), _Handler)
        except OSError as exc:
            where = self.endpoint if self.unix_path is not None else f"{self.host}:{self.port}"
            raise RuntimeError(f"cannot listen for OTLP on {where}: {exc.strerror or exc}") from None
        server.receiver = self
        if isinstance(server, _Server):
            self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="runwatch-otlp", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        """Base URL agents export to (``OTEL_EXPORTER_OTLP_ENDPOINT``), or ``unix:PATH``."""
        if self.unix_path is not None:
            return UNIX + self.unix_path
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        """Stop serving (events already queued stay available to ``poll``); idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            if self.unix_path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self.unix_path)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._ready:
            self._stopped = True
            self._ready.notify_all()

    def poll(self, timeout: float) -> list[Event] | None:
        """Up to ``max_batch`` queued events, waiting up to ``timeout`` s; None once stopped and empty."""
        with self._ready:
            if not self._queue and not self._stopped and timeout > 0:
                self._ready.wait(timeout)
            if not self._queue:
                return None if self._stopped else []
            n = min(len(self._queue), self.max_batch)
            return [self._queue.popleft() for _ in range(n)]

    def stats(self) -> dict[str, int]:
        """Counters (requests, spans, events, rejects by reason, ...), ``malformed`` (their sum over
        :data:`MALFORMED`) and the queue length."""
        with self._lock:
            malformed = sum(self.counters[k] for k in MALFORMED)
            return {**self.counters, "malformed": malformed, "queued": len(self._queue)}

    # -- HTTP ---------------------------------------------------------------------------------

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] += n

    def reply(self, h: BaseHTTPRequestHandler, code: int, body: bytes | str, content_type: str, *,
              close: bool, headers: dict[str, str] | None = None) -> None:
        """Send one complete response."""
        data = body.encode() if isinstance(body, str) else body
        h.send_response(code)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        if close:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        h.wfile.write(data)

    def _error(self, h: BaseHTTPRequestHandler, err: _Reply, content_type: str | None) -> None:
        if err.counter is not None:
            self._count(err.counter)
        with self._lock:
            self.last_error = f"{err.code}: {err.message}"
            if err.counter in MALFORMED and self.first_error is None:
                self.first_error = self.last_error
        extra = {"Retry-After": "1"} if err.code == 503 else None
        if err.code == 401:
            extra = {"WWW-Authenticate": 'Bearer realm="runwatch-otlp"'}
        if content_type in (PROTOBUF, JSON):
            status = RpcStatus(code=3 if err.code == 400 else 8 if err.code == 503 else 2, message=err.message)
            self.reply(h, err.code, encode_message(status, content_type), content_type, close=err.close,
                       headers=extra)
        else:
            self.reply(h, err.code, err.message + "\n", "text/plain; charset=utf-8", close=err.close, headers=extra)

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        """Serve one POST (called on the request's thread); never raises."""
        content_type: str | None = None
        try:
            try:
                self._authenticate(h)
                path = h.path.split("?", 1)[0]
                signal = _SIGNALS.get(path)
                if signal is None:
                    self._drain(h)
                    raise _Reply(404, f"no OTLP endpoint at {path[:80]!r} (use /v1/traces)", counter="not_found",
                                 close=h.close_connection)
                content_type = self._content_type(h)
                self._serve(h, signal, content_type)
            except _Reply as err:
                self._error(h, err, content_type)
            except Exception as exc:  # a bug must not take the listener down
                self._error(h, _Reply(500, f"internal error: {type(exc).__name__}: {exc}"[:300], close=True,
                                      counter="internal_errors"), content_type)
        except OSError:
            h.close_connection = True  # the client went away mid-answer

    def _authenticate(self, h: BaseHTTPRequestHandler) -> None:
        """401 unless the request carries the bearer token (when there is one)."""
        if self._token is None:
            return
        if self._token.admits(h.headers.get("Authorization")):
            return
        self._drain(h, UNAUTHORIZED_DRAIN)  # a stranger's larger body is not read: the connection closes
        raise _Reply(401, "missing or wrong bearer token (Authorization: Bearer <token>)", counter="unauthorized",
                     close=h.close_connection)

    def _content_type(self, h: BaseHTTPRequestHandler) -> str:
        raw_type = (h.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if raw_type not in (PROTOBUF, JSON):
            self._drain(h)
            raise _Reply(415, f"unsupported Content-Type {raw_type[:60]!r} (use {PROTOBUF} or {JSON})",
                         counter="unsupported", close=h.close_connection)
        return raw_type

    def _body(self, h: BaseHTTPRequestHandler) -> bytes:
        if h.headers.get("Transfer-Encoding"):
            raise _Reply(411, "chunked bodies are not supported; send Content-Length", close=True,
                         counter="bad_requests")
        length_text = h.headers.get("Content-Length")
        if length_text is None:
            raise _Reply(411, "Content-Length is required", close=True, counter="bad_requests")
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError(length_text)
        except ValueError:
            raise _Reply(400, f"bad Content-Length {length_text[:40]!r}", close=True, counter="bad_requests") from None
        if length > self.max_body:
            raise _Reply(413, f"body of {length} bytes is over the {self.max_body}-byte limit", close=True,
                         counter="too_large")
        body = h.rfile.read(length)
        if len(body) != length:
            raise _Reply(400, f"body ended after {len(body)} of {length} bytes", close=True, counter="bad_requests")
        encoding = (h.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding == "gzip":
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                body = inflater.decompress(body, self.max_inflated)
                if inflater.unconsumed_tail:
                    raise _Reply(413, f"gzip body inflates past the {self.max_inflated}-byte limit",
                                 counter="too_large")
                if not inflater.eof:
                    raise _Reply(400, "gzip body is truncated", counter="bad_requests")
            except zlib.error as exc:
                raise _Reply(400, f"bad gzip body: {exc}", counter="bad_requests") from None
        elif encoding != "identity":
            raise _Reply(415, f"unsupported Content-Encoding {encoding[:40]!r} (use gzip or none)",
                         counter="unsupported")
        return body

    def _serve(self, h: BaseHTTPRequestHandler, signal: tuple[Any, Any, str], content_type: str) -> None:
        if not self._decoding.acquire(blocking=False):
            self._drain(h)
            raise _Reply(503, "busy: other requests are being decoded; retry", counter="busy",
                         close=h.close_connection)
        try:
            body = self._body(h)
            request_type, response_type, kind = signal
            try:
                request = decode_request(body, content_type, request_type)
            except BadPayload as exc:
                raise _Reply(400, str(exc), counter="bad_requests") from None
            sender = self._sender(h) if kind == "traces" else None  # a /proc scan: bounded like decoding
        finally:
            self._decoding.release()
        self._count("requests")
        response = response_type()
        if kind != "traces":
            self._count(f"{kind}_requests")
        else:
            assert sender is not None
            self._accept_traces(request, response, sender)
        self.reply(h, 200, encode_message(response, content_type), content_type, close=False)

    def _drain(self, h: BaseHTTPRequestHandler, limit: int | None = None) -> None:
        """Read and discard a body we will not use (up to ``limit``, default ``max_body``), so the
        connection can be kept; else close it."""
        if h.headers.get("Transfer-Encoding"):
            h.close_connection = True
            return
        try:
            length = int(h.headers.get("Content-Length") or "0")
        except ValueError:
            h.close_connection = True
            return
        if 0 <= length <= (self.max_body if limit is None else limit):
            h.rfile.read(length)
        else:
            h.close_connection = True

    @staticmethod
    def _sender(h: BaseHTTPRequestHandler) -> Sender:
        """The processes at the other end of ``h``'s connection (looked up once per connection)."""
        assert isinstance(h, _Handler)
        if h.sender is None:
            try:
                h.sender = Sender.of_connection(h.connection)
            except OSError:  # gone already
                h.sender = Sender(())
        return h.sender

    def _accept_traces(self, request: Any, response: Any, sender: Sender) -> None:
        spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        with self._convert_lock:
            events, ignored, rejected, reasons = self.converter.convert(request.resource_spans, sender)
        with self._ready:
            if len(self._queue) + len(events) > self.max_queue:
                self.counters["busy"] += 1
                raise _Reply(503, f"event queue full ({len(self._queue)} of {self.max_queue}); retry later")
            self._queue.extend(events)
            self.counters["spans"] += spans
            self.counters["events"] += len(events)
            self.counters["spans_ignored"] += ignored
            self.counters["spans_rejected"] += rejected
            self.counters["pid_unresolved"] += sum(1 for e in events if e.attrs and "pid_unresolved" in e.attrs)
            self.counters["foreign_pid"] += sum(1 for e in events if e.attrs and e.attrs.get("foreign_pid"))
            if events:
                self._ready.notify_all()
        if rejected:
            response.partial_success.rejected_spans = rejected
            response.partial_success.error_message = "; ".join(reasons)[:1000]
            with self._lock:
                self.last_error = reasons[0] if reasons else None


register_source("otlp", OtlpReceiver)
