"""OpenTelemetry AI spans -> runwatch events, and the OTLP process and thread identity -> host ids.

Span mapping. :mod:`runwatch.sensors.ingest.conventions` says which spans are tool calls,
agent runs and model calls under the GenAI, OpenInference and Traceloop conventions, and
where each keeps the tool's name, the call id and the agent; this module turns them into events:

- a tool span: a ``tool.start`` event at the span's start and a ``tool.end`` event at its
  end. ``ToolCall.name`` is the tool's name, ``call_id`` the call id, ``agent`` the span's
  own agent name or, failing that, that of the nearest agent-span ancestor in the same
  export request. ``tool.end`` carries ``status`` (``error`` when the span status is ERROR
  or ``error.type`` is set, else ``ok``).
- an agent or model span: one ``model.call`` event at the span's start with ``operation``,
  ``provider``, ``model``, ``agent`` and token counts.
- Every other span is ignored (counted by the caller).

Every event's ``attrs["convention"]`` names the convention its span was read by. Span ids go
into ``attrs`` twice: ``span_id``/``trace_id``/``parent_span_id`` as hex, and
``span``/``parent_span`` as integers (the span id's low 63 bits) because the AI-context join
keys calls by an integer span.

Identity. OTLP carries ``process.pid`` only, as the exporting process sees it: its pid in its
own pid namespace. :class:`PidResolver` turns it into the host view:

- with resource ``container.id``: the host process whose ``/proc/<pid>/cgroup`` names the
  container (as a whole cgroup path component or delimited inside one, such as
  ``docker-<id>.scope``) and whose innermost ``NSpid`` equals ``process.pid``;
- without it: ``process.pid`` is taken as a pid of runwatch's own pid namespace, accepted only
  if that process's innermost ``NSpid`` is the same number (a process in a nested namespace
  could not have reported it).

A resolved event carries ``pid`` (host), ``pidns`` (inode of the process's pid namespace),
``vpid`` (``process.pid``), ``uid`` and ``cgroup_id``. An unresolved one keeps ``pid=0`` and
says why in ``attrs["pid_unresolved"]``.

Thread. A tool span's ``thread.id`` (the OpenTelemetry general attribute) attributes its call
to one thread instead of the whole process, but only where it is an OS thread id:

- what emitters put there differs. The OpenTelemetry Python SDK sets no ``thread.id`` on
  spans (its logging handler sets ``threading.get_ident()``, a pthread handle, not a thread
  id); OpenInference and Traceloop set none; the Java agent's thread attributes and .NET
  set a managed thread number. Only an emitter that sets ``threading.get_native_id()`` (or
  ``gettid()``) names an OS thread, as seen in its own pid namespace.
- so ``thread.id`` is taken only when the resolved process has, at conversion time, a thread
  whose innermost ``NSpid`` is that number (:meth:`PidResolver.thread`): the event gets
  ``vtid`` (``thread.id``) and ``tid`` (the host thread id) and the join keys the call to that
  thread. Anything else (a handle past the pid range, a managed number no thread has, a
  thread that exited before the export, an unresolved process) leaves the call process-wide
  and says why in ``attrs["thread_unresolved"]``. ``thread.name`` is kept as
  ``attrs["thread_name"]``, for information only.

Not thread safe: one resolver per caller thread, or a lock around it (the receiver holds one).
"""

from __future__ import annotations

import os
import re
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, NamedTuple

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from runwatch.events import AI_KEYS, AiInfo, Container, Event, ToolCall, new_id
from runwatch.host import cgroup_v2_if_any, procfs
from runwatch.sensors.ingest import conventions as conv
from runwatch.sensors.ingest.conventions import MAX_STR, SpanKind, text, whole
from runwatch.sensors.ingest.scope import Sender, foreign

_SPAN_MASK = (1 << 63) - 1
_CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_UNNAMED = {conv.GENAI: "execute_tool without gen_ai.tool.name", conv.OPENINFERENCE: "TOOL span without tool.name",
            conv.TRACELOOP: "tool span without traceloop.entity.name"}
_PID_LIMIT = 1 << 22  # the kernel's PID_MAX_LIMIT: no pid or thread id is this large


def any_value(value: AnyValue) -> Any:
    """The Python value of an OTLP ``AnyValue`` (arrays and maps recursively, bytes as hex)."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which)


def attributes(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    """OTLP key/value list as a dict (a repeated key: the last wins)."""
    return {kv.key: any_value(kv.value) for kv in kvs}


class Identity(NamedTuple):
    """Host-side identity of an OTLP sender (see the module docstring)."""

    pid: int
    pidns: int | None
    vpid: int | None
    uid: int
    cgroup_id: int | None
    note: str | None  # why the pid could not be resolved, else None
    foreign: bool = False  # the claim named a process its sender may not name (see scope.py)


def _status_fields(pid: int, proc: str) -> tuple[list[int], int] | None:
    """(NSpid list, real uid) of host process ``pid``, or None if unreadable."""
    st = procfs.status(pid, proc=proc)
    return (st.nspid, st.uid or 0) if st is not None and st.nspid else None


class PidResolver:
    """Resolves (``process.pid``, ``container.id``) to a host identity, with a bounded cache.

    ``proc`` is the procfs root; ``ttl_s`` bounds how long an answer (found or not) is reused,
    so pid reuse and late-starting processes are seen again. Not thread safe.
    """

    def __init__(self, proc: str = "/proc", *, ttl_s: float = 10.0, max_entries: int = 4096) -> None:
        self.proc = proc
        self.ttl_ns = int(ttl_s * 1e9)
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple[int, str | None], tuple[int, Identity]] = OrderedDict()
        self._threads: OrderedDict[tuple[int, int], tuple[int, int | None]] = OrderedDict()
        self._cgroups = cgroup_v2_if_any()
        self.own_pidns: int | None = procfs.pidns("self", proc)

    def resolve(self, vpid: int | None, container_id: str | None) -> Identity:
        """Host identity for ``process.pid`` ``vpid`` (None: not given) in ``container_id``."""
        if vpid is None or vpid <= 0 or vpid >= _PID_LIMIT:
            note = "no process.pid" if vpid is None else f"process.pid {vpid} out of range"
            return Identity(0, None, vpid, 0, None, note)
        key = (vpid, container_id)
        now = time.monotonic_ns()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.ttl_ns:
            return hit[1]
        ident = self._lookup(vpid, container_id)
        self._cache[key] = (now, ident)
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return ident

    def thread(self, ident: Identity, value: Any) -> tuple[int, int] | str:
        """(host tid, tid in the sender's namespace) for a span's ``thread.id``, or why it is not
        an OS thread of ``ident``'s process (see the module docstring)."""
        vtid = whole(value)
        if vtid is None or vtid <= 0:
            return f"thread.id {text(value)!r} is no thread id"
        if vtid >= _PID_LIMIT:
            return f"thread.id {vtid} is past the pid range (a thread handle, not an OS thread id)"
        if ident.pid <= 0:
            return "the process is unresolved"
        key = (-ident.pid, vtid)  # negative: apart from the (pid, container) keys of resolve()
        now = time.monotonic_ns()
        hit = self._threads.get(key)
        if hit is not None and now - hit[0] < self.ttl_ns:
            found = hit[1]
        else:
            found = procfs.host_tid(ident.pid, vtid, self.proc)
            self._threads[key] = (now, found)
            while len(self._threads) > self.max_entries:
                self._threads.popitem(last=False)
        if found is None:
            return f"thread.id {vtid} is no thread of process {ident.vpid}"
        return found, vtid

    def _identity(self, host_pid: int, vpid: int, uid: int) -> Identity:
        cgroup_id = self._cgroups.id_of_pid(host_pid, self.proc) if self._cgroups is not None else None
        return Identity(host_pid, procfs.pidns(host_pid, self.proc), vpid, uid, cgroup_id, None)

    def _lookup(self, vpid: int, container_id: str | None) -> Identity:
        if container_id is None:
            fields = _status_fields(vpid, self.proc)
            if fields is None:
                return Identity(0, None, vpid, 0, None, f"no process {vpid} in runwatch's pid namespace")
            nspid, uid = fields
            if nspid[-1] != vpid:
                return Identity(0, None, vpid, 0, None, f"pid {vpid} here belongs to a process in another pid "
                                f"namespace (pid {nspid[-1]} there); set resource container.id")
            return self._identity(vpid, vpid, uid)
        if not _CONTAINER_ID.match(container_id):
            return Identity(0, None, vpid, 0, None, "container.id has characters outside [A-Za-z0-9_.-]")
        pattern = re.compile(r"(?:^|[^A-Za-z0-9])" + re.escape(container_id) + r"(?:$|[^A-Za-z0-9])")
        members = 0
        try:
            entries = os.listdir(self.proc)
        except OSError as exc:
            return Identity(0, None, vpid, 0, None, f"cannot list {self.proc}: {exc.strerror}")
        for entry in entries:
            if not entry.isdigit():
                continue
            paths = procfs.cgroup_paths(int(entry), self.proc)
            if paths is None or not any(pattern.search(path) for path in paths):
                continue
            members += 1
            fields = _status_fields(int(entry), self.proc)
            if fields is not None and fields[0][-1] == vpid:
                return self._identity(int(entry), vpid, fields[1])
        if members == 0:
            return Identity(0, None, vpid, 0, None, f"no running process in container {container_id}")
        return Identity(0, None, vpid, 0, None, f"no process with pid {vpid} among {members} of container "
                        f"{container_id}")


class Converter:
    """Turns the spans of one export request into events (see the module docstring).

    Holds a :class:`PidResolver`; counters are kept by the caller from :meth:`convert`'s result.
    Not thread safe.
    """

    def __init__(self, resolver: PidResolver | None = None, host_name: str | None = None) -> None:
        self.resolver = resolver if resolver is not None else PidResolver()
        self.host_name = host_name if host_name is not None else os.uname().nodename

    def convert(self, resource_spans: Iterable[Any], sender: Sender | None = None,
                ) -> tuple[list[Event], int, int, list[str]]:
        """(events sorted by time, spans ignored, spans rejected, rejection reasons) for a request.

        ``sender``: the processes that sent it; a resource naming a process they may not name
        (:func:`~runwatch.sensors.ingest.scope.foreign`) gives unattributed events. None: not checked."""
        events: list[Event] = []
        ignored = rejected = 0
        reasons: list[str] = []
        parsed: list[tuple[dict[str, Any], list[tuple[Span, dict[str, Any]]]]] = []
        by_id: dict[bytes, tuple[Span, dict[str, Any]]] = {}
        for rs in resource_spans:
            spans = [(span, attributes(span.attributes)) for ss in rs.scope_spans for span in ss.spans]
            parsed.append((attributes(rs.resource.attributes), spans))
            for span, attrs in spans:
                by_id[bytes(span.span_id)] = (span, attrs)
        for res, spans in parsed:
            ident: Identity | None = None
            for span, attrs in spans:
                kind = conv.classify(attrs)
                if kind is None:
                    ignored += 1
                    continue
                problem = self._check(span, kind, attrs)
                if problem is not None:
                    rejected += 1
                    if len(reasons) < 5:
                        reasons.append(problem)
                    continue
                if ident is None:
                    ident = self._identity(res, sender)
                base = self._base(span, kind, res, ident)
                agent = self._agent(span, kind, attrs, by_id)
                if kind.role == conv.TOOL:
                    events.extend(self._tool_events(span, kind, attrs, agent, ident, base))
                else:
                    events.append(self._model_event(span, kind, attrs, agent, ident, base))
        events.sort(key=lambda e: (e.time, e.kind != "tool.start"))
        return events, ignored, rejected, reasons

    def _identity(self, res: dict[str, Any], sender: Sender | None) -> Identity:
        ident = self.resolver.resolve(whole(res.get("process.pid")), text(res.get("container.id")))
        if sender is None or ident.pid <= 0:
            return ident
        why = foreign(sender, ident.pid, self.resolver.proc)
        return ident if why is None else Identity(0, None, ident.vpid, 0, None, why, foreign=True)

    @staticmethod
    def _check(span: Span, kind: SpanKind, attrs: dict[str, Any]) -> str | None:
        if len(span.trace_id) != 16 or len(span.span_id) != 8:
            return f"span {span.name[:60]!r}: trace_id must be 16 bytes and span_id 8 bytes"
        if span.start_time_unix_nano == 0 or span.end_time_unix_nano < span.start_time_unix_nano:
            return f"span {span.name[:60]!r}: needs start_time_unix_nano > 0 and end >= start"
        if kind.role == conv.TOOL and not conv.tool_name(kind, span.name, attrs):
            return f"span {span.name[:60]!r}: {_UNNAMED[kind.convention]}"
        return None

    @staticmethod
    def _agent(span: Span, kind: SpanKind, attrs: dict[str, Any],
               by_id: dict[bytes, tuple[Span, dict[str, Any]]]) -> str | None:
        own = conv.own_agent(kind, attrs) or (conv.agent_of(span.name, attrs) if kind.role == conv.AGENT else None)
        if own is not None:
            return own
        parent, seen = bytes(span.parent_span_id), 0
        while parent and seen < 64:
            found = by_id.get(parent)
            if found is None:
                return None
            pspan, pattrs = found
            name = conv.agent_of(pspan.name, pattrs)
            if name is not None:
                return name
            parent, seen = bytes(pspan.parent_span_id), seen + 1
        return None

    def _base(self, span: Span, kind: SpanKind, res: dict[str, Any], ident: Identity) -> dict[str, Any]:
        base: dict[str, Any] = {
            "trace_id": span.trace_id.hex(),
            "span_id": span.span_id.hex(),
            "span": int.from_bytes(span.span_id, "big") & _SPAN_MASK,
            "convention": kind.convention,
        }
        if span.parent_span_id:
            base["parent_span_id"] = span.parent_span_id.hex()
            base["parent_span"] = int.from_bytes(span.parent_span_id, "big") & _SPAN_MASK
        for key, name in (("service.name", "service"), ("host.name", "host"), ("container.id", "container_id"),
                          ("container.runtime.name", "container_runtime"), ("container.runtime", "container_runtime")):
            value = text(res.get(key))
            if value is not None and name not in base:
                base[name] = value
        host = base.get("host")
        if host is not None and host != self.host_name:
            base["remote_host"] = True
        if ident.note is not None:
            base["pid_unresolved"] = ident.note
        if ident.foreign:
            base["foreign_pid"] = True
        return base

    @staticmethod
    def _container(res_container: str | None, runtime: str | None, ident: Identity) -> Container | None:
        if res_container is None or ident.cgroup_id is not None or ident.foreign:
            return None  # the enrichment stage resolves the container from cgroup_id; a foreign claim is none
        return Container(id=res_container, runtime=runtime or "unknown")

    def _event(self, kind: str, t: int, ident: Identity, base: dict[str, Any], call: ToolCall | None,
               extra: dict[str, Any], thread: tuple[int, int] | None = None) -> Event:
        # The span's AI facts are the typed ai group; resource and attribution details stay in attrs.
        facts = {**base, **{k: v for k, v in extra.items() if v is not None}}
        attrs = {k: v for k, v in facts.items() if k not in AI_KEYS}
        ai = AiInfo(**{k: v for k, v in facts.items() if k in AI_KEYS})
        container = self._container(base.get("container_id"), base.get("container_runtime"), ident)
        tid, vtid = thread if thread is not None else (0, None)
        return Event(id=new_id(t), time=t, kind=kind, source="otlp", pid=ident.pid, tid=tid, uid=ident.uid,
                     cgroup_id=ident.cgroup_id, pidns=ident.pidns, vpid=ident.vpid, vtid=vtid,
                     container=container, tool_call=call, attrs=attrs or None, ai=ai)

    def _thread(self, attrs: dict[str, Any], ident: Identity, base: dict[str, Any]) -> tuple[int, int] | None:
        """The span's OS thread (host tid, namespace tid), noting in ``base`` why there is none."""
        name = text(attrs.get("thread.name"))
        if name is not None:
            base["thread_name"] = name
        if attrs.get("thread.id") is None:
            return None
        found = self.resolver.thread(ident, attrs["thread.id"])
        if isinstance(found, str):
            base["thread_unresolved"] = found
            return None
        return found

    def _tool_events(self, span: Span, kind: SpanKind, attrs: dict[str, Any], agent: str | None, ident: Identity,
                     base: dict[str, Any]) -> list[Event]:
        call = ToolCall(name=conv.tool_name(kind, span.name, attrs) or "", call_id=conv.tool_call_id(kind, attrs),
                        agent=agent)
        thread = self._thread(attrs, ident, base)
        start, end = span.start_time_unix_nano, span.end_time_unix_nano
        error_type = text(attrs.get("error.type"))
        failed = span.status.code == Status.STATUS_CODE_ERROR or error_type is not None
        common = {"operation": kind.operation, "tool_type": text(attrs.get("gen_ai.tool.type")),
                  "agent_id": text(attrs.get("gen_ai.agent.id"))}
        started = self._event("tool.start", start, ident, base, call, common, thread)
        ended = self._event("tool.end", end, ident, base, call, {
            **common, "status": "error" if failed else "ok", "duration_ns": end - start, "start_time": start,
            "error": (span.status.message[:MAX_STR] or error_type) if failed else None,
        }, thread)
        return [started, ended]

    def _model_event(self, span: Span, kind: SpanKind, attrs: dict[str, Any], agent: str | None, ident: Identity,
                     base: dict[str, Any]) -> Event:
        start, end = span.start_time_unix_nano, span.end_time_unix_nano
        failed = span.status.code == Status.STATUS_CODE_ERROR or attrs.get("error.type") is not None
        return self._event("model.call", start, ident, base, None, {
            "operation": kind.operation,
            **conv.model_facts(kind, attrs),
            "agent": agent,
            "agent_id": text(attrs.get("gen_ai.agent.id")),
            "duration_ns": end - start,
            "status": "error" if failed else "ok",
        })
