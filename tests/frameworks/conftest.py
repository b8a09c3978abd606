"""Real agent frameworks, zero-code instrumented, against a local scripted model, under the live sensor.

Every tool in these agents runs ``/usr/bin/true <tag>`` with a tag unique to its call, so
the kernel events of a call's work are the fork that made the child, and every event of
the child (exec, exit). :meth:`Tools.check` asserts each of them carries the call's name
and id (actual values) and none is unattested, and records the measured row for
docs/frameworks.md (:mod:`runwatch.testing.attribution`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runwatch.events import Event, ToolCall
from runwatch.testing import attribution
from runwatch.testing.capture import LiveCapture
from runwatch.testing.children import child_env, run_py
from runwatch.testing.fake_openai import FINAL_ANSWER, FakeOpenAI

TRUE = "/usr/bin/true"


class Tools:
    """Runs an agent script zero-code and checks the attribution of its tools' work."""

    TRUE = TRUE  # what every tool runs, with its call's tag

    @staticmethod
    def run_agent(tmp_path: Path, source: str, live: LiveCapture, *args: str, **env: str) -> str:
        """Run ``source`` under ``python -m runwatch.sdk.run``; its stdout (it must exit 0)."""
        script = tmp_path / "agent.py"
        script.write_text(source)
        assert live.collector is not None
        res = run_py(["-m", "runwatch.sdk.run", str(script), *args],
                     child_env(live.collector.path, OPENAI_API_KEY="test", OPENAI_AGENTS_DISABLE_TRACING="1",
                               **env), cwd=tmp_path, timeout=120)
        assert res.returncode == 0, res.stderr[-4000:]
        return res.stdout

    @staticmethod
    def issued(server: Any) -> list[tuple[str, str, str]]:
        """(call id, tool name, tag) of every call a FakeOpenAI issued, in order."""
        return [(cid, name, str(args["tag"])) for cid, name, args in server.issued]

    @classmethod
    def drive(cls, tmp_path: Path, source: str, script: Any, live: LiveCapture,
              *args: str) -> list[tuple[str, str, str]]:
        """Run agent ``source`` against a FakeOpenAI playing ``script``; the calls it issued.

        The agent must finish with the server's final answer as its only output."""
        with FakeOpenAI(script) as server:
            out = cls.run_agent(tmp_path, source, live, *args, OPENAI_BASE_URL=server.base_url)
        assert out == FINAL_ANSWER + "\n"
        return cls.issued(server)

    @staticmethod
    def one_start_per_call(events: list[Event], calls: list[tuple[str, str, str]]) -> None:
        """Each issued call has exactly one ``tool.start``, under its own id and name."""
        starts = sorted((e.tool_call.call_id, e.tool_call.name) for e in events
                        if e.kind == "tool.start" and e.tool_call is not None)
        assert starts == sorted((cid, name) for cid, name, _ in calls)

    @staticmethod
    def check(events: list[Event], calls: list[tuple[str, str, str]], agent: str | None, *, framework: str,
              path: str = "zero-code", parallel: int = 0) -> None:
        """Each (call id, tool name, tag) in ``calls``: its fork, exec and exit carry the call; record the row."""
        kernel = [e for e in events if e.source == "kernel"]
        execs = {tuple(e.argv or ()): e for e in kernel if e.kind == "process.exec" and e.exe == TRUE}
        attributed = 0
        problems: list[str] = []
        for call_id, name, tag in calls:
            expected = ToolCall(name, call_id, agent)
            exe = execs.get((TRUE, tag))
            if exe is None:
                problems.append(f"{call_id}: no exec of {TRUE} {tag}")
                continue
            work = [e for e in kernel if e.pid == exe.pid and e.kind != "process.fork"]
            work += [e for e in kernel if e.kind == "process.fork" and e.child_pid == exe.pid]
            kinds = sorted(e.kind for e in work)
            wrong = [(e.kind, e.tool_call, e.unattested) for e in work
                     if e.tool_call != expected or e.unattested]
            if not {"process.fork", "process.exec", "process.exit"} <= set(kinds):
                problems.append(f"{call_id}: saw only {kinds}")
            elif wrong:
                problems.append(f"{call_id}: expected {expected}, got {wrong}")
            else:
                attributed += 1
        attribution.record(attribution.Row(framework, path, attributed, len(calls), parallel))
        assert problems == []
        assert attributed == len(calls)


@pytest.fixture
def tools() -> type[Tools]:
    """See :class:`Tools`."""
    return Tools


@pytest.fixture
def live(live_sensor: LiveCapture) -> LiveCapture:
    """The live capture, waiting long enough for an agent's start-up and its model turns."""
    live_sensor.quiet, live_sensor.limit = 0.5, 30.0
    return live_sensor

