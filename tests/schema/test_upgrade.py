"""Recordings of schema 1 (AI facts in ``attrs``) read back with the typed ``ai`` group.

``fixtures/recording_v1.jsonl`` was written by the schema-1 ``events.to_json``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest

from runwatch.events import SCHEMA_VERSION, AiInfo, Event, ToolCall, from_json, upgrade
from runwatch.outputs.jsonl import iter_jsonl
from runwatch.rules import Engine, load_texts, loader
from runwatch.store.sqlite import SqliteStore, StoreError, query_events

RECORDING = Path(__file__).resolve().parent / "fixtures" / "recording_v1.jsonl"
T = 1_790_000_000_000_000_000


def recording() -> list[Event]:
    return list(iter_jsonl(RECORDING))


def test_schema_1_jsonl_moves_ai_keys_into_the_ai_group() -> None:
    start, exec_, model, plugin, secret, end, connect = recording()
    assert start.ai == AiInfo(span=23, parent_span=5, args_digest="9f" * 32, route="untrusted:web")
    assert start.attrs is None
    assert exec_.ai is None and exec_.attrs == {"argv_truncated": True}
    assert model.ai == AiInfo(operation="chat", provider="openai", model="gpt-4o", input_tokens=41, output_tokens=7,
                              trace_id="5b8efff798038103d269b633813fc60c", span_id="a1b2c3d4e5f60733")
    # resource and attribution details are not AI facts: they stay in attrs
    assert model.attrs == {"service": "travel-agent", "pid_unresolved": "no running process in container c1"}
    assert plugin.ai == AiInfo(plugin="weather-mcp", plugin_source="/opt/mcp/weather", sha256="ab" * 32,
                               plugin_version="0.23.0")
    assert secret.ai == AiInfo(secret="/run/secrets/token", secret_kind="file")
    assert end.ai == AiInfo(span=23, status="error", error="exit status 2", duration_ns=5000, start_time=T)
    # a value of the wrong type is not dropped: it stays in attrs
    assert connect.ai == AiInfo(tool_call_candidates=2) and connect.attrs == {"span": "not-an-int"}
    assert start.tool_call == ToolCall(name="run_shell", call_id="c-23", agent="planner")


def test_from_json_upgrades_and_is_idempotent() -> None:
    line = RECORDING.read_bytes().splitlines()[0]
    once = from_json(line)
    assert once.ai is not None and once.ai.route == "untrusted:web"
    again = from_json(msgspec.json.encode(once))
    assert again == once
    assert upgrade(once) is once and once.ai.span == 23


def test_rules_match_old_recordings_through_both_field_names() -> None:
    engine = Engine(load_texts([(
        "- rule: untrusted_route\n  condition: kind = tool.start and evt.attr[route] startswith untrusted\n"
        "- rule: untrusted_route_typed\n  condition: kind = tool.start and ai.route startswith untrusted\n"
        "- rule: file_secret\n  condition: kind = secret.access and ai.secret_kind = file and "
        "ai.secret startswith /run/secrets\n", "t.yaml")]))
    alerts = [a for e in recording() for a in engine.process(e)]
    assert sorted((a.rule, a.evidence[0]) for a in alerts) == [
        ("file_secret", "v1-5"), ("untrusted_route", "v1-1"), ("untrusted_route_typed", "v1-1")]


def test_rule_test_events_written_with_attrs_get_the_ai_group() -> None:
    e = loader.test_event({"kind": "plugin.load", "attrs": {"plugin": "notes", "sha256": "9f2c", "note": "x"}}, 2)
    assert (e.id, e.ai, e.attrs) == ("t3", AiInfo(plugin="notes", sha256="9f2c"), {"note": "x"})


def _meta(db: Path, key: str) -> str | None:
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    finally:
        conn.close()
    return None if row is None else str(row[0])


def _set_meta(db: Path, key: str, value: str | None) -> None:
    conn = sqlite3.connect(db)
    try:
        conn.execute("DELETE FROM meta WHERE key = ?", (key,))
        if value is not None:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))
        conn.commit()
    finally:
        conn.close()


def _schema_1_store(tmp_path: Path) -> Path:
    """A store holding the recording exactly as schema 1 stored it (AI keys in attrs)."""
    raw = [msgspec.json.decode(line, type=Event) for line in RECORDING.read_bytes().splitlines()]
    assert all(e.ai is None for e in raw)
    db = tmp_path / "v1.db"
    with SqliteStore(db) as store:
        store.write(raw)
    _set_meta(db, "event_schema", None)  # files written before the key existed have none
    return db


def test_a_fresh_store_records_the_event_schema(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    with SqliteStore(db):
        pass
    assert _meta(db, "event_schema") == str(SCHEMA_VERSION) == "8"


def test_a_store_from_before_the_key_is_read_as_schema_1_and_upgraded(tmp_path: Path) -> None:
    db = _schema_1_store(tmp_path)
    got = query_events(db)
    assert [e.id for e in got] == [f"v1-{i}" for i in range(1, 8)]
    assert got[0].ai == AiInfo(span=23, parent_span=5, args_digest="9f" * 32, route="untrusted:web")
    assert got[4].ai == AiInfo(secret="/run/secrets/token", secret_kind="file")
    # opening it for writing records that it holds schema-1 events (never raised afterwards)
    with SqliteStore(db):
        pass
    assert _meta(db, "event_schema") == "1"
    assert query_events(db, kinds=["tool.end"])[0].ai == AiInfo(span=23, status="error", error="exit status 2",
                                                                duration_ns=5000, start_time=T)


def test_the_recorded_version_decides_whether_events_are_upgraded(tmp_path: Path) -> None:
    db = _schema_1_store(tmp_path)
    _set_meta(db, "event_schema", "4")  # a file of the current schema: its events are read as stored
    first = query_events(db, limit=1)[0]
    assert first.ai is None and first.attrs is not None and first.attrs["route"] == "untrusted:web"
    _set_meta(db, "event_schema", "3")  # a schema-3 file is upgraded: its execs named the execve string in exe
    assert query_events(db, limit=1)[0].ai is not None
    _set_meta(db, "event_schema", str(SCHEMA_VERSION + 1))  # newer writer: still readable, the schema only grows
    assert len(query_events(db)) == 7


def test_a_corrupt_event_schema_is_one_clear_error(tmp_path: Path) -> None:
    db = _schema_1_store(tmp_path)
    _set_meta(db, "event_schema", "two")
    with pytest.raises(StoreError) as err:
        query_events(db)
    assert str(err.value) == f"{db}: corrupt event_schema 'two' in meta table"


def test_schema_3_execs_keep_the_name_as_given_and_mark_what_only_points_at_a_file() -> None:
    lines = [
        b'{"id":"v2-1","time":1,"kind":"process.exec","pid":23,"exe":"/proc/self/exe","cmdline":"python3 -c x"}',
        b'{"id":"v2-2","time":2,"kind":"process.exec","pid":24,"exe":"/bin/sh","attrs":{"argv_truncated":true}}',
        b'{"id":"v2-3","time":3,"kind":"process.exec","source":"audit","pid":25,"exe":"/dev/fd/6"}',
        b'{"id":"v2-4","time":4,"kind":"process.exec","source":"proc","pid":26,"exe":"/usr/bin/dash"}',
        b'{"id":"v2-5","time":5,"kind":"file.open","pid":23,"exe":"/proc/self/exe","file":{"path":"/x"}}',
    ]
    got = [from_json(line) for line in lines]
    assert [(e.exe, e.exec_name, e.attrs) for e in got] == [
        ("/proc/self/exe", "/proc/self/exe", {"exe_unresolved": True}),
        ("/bin/sh", "/bin/sh", {"argv_truncated": True}),
        ("/dev/fd/6", "/dev/fd/6", {"exe_unresolved": True}),
        ("/usr/bin/dash", None, None),  # /proc/PID/exe was always the executed file
        ("/proc/self/exe", None, None),  # only execs named a program
    ]
    again = [from_json(msgspec.json.encode(e)) for e in got]
    assert again == got


def test_schema_1_recording_exec_gets_its_name() -> None:
    exec_ = recording()[1]
    assert (exec_.kind, exec_.exe, exec_.exec_name, exec_.attrs) == (
        "process.exec", "/bin/sh", "/bin/sh", {"argv_truncated": True})
