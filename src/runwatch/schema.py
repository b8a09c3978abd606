"""The event schema as data, for the add-only check.

:func:`describe` turns :class:`runwatch.events.Event` (every group struct included) and the
event table's kind names into plain JSON: per struct, each field's JSON Schema type and
default, the required fields, and the list of kinds. Descriptions and titles are left out,
so editing a docstring is not a schema change.

Versioning (falcosecurity/libs ``event_table.c`` is the model): the schema only grows.
``tests/schema/event_schema_v<N>.json`` is the committed description of schema version N;
a committed snapshot is never edited. The schema test requires

* a snapshot for every version from 1 to ``SCHEMA_VERSION``, the newest with the same
  structs as the current description (so a new field or group needs a bump and a new
  snapshot);
* every snapshot to be contained in the current description: no struct, field or kind
  removed or renamed, no field's type or default changed, no new required field.

Kinds are versioned by the event table, not by ``SCHEMA_VERSION``: a new kind is one new
table entry and needs no bump (readers that do not know a kind keep it as data), but a
kind in any snapshot can never go away.

:func:`check_grows` states that rule; ``python -m runwatch.schema PATH`` writes the current
description (to create the snapshot of a new version).
"""

from __future__ import annotations

import json
import sys
import typing
from pathlib import Path
from typing import Any

import msgspec

from runwatch.events import KINDS, SCHEMA_VERSION, Event

Description = dict[str, Any]


def _strip(node: Any) -> Any:
    """``node`` without the documentation keys of JSON Schema."""
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in ("title", "description")}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _structs(root: type) -> list[type[msgspec.Struct]]:
    """``root`` and every struct type its fields refer to (through ``X | None``, ``list[X]``, ...)."""
    out: list[type[msgspec.Struct]] = []
    stack: list[Any] = [root]
    while stack:
        t = stack.pop()
        if isinstance(t, type) and issubclass(t, msgspec.Struct):
            if t not in out:
                out.append(t)
                stack.extend(f.type for f in msgspec.structs.fields(t))
        else:
            stack.extend(typing.get_args(t))
    return out


def _factory_defaults(root: type) -> dict[str, dict[str, Any]]:
    """Struct name -> field -> the value of its scalar default factory.

    A field whose default is a factory (``Event.source``, ``Event.uid``: so that encodings never
    omit it) has the same default on decode as a plain one, but msgspec's JSON Schema leaves it
    out; the description states it, so such a field reads as it always did.
    """
    out: dict[str, dict[str, Any]] = {}
    for t in _structs(root):
        for f in msgspec.structs.fields(t):
            if f.default_factory is msgspec.NODEFAULT:
                continue
            value = f.default_factory()
            if isinstance(value, str | int | float | bool):
                out.setdefault(t.__name__, {})[f.name] = value
    return out


def describe(root: type = Event, kinds: tuple[str, ...] = KINDS, version: int = SCHEMA_VERSION) -> Description:
    """The schema of ``root`` and its groups, with ``kinds``, as plain JSON-ready data."""
    full = msgspec.json.schema(root)
    defaults = _factory_defaults(root)
    structs: dict[str, Any] = {}
    for name, body in sorted(full.get("$defs", {}).items()):
        fields = {f: _strip(p) for f, p in body.get("properties", {}).items()}
        for f, value in defaults.get(name, {}).items():
            fields[f].setdefault("default", value)
        structs[name] = {"fields": fields, "required": sorted(body.get("required", []))}
    return {"schema_version": version, "structs": structs, "kinds": list(kinds)}


def _text(node: Any) -> str:
    return json.dumps(node, sort_keys=True)


def check_grows(old: Description, new: Description) -> list[str]:
    """Why ``new`` is not an add-only growth of ``old`` (empty when it is)."""
    problems: list[str] = []
    for kind in old["kinds"]:
        if kind not in new["kinds"]:
            problems.append(f"event kind {kind!r} was removed or renamed")
    for name, body in old["structs"].items():
        now = new["structs"].get(name)
        if now is None:
            problems.append(f"struct {name} was removed or renamed")
            continue
        for field, typ in body["fields"].items():
            if field not in now["fields"]:
                problems.append(f"{name}.{field} was removed or renamed")
            elif now["fields"][field] != typ:
                problems.append(f"{name}.{field} changed from {_text(typ)} to {_text(now['fields'][field])}")
        for field in sorted(set(now["required"]) - set(body["required"])):
            problems.append(f"{name}.{field} is newly required (events of the old schema lack it)")
    return problems


def main(argv: list[str]) -> int:
    """Write the current description to ``argv[0]`` (a new version's snapshot)."""
    if len(argv) != 1:
        print("usage: python -m runwatch.schema PATH", file=sys.stderr)
        return 2
    Path(argv[0]).write_text(json.dumps(describe(), indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
