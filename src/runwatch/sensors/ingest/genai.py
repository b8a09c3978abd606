"""OpenTelemetry GenAI spans -> runwatch events, and the OTLP process identity -> host pid.

Span mapping (semantic conventions for generative AI, ``gen_ai.*``):

- ``gen_ai.operation.name = execute_tool``: a ``tool.start`` event at the span's start and a
  ``tool.end`` event at its end. ``ToolCall.name`` is ``gen_ai.tool.name`` (else the span name
  after ``"execute_tool "``), ``call_id`` is ``gen_ai.tool.call.id``, ``agent`` is
  ``gen_ai.agent.name`` of the span or, failing that, of the nearest ``invoke_agent`` /
  ``create_agent`` ancestor in the same export request. ``tool.end`` carries ``status``
  (``error`` when the span status is ERROR or ``error.type`` is set, else ``ok``).
- ``invoke_agent``, ``create_agent``, ``chat``, ``text_completion``, ``generate_content``,
  ``embeddings``: one ``model.call`` event at the span's start with ``operation``,
  ``provider`` (``gen_ai.provider.name``, else the older ``gen_ai.system``), ``model``
  (``gen_ai.request.model``, else ``gen_ai.response.model``), ``agent`` and token counts.
- Every other span is ignored (counted by the caller).

Span ids go into ``attrs`` twice: ``span_id``/``trace_id``/``parent_span_id`` as hex, and
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
``vpid`` (``process.pid``), ``uid`` and ``cgroup_id``; ``tid``/``vtid`` stay unknown (OTLP has
no thread id). An unresolved one keeps ``pid=0`` and says why in ``attrs["pid_unresolved"]``.
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

TOOL_OPS = frozenset({"execute_tool"})
MODEL_OPS = frozenset({"invoke_agent", "create_agent", "chat", "text_completion", "generate_content", "embeddings"})
AGENT_OPS = frozenset({"invoke_agent", "create_agent"})
_SPAN_MASK = (1 << 63) - 1
_CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_MAX_STR = 4096


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


def _str(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value)
    return text[:_MAX_STR] if text else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


class Identity(NamedTuple):
    """Host-side identity of an OTLP sender (see the module docstring)."""

    pid: int
    pidns: int | None
    vpid: int | None
    uid: int
    cgroup_id: int | None
    note: str | None  # why the pid could not be resolved, else None


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
        self._cgroups = cgroup_v2_if_any()
        self.own_pidns: int | None = procfs.pidns("self", proc)

    def resolve(self, vpid: int | None, container_id: str | None) -> Identity:
        """Host identity for ``process.pid`` ``vpid`` (None: not given) in ``container_id``."""
        if vpid is None or vpid <= 0 or vpid >= 1 << 22:
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

    def convert(self, resource_spans: Iterable[Any]) -> tuple[list[Event], int, int, list[str]]:
        """(events sorted by time, spans ignored, spans rejected, rejection reasons) for a request."""
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
                op = _str(attrs.get("gen_ai.operation.name"))
                if op is None or (op not in TOOL_OPS and op not in MODEL_OPS):
                    ignored += 1
                    continue
                problem = self._check(span, op, attrs)
                if problem is not None:
                    rejected += 1
                    if len(reasons) < 5:
                        reasons.append(problem)
                    continue
                if ident is None:
                    ident = self.resolver.resolve(_int(res.get("process.pid")), _str(res.get("container.id")))
                base = self._base(span, res, ident)
                agent = self._agent(span, attrs, by_id)
                if op in TOOL_OPS:
                    events.extend(self._tool_events(span, attrs, agent, ident, base))
                else:
                    events.append(self._model_event(span, op, attrs, agent, ident, base))
        events.sort(key=lambda e: (e.time, e.kind != "tool.start"))
        return events, ignored, rejected, reasons

    @staticmethod
    def _check(span: Span, op: str, attrs: dict[str, Any]) -> str | None:
        if len(span.trace_id) != 16 or len(span.span_id) != 8:
            return f"span {span.name[:60]!r}: trace_id must be 16 bytes and span_id 8 bytes"
        if span.start_time_unix_nano == 0 or span.end_time_unix_nano < span.start_time_unix_nano:
            return f"span {span.name[:60]!r}: needs start_time_unix_nano > 0 and end >= start"
        if op in TOOL_OPS and not _tool_name(span, attrs):
            return f"span {span.name[:60]!r}: execute_tool without gen_ai.tool.name"
        return None

    def _agent(self, span: Span, attrs: dict[str, Any], by_id: dict[bytes, tuple[Span, dict[str, Any]]]) -> str | None:
        own = _str(attrs.get("gen_ai.agent.name"))
        if own is not None:
            return own
        parent, seen = bytes(span.parent_span_id), 0
        while parent and seen < 64:
            found = by_id.get(parent)
            if found is None:
                return None
            pspan, pattrs = found
            if _str(pattrs.get("gen_ai.operation.name")) in AGENT_OPS and pattrs.get("gen_ai.agent.name"):
                return _str(pattrs.get("gen_ai.agent.name"))
            parent, seen = bytes(pspan.parent_span_id), seen + 1
        return None

    def _base(self, span: Span, res: dict[str, Any], ident: Identity) -> dict[str, Any]:
        base: dict[str, Any] = {
            "trace_id": span.trace_id.hex(),
            "span_id": span.span_id.hex(),
            "span": int.from_bytes(span.span_id, "big") & _SPAN_MASK,
        }
        if span.parent_span_id:
            base["parent_span_id"] = span.parent_span_id.hex()
            base["parent_span"] = int.from_bytes(span.parent_span_id, "big") & _SPAN_MASK
        for key, name in (("service.name", "service"), ("host.name", "host"), ("container.id", "container_id"),
                          ("container.runtime.name", "container_runtime"), ("container.runtime", "container_runtime")):
            value = _str(res.get(key))
            if value is not None and name not in base:
                base[name] = value
        host = base.get("host")
        if host is not None and host != self.host_name:
            base["remote_host"] = True
        if ident.note is not None:
            base["pid_unresolved"] = ident.note
        return base

    @staticmethod
    def _container(res_container: str | None, runtime: str | None, ident: Identity) -> Container | None:
        if res_container is None or ident.cgroup_id is not None:
            return None  # the enrichment stage resolves the container from cgroup_id
        return Container(id=res_container, runtime=runtime or "unknown")

    def _event(self, kind: str, t: int, ident: Identity, base: dict[str, Any], call: ToolCall | None,
               extra: dict[str, Any]) -> Event:
        # The span's GenAI facts are the typed ai group; resource and attribution details stay in attrs.
        facts = {**base, **{k: v for k, v in extra.items() if v is not None}}
        attrs = {k: v for k, v in facts.items() if k not in AI_KEYS}
        ai = AiInfo(**{k: v for k, v in facts.items() if k in AI_KEYS})
        container = self._container(base.get("container_id"), base.get("container_runtime"), ident)
        return Event(id=new_id(t), time=t, kind=kind, source="otlp", pid=ident.pid, uid=ident.uid,
                     cgroup_id=ident.cgroup_id, pidns=ident.pidns, vpid=ident.vpid, container=container,
                     tool_call=call, attrs=attrs or None, ai=ai)

    def _tool_events(self, span: Span, attrs: dict[str, Any], agent: str | None, ident: Identity,
                     base: dict[str, Any]) -> list[Event]:
        call = ToolCall(name=_tool_name(span, attrs) or "", call_id=_str(attrs.get("gen_ai.tool.call.id")),
                        agent=agent)
        start, end = span.start_time_unix_nano, span.end_time_unix_nano
        error_type = _str(attrs.get("error.type"))
        failed = span.status.code == Status.STATUS_CODE_ERROR or error_type is not None
        common = {"operation": "execute_tool", "tool_type": _str(attrs.get("gen_ai.tool.type")),
                  "agent_id": _str(attrs.get("gen_ai.agent.id"))}
        started = self._event("tool.start", start, ident, base, call, common)
        ended = self._event("tool.end", end, ident, base, call, {
            **common, "status": "error" if failed else "ok", "duration_ns": end - start, "start_time": start,
            "error": (span.status.message[:_MAX_STR] or error_type) if failed else None,
        })
        return [started, ended]

    def _model_event(self, span: Span, op: str, attrs: dict[str, Any], agent: str | None, ident: Identity,
                     base: dict[str, Any]) -> Event:
        start, end = span.start_time_unix_nano, span.end_time_unix_nano
        failed = span.status.code == Status.STATUS_CODE_ERROR or attrs.get("error.type") is not None
        return self._event("model.call", start, ident, base, None, {
            "operation": op,
            "provider": _str(attrs.get("gen_ai.provider.name")) or _str(attrs.get("gen_ai.system")),
            "model": _str(attrs.get("gen_ai.request.model")) or _str(attrs.get("gen_ai.response.model")),
            "agent": agent,
            "agent_id": _str(attrs.get("gen_ai.agent.id")),
            "conversation_id": _str(attrs.get("gen_ai.conversation.id")),
            "input_tokens": _int(attrs.get("gen_ai.usage.input_tokens")),
            "output_tokens": _int(attrs.get("gen_ai.usage.output_tokens")),
            "duration_ns": end - start,
            "status": "error" if failed else "ok",
        })


def _tool_name(span: Span, attrs: dict[str, Any]) -> str | None:
    name = _str(attrs.get("gen_ai.tool.name"))
    if name is None and span.name.startswith("execute_tool "):
        name = span.name[len("execute_tool "):].strip()[:_MAX_STR] or None
    return name
