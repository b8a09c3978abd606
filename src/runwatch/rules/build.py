"""The build step of loading rules: typed items in, a compiled :class:`RuleSet` out.

Lists are flattened, macros parsed and compiled once, then every rule and sequence is
compiled against them (errors located at the token that caused them). The build also
reports warnings that do not stop loading:

- ``unused-macro`` / ``unused-list``: a macro or list no rule or sequence reaches (through
  conditions, exceptions, other macros or other lists); left out when some condition did
  not parse, since its references are unknown;
- ``any-kind``: a rule condition or sequence step that never constrains the event kind,
  so it is tried on every event.
"""

from __future__ import annotations

from typing import Any

from runwatch.config.errors import Location
from runwatch.rules.collect import Collected, Condition, ListItem, RuleItem, SequenceItem
from runwatch.rules.compiler import Compiled, CompileError, Compiler, IndexTerm
from runwatch.rules.diagnostics import ANY_KIND, UNUSED_LIST, UNUSED_MACRO, Report
from runwatch.rules.exceptions import compile_exceptions
from runwatch.rules.language import BoolOp, Cmp, ConditionError, MacroRef, Node, Not, parse_condition
from runwatch.rules.model import Rule, RuleSet, Sequence


def flatten_lists(lists: dict[str, ListItem]) -> dict[str, list[Any]]:
    """Each list's items with the items naming another list replaced by that list's items."""
    out: dict[str, list[Any]] = {}

    def flat(name: str, seen: tuple[str, ...]) -> list[Any]:
        if name in out:
            return out[name]
        result: list[Any] = []
        for item in lists[name].items:
            if isinstance(item, str) and item in lists and item not in seen:
                result.extend(flat(item, (*seen, item)))
            else:
                result.append(item)
        out[name] = result
        return result

    for name in lists:
        flat(name, (name,))
    return out


def references(node: Node, lists: dict[str, ListItem]) -> tuple[set[str], set[str]]:
    """The macro names and list names ``node`` refers to directly."""
    macros: set[str] = set()
    used: set[str] = set()
    stack: list[Node] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, MacroRef):
            macros.add(n.name)
        elif isinstance(n, Not):
            stack.append(n.item)
        elif isinstance(n, BoolOp):
            stack.extend(n.items)
        elif isinstance(n, Cmp):
            if n.list_ref is not None:
                used.add(n.list_ref)
            used.update(v.text for v in n.values or () if not v.quoted and n.parenthesised and v.text in lists)
    return macros, used


class Builder:
    """Builds one collection; reports to ``report``. Used once (not thread-safe)."""

    def __init__(self, collected: Collected, report: Report) -> None:
        self.c = collected
        self.report = report
        self.unparsed = 0  # conditions that did not parse (their references are unknown)
        self.roots: list[Node] = []  # parsed rule, step and exception ASTs: what reaches macros and lists

    def parse(self, cond: Condition, kind: str, name: str) -> Node | None:
        """Parse one condition, reporting a located error (and returning None) on failure."""
        try:
            return parse_condition(cond.text)
        except ConditionError as exc:
            self.unparsed += 1
            self.report.err(cond.locate(exc.token), f"{kind} {name!r}: {exc.message}",
                            name if kind != "macro" else None)
            return None

    def compile_cond(self, comp: Compiler, cond: Condition, kind: str, name: str,
                     terms: list[IndexTerm] | None = None) -> Compiled | None:
        """Parse and compile one condition (errors located); ``terms`` receives index terms of a rule."""
        ast = self.parse(cond, kind, name)
        if ast is None:
            return None
        self.roots.append(ast)
        try:
            if terms is None:
                return comp.compile(ast)
            compiled, found = comp.compile_rule(ast)
            terms.extend(found)
            return compiled
        except CompileError as exc:
            if exc.macro is not None:
                self.report.skip(name, f"uses macro {exc.macro!r} which has errors")
                return None
            self.report.err(cond.locate(exc.token), f"{kind} {name!r}: {exc.message}", name)
            return None

    def any_kind(self, compiled: Compiled | None, at: Location, what: str) -> None:
        if compiled is not None and compiled.kinds is None:
            self.report.warn(at, f"{what} does not constrain the event kind (it is tried on every event); "
                             "add a kind term such as 'kind = process.exec'", ANY_KIND)

    # -- rules and sequences ---------------------------------------------------------------
    def rule(self, comp: Compiler, r: RuleItem) -> Rule | None:
        terms: list[IndexTerm] = []
        cond = self.compile_cond(comp, r.condition, "rule", r.name, terms) if r.condition is not None else None
        if cond is not None:
            self.any_kind(cond, r.condition.at if r.condition is not None else r.at, f"rule {r.name!r}")
        exc = None
        if r.exceptions is not None:
            self.roots.extend(n for ex in r.exceptions for n in ex.alternatives)
            exc = compile_exceptions(self.report, comp, r.name, r.exceptions)
        if (r.meta is None or r.condition is None or cond is None or exc is None or r.tests is None
                or r.name in self.report.skipped):
            return None
        pred = cond.pred
        if exc.pred is not None:
            base, ex = pred, exc.pred
            pred = lambda ev, c: base(ev, c) and not ex(ev, c)  # noqa: E731
        return Rule(r.meta, r.condition.text.strip(), pred, cond.kinds, cond.needs | exc.needs | r.meta.output.needs,
                    r.tests, tuple(terms))

    def sequence(self, comp: Compiler, s: SequenceItem) -> Sequence | None:
        compiled: list[Compiled] = []
        ok = s.steps is not None
        for i, step in enumerate(s.steps or ()):
            c = self.compile_cond(comp, step, "sequence", s.name) if step is not None else None
            if c is None:
                ok = False
                continue
            assert step is not None
            self.any_kind(c, step.at, f"sequence {s.name!r} step {i + 1}")
            compiled.append(c)
        if (s.meta is None or not ok or s.by is None or s.within_ns is None or s.tests is None
                or s.name in self.report.skipped):
            return None
        needs = frozenset().union(*(c.needs for c in compiled)) | s.meta.output.needs
        needs |= frozenset(spec.needs for spec in s.by if spec.needs)
        if s.across is not None and s.across.needs:
            needs |= {s.across.needs}
        return Sequence(s.meta, tuple(c.pred for c in compiled), tuple(c.kinds for c in compiled), s.by,
                        s.within_ns, needs, s.tests, across=s.across)

    # -- the whole build -------------------------------------------------------------------
    def build(self) -> RuleSet:
        """The compiled rule set; errors sorted by file then line, warnings likewise."""
        lists = flatten_lists(self.c.lists)
        macro_asts: dict[str, Node] = {}
        for name, m in self.c.macros.items():
            ast = self.parse(m.condition, "macro", name) if m.condition is not None else None
            if ast is not None:
                macro_asts[name] = ast
        comp = Compiler(lists, macro_asts)
        for name in self.c.macros:
            if name not in macro_asts:  # did not parse: already reported; users see a derived skip
                comp.macro_errors[name] = CompileError("does not parse", macro=name)
        for name, m in self.c.macros.items():
            if name in macro_asts and comp.compile_macro(name) is None:
                exc = comp.macro_errors[name]
                if exc.macro is None and m.condition is not None:
                    self.report.err(m.condition.locate(exc.token), f"macro {name!r}: {exc.message}")
        rs = RuleSet(lists=lists, macros=list(self.c.macros), files=self.c.files)
        for item in self.c.rules:
            if isinstance(item, RuleItem):
                r = self.rule(comp, item)
                if r is not None:
                    rs.rules.append(r)
            else:
                s = self.sequence(comp, item)
                if s is not None:
                    rs.sequences.append(s)
        if self.unparsed == 0:
            self.unused(macro_asts)
        order = {f: i for i, f in enumerate(self.c.files)}
        rs.errors = sorted(self.report.errors, key=lambda e: (order.get(e.file, -1), e.line))
        rs.warnings = sorted(self.report.warnings, key=lambda w: (order.get(w.file, -1), w.location.line,
                                                                  w.location.column))
        rs.skipped = {k: v for k, v in self.report.skipped.items() if rs.get(k) is None}
        return rs

    def unused(self, macro_asts: dict[str, Node]) -> None:
        """Warn about the macros and lists that no rule or sequence reaches."""
        macros: set[str] = set()
        used: set[str] = set()
        todo = list(self.roots)
        while todo:
            m, lst = references(todo.pop(), self.c.lists)
            used |= lst
            for name in m - macros:
                macros.add(name)
                if name in macro_asts:
                    todo.append(macro_asts[name])
        pending = [n for n in used if n in self.c.lists]
        while pending:
            for item in self.c.lists[pending.pop()].items:
                if isinstance(item, str) and item in self.c.lists and item not in used:
                    used.add(item)
                    pending.append(item)
        for name, mi in self.c.macros.items():
            if name not in macros:
                self.report.warn(mi.at, f"macro {name!r} is not used by any rule or sequence", UNUSED_MACRO)
        for name, li in self.c.lists.items():
            if name not in used:
                self.report.warn(li.at, f"list {name!r} is not used by any rule or sequence", UNUSED_LIST)
