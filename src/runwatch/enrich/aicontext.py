"""The AI-context join: kernel events get the tool call they happened inside.

:class:`ToolCallJoin` is a pipeline stage over a merged stream of kernel events and AI
events: SDK events (``source == "sdk"``, from :class:`~runwatch.sensors.inproc.SdkCollector`)
and OpenTelemetry GenAI spans (``source == "otlp"``, from the OTLP receiver). An OTLP call
whose span named its thread (``vtid`` set by the receiver) is that thread's; one without a
thread is process-wide (every thread of the process, checked after the event's own thread).

Matching key. The SDK inside a container knows only its own pid namespace: it reports the
namespace inode, its pid and its thread id *inside* that namespace. Kernel events carry the
same three values (``pidns``, ``vpid``, ``vtid``) beside the host ids, so a thread is keyed
``(pidns, vpid, vtid)`` on both sides, which holds across namespaces and needs no /proc
reads. The agent key also holds the host pid (the collector learns it from the socket's
credentials): namespace inodes are recycled, so the next container's pid 1 would otherwise
share the previous one's key. For kernel events without ``vtid`` (an older sensor object) the in-namespace thread
id is ``tid`` when the event is in this process's pid namespace, else it is read once from
``/proc/<pid>/task/<tid>/status`` (``NSpid``) and cached.

Rules, applied to each kernel event in time order:

1. **Thread inside a call**: the event's thread has a tool call open at the event's time
   (``start <= time <= end``): it gets the innermost such call. Calls open on the thread are
   looked up first, then the process-wide ones.
2. **Ambiguous**: if the open calls of that lookup are not one chain of nested calls
   (asyncio tasks interleaving on one thread: the kernel sees threads, not tasks; or several
   process-wide OTLP calls at once), the join cannot tell which call the event belongs to.
   It names none: ``tool_call`` stays unset, ``ai.candidates`` lists the innermost open call
   of every chain (oldest first) and ``ai.tool_call_candidates`` their number.
3. **Spawned inside a call**: a ``process.fork`` made by a thread inside a call gives the
   child the call for the child's whole life (until its ``process.exit``), and the child's
   own children inherit it, transitively. A fork made while the calls were ambiguous gives
   the child (and its descendants) the same candidates, never one of them.
4. **Unattested**: an *instrumented* process is one that has sent any SDK message; from the
   time of its first message on, its activity outside any call (and that of processes it
   spawned outside any call) gets ``unattested=True`` if the kind is in ``activity_kinds``
   (exec, network, DNS, file, privilege).
5. **Served by another process**: a ``tool.start`` that names the process doing the call's
   work (``attrs["server_pid"]``, e.g. the MCP stdio server the client started; a pid in the
   agent's pid namespace) makes that process's events, and those of its descendants, inside
   ``[start, end]`` the call's, whatever the process runs and whether or not it is
   instrumented (its own instrumented calls, rule 1, come first). Several open calls served
   by one process: as in rule 2, no tool is named and every event lists them all.
6. **Role**: AI events, the instrumented process's own events and those of the processes it
   spawned get ``role = "agent"`` unless their container declares another role.

Ordering. SDK and kernel events come through different sources with different latencies,
so kernel events are held in a reorder buffer until ``hold_ms`` after their time (by the
``clock``, epoch ns), then attributed in time order; SDK events update state on arrival and
pass through at once. An SDK message that arrives after kernel events it should have
applied to were released is counted as ``late_sdk``. Call :meth:`ToolCallJoin.flush` at the
end of a run, and call the stage with an empty batch now and then so held events leave on
time when nothing else arrives.

With ``hold_unknown=False`` only the events the join may change wait: those of a process
that has sent an AI event, of a process a call names as its server, of a descendant the join
attributes, and of a child forked while its parent's events were held. Every other kernel
event leaves at once, unchanged: a workload that sends nothing waits for nothing. (OTLP
spans arrive only after they end, so a process's first spans cannot be waited for this
way: with the OTLP receiver on, the session holds every event.)

Memory is bounded: ``max_processes`` instrumented processes, ``max_calls`` tracked calls,
``max_lineage`` attributed descendants, ``max_held`` held events; evictions are counted.
Not thread safe: the pipeline's consumer thread owns it.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from runwatch import eventkinds
from runwatch.enrich.roles import AGENT
from runwatch.events import AiInfo, Event, ToolCall
from runwatch.host import procfs
from runwatch.sdk.wire import SERVER_PID_ATTR

ACTIVITY_KINDS: frozenset[str] = eventkinds.activity_kinds()
"""Kinds that count as activity for ``unattested`` (not fork/exit bookkeeping)."""

AgentKey = tuple[int, int, int]  # (pid namespace inode, pid inside it, host pid)

PROCESS_WIDE = -1
"""Thread key of calls reported without a thread (OTLP spans): they cover every thread of
the process, checked after the event's own thread."""

AI_SOURCES: frozenset[str] = frozenset({"sdk", "otlp"})
"""Sources whose events open and close calls (applied on arrival, never held)."""


@dataclass(eq=False)
class _Call:
    tool: ToolCall
    agent: AgentKey
    vtid: int
    span: int
    parent: int | None
    start: int
    end: int | None = None
    served: tuple[int, int] | None = None  # (pidns, vpid) of the process doing the call's work


@dataclass(eq=False)
class _Agent:
    first: int  # epoch ns of its first SDK message
    threads: dict[int, list[_Call]] = field(default_factory=dict)
    exited: int | None = None


class _Unattested:
    """Lineage marker: spawned by an instrumented process outside any call."""


@dataclass(frozen=True, eq=False)
class _Ambiguous:
    """Lineage marker: spawned while several unrelated calls were open (oldest first)."""

    tools: tuple[ToolCall, ...]


UNATTESTED = _Unattested()
_Origin = _Call | _Ambiguous | _Unattested


class ToolCallJoin:
    """Sets ``Event.tool_call`` / ``Event.unattested`` on kernel events (see the module docstring)."""

    def __init__(self, hold_ms: float = 200.0, *, keep_closed_s: float = 5.0, max_processes: int = 4096,
                 max_calls: int = 65536, max_lineage: int = 65536, max_held: int = 1 << 20,
                 activity_kinds: frozenset[str] = ACTIVITY_KINDS, clock: Callable[[], int] = time.time_ns,
                 hold_unknown: bool = True) -> None:
        self.hold_ns = int(hold_ms * 1e6)
        self.hold_unknown = hold_unknown
        self.keep_closed_ns = int(keep_closed_s * 1e9)
        self.max_processes, self.max_calls = max_processes, max_calls
        self.max_lineage, self.max_held = max_lineage, max_held
        self.activity_kinds = activity_kinds
        self.clock = clock
        self._agents: OrderedDict[AgentKey, _Agent] = OrderedDict()
        self._calls: OrderedDict[tuple[AgentKey, int], _Call] = OrderedDict()  # by (agent, span), oldest first
        self._lineage: OrderedDict[int, _Origin] = OrderedDict()  # host pid -> origin
        self._served: dict[tuple[int, int], list[_Call]] = {}  # (pidns, vpid) of a serving process -> its calls
        self._served_kin: OrderedDict[int, tuple[int, int]] = OrderedDict()  # host pid -> serving ancestor's key
        self._held: list[tuple[int, int, Event]] = []
        self._followed: OrderedDict[int, None] = OrderedDict()  # host pids whose events wait (hold_unknown off)
        self._seq = itertools.count()
        self._watermark = 0
        self._last_prune = 0
        self._tid_cache: OrderedDict[tuple[int, int], int | None] = OrderedDict()
        self._own_pidns = procfs.pidns("self")
        self.counters: dict[str, int] = {
            "attributed": 0, "unattested": 0, "late_sdk": 0, "thread_unknown": 0, "ambiguous": 0,
            "evicted_processes": 0, "evicted_calls": 0, "evicted_lineage": 0, "forced_releases": 0,
            "orphan_ends": 0, "reused_keys": 0, "passed": 0,
        }

    # -- the stage ----------------------------------------------------------------------------

    def __call__(self, batch: list[Event]) -> list[Event]:
        out: list[Event] = []
        for e in batch:  # the AI events first: they decide which kernel events of the batch wait
            if e.source in AI_SOURCES:
                self._apply_sdk(e)
                if e.role is None:
                    e.role = AGENT
                out.append(e)
        for e in batch:
            if e.source in AI_SOURCES:
                continue
            if self.hold_unknown or self._concerns(e):
                heapq.heappush(self._held, (e.time, next(self._seq), e))
            else:
                self.counters["passed"] += 1
                out.append(e)
        cutoff = self.clock() - self.hold_ns
        self._release(cutoff, out)
        while len(self._held) > self.max_held:
            self.counters["forced_releases"] += 1
            out.append(self._attribute(heapq.heappop(self._held)[2]))
        return out

    def flush(self) -> list[Event]:
        """Release every held event now (end of run)."""
        out: list[Event] = []
        while self._held:
            out.append(self._attribute(heapq.heappop(self._held)[2]))
        return out

    def held(self) -> int:
        """Kernel events currently waiting in the reorder buffer."""
        return len(self._held)

    def stats(self) -> dict[str, int]:
        """Counters plus the sizes of the bounded tables."""
        return {**self.counters, "held": len(self._held), "processes": len(self._agents),
                "calls": len(self._calls), "lineage": len(self._lineage)}

    def _release(self, cutoff: int, out: list[Event]) -> None:
        held = self._held
        if cutoff > self._watermark:
            self._watermark = cutoff
        while held and held[0][0] <= cutoff:
            out.append(self._attribute(heapq.heappop(held)[2]))
        if cutoff - self._last_prune > 1_000_000_000:
            self._prune(cutoff)
            self._last_prune = cutoff

    def _follow(self, pid: int) -> None:
        self._followed[pid] = None
        self._followed.move_to_end(pid)
        while len(self._followed) > self.max_lineage:
            self._followed.popitem(last=False)

    def _concerns(self, e: Event) -> bool:
        """Whether the join may change ``e`` (hold_unknown off): see the module docstring.
        A fork it holds makes the child's events wait too."""
        pid = e.pid
        mine = (pid in self._followed or pid in self._lineage or pid in self._served_kin
                or (bool(self._served) and (e.pidns, e.vpid) in self._served))
        if mine and e.kind == "process.fork" and e.child_pid:
            self._follow(e.child_pid)
        return mine

    # -- SDK side -----------------------------------------------------------------------------

    def _agent(self, key: AgentKey, t: int) -> _Agent:
        agent = self._agents.get(key)
        if agent is None:
            agent = self._agents[key] = _Agent(first=t)
            while len(self._agents) > self.max_processes:
                old_key, old = self._agents.popitem(last=False)
                self._drop_agent_calls(old_key, old)
                self.counters["evicted_processes"] += 1
        elif t < agent.first:
            agent.first = t
        return agent

    def _apply_sdk(self, e: Event) -> None:
        if e.pidns is None or e.vpid is None:
            return
        key = (e.pidns, e.vpid, e.pid)
        old = self._agents.get(key)
        if old is not None and old.exited is not None and e.time > old.exited:
            # A new process behind a reused key: pid-namespace inodes are recycled, so the next
            # container's pid 1 has the same key as the previous one. Forget the old agent.
            self._drop_agent_calls(key, self._agents.pop(key))
            self.counters["reused_keys"] += 1
        agent = self._agent(key, e.time)
        if e.pid and not self.hold_unknown:
            self._follow(e.pid)
        if e.time <= self._watermark:
            self.counters["late_sdk"] += 1
        ai = e.ai
        if e.kind not in ("tool.start", "tool.end") or e.tool_call is None or ai is None:
            return
        span = ai.span
        if span is None:
            return
        vtid = e.vtid if e.vtid is not None else (e.tid or PROCESS_WIDE)
        call = self._calls.get((key, span))
        if e.kind == "tool.start":
            if call is None:
                call = _Call(e.tool_call, key, vtid, span, ai.parent_span, e.time)
                self._add_call(agent, call)
                self._add_served(e, call)
            return
        if call is None:  # the start was lost or evicted: rebuild the interval from the end
            start = ai.start_time
            if start is None:
                self.counters["orphan_ends"] += 1
                return
            call = _Call(e.tool_call, key, vtid, span, None, start)
            self._add_call(agent, call)
        call.end = e.time

    def _add_call(self, agent: _Agent, call: _Call) -> None:
        calls = agent.threads.setdefault(call.vtid, [])
        calls.append(call)
        if len(calls) > 1 and calls[-2].start > call.start:
            calls.sort(key=lambda c: c.start)
        self._calls[(call.agent, call.span)] = call
        while len(self._calls) > self.max_calls:
            _, old = self._calls.popitem(last=False)
            self._unlink_call(old)
            self.counters["evicted_calls"] += 1

    def _add_served(self, e: Event, call: _Call) -> None:
        server = e.attrs.get(SERVER_PID_ATTR) if e.attrs else None
        if isinstance(server, int) and not isinstance(server, bool) and server > 0:
            call.served = (call.agent[0], server)
            self._served.setdefault(call.served, []).append(call)

    def _unserve(self, call: _Call) -> None:
        key = call.served
        calls = self._served.get(key) if key is not None else None
        if key is not None and calls is not None:
            with contextlib.suppress(ValueError):
                calls.remove(call)
            if not calls:
                del self._served[key]

    def _unlink_call(self, call: _Call) -> None:
        self._unserve(call)
        agent = self._agents.get(call.agent)
        if agent is None:
            return
        calls = agent.threads.get(call.vtid)
        if calls is not None:
            with contextlib.suppress(ValueError):
                calls.remove(call)
            if not calls:
                del agent.threads[call.vtid]

    def _drop_agent_calls(self, key: AgentKey, agent: _Agent) -> None:
        for calls in agent.threads.values():
            for call in calls:
                self._calls.pop((key, call.span), None)
                self._unserve(call)
        agent.threads.clear()

    def _prune(self, cutoff: int) -> None:
        """Forget calls closed, and agents exited, more than ``keep_closed_s`` before ``cutoff``."""
        horizon = cutoff - self.keep_closed_ns
        stale = [c for c in self._calls.values() if c.end is not None and c.end < horizon]
        for call in stale:
            del self._calls[(call.agent, call.span)]
            self._unlink_call(call)
        gone = [k for k, a in self._agents.items() if a.exited is not None and a.exited < horizon]
        for key in gone:
            self._drop_agent_calls(key, self._agents.pop(key))

    # -- kernel side --------------------------------------------------------------------------

    def _vtid(self, e: Event) -> int | None:
        if e.vtid is not None:
            return e.vtid
        if not e.tid:
            return None
        if self._own_pidns is not None and e.pidns == self._own_pidns:
            return e.tid
        key = (e.pid, e.tid)
        if key not in self._tid_cache:
            self._tid_cache[key] = procfs.ns_pid(e.pid, e.tid)
            if len(self._tid_cache) > 16384:
                self._tid_cache.popitem(last=False)
        return self._tid_cache[key]

    def _thread_call(self, agent: _Agent, vtid: int, t: int) -> list[_Call]:
        """The innermost open call of each chain of nested calls open on ``vtid`` at ``t``, oldest first.

        One entry: the event's call. Several: unrelated calls were open (ambiguous). None: no call.
        """
        calls = agent.threads.get(vtid)
        if not calls:
            return []
        open_calls = [c for c in calls if c.start <= t and (c.end is None or t <= c.end)]
        if len(open_calls) < 2:
            return open_calls
        by_span = {c.span: c for c in calls}
        enclosing: set[int] = set()  # spans of open calls that enclose another open call
        for c in open_calls:
            span, seen = c.parent, 0
            while span is not None and span not in enclosing and seen < 64:
                enclosing.add(span)
                parent = by_span.get(span)
                span, seen = (parent.parent if parent is not None else None), seen + 1
        return [c for c in open_calls if c.span not in enclosing]

    def _open_calls(self, agent: _Agent, e: Event) -> tuple[list[_Call], bool]:
        """(innermost open calls for ``e``: its thread's, else the process-wide ones; whether its thread is known)."""
        vtid = self._vtid(e)
        found: list[_Call] = []
        if vtid is None:
            self.counters["thread_unknown"] += 1
        else:
            found = self._thread_call(agent, vtid, e.time)
        if not found and PROCESS_WIDE in agent.threads:
            return self._thread_call(agent, PROCESS_WIDE, e.time), True
        return found, vtid is not None

    def _served_calls(self, e: Event) -> list[_Call]:
        """The calls a serving process (or a descendant of one) works for at ``e.time``, oldest first.

        Also records the children a serving process (or its descendant) forks, so their later
        events resolve to the same serving process."""
        if not self._served:
            return []
        key: tuple[int, int] | None = None
        if e.pidns is not None and e.vpid is not None and (e.pidns, e.vpid) in self._served:
            key = (e.pidns, e.vpid)
        else:
            key = self._served_kin.get(e.pid)
        if key is None:
            return []
        if e.kind == "process.fork" and e.child_pid:
            self._served_kin[e.child_pid] = key
            while len(self._served_kin) > self.max_lineage:
                self._served_kin.popitem(last=False)
        elif e.kind == "process.exit":
            self._served_kin.pop(e.pid, None)
        t = e.time
        return sorted((c for c in self._served.get(key, ()) if c.start <= t and (c.end is None or t <= c.end)),
                      key=lambda c: c.start)

    def _attribute(self, e: Event) -> Event:
        t = e.time
        origin: _Origin | None = None
        agent = self._agents.get((e.pidns, e.vpid, e.pid)) if e.pidns is not None and e.vpid is not None else None
        thread_known = False
        if agent is not None:
            found, thread_known = self._open_calls(agent, e)
            if len(found) == 1:
                origin = found[0]
            elif found:
                origin = _Ambiguous(tuple(c.tool for c in found))
        served = self._served_calls(e)
        if origin is None and served:
            origin = served[0] if len(served) == 1 else _Ambiguous(tuple(c.tool for c in served))
        if origin is None:
            origin = self._lineage.get(e.pid)
        if origin is None and agent is not None and thread_known and t >= agent.first:
            origin = UNATTESTED
        if e.role is None and (agent is not None or origin is not None):
            e.role = AGENT
        if isinstance(origin, _Call):
            if e.tool_call is None:
                e.tool_call = origin.tool
            self.counters["attributed"] += 1
        elif isinstance(origin, _Ambiguous):
            if e.tool_call is None:  # a source that knew its call (the audit hook) keeps it
                self._mark_ambiguous(e, origin.tools)
        elif origin is UNATTESTED and e.kind in self.activity_kinds:
            e.unattested = True
            self.counters["unattested"] += 1
        if e.kind == "process.fork" and e.child_pid:
            if origin is not None:
                self._lineage[e.child_pid] = origin
                self._lineage.move_to_end(e.child_pid)
                while len(self._lineage) > self.max_lineage:
                    self._lineage.popitem(last=False)
                    self.counters["evicted_lineage"] += 1
        elif e.kind == "process.exit":
            self._lineage.pop(e.pid, None)
            self._followed.pop(e.pid, None)
            if agent is not None and e.vpid is not None:
                agent.exited = t
        return e

    def _mark_ambiguous(self, e: Event, tools: tuple[ToolCall, ...]) -> None:
        self.counters["ambiguous"] += 1
        if e.ai is None:
            e.ai = AiInfo()
        e.ai.tool_call_candidates = len(tools)
        e.ai.candidates = list(tools)
