"""The join knows agents: an instrumented process and what it spawns get ``role = "agent"``;
a role its container declares is kept; unrelated processes get none."""

from __future__ import annotations

from runwatch.enrich.aicontext import ToolCallJoin
from runwatch.events import Container, Event, ToolCall

NS, VPID, HOST_PID = 4026532901, 9, 82311
MS = 1_000_000
T0 = 1_800_000_000_000_000_000


def sdk(t: int, pid: int = HOST_PID) -> Event:
    return Event(id=f"s{t}", time=T0 + t, kind="tool.start", source="sdk", pid=pid, tid=pid, pidns=NS, vpid=VPID,
                 vtid=VPID, tool_call=ToolCall(name="search", call_id=f"c{t}"))


def kernel(kind: str, t: int, pid: int, vpid: int, child: int | None = None,
           container: Container | None = None) -> Event:
    role = container.role if container is not None else None  # what the enrichment stage set
    return Event(id=f"k{kind}{t}", time=T0 + t, kind=kind, pid=pid, tid=pid, pidns=NS, vpid=vpid, vtid=vpid,
                 child_pid=child, container=container, role=role)


def run(events: list[Event]) -> dict[str, Event]:
    now = [T0]
    j = ToolCallJoin(hold_ms=50, clock=lambda: now[0])
    out = j(events)
    now[0] += 60_000 * MS
    out += j([])
    return {e.id: e for e in out}


def test_the_agent_its_children_and_its_ai_events_are_agents_and_nothing_else_is() -> None:
    got = run([
        sdk(5 * MS),
        kernel("net.connect", 7 * MS, HOST_PID, VPID),
        kernel("process.fork", 9 * MS, HOST_PID, VPID, child=HOST_PID + 23),  # inside the open call
        kernel("process.exec", 11 * MS, HOST_PID + 23, 23),
        kernel("process.exec", 13 * MS, HOST_PID + 41, 41),  # a stranger in the same namespace
    ])
    assert got[f"s{5 * MS}"].role == "agent"
    assert got[f"knet.connect{7 * MS}"].role == "agent"
    assert got[f"kprocess.exec{11 * MS}"].role == "agent"  # spawned by the agent
    assert got[f"kprocess.exec{13 * MS}"].role is None


def test_a_declared_container_role_wins() -> None:
    box = Container(id="c" * 64, runtime="runc", role="model-server")
    got = run([sdk(5 * MS), kernel("net.connect", 7 * MS, HOST_PID, VPID, container=box)])
    assert got[f"knet.connect{7 * MS}"].role == "model-server"
