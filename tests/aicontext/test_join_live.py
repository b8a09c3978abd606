"""The join on real kernel events from real runc containers running the SDK in their own pid namespace."""

from __future__ import annotations

import os
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from runwatch.containers.oci import Bind
from runwatch.events import Event, ToolCall
from runwatch.sensors.replay import write_recording

pytestmark = pytest.mark.kernel

SOCKET_IN_CONTAINER = "/run/runwatch-sdk/sdk.sock"
RECORD_ENV = "RUNWATCH_RECORD_REPLAY_FIXTURES"
"""Set to 1 to (re)write the raw recording replayed by test_join_recorded.py."""
RECORDING = Path(__file__).parent / "fixtures" / "agent-23.raw.jsonl.gz"


def _container(runc_container, sock_dir: Path, name: str):  # type: ignore[no-untyped-def]
    return runc_container(name=name, binds=[Bind(sock_dir, str(Path(SOCKET_IN_CONTAINER).parent), False)],
                          env={"RUNWATCH_SOCKET": SOCKET_IN_CONTAINER})


AGENT_23 = textwrap.dedent("""
    import subprocess
    from runwatch import sdk
    sdk.announce("agent-23")
    with sdk.tool_call("run_shell", call_id="c-23", agent="agent-23", args={"cmd": "true"}):
        for _ in range(23):
            subprocess.run(["/usr/bin/true"], check=True)
    for _ in range(7):
        subprocess.run(["/usr/bin/true"], check=True)
    sdk.flush(2.0)
    print("sent", sdk.stats()["sent"])
""")


def test_23_execs_inside_a_tool_call_carry_it_and_7_outside_are_unattested(
        live_join, runc_container, sock_dir: Path) -> None:  # type: ignore[no-untyped-def]
    record = os.environ.get(RECORD_ENV) == "1"
    live_join.record_raw = record
    c = _container(runc_container, sock_dir, "agent-23")
    res = c.run(["python3", "-c", AGENT_23])
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().split() == ["sent", "3"]  # hello, tool.start, tool.end
    events = live_join.settle()
    execs = [e for e in events if e.kind == "process.exec" and e.exe == "/usr/bin/true"
             and e.container is not None and e.container.id == c.id]
    assert len(execs) == 30
    inside = [e for e in execs if e.tool_call is not None]
    outside = [e for e in execs if e.tool_call is None]
    assert len(inside) == 23
    assert {e.tool_call for e in inside} == {ToolCall(name="run_shell", call_id="c-23", agent="agent-23")}
    assert all(e.unattested is None for e in inside)
    assert len(outside) == 7
    assert all(e.unattested is True for e in outside)
    # Every attributed exec ran after the call started and before it ended.
    sdk = [e for e in events if e.source == "sdk" and e.vpid == 1 and e.pidns == execs[0].pidns]
    assert [e.kind for e in sdk] == ["sensor.notice", "tool.start", "tool.end"]
    assert all(e.container is not None and e.container.id == c.id for e in sdk)
    start, end = sdk[1], sdk[2]
    assert all(start.time < e.time < end.time for e in inside)
    assert all(e.time > end.time for e in outside)
    # Cross-namespace: the SDK saw pid 1 in the container's namespace; the host saw another pid.
    assert start.pid != 1 and start.pid > 0
    assert start.pidns != os.stat("/proc/self/ns/pid").st_ino
    assert start.ai is not None and start.ai.span == 1 and len(start.ai.args_digest) == 64
    assert end.ai is not None and end.ai.status == "ok"
    forks = [e for e in events if e.kind == "process.fork" and e.pid == start.pid]
    assert len(forks) == 30
    assert sum(1 for f in forks if f.tool_call is not None) == 23
    assert all(e.ppid == start.pid for e in execs)
    assert live_join.collector.stats()["malformed"] == 0
    if record:
        _record(live_join.raw_events(), c.id, {e.cgroup_id for e in events if e.container is not None
                                               and e.container.id == c.id and e.cgroup_id})


def _record(raw: list[Event], container_id: str, cgroups: set[int]) -> None:
    """Write the container's raw events (its cgroup's creation included) as the replay fixture."""
    mine = [e for e in raw if (e.cgroup_id in cgroups and e.kind != "cgroup.mkdir")
            or (e.kind == "cgroup.mkdir" and e.attrs is not None and int(e.attrs["cgroup_id"]) in cgroups)]
    assert any(e.kind == "cgroup.mkdir" for e in mine), f"no cgroup creation recorded for {container_id}"
    RECORDING.parent.mkdir(exist_ok=True)
    write_recording(RECORDING, mine)


def _listener() -> socket.socket:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    return srv


@pytest.fixture
def two_ports() -> Iterator[tuple[int, int]]:
    a, b = _listener(), _listener()
    try:
        yield a.getsockname()[1], b.getsockname()[1]
    finally:
        a.close()
        b.close()


THREADS = textwrap.dedent("""
    import socket, subprocess, sys, threading
    from runwatch import sdk
    pa, pb = int(sys.argv[1]), int(sys.argv[2])
    entered = threading.Barrier(2)
    done = threading.Barrier(2)
    def work(name, port, n, exe):
        with sdk.tool_call(name, call_id=name + "-id", agent="threads"):
            sdk.flush(5.0)  # the start is on the socket before this call's kernel activity (a loaded host can delay it)
            entered.wait()
            for _ in range(n):
                socket.create_connection(("127.0.0.1", port)).close()
                subprocess.run([exe], check=False)
            done.wait()
    ta = threading.Thread(target=work, args=("tool_a", pa, 3, "/usr/bin/true"))
    tb = threading.Thread(target=work, args=("tool_b", pb, 5, "/usr/bin/false"))
    ta.start(); tb.start(); ta.join(); tb.join()
    sdk.flush(2.0)
    print("ok")
""")


def test_two_concurrent_calls_in_two_threads_get_only_their_own_events(
        live_join, runc_container, sock_dir: Path, two_ports: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    pa, pb = two_ports
    c = _container(runc_container, sock_dir, "threads")
    res = c.run(["python3", "-c", THREADS, str(pa), str(pb)])
    assert res.returncode == 0, res.stderr
    events = live_join.settle()
    mine = [e for e in events if e.container is not None and e.container.id == c.id]
    conn_a = [e for e in mine if e.kind == "net.connect" and e.net is not None and e.net.dst_port == pa]
    conn_b = [e for e in mine if e.kind == "net.connect" and e.net is not None and e.net.dst_port == pb]
    seen = [(e.id, e.kind, e.source, e.pid, e.vtid, e.net.dst_port if e.net else None, e.time) for e in conn_a + conn_b]
    assert len(conn_a) == 3 and len(conn_b) == 5, seen
    tool_a = ToolCall(name="tool_a", call_id="tool_a-id", agent="threads")
    tool_b = ToolCall(name="tool_b", call_id="tool_b-id", agent="threads")
    assert {e.tool_call for e in conn_a} == {tool_a}
    assert {e.tool_call for e in conn_b} == {tool_b}
    assert len({e.vtid for e in conn_a}) == 1 and len({e.vtid for e in conn_b}) == 1
    assert conn_a[0].vtid != conn_b[0].vtid
    exec_a = [e for e in mine if e.kind == "process.exec" and e.exe == "/usr/bin/true"]
    exec_b = [e for e in mine if e.kind == "process.exec" and e.exe == "/usr/bin/false"]
    assert len(exec_a) == 3 and len(exec_b) == 5
    assert {e.tool_call for e in exec_a} == {tool_a}
    assert {e.tool_call for e in exec_b} == {tool_b}
    # The calls really overlapped in time.
    starts = {e.tool_call.name: e.time for e in events if e.kind == "tool.start" and e.tool_call is not None}
    ends = {e.tool_call.name: e.time for e in events if e.kind == "tool.end" and e.tool_call is not None}
    assert max(starts.values()) < min(ends.values())
    assert not any(e.unattested for e in mine)
