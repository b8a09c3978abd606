"""Only the events the join may change wait in its reorder buffer (``hold_unknown=False``).

A process that never sends an AI event, and is no sender's descendant or server, has its
kernel events released in the call that brought them, unchanged. A sender's events, those
of the children it forks while its events wait (and theirs), and those of a process a call
names as its server wait ``hold_ms`` and are attributed as before.
"""

from __future__ import annotations

from runwatch.enrich.aicontext import ToolCallJoin
from runwatch.events import Event, ToolCall
from runwatch.sdk.wire import SERVER_PID_ATTR

NS, VPID, HOST_PID = 4026532913, 7, 71123
STRANGER = 71129
MS = 1_000_000
T0 = 1_800_000_000_000_000_000


def sdk(kind: str, t: int, span: int = 1, attrs: dict[str, object] | None = None) -> Event:
    from runwatch.events import AiInfo

    return Event(id=f"{kind}{t}", time=T0 + t, kind=kind, source="sdk", pid=HOST_PID, tid=HOST_PID, pidns=NS,
                 vpid=VPID, vtid=VPID, tool_call=ToolCall(name="fetch", call_id="c-17"), ai=AiInfo(span=span),
                 attrs=attrs)


def kernel(kind: str, t: int, pid: int, vpid: int, child: int | None = None) -> Event:
    return Event(id=f"k{kind}{pid}@{t}", time=T0 + t, kind=kind, pid=pid, tid=pid, pidns=NS, vpid=vpid,
                 vtid=vpid, child_pid=child)


def ids(events: list[Event]) -> list[str]:
    return [e.id for e in events]


def test_a_process_that_sends_nothing_waits_for_nothing() -> None:
    now = [T0 + 10 * MS]
    join = ToolCallJoin(hold_ms=200, clock=lambda: now[0], hold_unknown=False)
    first = join([kernel("process.exec", 3 * MS, STRANGER, 31), kernel("net.connect", 5 * MS, STRANGER, 31),
                  kernel("file.open", 9 * MS, STRANGER, 31)])
    assert ids(first) == [f"kprocess.exec{STRANGER}@{3 * MS}", f"knet.connect{STRANGER}@{5 * MS}",
                          f"kfile.open{STRANGER}@{9 * MS}"]
    assert [e.tool_call for e in first] == [None, None, None] and [e.role for e in first] == [None, None, None]
    assert join.held() == 0 and join.stats()["passed"] == 3


def test_a_senders_events_and_its_childrens_wait_and_are_attributed() -> None:
    now = [T0 + 20 * MS]
    join = ToolCallJoin(hold_ms=200, clock=lambda: now[0], hold_unknown=False)
    child, grandchild = HOST_PID + 5, HOST_PID + 11
    out = join([
        sdk("tool.start", 1 * MS),
        kernel("net.connect", 3 * MS, HOST_PID, VPID),
        kernel("process.fork", 5 * MS, HOST_PID, VPID, child=child),
        kernel("process.exec", 7 * MS, child, 12),
        kernel("process.fork", 9 * MS, child, 12, child=grandchild),
        kernel("net.connect", 11 * MS, grandchild, 18),
        kernel("net.connect", 13 * MS, STRANGER, 31),
    ])
    assert ids(out) == [f"tool.start{1 * MS}", f"knet.connect{STRANGER}@{13 * MS}"]  # only the stranger passed
    assert join.held() == 5
    now[0] += 300 * MS
    out = join([])
    assert ids(out) == [f"knet.connect{HOST_PID}@{3 * MS}", f"kprocess.fork{HOST_PID}@{5 * MS}",
                        f"kprocess.exec{child}@{7 * MS}", f"kprocess.fork{child}@{9 * MS}",
                        f"knet.connect{grandchild}@{11 * MS}"]
    assert {e.tool_call.call_id for e in out if e.tool_call} == {"c-17"}
    assert all(e.tool_call is not None for e in out)


def test_a_named_server_waits_while_it_serves() -> None:
    now = [T0 + 20 * MS]
    join = ToolCallJoin(hold_ms=200, clock=lambda: now[0], hold_unknown=False)
    server_host, server_vpid = HOST_PID + 29, 29
    out = join([sdk("tool.start", 1 * MS, attrs={SERVER_PID_ATTR: server_vpid}),
                kernel("file.open", 4 * MS, server_host, server_vpid)])
    assert ids(out) == [f"tool.start{1 * MS}"]
    now[0] += 300 * MS
    (opened,) = join([])
    assert opened.tool_call is not None and opened.tool_call.call_id == "c-17"


def test_by_default_every_kernel_event_waits() -> None:
    now = [T0 + 10 * MS]
    join = ToolCallJoin(hold_ms=200, clock=lambda: now[0])
    assert join([kernel("net.connect", 5 * MS, STRANGER, 31)]) == []
    assert join.held() == 1
