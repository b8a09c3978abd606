"""Fold the placeholder terms the Sigma pipeline writes out of a converted runwatch condition.

The pipeline cannot drop a term by itself (pySigma converts every detection item), so it
writes two kinds of placeholder term instead, and :func:`fold` settles them on the parsed
runwatch condition:

* ``__never__ = "WHAT"``: something runwatch never reports (an auditd record type, a system
  call without an event kind). It is false, exactly: runwatch has no such event. It drops out
  of an ``or`` and makes an ``and`` false.
* ``__unmapped__FIELD ...``: a Sigma field runwatch has no counterpart for. Under an odd
  number of ``not`` (a filter, an exclusion) it is replaced by false, which drops that filter
  (or the alternative of it that needs the field) and widens the rule: it can only raise more
  alerts, never miss one. Anywhere else the rule cannot be translated.

Pure functions over the AST of :mod:`runwatch.rules.language`; thread-safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runwatch.rules.language import BoolOp, Cmp, Node, Not, Value, parse_condition

NEVER = "__never__"
UNMAPPED = "__unmapped__"


@dataclass(slots=True)
class Folded:
    """The outcome: ``condition`` (None when it folded to a constant, see ``constant``)."""

    condition: str | None
    constant: bool | None = None
    never: list[str] = field(default_factory=list)  # what the dropped __never__ terms stood for
    dropped_filters: list[str] = field(default_factory=list)  # unmapped fields of dropped filters
    unmapped: list[str] = field(default_factory=list)  # unmapped fields left where they matter


def _add(out: list[str], item: str) -> None:
    if item not in out:
        out.append(item)


def _fold(node: Node, negated: bool, res: Folded) -> Node | bool:
    if isinstance(node, Cmp):
        if node.field == NEVER:
            for v in node.values or []:
                _add(res.never, v.text)
            return False
        if node.field.startswith(UNMAPPED):
            name = node.field[len(UNMAPPED):]
            if negated:
                _add(res.dropped_filters, name)
                return False
            _add(res.unmapped, name)
        return node
    if isinstance(node, Not):
        inner = _fold(node.item, not negated, res)
        return (not inner) if isinstance(inner, bool) else Not(inner)
    if isinstance(node, BoolOp):
        parts = [_fold(item, negated, res) for item in node.items]
        absorbing = node.op == "or"  # true absorbs an or, false an and
        if absorbing in parts:
            return absorbing
        rest = [p for p in parts if not isinstance(p, bool)]
        if not rest:
            return not absorbing
        return rest[0] if len(rest) == 1 else BoolOp(node.op, rest)
    return node


def _unmapped_left(node: Node, out: list[str]) -> None:
    if isinstance(node, Cmp) and node.field.startswith(UNMAPPED):
        _add(out, node.field[len(UNMAPPED):])
    elif isinstance(node, Not):
        _unmapped_left(node.item, out)
    elif isinstance(node, BoolOp):
        for item in node.items:
            _unmapped_left(item, out)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _value(v: Value) -> str:
    return _quote(v.text) if v.quoted else v.text


def render(node: Node) -> str:
    """A condition in runwatch syntax that parses back to ``node``."""
    if isinstance(node, Cmp):
        if node.op == "exists":
            return f"{node.field} exists"
        if node.list_ref is not None:
            return f"{node.field} in {node.list_ref}"
        vals = [_value(v) for v in node.values or []]
        if node.parenthesised:
            return f"{node.field} {node.op} ({', '.join(vals)})"
        return f"{node.field} {node.op} {vals[0]}"
    if isinstance(node, Not):
        inner = render(node.item)
        return f"not ({inner})" if isinstance(node.item, BoolOp) else f"not {inner}"
    if isinstance(node, BoolOp):
        parts = [f"({render(i)})" if isinstance(i, BoolOp) and i.op != node.op else render(i) for i in node.items]
        return f" {node.op} ".join(parts)
    return node.name


def fold(condition: str) -> Folded:
    """Settle the placeholders of ``condition`` (see the module docstring)."""
    res = Folded(None)
    out = _fold(parse_condition(condition), False, res)
    if isinstance(out, bool):
        res.constant = out
        res.unmapped = []
        return res
    res.unmapped = []
    _unmapped_left(out, res.unmapped)  # only those that survived folding matter
    res.condition = render(out)
    return res


__all__ = ["NEVER", "UNMAPPED", "Folded", "fold", "render"]
