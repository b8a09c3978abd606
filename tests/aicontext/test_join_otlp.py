"""OTLP spans carry no thread: their tool calls cover the whole process (process-wide calls)."""

from __future__ import annotations

from runwatch.enrich.aicontext import ToolCallJoin
from runwatch.events import AiInfo, Event, ToolCall

NS, VPID, HOST_PID = 4026532777, 7, 81007
MS = 1_000_000
T0 = 1_800_000_000_000_000_000


def otlp(kind: str, t: int, span: int, name: str) -> Event:
    # What the OTLP receiver emits: host pid resolved, pid namespace view, no thread ids.
    return Event(id=f"o{span}{kind}", time=T0 + t, kind=kind, source="otlp", pid=HOST_PID, tid=0, pidns=NS,
                 vpid=VPID, tool_call=ToolCall(name=name, call_id=f"call-{span}", agent="otel-agent"),
                 ai=AiInfo(span=span))


def kernel(kind: str, t: int, vtid: int, pid: int = HOST_PID, vpid: int = VPID, child: int | None = None) -> Event:
    return Event(id=f"k{kind}{t}{vtid}", time=T0 + t, kind=kind, pid=pid, tid=pid + vtid, pidns=NS, vpid=vpid,
                 vtid=vtid, child_pid=child)


def test_kernel_events_inside_an_otlp_span_get_its_tool_call_on_any_thread() -> None:
    now = [T0]
    j = ToolCallJoin(hold_ms=100, clock=lambda: now[0])
    events = [
        kernel("net.connect", 1 * MS, vtid=VPID),  # before any span: not attributed, not unattested yet
        otlp("tool.start", 10 * MS, span=23, name="web_search"),
        kernel("net.connect", 11 * MS, vtid=VPID),
        kernel("process.fork", 12 * MS, vtid=VPID + 3, child=HOST_PID + 100),
        kernel("process.exec", 13 * MS, vtid=41, pid=HOST_PID + 100, vpid=41),
        otlp("tool.end", 20 * MS, span=23, name="web_search"),
        kernel("net.connect", 30 * MS, vtid=VPID + 3),  # after the span: outside any call
    ]
    out = j(events)
    now[0] += 10_000 * MS
    out += j([])
    got = {e.id: e for e in out}
    connect_in, fork, child_exec = got[f"knet.connect{11 * MS}{VPID}"], got[f"kprocess.fork{12 * MS}{VPID + 3}"], \
        got[f"kprocess.exec{13 * MS}41"]
    assert connect_in.tool_call == ToolCall(name="web_search", call_id="call-23", agent="otel-agent")
    assert fork.tool_call is not None and fork.tool_call.call_id == "call-23"
    assert child_exec.tool_call is not None and child_exec.tool_call.call_id == "call-23"  # by lineage
    after = got[f"knet.connect{30 * MS}{VPID + 3}"]
    assert after.tool_call is None and after.unattested is True
    before = got[f"knet.connect{1 * MS}{VPID}"]
    assert before.tool_call is None and before.unattested is None
    assert j.stats()["attributed"] == 3


def test_a_reused_pid_namespace_key_starts_a_new_agent() -> None:
    """Namespace inodes are recycled: the next container's pid 1 must not inherit old calls."""
    now = [T0]
    j = ToolCallJoin(hold_ms=100, clock=lambda: now[0])

    def sdk(kind: str, t: int, span: int, name: str, pid: int) -> Event:
        return Event(id=f"s{t}{kind}", time=T0 + t, kind=kind, source="sdk", pid=pid, tid=pid, pidns=NS,
                     vpid=1, vtid=1, tool_call=ToolCall(name=name, call_id=f"{name}-{span}"), ai=AiInfo(span=span))

    nxt = HOST_PID + 50
    first = [sdk("tool.start", 1 * MS, 1, "run_shell", HOST_PID), kernel("process.exit", 5 * MS, vtid=1, vpid=1)]
    # The first container's run_shell never ended (killed); the next container gets the recycled
    # namespace inode, is pid 1 in it again and numbers its first span 1 again.
    second = [sdk("tool.start", 10 * MS, 1, "http_get", nxt), kernel("net.connect", 11 * MS, vtid=1, vpid=1, pid=nxt),
              sdk("tool.end", 12 * MS, 1, "http_get", nxt)]
    out = j(first) + j(second)
    now[0] += 10_000 * MS
    out += j([])
    connect = next(e for e in out if e.kind == "net.connect")
    assert connect.tool_call is not None and connect.tool_call.call_id == "http_get-1"
    assert j.stats()["attributed"] == 2  # the first container's exit (inside run_shell) and the connect
