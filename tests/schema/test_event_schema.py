"""The event schema only grows: committed snapshots per version, checked field by field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from runwatch.events import KINDS, SCHEMA_VERSION, AiInfo, Event, FileInfo
from runwatch.schema import check_grows, describe

HERE = Path(__file__).resolve().parent


def snapshot(version: int) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((HERE / f"event_schema_v{version}.json").read_text())
    return result


def variant(name: str, changes: dict[str, Any], drop: tuple[str, ...] = ()) -> type:
    """A struct named ``name`` like the current one, with fields retyped/added (``changes``) or dropped."""
    base = {"Event": Event, "AiInfo": AiInfo, "FileInfo": FileInfo}[name]
    fields: list[Any] = []
    for f in msgspec.structs.fields(base):
        if f.name in drop:
            continue
        if f.name in changes:
            fields.append((f.name, *changes.pop(f.name)))
        elif f.required:
            fields.append((f.name, f.type))
        elif f.default_factory is not msgspec.NODEFAULT:
            fields.append((f.name, f.type, msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, f.type, f.default))
    fields.extend((n, *spec) for n, spec in changes.items())
    return msgspec.defstruct(name, fields, kw_only=True, omit_defaults=True)


def test_every_version_has_a_snapshot_and_the_newest_is_the_current_schema() -> None:
    found = sorted(int(p.stem.rpartition("_v")[2]) for p in HERE.glob("event_schema_v*.json"))
    assert found == list(range(1, SCHEMA_VERSION + 1))
    assert snapshot(SCHEMA_VERSION)["schema_version"] == SCHEMA_VERSION
    assert describe()["structs"] == snapshot(SCHEMA_VERSION)["structs"], (
        "the event schema changed: schema changes are additions only; bump events.SCHEMA_VERSION and write "
        f"tests/schema/event_schema_v{SCHEMA_VERSION + 1}.json with python -m runwatch.schema")


def test_a_new_kind_needs_no_new_version_but_no_kind_may_go() -> None:
    grown = describe(kinds=(*KINDS, "net.shutdown"))
    assert grown["structs"] == snapshot(SCHEMA_VERSION)["structs"]
    assert check_grows(snapshot(SCHEMA_VERSION), grown) == []


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION + 1))
def test_the_current_schema_contains_every_older_one(version: int) -> None:
    assert check_grows(snapshot(version), describe()) == []


def test_version_2_added_exactly_the_ai_group() -> None:
    v1, v2 = snapshot(1), snapshot(2)
    assert sorted(set(v2["structs"]) - set(v1["structs"])) == ["AiInfo"]
    assert sorted(set(v2["structs"]["Event"]["fields"]) - set(v1["structs"]["Event"]["fields"])) == ["ai"]
    assert len(v2["structs"]["AiInfo"]["fields"]) == 28 and v2["structs"]["AiInfo"]["required"] == []
    assert v1["kinds"] == list(KINDS[:27]) and len(KINDS) == 42  # kinds are appended, never removed


def test_version_3_added_exactly_the_workload_role() -> None:
    v2, v3 = snapshot(2), snapshot(3)
    assert set(v3["structs"]) == set(v2["structs"])
    added = {name: sorted(set(v3["structs"][name]["fields"]) - set(v2["structs"][name]["fields"]))
             for name in v3["structs"]}
    assert {name: fields for name, fields in added.items() if fields} == {"Container": ["role"], "Event": ["role"]}


def test_version_4_added_exactly_the_executed_file_fields() -> None:
    v3, v4 = snapshot(3), snapshot(4)
    assert set(v4["structs"]) == set(v3["structs"])
    added = {name: sorted(set(v4["structs"][name]["fields"]) - set(v3["structs"][name]["fields"]))
             for name in v4["structs"]}
    assert {name: fields for name, fields in added.items() if fields} == {
        "Event": ["exe_deleted", "exe_dev", "exe_ino", "exec_name"]}
    assert v4["structs"]["Event"]["required"] == v3["structs"]["Event"]["required"]


def test_a_removed_field_fails() -> None:
    now = describe(variant("Event", {}, drop=("cwd",)))
    assert check_grows(snapshot(1), now) == ["Event.cwd was removed or renamed"]


def test_a_renamed_field_fails() -> None:
    now = describe(variant("Event", {"exe_path": (str, "")}, drop=("exe",)))
    assert check_grows(snapshot(1), now) == ["Event.exe was removed or renamed"]


def test_a_changed_type_fails() -> None:
    now = describe(variant("Event", {"pid": (str, "")}))
    assert check_grows(snapshot(1), now) == [
        'Event.pid changed from {"default": 0, "type": "integer"} to {"default": "", "type": "string"}']


def test_a_changed_type_inside_a_group_fails() -> None:
    file_v = variant("FileInfo", {"flags": (str | None, None)})
    event_v = variant("Event", {"file": (file_v | None, None)})
    assert check_grows(snapshot(2), describe(event_v)) == [
        'FileInfo.flags changed from {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": null} '
        'to {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null}']


def test_a_new_required_field_fails_and_an_optional_one_does_not() -> None:
    required = describe(variant("Event", {"host": (str,)}))
    assert check_grows(snapshot(2), required) == ["Event.host is newly required (events of the old schema lack it)"]
    optional = describe(variant("Event", {"host": (str | None, None)}))
    assert check_grows(snapshot(2), optional) == []
    assert optional["structs"] != snapshot(SCHEMA_VERSION)["structs"]  # a new field needs a new version


def test_a_removed_kind_fails() -> None:
    now = describe(kinds=tuple(k for k in KINDS if k != "priv.setns"))
    assert check_grows(snapshot(1), now) == ["event kind 'priv.setns' was removed or renamed"]


def test_the_description_ignores_docstrings() -> None:
    documented = variant("Event", {})
    documented.__doc__ = "another text"
    assert describe(documented) == describe()


def test_version_6_added_exactly_the_parent_cmdline_and_the_workload_metadata_of_containers() -> None:
    v5, v6 = snapshot(5), snapshot(6)
    assert set(v6["structs"]) == set(v5["structs"])
    added = {name: sorted(set(v6["structs"][name]["fields"]) - set(v5["structs"][name]["fields"]))
             for name in v6["structs"]}
    assert {k: v for k, v in added.items() if v} == {"Event": ["pcmdline"], "Container": sorted([
        "labels", "annotations", "service_account", "node", "owner_kind", "owner_name", "image", "image_digest",
        "privileged", "cap_add", "devices", "gpu", "siblings", "spiffe_source"])}
