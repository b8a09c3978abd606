"""JSONL output: exact round trip, append, rotation, stdout, and the registry."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runwatch.events import Event, from_json, to_json
from runwatch.outputs.base import output_factory, register_output, registered_outputs
from runwatch.outputs.jsonl import JsonlOutput, OutputError, iter_jsonl


def test_round_trip_each_line(tmp_path: Path, events: list[Event]) -> None:
    path = tmp_path / "events.jsonl"
    out = JsonlOutput(path)
    out.open()
    out.write(events[:8])
    out.write(events[8:])
    out.close()
    out.close()  # idempotent
    lines = path.read_bytes().splitlines()
    assert len(lines) == 23
    assert [from_json(line) for line in lines] == events
    assert b" " not in lines[2].split(b'"cmdline"')[0]  # compact encoding
    assert list(iter_jsonl(path)) == events
    assert out.lines == 23


def test_uid_and_source_are_in_every_line(tmp_path: Path) -> None:
    """At their defaults (uid 0, source kernel) too, however the event was made."""
    made = [Event(id="a1", time=1, kind="process.exec"),
            Event(id="a2", time=3, kind="process.exec", uid=0, source="kernel"),
            Event(id="a3", time=5, kind="tool.start", uid=1013, source="sdk"),
            from_json(b'{"id":"a4","time":7,"kind":"file.open"}')]
    path = tmp_path / "events.jsonl"
    out = JsonlOutput(path)
    out.open()
    out.write(made)
    out.close()
    lines = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert [(o["uid"], o["source"]) for o in lines] == [(0, "kernel"), (0, "kernel"), (1013, "sdk"), (0, "kernel")]
    assert to_json(made[0]) == b'{"id":"a1","time":1,"kind":"process.exec","source":"kernel","uid":0}'
    assert Event(id="a5", time=9, kind="x").source is Event(id="a6", time=9, kind="x").source  # no copy per event


def test_append_not_truncate(tmp_path: Path, events: list[Event]) -> None:
    path = tmp_path / "events.jsonl"
    for chunk in (events[:5], events[5:]):
        out = JsonlOutput(path)
        out.open()
        out.write(chunk)
        out.close()
    assert list(iter_jsonl(path)) == events


def test_reopen_follows_rotation(tmp_path: Path, events: list[Event]) -> None:
    path = tmp_path / "events.jsonl"
    rotated = tmp_path / "events.jsonl.1"
    out = JsonlOutput(path)
    out.open()
    out.write(events[:7])
    path.rename(rotated)
    out.reopen()
    out.write(events[7:])
    out.close()
    assert [e.id for e in iter_jsonl(rotated)] == [f"ev-{i:02d}" for i in range(7)]
    assert [e.id for e in iter_jsonl(path)] == [f"ev-{i:02d}" for i in range(7, 23)]


def test_stdout_dash(events: list[Event]) -> None:
    code = (
        "from runwatch.events import Event\n"
        "from runwatch.outputs.jsonl import JsonlOutput\n"
        "o = JsonlOutput('-'); o.open()\n"
        "o.write([Event(id='x1', time=7, kind='process.exec', pid=41)])\n"
        "o.close()\n"
        "import sys; sys.stdout.write('after-close\\n')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, timeout=60)
    assert done.stdout == (b'{"id":"x1","time":7,"kind":"process.exec","source":"kernel","pid":41,"uid":0}\n'
                           b"after-close\n")


def test_open_errors_are_one_line(tmp_path: Path) -> None:
    out = JsonlOutput(tmp_path / "missing-dir" / "x.jsonl")
    with pytest.raises(OutputError) as info:
        out.open()
    assert "missing-dir" in str(info.value) and "\n" not in str(info.value)


def test_iter_jsonl_names_bad_line(tmp_path: Path, events: list[Event]) -> None:
    path = tmp_path / "bad.jsonl"
    out = JsonlOutput(path)
    out.write(events[:3])
    out.close()
    with path.open("ab") as fh:
        fh.write(b"\n{not json}\n")
    it = iter_jsonl(path)
    assert [next(it).id for _ in range(3)] == ["ev-00", "ev-01", "ev-02"]
    with pytest.raises(ValueError, match=r"bad\.jsonl:5: "):
        next(it)


def test_registry_builtins_and_duplicates() -> None:
    assert {"jsonl", "ocsf", "text"} <= set(registered_outputs())
    assert output_factory("jsonl") is JsonlOutput
    with pytest.raises(ValueError, match="already registered"):
        register_output("jsonl", JsonlOutput)
    with pytest.raises(KeyError, match="unknown output 'nope'"):
        output_factory("nope")
    with pytest.raises(ValueError, match="invalid output name"):
        register_output("bad name", JsonlOutput)
