"""The join's served-process rule: a process named in a call's tool.start works for that call while it is open."""

from __future__ import annotations

from runwatch.enrich.aicontext import ToolCallJoin
from runwatch.events import AiInfo, Event, ToolCall

NS, AGENT, SERVER, CHILD, OTHER = 4026531836, 230, 231, 232, 233
CALL_A, CALL_B = ToolCall("probe", "mcp-a", "node-probe"), ToolCall("probe", "mcp-b", "node-probe")


def _sdk(kind: str, t: int, span: int, call: ToolCall, server: int | None = SERVER) -> Event:
    return Event(id=f"s{t}", time=t, kind=kind, source="sdk", pid=AGENT, tid=AGENT, pidns=NS, vpid=AGENT,
                 vtid=AGENT, tool_call=call, ai=AiInfo(span=span),
                 attrs={"server_pid": server} if kind == "tool.start" and server else None)


def _kernel(kind: str, t: int, pid: int, child: int | None = None) -> Event:
    return Event(id=f"k{t}", time=t, kind=kind, source="kernel", pid=pid, tid=pid, pidns=NS, vpid=pid, vtid=pid,
                 child_pid=child)


def test_server_and_descendants_work_for_the_open_call_only() -> None:
    join = ToolCallJoin(hold_ms=0, clock=lambda: 0)
    join([Event(id="h", time=1, kind="sensor.notice", source="sdk", pid=AGENT, tid=AGENT, pidns=NS, vpid=AGENT,
                vtid=AGENT)])  # the agent announced itself
    join([_kernel("process.fork", 10, AGENT, SERVER)])  # the server starts before any call
    join([_sdk("tool.start", 100, 1, CALL_A), _sdk("tool.end", 200, 1, CALL_A),
          _sdk("tool.start", 300, 2, CALL_B), _sdk("tool.end", 400, 2, CALL_B)])
    got = join([_kernel("process.exec", 50, SERVER), _kernel("process.fork", 60, SERVER, CHILD),
                _kernel("process.exec", 150, SERVER), _kernel("process.exec", 170, CHILD),
                _kernel("process.exec", 250, SERVER), _kernel("process.exec", 350, CHILD),
                _kernel("process.exec", 360, OTHER)])
    got += join.flush()
    by_time = {e.time: e for e in got if e.source == "kernel"}
    assert [(t, by_time[t].tool_call) for t in (10, 50, 60, 150, 170, 250, 350, 360)] == [
        (10, None), (50, None), (60, None), (150, CALL_A), (170, CALL_A), (250, None), (350, CALL_B), (360, None)]
    assert by_time[50].unattested is True and by_time[250].unattested is True  # spawned outside a call
    assert join.stats()["attributed"] == 3


def test_overlapping_calls_served_by_one_process_name_none_and_list_both() -> None:
    join = ToolCallJoin(hold_ms=0, clock=lambda: 0)
    join([_sdk("tool.start", 100, 1, CALL_A), _sdk("tool.start", 120, 2, CALL_B), _sdk("tool.end", 200, 1, CALL_A)])
    got = join([_kernel("process.exec", 130, SERVER), _kernel("process.fork", 140, SERVER, CHILD),
                _kernel("process.exec", 150, CHILD), _kernel("process.exec", 210, SERVER)]) + join.flush()
    both = AiInfo(tool_call_candidates=2, candidates=[CALL_A, CALL_B])
    assert [(e.time, e.tool_call, e.ai) for e in got if e.source == "kernel"] == [
        (130, None, both), (140, None, both), (150, None, both), (210, CALL_B, None)]
