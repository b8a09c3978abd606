"""Validate OCSF records against the published schema (the ``pydantic-ocsf`` package).

Two checks, both from the schema the package ships (``ocsf/schemas/v<VERSION>.json``):

* the package's pydantic model of the record's class (types, enums, required fields);
* what the models leave out: every attribute the record carries is one the class or object
  defines (``unmapped`` is free-form), every ``required`` attribute is present, and each
  object meets its ``constraints`` (``at_least_one``, ``just_one``), at every depth.

:func:`violations` returns one line per problem (empty: valid).
"""

from __future__ import annotations

import functools
import importlib
import importlib.resources
import json
from typing import Any

import pydantic

from runwatch.eventkinds import OCSF_VERSION

SCHEMA_VERSION = OCSF_VERSION
_FREE = frozenset({"unmapped"})


@functools.cache
def _schema() -> dict[str, Any]:
    text = importlib.resources.files("ocsf").joinpath(f"schemas/v{SCHEMA_VERSION.replace('.', '_')}.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def _merged(table: str, name: str) -> dict[str, Any]:
    """Attributes and constraints of event class or object ``name``, along its ``extends`` chain."""
    s = _schema()[table]
    chain: list[dict[str, Any]] = []
    cur: str | None = name
    while cur and cur in s and len(chain) < 16:
        chain.append(s[cur])
        cur = s[cur].get("extends")
    attrs: dict[str, dict[str, Any]] = {}
    constraints: dict[str, list[str]] = {}
    profiles = False
    category = None
    for d in reversed(chain):
        for key, spec in (d.get("attributes") or {}).items():
            if key == "$include":
                profiles = True  # profile attributes are not in this file: any dictionary attribute may come
                continue
            attrs[key] = {**attrs.get(key, {}), **spec}
        constraints.update(d.get("constraints") or {})
        category = d.get("category") or category
    return {"attributes": attrs, "constraints": constraints, "profiles": profiles, "category": category}


@functools.cache
def _event_names() -> dict[int, str]:
    """class_uid -> event class name (category uid * 1000 + the class's uid)."""
    s = _schema()
    cats = s["categories_meta"]["attributes"]
    out: dict[int, str] = {0: "base_event"}
    for name, d in s["events"].items():
        uid, category = d.get("uid"), _merged("events", name)["category"]
        if uid is None or category not in cats:
            continue
        out[int(cats[category]["uid"]) * 1000 + int(uid)] = name
    return out


def _type_of(attr: str, spec: dict[str, Any]) -> tuple[str | None, bool]:
    """(object type or None for a scalar, is_array) of an attribute."""
    d = _schema()["dictionary"]["attributes"].get(attr, {})
    t = spec.get("object_type") or spec.get("type") or d.get("object_type") or d.get("type")
    is_array = bool(spec.get("is_array", d.get("is_array", False)))
    return (t if t in _schema()["objects"] else None), is_array


def _walk(value: dict[str, Any], table: str, name: str, path: str, out: list[str]) -> None:
    merged = _merged(table, name)
    attrs = merged["attributes"]
    for key, item in value.items():
        if key in _FREE:
            continue
        if key not in attrs and not (merged["profiles"] and key in _schema()["dictionary"]["attributes"]):
            out.append(f"{path}.{key}: not an attribute of {name}")
            continue
        obj, is_array = _type_of(key, attrs.get(key, {}))
        if obj is None:
            continue
        for i, sub in enumerate(item if is_array and isinstance(item, list) else [item]):
            if isinstance(sub, dict):
                _walk(sub, "objects", obj, f"{path}.{key}" + (f"[{i}]" if is_array else ""), out)
    for key, spec in attrs.items():
        if spec.get("requirement") == "required" and key not in value:
            out.append(f"{path}.{key}: required by {name}, missing")
    for kind, keys in merged["constraints"].items():
        present = [k for k in keys if value.get(k) not in (None, "", [])]
        if kind == "at_least_one" and not present:
            out.append(f"{path}: {name} needs at least one of {', '.join(keys)}")
        elif kind == "just_one" and len(present) != 1:
            out.append(f"{path}: {name} needs exactly one of {', '.join(keys)} (has {len(present)})")


@functools.cache
def _model(class_name: str) -> type[pydantic.BaseModel] | None:
    """The package's model of an event class, with every object type it refers to resolved
    (the package builds its models lazily, so a forward reference may still be open)."""
    prefix = f"ocsf.v{SCHEMA_VERSION.replace('.', '_')}"
    module = importlib.import_module(f"{prefix}.events")
    objects = importlib.import_module(f"{prefix}.objects")
    wanted = class_name.replace("_", "").lower()
    model = next((getattr(module, a) for a in dir(module) if a.lower() == wanted), None)
    if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
        return None
    if not model.__pydantic_complete__:
        names = {**vars(pydantic), **vars(module), **{n: getattr(objects, n) for n in dir(objects) if n[:1].isupper()}}
        model.model_rebuild(force=True, _types_namespace=names)
    return model


def violations(record: dict[str, Any]) -> list[str]:
    """Every way ``record`` breaks the OCSF schema (see the module docstring); empty when valid."""
    uid = record.get("class_uid")
    name = _event_names().get(uid) if isinstance(uid, int) else None
    if name is None:
        return [f"class_uid {uid!r}: no such class"]
    out: list[str] = []
    model = _model(name)
    if model is not None:
        try:
            model.model_validate(record)
        except pydantic.ValidationError as exc:
            out.extend(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    _walk(record, "events", name, name, out)
    return out
