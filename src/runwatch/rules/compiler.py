"""Compile condition ASTs to Python closures, and derive the event kinds a condition can match.

A compiled predicate is ``pred(event, ctx) -> bool``: nested closures over per-field
accessors (``runwatch.rules.fields``), with values coerced and sets/regexes built once at
compile time. Nothing is ``eval``-ed. A kind constraint is ``None`` (any kind) or a function
``kind -> bool`` that is exact: the engine builds its per-kind rule index from it.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runwatch.events import Event
from runwatch.rules.fields import EvalCtx, FieldSpec, parse_ip, resolve_field
from runwatch.rules.language import BoolOp, Cmp, MacroRef, Node, Not, Value
from runwatch.rules.regex import RegexError, compile_search, literal_prefix

Pred = Callable[[Event, EvalCtx], bool]
KindTest = Callable[[str], bool]

_OPS_BY_TYPE: dict[str, frozenset[str]] = {
    "str": frozenset({"=", "!=", "in", "contains", "icontains", "startswith", "endswith", "glob", "regex",
                      "exists"}),
    "ip": frozenset({"=", "!=", "in", "contains", "icontains", "startswith", "endswith", "glob", "regex", "cidr",
                     "exists"}),
    "list": frozenset({"=", "!=", "in", "contains", "icontains", "startswith", "endswith", "glob", "regex",
                       "exists"}),
    "int": frozenset({"=", "!=", "<", "<=", ">", ">=", "in", "exists"}),
    "bool": frozenset({"=", "!=", "exists"}),
    "object": frozenset({"exists"}),
}
ALL_OPS = frozenset().union(*_OPS_BY_TYPE.values())


class CompileError(Exception):
    """A semantic error; ``token`` indexes the condition's tokens (``-1``: not from a condition)."""

    def __init__(self, message: str, token: int = -1, macro: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.token = token
        self.macro = macro  # set when the error is a reference to a broken macro


@dataclass(slots=True)
class Compiled:
    """A compiled condition: predicate, kind constraint and the engine state it reads."""

    pred: Pred
    kinds: KindTest | None
    needs: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class IndexTerm:
    """A top-level term the engine can index on.

    ``mode``: ``eq`` (exact values), ``prefix``, ``suffix``, ``contains``, ``icontains``
    (lower-cased literals) or ``cidr`` (``ipaddress`` networks).
    """

    mode: str
    spec: FieldSpec
    values: tuple[Any, ...]


_AFFIX_MODES = {"startswith": "prefix", "endswith": "suffix", "contains": "contains", "icontains": "icontains"}


def glob_literals(pattern: str) -> tuple[str, str, str]:
    """A glob's literal prefix, literal suffix and longest literal run ("" where there is none)."""
    segs: list[str | None] = []  # literal text, or None for a wildcard
    i, n, buf = 0, len(pattern), ""
    while i < n:
        ch = pattern[i]
        if ch in "*?":
            segs.extend([buf, None])
            buf = ""
            i += 1
            continue
        if ch == "[":
            j = i + 1
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            close = pattern.find("]", j)
            if close >= 0:
                segs.extend([buf, None])
                buf = ""
                i = close + 1
                continue
        buf += ch
        i += 1
    segs.append(buf)
    lits = [sg for sg in segs if sg]
    prefix = segs[0] or ""
    suffix = segs[-1] or ""
    if len(segs) == 1:  # no wildcard at all: the whole pattern is exact
        return prefix, suffix, prefix
    return prefix, suffix, max(lits, key=len) if lits else ""


def _always(e: Event, c: EvalCtx) -> bool:
    return True


def _is_kind_term(node: Node) -> bool:
    return isinstance(node, Cmp) and node.field in ("kind", "evt.kind") and node.op in ("=", "in", "startswith")


class Compiler:
    """Compiles conditions against a fixed set of lists and macros.

    ``lists`` maps names to their (already flattened) items; ``macros`` maps names to ASTs.
    Macros are compiled once and shared by every rule that uses them.
    """

    def __init__(self, lists: dict[str, list[Any]], macros: dict[str, Node]) -> None:
        self.lists = lists
        self.macros = macros
        self._done: dict[str, Compiled] = {}
        self._stack: list[str] = []
        #: Macro name -> its first error. ``macro`` unset: the error is in that macro's own text.
        self.macro_errors: dict[str, CompileError] = {}

    # -- macros -------------------------------------------------------------------------
    def compile_macro(self, name: str) -> Compiled | None:
        """Compile one macro (memoised); ``None`` if it has errors (see ``macro_errors``)."""
        if name in self._done:
            return self._done[name]
        if name in self.macro_errors:
            return None
        self._stack.append(name)
        try:
            compiled = self.compile(self.macros[name])
        except CompileError as exc:
            self.macro_errors[name] = exc  # exc.macro set: it only uses a broken macro
            return None
        finally:
            self._stack.pop()
        self._done[name] = compiled
        return compiled

    # -- conditions ---------------------------------------------------------------------
    def compile(self, node: Node) -> Compiled:
        """Compile an AST; raises :class:`CompileError` at the first problem."""
        if isinstance(node, Cmp):
            return self._cmp(node)
        if isinstance(node, MacroRef):
            return self._macro_ref(node)
        if isinstance(node, Not):
            inner = self.compile(node.item)
            p = inner.pred
            return Compiled(lambda e, c: not p(e, c), None, inner.needs)
        parts = [self.compile(item) for item in node.items]
        needs = frozenset().union(*(p.needs for p in parts))
        preds = tuple(p.pred for p in parts)
        if node.op == "and":
            return Compiled(_and(preds), _kinds_and([p.kinds for p in parts]), needs)
        return Compiled(_or(preds), _kinds_or([p.kinds for p in parts]), needs)

    def conjuncts(self, node: Node) -> list[Node]:
        """The top-level AND terms of ``node``, looking through parentheses and macros."""
        if isinstance(node, BoolOp) and node.op == "and":
            return [t for item in node.items for t in self.conjuncts(item)]
        if isinstance(node, MacroRef) and node.name in self.macros and node.name not in self._stack:
            self._stack.append(node.name)
            try:
                return self.conjuncts(self.macros[node.name])
            finally:
                self._stack.pop()
        return [node]

    def compile_rule(self, node: Node) -> tuple[Compiled, list[IndexTerm]]:
        """Compile a rule condition for the engine's index.

        Returns the compiled condition, with the top-level ``kind`` terms left out of the
        predicate (the kind index guarantees them), and the top-level terms usable as a
        value index (``=``/``in``/``startswith``/``endswith`` on a scalar field).
        """
        full = self.compile(node)
        parts = self.conjuncts(node)
        rest = [p for p in parts if not _is_kind_term(p)]
        if full.kinds is None or len(rest) == len(parts):
            pred = full.pred
        elif rest:
            pred = self.compile(rest[0] if len(rest) == 1 else BoolOp("and", rest)).pred
        else:
            pred = _always
        terms = [t for p in rest if (t := self._index_term(p)) is not None]
        return Compiled(pred, full.kinds, full.needs), terms

    def _index_term(self, node: Node) -> IndexTerm | None:
        """An index term implied by ``node`` being true, or None.

        ``=``/``in`` give exact values; ``startswith``/``endswith`` affixes; ``contains``/
        ``icontains`` required substrings; ``glob`` its literal prefix, suffix or longest
        literal run; ``regex`` the literal prefix of an anchored pattern (else nothing: a
        regex alone is unselective). An ``or`` of terms with the same field and mode merges their values.
        """
        if isinstance(node, BoolOp) and node.op == "or":
            subs = [self._index_term(item) for item in node.items]
            first = subs[0]
            if first is None or any(t is None or (t.mode, t.spec.name) != (first.mode, first.spec.name)
                                    for t in subs):
                return None
            return IndexTerm(first.mode, first.spec, tuple(v for t in subs if t is not None for v in t.values))
        if not isinstance(node, Cmp):
            return None
        spec = resolve_field(node.field)
        if spec is None or spec.type not in ("str", "ip", "int"):
            return None
        op = node.op
        if spec.type == "int" and op not in ("=", "in"):
            return None
        if op in ("=", "in"):
            return IndexTerm("eq", spec, tuple(_coerce(spec, op, self._values(node), node.op_token)))
        if op == "cidr":
            return IndexTerm("cidr", spec, tuple(_coerce(spec, op, self._values(node), node.op_token)))
        if op not in _AFFIX_MODES and op not in ("glob", "regex"):
            return None
        vals = [str(v) for v in _coerce(spec, op, self._values(node), node.op_token)]
        if op == "regex":
            prefixes = [literal_prefix(v) for v in vals]
            return IndexTerm("prefix", spec, tuple(prefixes)) if all(prefixes) else None
        if op != "glob":
            mode = _AFFIX_MODES[op]
            return IndexTerm(mode, spec, tuple(v.lower() for v in vals) if mode == "icontains" else tuple(vals))
        parts = [glob_literals(v) for v in vals]
        for mode, pick in (("prefix", 0), ("suffix", 1), ("contains", 2)):
            lits = [part[pick] for part in parts]
            if all(lits):
                return IndexTerm(mode, spec, tuple(lits))
        return None

    def _macro_ref(self, node: MacroRef) -> Compiled:
        name = node.name
        if name not in self.macros:
            spec = resolve_field(name)
            if spec is not None and spec.type == "bool":  # a bare boolean field means "= true"
                return self._cmp(Cmp(name, "=", [Value("true", False, node.token)], None, False, node.token,
                                     node.token))
            if spec is not None:
                raise CompileError(f"field {name!r} needs an operator", node.token)
            raise CompileError(f"undefined macro {name!r}", node.token)
        if name in self._stack:
            chain = " -> ".join([*self._stack[self._stack.index(name):], name])
            raise CompileError(f"macro cycle: {chain}", node.token)
        compiled = self.compile_macro(name)
        if compiled is None:
            raise CompileError(f"uses macro {name!r} which has errors", node.token, macro=name)
        return compiled

    def _cmp(self, node: Cmp) -> Compiled:
        spec = resolve_field(node.field)
        if spec is None:
            raise CompileError(f"unknown field {node.field!r}", node.token)
        op = node.op
        if op not in _OPS_BY_TYPE[spec.type]:
            raise CompileError(f"operator {op!r} is not allowed on {spec.type} field {spec.name!r}", node.op_token)
        needs = frozenset({spec.needs}) if spec.needs else frozenset()
        if op == "exists":
            g = spec.get
            return Compiled(lambda e, c: g(e, c) is not None, None, needs)
        values = self._values(node)
        test = element_test(spec, op, values, node.op_token)
        pred = _lift(spec, op, test, values)
        kinds: KindTest | None = None
        if spec.name in ("kind", "evt.kind") and op in ("=", "in", "startswith"):
            kinds = test
        return Compiled(pred, kinds, needs)

    def _values(self, node: Cmp) -> list[Any]:
        if node.list_ref is not None:
            if node.list_ref not in self.lists:
                raise CompileError(f"undefined list {node.list_ref!r}", node.op_token + 1)
            return list(self.lists[node.list_ref])
        vals = node.values or []
        if node.parenthesised and len(vals) == 1:
            only = vals[0]
            # Written in a condition (exception values have no token) as `in (some_name)`: a list reference.
            if not only.quoted and only.token >= 0 and _LIST_NAME.match(only.text) and only.text not in self.lists:
                raise CompileError(f"undefined list {only.text!r} (a literal in parentheses alone must be quoted: "
                                   f"\"{only.text}\")", only.token)
        out: list[Any] = []
        for v in vals:
            if not v.quoted and node.parenthesised and v.text in self.lists:
                out.extend(self.lists[v.text])
            else:
                out.append(v)
        return out


_LIST_NAME = re.compile(r"^[A-Za-z0-9]+(?:_[A-Za-z0-9]+)+$")
"""A bare word standing alone in ``( )`` that looks like this (words joined by ``_``) names a list:
``in (shell_binaries)``; ``in (sshd)`` is the literal ``sshd``. Not a defined list: an error."""


def _text(v: Any) -> str:
    return v.text if isinstance(v, Value) else str(v)


def _token(v: Any, default: int) -> int:
    return v.token if isinstance(v, Value) else default


def _coerce(spec: FieldSpec, op: str, values: list[Any], tok: int) -> list[Any]:
    """Values converted to the field's type (errors name the field and the value)."""
    out: list[Any] = []
    for v in values:
        text = _text(v)
        if spec.type == "int":
            if isinstance(v, int) and not isinstance(v, bool):
                out.append(v)
                continue
            try:
                out.append(int(text, 0))
            except ValueError:
                raise CompileError(f"expected a number for {spec.name!r}, found {text!r}", _token(v, tok)) from None
        elif spec.type == "bool":
            low = text.lower() if not isinstance(v, bool) else ("true" if v else "false")
            if low not in ("true", "false"):
                raise CompileError(f"expected true or false for {spec.name!r}, found {text!r}", _token(v, tok))
            out.append(low == "true")
        elif op == "cidr":
            try:
                out.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise CompileError(f"bad network {text!r} for cidr", _token(v, tok)) from None
        else:
            out.append(text)
    if not out:
        raise CompileError(f"operator {op!r} needs at least one value", tok)
    return out


def element_test(spec: FieldSpec, op: str, raw: list[Any], tok: int) -> Callable[[Any], bool]:
    """A test on one present (non-None) scalar value of ``spec``'s type."""
    vals = _coerce(spec, op, raw, tok)
    v = vals[0]
    if op == "=":
        if len(vals) > 1:
            raise CompileError("operator '=' takes one value", tok)
        return lambda x: bool(x == v)
    if op == "!=":
        return lambda x: bool(x != v)
    if op == "in":
        s = frozenset(vals)
        return lambda x: x in s
    if op in ("<", "<=", ">", ">="):
        n: int = v
        return {
            "<": lambda x: x < n, "<=": lambda x: x <= n, ">": lambda x: x > n, ">=": lambda x: x >= n,
        }[op]
    if op == "contains":
        subs = tuple(vals)
        if len(subs) == 1:
            return lambda x: v in x
        return lambda x: any(s in x for s in subs)
    if op == "icontains":
        lows = tuple(s.lower() for s in vals)
        return lambda x: any(s in x.lower() for s in lows)
    if op == "startswith":
        pre = tuple(vals)
        return lambda x: bool(x.startswith(pre))
    if op == "endswith":
        suf = tuple(vals)
        return lambda x: bool(x.endswith(suf))
    if op == "glob":
        rx = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in vals), re.DOTALL)
        match = rx.match
        return lambda x: match(x) is not None
    if op == "regex":  # RE2: linear time; each pattern is checked alone so an error names its token
        for x in raw:
            try:
                compile_search([_text(x)])
            except RegexError as exc:
                raise CompileError(str(exc), _token(x, tok)) from None
        return compile_search([str(x) for x in vals])
    if op == "cidr":
        # (version, first, last) as ints: comparing ints is far cheaper than ipaddress containment
        ranges = tuple((n.version, int(n.network_address), int(n.broadcast_address)) for n in vals)
        if len(ranges) == 1:
            (rv, lo, hi), = ranges

            def in_net(x: Any) -> bool:
                ip = parse_ip(x)
                return ip is not None and ip.version == rv and lo <= int(ip) <= hi

            return in_net

        def in_nets(x: Any) -> bool:
            ip = parse_ip(x)
            if ip is None:
                return False
            ver, i = ip.version, int(ip)
            return any(ver == rv and lo <= i <= hi for rv, lo, hi in ranges)

        return in_nets
    raise CompileError(f"unknown operator {op!r}", tok)


def _lift(spec: FieldSpec, op: str, test: Callable[[Any], bool], values: list[Any]) -> Pred:
    """Turn an element test into an event predicate; absent values are always false.

    The hot operators on scalar fields are inlined (one closure call instead of two).
    """
    g = spec.get
    if spec.type == "list":
        if op == "!=":
            return lambda e, c: (x := g(e, c)) is not None and all(test(i) for i in x)
        return lambda e, c: (x := g(e, c)) is not None and any(test(i) for i in x)
    vals = _coerce(spec, op, values, -1)
    if op == "in":
        s = frozenset(vals)
        return lambda e, c: g(e, c) in s
    if op == "=" and spec.type != "bool":
        v = vals[0]
        return lambda e, c: bool(g(e, c) == v)
    if op == "startswith":
        pre = tuple(vals)
        return lambda e, c: (x := g(e, c)) is not None and bool(x.startswith(pre))
    if op == "endswith":
        suf = tuple(vals)
        return lambda e, c: (x := g(e, c)) is not None and bool(x.endswith(suf))
    if op == "contains" and len(vals) == 1:
        sub = vals[0]
        return lambda e, c: (x := g(e, c)) is not None and sub in x
    return lambda e, c: (x := g(e, c)) is not None and test(x)


def _and(preds: tuple[Pred, ...]) -> Pred:
    """Short-circuit AND as nested closures (no generator per call)."""
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        a, b = preds
        return lambda e, c: a(e, c) and b(e, c)
    if len(preds) == 3:
        a, b, d = preds
        return lambda e, c: a(e, c) and b(e, c) and d(e, c)
    a, b, d = preds[:3]
    rest = _and(preds[3:])
    return lambda e, c: a(e, c) and b(e, c) and d(e, c) and rest(e, c)


def _or(preds: tuple[Pred, ...]) -> Pred:
    """Short-circuit OR as nested closures."""
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        a, b = preds
        return lambda e, c: a(e, c) or b(e, c)
    if len(preds) == 3:
        a, b, d = preds
        return lambda e, c: a(e, c) or b(e, c) or d(e, c)
    a, b, d = preds[:3]
    rest = _or(preds[3:])
    return lambda e, c: a(e, c) or b(e, c) or d(e, c) or rest(e, c)


def _kinds_and(parts: list[KindTest | None]) -> KindTest | None:
    known = [k for k in parts if k is not None]
    if not known:
        return None
    if len(known) == 1:
        return known[0]
    return lambda kind: all(k(kind) for k in known)


def _kinds_or(parts: list[KindTest | None]) -> KindTest | None:
    if any(k is None for k in parts):
        return None
    known = [k for k in parts if k is not None]
    return lambda kind: any(k(kind) for k in known)


__all__ = ["ALL_OPS", "CompileError", "Compiled", "Compiler", "IndexTerm", "KindTest", "Pred", "element_test"]
