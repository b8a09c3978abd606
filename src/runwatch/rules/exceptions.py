"""Falco-style rule exceptions: read into typed items, then compiled to one predicate.

An exception has ``name``, ``fields`` (a field or a list), ``comps`` (an operator or one per
field, default ``=``) and ``values``: for one field, a list of alternatives; for several
fields, a list of tuples with one item per field. Items that are lists feed ``in`` and the
other list-taking operators. A rule with exceptions matches ``condition and not exceptions``.

:func:`collect_exceptions` is the collect step (shape checks, located errors);
:func:`compile_exceptions` the build step (field and operator checks against the compiler).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runwatch.config.errors import Location
from runwatch.config.yamlsrc import LocDict, LocList
from runwatch.rules.compiler import ALL_OPS, CompileError, Compiler, Pred
from runwatch.rules.diagnostics import Report
from runwatch.rules.language import LIST_OPS, BoolOp, Cmp, Node, Value


@dataclass(frozen=True, slots=True)
class ExceptionItem:
    """One collected exception: its name, where it is, and its alternatives as condition ASTs."""

    name: str
    at: Location
    alternatives: tuple[Node, ...]


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


def _one(report: Report, rule: str, ex: LocDict) -> ExceptionItem | None:
    """One exception as a typed item; None after reporting an error."""
    where = f"rule {rule!r} exception {ex.get('name', '?')!r}"
    for key in ex:
        if key not in ("name", "fields", "comps", "values"):
            report.err(ex.key_location(key), f"{where}: unknown key {key!r}", rule)
            return None
    name = ex.get("name")
    if not isinstance(name, str):
        report.err(ex.location, "rule exception needs a name", rule)
        return None
    fields = ex.get("fields")
    single = isinstance(fields, str)
    names = [fields] if single else fields
    if not isinstance(names, list) or not names or not all(isinstance(f, str) for f in names):
        report.err(ex.value_location("fields"), f"{where}: fields must be a field or a list of fields", rule)
        return None
    comps = ex.get("comps", "=" if single else ["="] * len(names))
    comps = [comps] if isinstance(comps, str) else comps
    if not isinstance(comps, list) or len(comps) != len(names) or not all(c in ALL_OPS for c in comps):
        report.err(ex.value_location("comps"), f"{where}: comps must hold one known operator per field", rule)
        return None
    values = ex.get("values", [])
    if not isinstance(values, LocList):
        report.err(ex.value_location("values"), f"{where}: values must be a list", rule)
        return None
    out: list[Node] = []
    for i, item in enumerate(values):
        row = [item] if single else item
        if not isinstance(row, list) or len(row) != len(names):
            report.err(values.item_location(i), f"{where}: each value must have {len(names)} item(s), one per "
                       "field", rule)
            return None
        cmps: list[Node] = [_cmp(f, c, v) for f, c, v in zip(names, comps, row, strict=True)]
        out.append(cmps[0] if len(cmps) == 1 else BoolOp("and", cmps))
    return ExceptionItem(name, ex.location, tuple(out))


def collect_exceptions(report: Report, rule: str, data: LocDict) -> tuple[ExceptionItem, ...] | None:
    """The ``exceptions`` of rule entry ``data`` as typed items; None (errors reported) on failure."""
    raw = data.get("exceptions")
    if raw is None:
        return ()
    if not isinstance(raw, LocList):
        report.err(data.value_location("exceptions"), f"rule {rule!r}: exceptions must be a list", rule)
        return None
    items: list[ExceptionItem] = []
    ok = True
    for i, ex in enumerate(raw):
        if not isinstance(ex, LocDict):
            report.err(raw.item_location(i), f"rule {rule!r}: an exception must be a mapping", rule)
            ok = False
            continue
        item = _one(report, rule, ex)
        if item is None:
            ok = False
        else:
            items.append(item)
    return tuple(items) if ok else None


def compile_exceptions(report: Report, comp: Compiler, rule: str,
                       items: tuple[ExceptionItem, ...]) -> ExceptionsResult | None:
    """Compile a rule's collected exceptions; None (errors reported with their places) on failure."""
    alternatives: list[Node] = []
    ok = True
    for ex in items:
        for node in ex.alternatives:
            try:
                comp.compile(node)
            except CompileError as exc:
                report.err(ex.at, f"rule {rule!r} exception {ex.name!r}: {exc.message}", rule)
                ok = False
                break
            alternatives.append(node)
    if not ok:
        return None
    if not alternatives:
        return ExceptionsResult(None, frozenset())
    compiled = comp.compile(alternatives[0] if len(alternatives) == 1 else BoolOp("or", alternatives))
    return ExceptionsResult(compiled.pred, compiled.needs)
