"""The join on recorded-style event streams: ordering, nesting, lineage, unattested, bounds."""

from __future__ import annotations

import os
import threading

from runwatch.enrich.aicontext import ToolCallJoin
from runwatch.events import AiInfo, Event, ToolCall

NS, AGENT, HOST_PID = 4026532999, 1, 70001  # a container's pid namespace, its pid 1, its host pid
MS = 1_000_000
T0 = 1_800_000_000_000_000_000


class Clock:
    """A settable epoch-ns clock for the reorder buffer."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def join(hold_ms: float = 200.0, **kw: int) -> tuple[ToolCallJoin, Clock]:
    clock = Clock()
    return ToolCallJoin(hold_ms=hold_ms, clock=clock, **kw), clock  # type: ignore[arg-type]


def sdk(kind: str, t: int, span: int, name: str = "run_shell", vtid: int = AGENT, parent: int | None = None,
        vpid: int = AGENT, start: int | None = None) -> Event:
    ai = AiInfo(span=span, parent_span=parent, start_time=start)
    return Event(id=f"s{span}{kind}", time=T0 + t, kind=kind, source="sdk", pid=HOST_PID + vpid - AGENT,
                 pidns=NS, vpid=vpid, vtid=vtid, tool_call=ToolCall(name=name, call_id=f"c-{span}"), ai=ai)


def k(kind: str, t: int, pid: int = HOST_PID, vpid: int = AGENT, vtid: int | None = AGENT,
      child: int | None = None) -> Event:
    return Event(id=f"k{kind}{t}{pid}", time=T0 + t, kind=kind, pid=pid, tid=pid, pidns=NS, vpid=vpid,
                 vtid=vtid, child_pid=child)


def run(j: ToolCallJoin, clock: Clock, *batches: list[Event]) -> list[Event]:
    out: list[Event] = []
    for batch in batches:
        out.extend(j(batch))
    clock.now += 10_000 * MS
    out.extend(j([]))
    return out


def test_a_tool_start_arriving_after_the_kernel_event_still_applies() -> None:
    j, clock = join()
    fork, exec_ = k("process.fork", 2 * MS, child=80001), k("process.exec", 3 * MS, pid=80001, vpid=40)
    clock.now = T0 + 50 * MS
    assert j([fork, exec_]) == []  # held
    assert j.held() == 2
    clock.now = T0 + 150 * MS
    j([sdk("tool.start", 1 * MS, 1), sdk("tool.end", 5 * MS, 1)])
    out = run(j, clock)
    assert [e.tool_call.call_id if e.tool_call else None for e in out] == ["c-1", "c-1"]
    assert j.stats()["late_sdk"] == 0


def test_sdk_after_release_is_late_and_counted() -> None:
    j, clock = join(hold_ms=100)
    clock.now = T0 + 500 * MS
    (e,) = j([k("net.connect", 3 * MS)])
    assert e.tool_call is None and e.unattested is None  # not an instrumented process yet
    j([sdk("tool.start", 1 * MS, 1)])
    assert j.stats()["late_sdk"] == 1


def test_nested_calls_give_the_innermost_and_interleaved_tasks_name_no_tool() -> None:
    j, clock = join()
    events = run(j, clock, [
        sdk("tool.start", 1 * MS, 1, "outer"), sdk("tool.start", 2 * MS, 2, "inner", parent=1),
        k("file.open", 3 * MS), sdk("tool.end", 4 * MS, 2, "inner"), k("file.open", 5 * MS),
        sdk("tool.end", 6 * MS, 1, "outer"),
        # two asyncio tasks on one thread: neither is the other's parent
        sdk("tool.start", 10 * MS, 3, "task_a"), sdk("tool.start", 11 * MS, 4, "task_b"),
        k("net.connect", 12 * MS), sdk("tool.end", 13 * MS, 3, "task_a"), sdk("tool.end", 14 * MS, 4, "task_b"),
    ])
    kernel = [e for e in events if e.source == "kernel"]
    # Interleaved tasks: the join cannot tell which task the connect belongs to, so it names neither.
    assert [e.tool_call.name if e.tool_call else None for e in kernel] == ["inner", "outer", None]
    assert kernel[0].attrs is None and kernel[1].attrs is None
    assert kernel[0].ai is None and kernel[1].ai is None
    assert kernel[2].ai == AiInfo(tool_call_candidates=2, candidates=[ToolCall("task_a", "c-3"),
                                                                      ToolCall("task_b", "c-4")])
    assert kernel[2].unattested is None
    assert j.stats()["ambiguous"] == 1


def test_threads_are_kept_apart() -> None:
    j, clock = join()
    events = run(j, clock, [
        sdk("tool.start", 1 * MS, 1, "a", vtid=7), sdk("tool.start", 1 * MS, 2, "b", vtid=9),
        k("net.connect", 2 * MS, vtid=7), k("net.connect", 3 * MS, vtid=9), k("net.connect", 4 * MS, vtid=11),
        sdk("tool.end", 5 * MS, 1, "a", vtid=7), sdk("tool.end", 5 * MS, 2, "b", vtid=9),
    ])
    kernel = [e for e in events if e.source == "kernel"]
    assert [e.tool_call.name if e.tool_call else None for e in kernel] == ["a", "b", None]
    assert [e.unattested for e in kernel] == [None, None, True]


def test_descendants_keep_the_call_for_their_lifetime_only() -> None:
    j, clock = join()
    child, grandchild, reuse = 80001, 80002, 80001
    events = run(j, clock, [
        sdk("tool.start", 1 * MS, 1), k("process.fork", 2 * MS, child=child),
        sdk("tool.end", 3 * MS, 1),
        k("process.fork", 4 * MS, pid=child, vpid=40, child=grandchild),  # after the call ended
        k("process.exec", 5 * MS, pid=grandchild, vpid=41), k("net.connect", 6 * MS, pid=grandchild, vpid=41),
        k("process.exit", 7 * MS, pid=child, vpid=40),
        k("process.exec", 8 * MS, pid=reuse, vpid=42),  # pid reused by an unrelated process
    ])
    kernel = [e for e in events if e.source == "kernel"]
    assert [e.tool_call.call_id if e.tool_call else None for e in kernel] == ["c-1"] * 5 + [None]
    assert kernel[-1].unattested is None


def test_unattested_covers_the_agent_and_what_it_spawns_outside_calls() -> None:
    j, clock = join()
    events = run(j, clock, [
        k("process.exec", 1 * MS),  # before the agent's first SDK message: not judged
        sdk("tool.start", 2 * MS, 1), sdk("tool.end", 3 * MS, 1),
        k("dns.query", 4 * MS), k("process.fork", 5 * MS, child=80005),
        k("process.exec", 6 * MS, pid=80005, vpid=50), k("process.exit", 7 * MS, pid=80005, vpid=50),
    ])
    kernel = {e.kind + str(e.pid): e for e in events if e.source == "kernel"}
    assert kernel[f"process.exec{HOST_PID}"].unattested is None
    assert kernel[f"dns.query{HOST_PID}"].unattested is True
    assert kernel[f"process.fork{HOST_PID}"].unattested is None  # bookkeeping, not activity
    assert kernel["process.exec80005"].unattested is True
    assert kernel["process.exit80005"].unattested is None
    assert j.stats()["unattested"] == 2


def test_a_lost_start_is_rebuilt_from_the_end() -> None:
    j, clock = join()
    events = run(j, clock, [k("file.open", 2 * MS), sdk("tool.end", 3 * MS, 1, start=T0 + 1 * MS)])
    (e,) = [e for e in events if e.source == "kernel"]
    assert e.tool_call == ToolCall(name="run_shell", call_id="c-1")


def test_memory_is_bounded_and_evictions_counted() -> None:
    j, clock = join(max_calls=5, max_processes=3, max_lineage=7)
    batch: list[Event] = []
    for i in range(23):  # 23 calls opened on one thread, each with a fork inside
        batch.append(sdk("tool.start", i * MS, i + 1))
        batch.append(k("process.fork", i * MS + 1, child=90000 + i))
    run(j, clock, batch)
    stats = j.stats()
    assert (stats["calls"], stats["evicted_calls"]) == (5, 18)
    assert (stats["lineage"], stats["evicted_lineage"]) == (7, 16)
    run(j, clock, [sdk("tool.start", 1 * MS, 1, vpid=vpid) for vpid in range(2, 7)])
    stats = j.stats()
    assert (stats["processes"], stats["evicted_processes"]) == (3, 3)
    assert stats["calls"] == 3  # the evicted agent's calls went with it


def test_flush_releases_everything_in_time_order() -> None:
    j, _ = join(hold_ms=10_000)
    assert j([k("file.open", 9 * MS), k("file.open", 3 * MS), k("file.open", 5 * MS)]) == []
    assert [e.time - T0 for e in j.flush()] == [3 * MS, 5 * MS, 9 * MS]
    assert j.held() == 0


def test_kernel_events_without_vtid_use_the_host_tid_in_this_namespace() -> None:
    j, clock = join()
    ns, me, tid = os.stat("/proc/self/ns/pid").st_ino, os.getpid(), threading.get_native_id()
    start = Event(id="s", time=T0 + MS, kind="tool.start", source="sdk", pid=me, pidns=ns, vpid=me, vtid=tid,
                  tool_call=ToolCall(name="local"), ai=AiInfo(span=1))
    old = Event(id="k", time=T0 + 2 * MS, kind="net.connect", pid=me, tid=tid, pidns=ns, vpid=me)
    events = run(j, clock, [start, old])
    assert events[-1].tool_call == ToolCall(name="local")
