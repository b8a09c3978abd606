"""Falco-style rule exceptions compiled to one predicate (``condition and not exceptions``).

An exception has ``name``, ``fields`` (a field or a list), ``comps`` (an operator or one per
field, default ``=``) and ``values``: for one field, a list of alternatives; for several
fields, a list of tuples with one item per field. Items that are lists feed ``in`` and the
other list-taking operators.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runwatch.rules.compiler import ALL_OPS, CompileError, Compiler, Pred
from runwatch.rules.language import LIST_OPS, BoolOp, Cmp, Node, Value
from runwatch.rules.yamlsrc import LocDict, LocList

if TYPE_CHECKING:
    from runwatch.rules.loader import _Entry, _Load


@dataclass(frozen=True, slots=True)
class ExceptionsResult:
    """The compiled exceptions of one rule: ``pred`` is None when the rule has none."""

    pred: Pred | None
    needs: frozenset[str]


def _cmp(field: str, op: str, item: Any) -> Cmp:
    if isinstance(item, list):
        vals = [Value(str(v), False, -1) for v in item]
        return Cmp(field, op, vals, None, True, -1, -1)
    return Cmp(field, op, [Value(str(item).lower() if isinstance(item, bool) else str(item), False, -1)],
               None, op in LIST_OPS, -1, -1)


def _one(load: _Load, e: _Entry, ex: LocDict) -> list[Node] | None:
    """The alternatives of one exception as AST nodes; None after reporting an error."""
    where = f"rule {e.name!r} exception {ex.get('name', '?')!r}"
    for key in ex:
        if key not in ("name", "fields", "comps", "values"):
            load.err(e.file, ex.key_line(key), f"{where}: unknown key {key!r}", e.name)
            return None
    if not isinstance(ex.get("name"), str):
        load.err(e.file, ex.line, "rule exception needs a name", e.name)
        return None
    fields = ex.get("fields")
    single = isinstance(fields, str)
    names = [fields] if single else fields
    if not isinstance(names, list) or not names or not all(isinstance(f, str) for f in names):
        load.err(e.file, ex.value_line("fields"), f"{where}: fields must be a field or a list of fields", e.name)
        return None
    comps = ex.get("comps", "=" if single else ["="] * len(names))
    comps = [comps] if isinstance(comps, str) else comps
    if not isinstance(comps, list) or len(comps) != len(names) or not all(c in ALL_OPS for c in comps):
        load.err(e.file, ex.value_line("comps"), f"{where}: comps must hold one known operator per field", e.name)
        return None
    values = ex.get("values", [])
    if not isinstance(values, LocList):
        load.err(e.file, ex.value_line("values"), f"{where}: values must be a list", e.name)
        return None
    out: list[Node] = []
    for i, item in enumerate(values):
        row = [item] if single else item
        if not isinstance(row, list) or len(row) != len(names):
            load.err(e.file, values.item_line(i), f"{where}: each value must have {len(names)} item(s), one per "
                     "field", e.name)
            return None
        cmps: list[Node] = [_cmp(f, c, v) for f, c, v in zip(names, comps, row, strict=True)]
        out.append(cmps[0] if len(cmps) == 1 else BoolOp("and", cmps))
    return out


def compile_exceptions(load: _Load, comp: Compiler, e: _Entry) -> ExceptionsResult | None:
    """Compile a rule's ``exceptions``; None (errors reported with their lines) on failure."""
    raw = e.data.get("exceptions")
    if raw is None:
        return ExceptionsResult(None, frozenset())
    if not isinstance(raw, LocList):
        load.err(e.file, e.data.value_line("exceptions"), f"rule {e.name!r}: exceptions must be a list", e.name)
        return None
    alternatives: list[Node] = []
    ok = True
    for i, ex in enumerate(raw):
        if not isinstance(ex, LocDict):
            load.err(e.file, raw.item_line(i), f"rule {e.name!r}: an exception must be a mapping", e.name)
            ok = False
            continue
        nodes = _one(load, e, ex)
        if nodes is None:
            ok = False
            continue
        for node in nodes:
            try:
                comp.compile(node)
            except CompileError as exc:
                load.err(e.file, ex.line, f"rule {e.name!r} exception {ex['name']!r}: {exc.message}", e.name)
                ok = False
                break
            alternatives.append(node)
    if not ok:
        return None
    if not alternatives:
        return ExceptionsResult(None, frozenset())
    compiled = comp.compile(alternatives[0] if len(alternatives) == 1 else BoolOp("or", alternatives))
    return ExceptionsResult(compiled.pred, compiled.needs)
