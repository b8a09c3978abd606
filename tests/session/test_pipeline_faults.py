"""A failing stage, sink or source is counted and reported; the pipeline keeps every event flowing.

And live: one hostile datagram on the SDK socket no longer blinds ``runwatch run``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runwatch.events import Event
from runwatch.pipeline import Pipeline
from runwatch.store.sqlite import query_events

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))


class _Batches:
    """A source that yields the given batches (an exception instance is raised instead), then ends."""

    def __init__(self, batches: list[list[Event] | Exception]) -> None:
        self.batches = list(batches)

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def poll(self, timeout: float) -> list[Event] | None:
        if not self.batches:
            return None
        item = self.batches.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


class _Keep:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def write(self, events: list[Event]) -> None:
        self.events.extend(events)

    def close(self) -> None: ...


class _FullDisk(_Keep):
    def write(self, events: list[Event]) -> None:
        if any(e.pid == 13 for e in events):
            raise OSError(28, "No space left on device")
        super().write(events)


def _explode_on_pid_7(batch: list[Event]) -> list[Event]:
    if any(e.pid == 7 for e in batch):
        raise RecursionError("maximum recursion depth exceeded")
    return batch


def _events(*pids: int) -> list[Event]:
    return [Event(id=f"e{p}", time=p, kind="process.exec", source="kernel", pid=p) for p in pids]


def test_a_failing_stage_sink_or_poll_is_counted_and_the_rest_flows() -> None:
    batches: list[list[Event] | Exception] = [
        _events(1, 2, 3), _events(7, 8), ValueError("bad record"), _events(13, 14, 15), _events(21)]
    keep, full = _Keep(), _FullDisk()
    pipe = Pipeline(_Batches(batches), [_explode_on_pid_7], [keep, full], poll_interval=0.0)
    pipe.run()
    assert [e.pid for e in keep.events] == [1, 2, 3, 7, 8, 13, 14, 15, 21]  # the failing stage was skipped
    assert [e.pid for e in full.events] == [1, 2, 3, 7, 8, 21]
    faults = pipe.faults()
    assert faults["stage_errors"] == {"_explode_on_pid_7": 1}
    assert faults["poll_errors"] == 1
    assert faults["lost"] == {"_FullDisk": 3}
    assert faults["first_error"] == "stage _explode_on_pid_7: RecursionError: maximum recursion depth exceeded"
    assert pipe.failure is None


def test_a_source_that_keeps_failing_ends_the_run_with_a_reason() -> None:
    pipe = Pipeline(_Batches([_events(5), *[OSError(5, "Input/output error")] * 101]), [], [_Keep()],
                    poll_interval=0.0)
    pipe.run()
    assert pipe.failure == "source: 100 polls in a row failed; last: OSError: [Errno 5] Input/output error"
    assert pipe.faults()["poll_errors"] == 100


AGENT = """
    import os, socket, subprocess
    path = os.environ["{env}"]
    hostile = [b'{{"v": 1, "k": "tool.start", "name": "\\xff"}}', b'{{"a":' * 2000 + b'1' + b'}}' * 2000]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        for payload in hostile:
            s.sendto(payload, path)
    for _ in range(23):
        subprocess.run(["/usr/bin/true", "after-hostile"], check=True)
"""


@pytest.mark.kernel
def test_hostile_sdk_datagrams_do_not_blind_runwatch_run(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the kernel sensor needs root")
    from runwatch.sdk.wire import ENV_SOCKET

    db = tmp_path / "run.db"
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(AGENT.format(env=ENV_SOCKET)))
    res = subprocess.run([RUNWATCH, "run", "--db", str(db), "--no-rules", "--", sys.executable, str(script)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    execs = [e for e in query_events(db) if e.kind == "process.exec" and e.exe == "/usr/bin/true"]
    assert len(execs) == 23
    lines = [line for line in res.stderr.splitlines() if "malformed" in line]
    assert lines == ["runwatch: sdk: 2 malformed message(s) ignored; first: UnicodeDecodeError: 'utf-8' codec can't "
                     "decode byte 0xff in position 0: invalid start byte"], res.stderr[-2000:]
