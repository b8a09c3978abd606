"""The agent SDK against a real collector socket: context manager, decorators, async, threads, digests."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runwatch import sdk
from runwatch.events import AiInfo, Event, ToolCall
from runwatch.sdk.transport import Transport
from runwatch.sensors.inproc.collector import SdkCollector

SRC = str(Path(sdk.__file__).resolve().parents[2])


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[SdkCollector]:
    """A listening collector with this process's SDK transport pointed at it."""
    col = SdkCollector(tmp_path / "s" / "sdk.sock")
    col.start()
    old = sdk.set_transport(Transport(str(col.path)))
    try:
        yield col
    finally:
        t = sdk.set_transport(old)
        if t is not None:
            t.close()
        col.stop()


def collect(col: SdkCollector, n: int, timeout: float = 5.0) -> list[Event]:
    """Exactly the next ``n`` events (fails on fewer, or more within a short grace)."""
    assert sdk.flush(timeout)
    out: list[Event] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out.extend(col.poll(0.05) or [])
    out.extend(col.poll(0.05) or [])
    assert len(out) == n, [e.kind for e in out]
    return out


def test_context_manager_sends_start_and_end_with_identity(collector: SdkCollector) -> None:
    with sdk.tool_call("run_shell", call_id="c-23", agent="planner") as scope:
        assert sdk.current_tool_call() == ("run_shell", "c-23", "planner")
        sid = scope.sid
    assert sdk.current_tool_call() is None
    start, end = collect(collector, 2)
    call = ToolCall(name="run_shell", call_id="c-23", agent="planner")
    assert (start.kind, end.kind) == ("tool.start", "tool.end")
    assert start.tool_call == end.tool_call == call
    assert start.ai == AiInfo(span=sid)
    assert end.ai is not None and end.ai.status == "ok" and end.ai.span == sid
    assert end.ai.duration_ns == end.time - start.time
    assert end.ai.start_time == start.time
    me = os.getpid()
    for e in (start, end):
        assert (e.source, e.pid, e.vpid, e.tid, e.vtid) == ("sdk", me, me, threading.get_native_id(),
                                                           threading.get_native_id())
        assert e.pidns == os.stat("/proc/self/ns/pid").st_ino
        assert e.uid == os.getuid()
        assert abs(e.time - time.time_ns()) < 5_000_000_000


def test_exception_is_recorded_and_propagates(collector: SdkCollector) -> None:
    with pytest.raises(KeyError), sdk.tool_call("lookup"):
        raise KeyError("x")
    _, end = collect(collector, 2)
    assert end.ai is not None
    assert (end.ai.status, end.ai.error) == ("error", "KeyError")


def test_sync_decorator_per_invocation_spans(collector: SdkCollector) -> None:
    @sdk.tool_call("add", agent="calc")
    def add(a: int, b: int) -> int:
        return a + b

    @sdk.tool_call
    def bare() -> str:
        return "bare"

    assert [add(i, 1) for i in range(3)] == [1, 2, 3]
    assert bare() == "bare"
    assert add.__name__ == "add"
    events = collect(collector, 8)
    spans = [e.ai.span for e in events if e.ai]
    assert spans[0:2] == [spans[0]] * 2 and len(set(spans)) == 4
    assert events[-1].tool_call == ToolCall(name="bare")


def test_async_tasks_keep_their_own_calls(collector: SdkCollector) -> None:
    @sdk.tool_call("fetch")
    async def fetch(i: int) -> int:
        await asyncio.sleep(0.01 * (3 - i))
        sdk.model_call("local", f"m{i}")
        return i

    async def main() -> list[int]:
        async with sdk.tool_call("plan", call_id="p-1"):
            return list(await asyncio.gather(*(fetch(i) for i in range(3))))

    assert asyncio.run(main()) == [0, 1, 2]
    events = collect(collector, 2 + 3 * 3)
    starts = {e.ai.span: e for e in events if e.kind == "tool.start" and e.ai}
    plan = next(e for e in starts.values() if e.tool_call == ToolCall(name="plan", call_id="p-1"))
    fetches = [e for e in starts.values() if e.tool_call == ToolCall(name="fetch")]
    assert len(fetches) == 3
    assert all(e.ai is not None and e.ai.parent_span == plan.ai.span for e in fetches)
    models = [e for e in events if e.kind == "model.call"]
    by_span = {e.ai.span: e.ai.model for e in models if e.ai}
    assert sorted(by_span.values()) == ["m0", "m1", "m2"]
    assert set(by_span) == {e.ai.span for e in fetches if e.ai}


def test_new_threads_start_outside_any_call(collector: SdkCollector) -> None:
    seen: list[object] = []
    with sdk.tool_call("outer"):
        t = threading.Thread(target=lambda: seen.append(sdk.current_tool_call()))
        t.start()
        t.join()
    assert seen == [None]
    collect(collector, 2)


def test_other_messages_carry_the_enclosing_call_and_route(collector: SdkCollector) -> None:
    with sdk.prompt_route("support/billing"), sdk.tool_call("lookup", call_id="c-7"):
        sdk.model_call("openai", "gpt-x")
        sdk.plugin_load("weather", "/plugins/weather.py", sha256="ab" * 32)
        sdk.secret_access("OPENAI_API_KEY", "env")
    sdk.model_call("openai", "gpt-y")
    route, start, model, plugin, secret, _end, outside = collect(collector, 7)
    assert route.kind == "model.call" and route.ai == AiInfo(operation="prompt.route", route="support/billing")
    assert start.ai is not None and start.ai.route == "support/billing"
    call = ToolCall(name="lookup", call_id="c-7")
    assert model.tool_call == call and model.ai is not None
    assert (model.ai.provider, model.ai.model, model.ai.route) == ("openai", "gpt-x",
                                                                                     "support/billing")
    assert plugin.kind == "plugin.load" and plugin.tool_call == call and plugin.ai is not None
    assert (plugin.ai.plugin, plugin.ai.plugin_source, plugin.ai.sha256) == (
        "weather", "/plugins/weather.py", "ab" * 32)
    assert secret.kind == "secret.access" and secret.ai is not None
    assert (secret.ai.secret, secret.ai.secret_kind) == ("OPENAI_API_KEY", "env")
    assert outside.tool_call is None and outside.ai is not None and outside.ai.route is None


def test_no_collector_never_raises_and_counts_drops(tmp_path: Path) -> None:
    old = sdk.set_transport(Transport(str(tmp_path / "absent.sock")))
    try:
        for i in range(23):
            with sdk.tool_call("t", call_id=str(i), args={"i": i}):
                pass
        sdk.model_call("p", "m")
        assert sdk.flush(2.0)
        stats = sdk.stats()
        assert (stats["submitted"], stats["dropped_no_collector"], stats["sent"]) == (47, 47, 0)
    finally:
        t = sdk.set_transport(old)
        assert t is not None
        t.close()


def _agent_run(env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": SRC, **env}
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=60,
                          check=False)


ARGS_AGENT = textwrap.dedent("""
    from runwatch import sdk
    with sdk.tool_call("t", args={"b": [1, 2], "a": "x"}):
        pass
    sdk.flush(2.0)
""")


def test_args_are_sent_only_as_a_keyed_digest(collector: SdkCollector) -> None:
    sock = str(collector.path)
    res = _agent_run({"RUNWATCH_SOCKET": sock, "RUNWATCH_ARGS_KEY": "k-23"}, ARGS_AGENT)
    assert res.returncode == 0, res.stderr
    start, _ = collect(collector, 2)
    canonical = json.dumps({"a": "x", "b": [1, 2]}, separators=(",", ":")).encode()
    assert start.ai is not None
    assert start.ai.args_digest == hmac.new(b"k-23", canonical, hashlib.sha256).hexdigest()
    assert start.ai.args is None
    # Without a configured key each process uses its own random key.
    _agent_run({"RUNWATCH_SOCKET": sock}, ARGS_AGENT)
    _agent_run({"RUNWATCH_SOCKET": sock}, ARGS_AGENT)
    events = collect(collector, 4)
    digests = [e.ai.args_digest for e in events if e.kind == "tool.start" and e.ai]
    assert len(set(digests)) == 2 and start.ai.args_digest not in digests


def test_operator_opt_in_sends_argument_content(collector: SdkCollector) -> None:
    res = _agent_run({"RUNWATCH_SOCKET": str(collector.path), "RUNWATCH_STORE_ARGS": "1"}, ARGS_AGENT)
    assert res.returncode == 0, res.stderr
    start, _ = collect(collector, 2)
    assert start.ai is not None and start.ai.args == '{"a":"x","b":[1,2]}'


def test_forked_child_reports_its_own_pid(collector: SdkCollector) -> None:
    code = textwrap.dedent("""
        import os
        from runwatch import sdk
        sdk.model_call("p", "parent")
        sdk.flush(2.0)
        pid = os.fork()
        if pid == 0:
            sdk.model_call("p", "child")
            sdk.flush(2.0)
            os._exit(0)
        os.waitpid(pid, 0)
        print(pid)
    """)
    res = _agent_run({"RUNWATCH_SOCKET": str(collector.path)}, code)
    assert res.returncode == 0, res.stderr
    parent, child = sorted(collect(collector, 2), key=lambda e: e.time)
    assert parent.ai is not None and parent.ai.model == "parent"
    assert child.ai is not None and child.ai.model == "child"
    assert child.pid == child.vpid == int(res.stdout) != parent.pid


def test_the_first_message_is_queued_before_submit_returns(tmp_path):  # type: ignore[no-untyped-def]
    """The process's first message goes out from the caller (the join waits for the process's
    kernel events from it on); later ones go through the flusher, batched."""
    import socket as _socket

    from runwatch.sdk.transport import Transport

    path = tmp_path / "first.sock"
    rx = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
    rx.bind(str(path))
    try:
        t = Transport(str(path), batch_delay_s=5.0)  # a flusher that would wait 5 s first
        t.submit(("hello", 17, 23, "", None))
        line = rx.recv(65536, _socket.MSG_DONTWAIT)
        assert line.startswith(b'{"v":') and b'"k":"hello","m":17,' in line and b'"tid":23,' in line
        t.submit(("tool.start", 19, 23, ',"sid":3', None))
        with pytest.raises(BlockingIOError):
            rx.recv(65536, _socket.MSG_DONTWAIT)  # the second waits for the flusher's batch
        assert t.stats()["sent"] == 1 and t.stats()["buffered"] == 1
    finally:
        rx.close()
