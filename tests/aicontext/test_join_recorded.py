"""The join and enrichment on a raw recording of a real container run (no kernel needed).

``fixtures/agent-23.raw.jsonl.gz`` holds what the kernel sensor and the SDK collector emitted,
before enrichment, while ``test_join_live.py``'s 23-inside/7-outside agent ran in a runc
container (re-record with ``RUNWATCH_RECORD_REPLAY_FIXTURES=1``): the container's cgroup
creation, its processes' forks, execs, exits and privilege records, and the agent's three SDK
messages. Replayed through the real stages, the container comes only from the recorded
``cgroup.mkdir`` and the tool call only from the join.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from runwatch.events import Event, ToolCall
from runwatch.sensors.replay import ReplayError, ReplaySource, read_recording, write_recording
from runwatch.testing.replay import replay

RECORDING = Path(__file__).parent / "fixtures" / "agent-23.raw.jsonl.gz"
CALL = ToolCall(name="run_shell", call_id="c-23", agent="agent-23")


@pytest.fixture(scope="module")
def recorded() -> list[Event]:
    return read_recording(RECORDING)


@pytest.fixture(scope="module")
def replayed() -> list[Event]:
    return replay(ReplaySource(RECORDING, batch=16))


def test_the_recording_is_raw_source_output(recorded: list[Event]) -> None:
    assert len(recorded) == 165
    assert all(e.container is None and e.unattested is None and e.ancestry == [] for e in recorded)
    kernel = [e for e in recorded if e.source == "kernel"]
    assert len(kernel) == 162 and all(e.tool_call is None for e in kernel)
    assert [e.tool_call for e in recorded if e.kind.startswith("tool.")] == [CALL, CALL]  # the SDK's own
    assert [e.attrs for e in recorded if e.kind == "cgroup.mkdir"] == [
        {"cgroup_id": 29608, "level": 2, "path": "/runwatch/rw-cbba621476ce"}]
    assert [e.kind for e in recorded if e.source == "sdk"] == ["sensor.notice", "tool.start", "tool.end"]


def test_replay_attributes_23_execs_to_the_call_and_7_are_unattested(replayed: list[Event]) -> None:
    execs = [e for e in replayed if e.kind == "process.exec" and e.exe == "/usr/bin/true"]
    assert len(execs) == 30
    inside = [e for e in execs if e.tool_call is not None]
    outside = [e for e in execs if e.tool_call is None]
    assert len(inside) == 23 and {e.tool_call for e in inside} == {CALL}
    assert all(e.unattested is None for e in inside)
    assert len(outside) == 7 and all(e.unattested is True for e in outside)
    start = next(e for e in replayed if e.kind == "tool.start")
    assert (start.pid, start.vpid, start.pidns) == (7643, 1, 4026532177)
    assert {e.ppid for e in execs} == {7643}
    assert all(start.time < e.time for e in inside)


def test_replay_puts_every_event_in_the_recorded_container(replayed: list[Event]) -> None:
    assert all(e.kind != "cgroup.mkdir" for e in replayed)  # learned, then dropped by enrichment
    assert len(replayed) == 164
    ids = {(e.container.runtime, e.container.id, e.container.cgroup) if e.container else None for e in replayed}
    assert ids == {("runc", "rw-cbba621476ce", "/runwatch/rw-cbba621476ce")}


def test_replay_keeps_the_process_tree_from_the_recording(replayed: list[Event]) -> None:
    true_exec = next(e for e in replayed if e.kind == "process.exec" and e.exe == "/usr/bin/true")
    agent_exec = [e for e in replayed if e.kind == "process.exec" and e.pid == 7643]
    assert len(agent_exec) == 1 and true_exec.ppid == 7643
    assert true_exec.ancestry[:1] == [agent_exec[0].exe]
    forks = [e for e in replayed if e.kind == "process.fork" and e.pid == 7643]
    assert len(forks) == 30 and sum(1 for f in forks if f.tool_call is not None) == 23


def test_the_source_protocol(recorded: list[Event]) -> None:
    src = ReplaySource(events=recorded, batch=50)
    assert src.poll(0.0) is None  # not started
    src.start()
    sizes = []
    while (batch := src.poll(1.0)) is not None:
        sizes.append(len(batch))
    assert sizes == [50, 50, 50, 15]
    assert src.stats() == {"events": 165, "total": 165}
    assert src.clock() == max(e.time for e in recorded)
    src.stop()
    src.stop()
    assert src.stats() == {"events": 0, "total": 0}


def test_round_trip_and_bad_lines_name_file_and_line(tmp_path: Path, recorded: list[Event]) -> None:
    plain = tmp_path / "r.jsonl"
    assert write_recording(plain, recorded[:23]) == 23
    assert read_recording(plain) == recorded[:23]
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(gzip.compress(plain.read_bytes() + b'{"kind": 23}\n'))
    with pytest.raises(ReplayError, match=rf"^{bad}:24: not an event"):
        read_recording(bad)
    with pytest.raises(ValueError, match="exactly one of path or events"):
        ReplaySource()


def test_registered_as_replay_source() -> None:
    from runwatch.sensors.base import registered_sources, source_factory

    assert source_factory("replay") is ReplaySource
    assert "replay" in registered_sources()
