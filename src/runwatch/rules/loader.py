"""Load rule files: read (located YAML) -> collect (names, overrides) -> compile.

Every problem is collected with its ``file:line`` in one pass; :func:`load_rules` raises
one :class:`RuleLoadError` carrying all of them, :func:`check_files` returns them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from runwatch.events import Event, upgrade
from runwatch.rules.compiler import Compiled, CompileError, Compiler, IndexTerm
from runwatch.rules.exceptions import compile_exceptions
from runwatch.rules.fields import FieldSpec, resolve_field
from runwatch.rules.language import ConditionError, Node, parse_condition, tokenize
from runwatch.rules.model import (
    ACTIONS,
    MAPPING_KEYS,
    SEVERITIES,
    Expect,
    OutputTemplate,
    Rule,
    RuleMeta,
    RuleSet,
    RuleTestCase,
    Sequence,
)
from runwatch.rules.yamlsrc import LocDict, LocList, RuleError, RuleLoadError, load_yaml_documents, scalar_source

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")
ATTACK_RE = re.compile(r"^(?:T\d{4}(?:\.\d{3})?|TA\d{4}|AML\.T\d{4}(?:\.\d{3})?|AML\.TA\d{4})$")
MAPPING_RE: dict[str, re.Pattern[str]] = {
    "owasp_agentic": re.compile(r"^ASI(?:0[1-9]|10)$"),
    "owasp_llm": re.compile(r"^LLM(?:0[1-9]|10)$"),
    "owasp_nhi": re.compile(r"^NHI(?:[1-9]|10)$"),
    "nist_csf": re.compile(r"^[A-Z]{2}\.[A-Z]{2}-\d{2}$"),
}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h)?$")
_UNIT_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
#: Test events get times from this base (ns) plus their ``at`` offset.
TEST_BASE_NS = 1_700_000_000_000_000_000

_META_KEYS = {"desc", "output", "severity", "attack", "mappings", "action", "enabled", "tags", "tests"}
_KEYS = {
    "list": {"list", "items", "append"},
    "macro": {"macro", "condition"},
    "rule": {"rule", "condition", "exceptions"} | _META_KEYS,
    "sequence": {"sequence", "steps", "by", "within"} | _META_KEYS,
}


def parse_duration(value: Any) -> int:
    """``60s``, ``500ms``, ``5m``, ``1h`` or a number of seconds, to nanoseconds."""
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}")
    if isinstance(value, int | float):
        return int(value * 1_000_000_000)
    m = _DURATION.match(str(value).strip())
    if m is None:
        raise ValueError(f"bad duration {value!r} (use e.g. 500ms, 60s, 5m, 1h)")
    return int(float(m.group(1)) * _UNIT_NS[m.group(2) or "s"])


@dataclass(slots=True)
class _Entry:
    kind: str  # list | macro | rule | sequence
    name: str
    data: LocDict
    file: str
    text: str  # the file's text, for locating tokens in multi-line scalars


class _Load:
    """One load: holds the collected entries and the error list."""

    def __init__(self) -> None:
        self.errors: list[RuleError] = []
        self.skipped: dict[str, str] = {}
        self.entries: dict[str, dict[str, _Entry]] = {"list": {}, "macro": {}, "rule": {}}
        self.order: list[_Entry] = []  # rules and sequences in load order
        self.enabled_override: dict[str, bool] = {}
        self.list_extra: dict[str, list[Any]] = {}
        self.files: list[str] = []

    def err(self, file: str, line: int, message: str, rule: str | None = None) -> None:
        self.errors.append(RuleError(file, line, message, rule))
        if rule is not None and rule not in self.skipped:
            self.skipped[rule] = message

    # -- read and collect ------------------------------------------------------------------
    def add_text(self, text: str, source: str) -> None:
        self.files.append(source)
        for doc in load_yaml_documents(text, source, self.errors):
            if doc is None:
                continue
            if not isinstance(doc, LocList):
                line = getattr(doc, "line", 1)
                self.err(source, line, "a rule file must be a YAML sequence of list/macro/rule/sequence entries")
                continue
            for i, item in enumerate(doc):
                if not isinstance(item, LocDict):
                    self.err(source, doc.item_line(i), "an entry must be a mapping with a list, macro, rule or "
                             "sequence key")
                    continue
                self.collect(item, source, text)

    def collect(self, d: LocDict, file: str, text: str) -> None:
        kinds = [k for k in ("list", "macro", "rule", "sequence") if k in d]
        if len(kinds) != 1:
            what = "more than one of" if kinds else "none of"
            self.err(file, d.line, f"entry has {what} the keys list, macro, rule, sequence")
            return
        kind = kinds[0]
        name = d[kind]
        if not isinstance(name, str) or not NAME_RE.match(name):
            self.err(file, d.key_line(kind), f"bad {kind} name {name!r} (use letters, digits, _ . : -)")
            return
        for key in d:
            if key not in _KEYS[kind]:
                self.err(file, d.key_line(key), f"unknown key {key!r} in {kind} {name!r}",
                         name if kind in ("rule", "sequence") else None)
        space = "rule" if kind == "sequence" else kind
        prior = self.entries[space].get(name)
        entry = _Entry(kind, name, d, file, text)
        if prior is not None:
            if kind in ("rule", "sequence") and set(d) <= {kind, "enabled"} and "enabled" in d:
                if isinstance(d["enabled"], bool):
                    self.enabled_override[name] = d["enabled"]
                else:
                    self.err(file, d.value_line("enabled"), "enabled must be true or false")
                return
            if kind == "list" and d.get("append") is True:
                items = d.get("items")
                if isinstance(items, list):
                    self.list_extra.setdefault(name, []).extend(items)
                else:
                    self.err(file, d.key_line("items"), f"list {name!r}: items must be a sequence")
                return
            self.err(file, d.key_line(kind),
                     f"duplicate {kind} {name!r} (first defined at {prior.file}:{prior.data.line})")
            return
        if kind in ("rule", "sequence") and set(d) <= {kind, "enabled"} and "enabled" in d:
            self.err(file, d.key_line(kind), f"{kind} {name!r} overrides nothing (no earlier definition)")
            return
        self.entries[space][name] = entry
        if space == "rule":
            self.order.append(entry)

    # -- lists and macros ------------------------------------------------------------------
    def resolve_lists(self) -> dict[str, list[Any]]:
        raw: dict[str, list[Any]] = {}
        for name, e in self.entries["list"].items():
            items = e.data.get("items")
            if not isinstance(items, list) or not all(isinstance(i, str | int | float) for i in items):
                self.err(e.file, e.data.key_line("items"), f"list {name!r}: items must be a sequence of scalars")
                items = []
            raw[name] = [*items, *self.list_extra.get(name, [])]
        out: dict[str, list[Any]] = {}

        def flat(name: str, seen: tuple[str, ...]) -> list[Any]:
            if name in out:
                return out[name]
            result: list[Any] = []
            for item in raw[name]:
                if isinstance(item, str) and item in raw and item not in seen:
                    result.extend(flat(item, (*seen, item)))
                else:
                    result.append(item)
            out[name] = result
            return result

        for name in raw:
            flat(name, (name,))
        return out

    def parse(self, e: _Entry, key: str, value: Any, node: Any = None) -> Node | None:
        """Parse one condition, reporting a located error (and returning None) on failure."""
        if not isinstance(value, str) or not value.strip():
            self.err(e.file, e.data.value_line(key), f"{e.kind} {e.name!r}: {key} must be a non-empty string",
                     self._rule(e))
            return None
        try:
            return parse_condition(value)
        except ConditionError as exc:
            line = self.locate(e, key, value, exc.token, node)
            self.err(e.file, line, f"{e.kind} {e.name!r}: {exc.message}", self._rule(e))
            return None

    @staticmethod
    def _rule(e: _Entry) -> str | None:
        return e.name if e.kind in ("rule", "sequence") else None

    def locate(self, e: _Entry, key: str, value: str, token: int | None, node: Any = None) -> int:
        """The file line of token ``token`` of the condition ``value`` stored under ``key``."""
        vnode = node if node is not None else e.data.value_nodes.get(key)
        base = vnode.start_mark.line + 1 if vnode is not None else e.data.key_line(key)
        if token is None or token < 0:
            return base
        src = scalar_source(vnode, e.text)
        if src is None:
            return base
        raw, first = src
        try:
            want, got = tokenize(value), tokenize(raw)
        except ConditionError:
            return base
        if [t.text for t in want] != [t.text for t in got] or token >= len(got):
            return base
        return first + raw[:got[token].pos].count("\n")

    # -- metadata --------------------------------------------------------------------------
    def meta(self, e: _Entry) -> RuleMeta | None:
        d, f, n = e.data, e.file, e.name
        before = len(self.errors)

        def bad(key: str, msg: str) -> None:
            self.err(f, d.value_line(key), f"{e.kind} {n!r}: {msg}", n)

        desc = d.get("desc", "")
        if not isinstance(desc, str):
            bad("desc", "desc must be a string")
        severity = d.get("severity", "medium")
        if severity not in SEVERITIES:
            bad("severity", f"bad severity {severity!r} (one of {', '.join(SEVERITIES)})")
        action = d.get("action", "alert")
        if action not in ACTIONS:
            bad("action", f"bad action {action!r} (one of {', '.join(ACTIONS)})")
        enabled = d.get("enabled", True)
        if not isinstance(enabled, bool):
            bad("enabled", "enabled must be true or false")
        attack = self.str_list(e, "attack")
        for a in attack:
            if not ATTACK_RE.match(a):
                bad("attack", f"bad ATT&CK/ATLAS id {a!r} (like T1059.004, TA0002, AML.T0051)")
        tags = self.str_list(e, "tags")
        mappings: dict[str, list[str]] = {k: [] for k in MAPPING_KEYS}
        raw_map = d.get("mappings", {})
        if not isinstance(raw_map, dict):
            bad("mappings", "mappings must be a mapping")
            raw_map = {}
        for key, ids in raw_map.items():
            line = raw_map.key_line(key) if isinstance(raw_map, LocDict) else d.value_line("mappings")
            if key not in MAPPING_RE:
                self.err(f, line, f"{e.kind} {n!r}: unknown mapping {key!r} (one of {', '.join(MAPPING_KEYS)})", n)
                continue
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                self.err(f, line, f"{e.kind} {n!r}: mappings.{key} must be a list of ids", n)
                continue
            for i in ids:
                if not MAPPING_RE[key].match(i):
                    self.err(f, line, f"{e.kind} {n!r}: bad {key} id {i!r}", n)
            mappings[key] = list(ids)
        output_text = d.get("output") or (desc if isinstance(desc, str) and desc else n)
        output: OutputTemplate | None = None
        if not isinstance(output_text, str):
            bad("output", "output must be a string")
        else:
            try:
                output = OutputTemplate(output_text.strip())
            except ValueError as exc:
                bad("output", str(exc))
        if len(self.errors) != before or output is None:
            return None
        enabled = self.enabled_override.get(n, enabled)
        return RuleMeta(n, desc.strip(), severity, tuple(attack), mappings, action, enabled, tuple(tags),
                        output, f, d.line)

    def str_list(self, e: _Entry, key: str) -> list[str]:
        value = e.data.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.err(e.file, e.data.value_line(key), f"{e.kind} {e.name!r}: {key} must be a list of strings", e.name)
            return []
        return list(value)

    # -- rules -----------------------------------------------------------------------------
    def compile_cond(self, comp: Compiler, e: _Entry, key: str, value: Any, node: Any = None,
                     terms: list[IndexTerm] | None = None) -> Compiled | None:
        """Parse and compile one condition (errors located); ``terms`` receives index terms of a rule."""
        ast = self.parse(e, key, value, node)
        if ast is None:
            return None
        try:
            if terms is None:
                return comp.compile(ast)
            compiled, found = comp.compile_rule(ast)
            terms.extend(found)
            return compiled
        except CompileError as exc:
            if exc.macro is not None:
                self.skipped.setdefault(e.name, f"uses macro {exc.macro!r} which has errors")
                return None
            self.err(e.file, self.locate(e, key, value, exc.token, node), f"{e.kind} {e.name!r}: {exc.message}",
                     self._rule(e))
            return None

    def rule(self, comp: Compiler, e: _Entry) -> Rule | None:
        meta = self.meta(e)
        terms: list[IndexTerm] = []
        cond = self.compile_cond(comp, e, "condition", e.data.get("condition"), terms=terms)
        exc = compile_exceptions(self, comp, e)
        tests = self.tests(e)
        if meta is None or cond is None or exc is None or tests is None or e.name in self.skipped:
            return None
        pred = cond.pred
        if exc.pred is not None:
            base, ex = pred, exc.pred
            pred = lambda ev, c: base(ev, c) and not ex(ev, c)  # noqa: E731
        return Rule(meta, str(e.data["condition"]).strip(), pred, cond.kinds,
                    cond.needs | exc.needs | meta.output.needs, tests, tuple(terms))

    def sequence(self, comp: Compiler, e: _Entry) -> Sequence | None:
        d = e.data
        meta = self.meta(e)
        steps_raw = d.get("steps")
        compiled: list[Compiled] = []
        ok = True
        if not isinstance(steps_raw, LocList) or len(steps_raw) < 2:
            self.err(e.file, d.value_line("steps"), f"sequence {e.name!r}: steps must be a list of two or more "
                     "conditions", e.name)
            ok = False
        else:
            for i, step in enumerate(steps_raw):
                node: Any = steps_raw.item_nodes[i]
                if isinstance(step, LocDict):
                    extra = set(step) - {"condition"}
                    if extra:
                        self.err(e.file, step.key_line(sorted(extra)[0]),
                                 f"sequence {e.name!r}: unknown key {sorted(extra)[0]!r} in step", e.name)
                    node, step = step.value_nodes.get("condition"), step.get("condition")
                c = self.compile_cond(comp, e, "steps", step, node)
                if c is None:
                    ok = False
                else:
                    compiled.append(c)
        by: list[FieldSpec] = []
        by_raw = d.get("by")
        names = [by_raw] if isinstance(by_raw, str) else by_raw
        if not isinstance(names, list) or not names or not all(isinstance(x, str) for x in names):
            self.err(e.file, d.value_line("by"), f"sequence {e.name!r}: by must be a field or a list of fields", e.name)
            ok = False
        else:
            for name in names:
                spec = resolve_field(name)
                if spec is None or spec.type in ("list", "object", "bool"):
                    self.err(e.file, d.value_line("by"), f"sequence {e.name!r}: unknown or unusable key field "
                             f"{name!r}", e.name)
                    ok = False
                else:
                    by.append(spec)
        within = 0
        try:
            within = parse_duration(d.get("within"))
            if within <= 0:
                raise ValueError("within must be positive")
        except ValueError as exc:
            self.err(e.file, d.value_line("within"), f"sequence {e.name!r}: {exc}", e.name)
            ok = False
        tests = self.tests(e)
        if meta is None or not ok or tests is None or e.name in self.skipped:
            return None
        needs = frozenset().union(*(c.needs for c in compiled)) | meta.output.needs
        needs |= frozenset(s.needs for s in by if s.needs)
        return Sequence(meta, tuple(c.pred for c in compiled), tuple(c.kinds for c in compiled), tuple(by), within,
                        needs, tests)

    # -- tests -----------------------------------------------------------------------------
    def tests(self, e: _Entry) -> tuple[RuleTestCase, ...] | None:
        raw = e.data.get("tests")
        if raw is None:
            return ()
        before = len(self.errors)
        if not isinstance(raw, LocList):
            self.err(e.file, e.data.value_line("tests"), f"{e.kind} {e.name!r}: tests must be a list", e.name)
            return None
        out: list[RuleTestCase] = []
        for i, case in enumerate(raw):
            line = raw.item_line(i)
            if not isinstance(case, LocDict):
                self.err(e.file, line, f"{e.kind} {e.name!r}: a test must be a mapping", e.name)
                continue
            tc = self.test_case(e, case, i)
            if tc is not None:
                out.append(tc)
        return tuple(out) if len(self.errors) == before else None

    def test_case(self, e: _Entry, case: LocDict, index: int) -> RuleTestCase | None:
        where = f"{e.kind} {e.name!r} test {index + 1}"
        for key in case:
            if key not in ("name", "events", "expect"):
                self.err(e.file, case.key_line(key), f"{where}: unknown key {key!r}", e.name)
                return None
        events_raw = case.get("events")
        if not isinstance(events_raw, LocList) or not events_raw:
            self.err(e.file, case.value_line("events"), f"{where}: events must be a non-empty list", e.name)
            return None
        events: list[Event] = []
        for j, raw in enumerate(events_raw):
            line = events_raw.item_line(j)
            try:
                events.append(test_event(raw, j))
            except (ValueError, msgspec.ValidationError) as exc:
                self.err(e.file, line, f"{where}: bad event: {exc}", e.name)
                return None
        expect = case.get("expect")
        count, rules = (expect.get("count"), expect.get("rules")) if isinstance(expect, dict) else (None, None)
        if (not isinstance(expect, dict) or set(expect) - {"count", "rules"} or (count is None and rules is None)
                or (count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0))
                or (rules is not None and (not isinstance(rules, list)
                                           or not all(isinstance(r, str) for r in rules)))):
            self.err(e.file, case.value_line("expect"), f"{where}: expect must be {{count: N}} and/or "
                     "{rules: [ids]}", e.name)
            return None
        name = case.get("name") or f"test {index + 1}"
        return RuleTestCase(e.name, str(name), tuple(events),
                            Expect(count, tuple(rules) if rules is not None else None), e.file, case.line)


def test_event(raw: Any, index: int) -> Event:
    """A test event from its YAML dict: ``id``, ``time`` (base + ``at``) default in."""
    if not isinstance(raw, dict) or "kind" not in raw:
        raise ValueError("an event must be a mapping with a kind")
    d = dict(raw)
    at = d.pop("at", None)
    d.setdefault("id", f"t{index + 1}")
    if "time" not in d:
        d["time"] = TEST_BASE_NS + (parse_duration(at) if at is not None else index * 1_000_000)
    return upgrade(msgspec.convert(d, Event))


def rule_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files named by ``paths``: files as given, directories as their ``*.yaml``/``*.yml`` in name order."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix in (".yaml", ".yml") and q.is_file()))
        else:
            out.append(p)
    return out


def _finish(load: _Load) -> RuleSet:
    lists = load.resolve_lists()
    macro_asts: dict[str, Node] = {}
    for name, e in load.entries["macro"].items():
        ast = load.parse(e, "condition", e.data.get("condition"))
        if ast is not None:
            macro_asts[name] = ast
    comp = Compiler(lists, macro_asts)
    for name in load.entries["macro"]:
        if name not in macro_asts:  # did not parse: already reported; users see a derived skip
            comp.macro_errors[name] = CompileError("does not parse", macro=name)
    for name, e in load.entries["macro"].items():
        if name in macro_asts and comp.compile_macro(name) is None:
            exc = comp.macro_errors[name]
            if exc.macro is None:
                cond = e.data.get("condition")
                load.err(e.file, load.locate(e, "condition", str(cond), exc.token), f"macro {name!r}: {exc.message}")
    rs = RuleSet(lists=lists, macros=list(load.entries["macro"]), files=load.files)
    for e in load.order:
        if e.kind == "rule":
            r = load.rule(comp, e)
            if r is not None:
                rs.rules.append(r)
        else:
            s = load.sequence(comp, e)
            if s is not None:
                rs.sequences.append(s)
    order = {f: i for i, f in enumerate(load.files)}
    rs.errors = sorted(load.errors, key=lambda err: (order.get(err.file, -1), err.line))
    rs.skipped = {k: v for k, v in load.skipped.items() if rs.get(k) is None}
    return rs


def load_texts(texts: Iterable[tuple[str, str]], *, skip_invalid: bool = False) -> RuleSet:
    """Load rules from ``(text, source_name)`` pairs (for importers and tests).

    Raises :class:`RuleLoadError` with every error unless ``skip_invalid``; then the rule
    set holds the rules that loaded, ``errors`` and ``skipped`` (rule -> reason).
    """
    load = _Load()
    for text, source in texts:
        load.add_text(text, source)
    rs = _finish(load)
    if rs.errors and not skip_invalid:
        raise RuleLoadError(rs.errors)
    return rs


def _read_all(paths: Iterable[str | os.PathLike[str]], load: _Load) -> None:
    for p in rule_files(paths):
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            load.files.append(str(p))
            load.err(str(p), 1, f"cannot read rule file: {exc.strerror if isinstance(exc, OSError) else exc}")
            continue
        load.add_text(text, str(p))


def load_rules(paths: Iterable[str | os.PathLike[str]], *, skip_invalid: bool = False) -> RuleSet:
    """Load rule files and directories; raises :class:`RuleLoadError` carrying every located error."""
    load = _Load()
    _read_all(paths, load)
    rs = _finish(load)
    if rs.errors and not skip_invalid:
        raise RuleLoadError(rs.errors)
    return rs


def check_files(paths: Iterable[str | os.PathLike[str]]) -> list[RuleError]:
    """Parse, compile and lint rule files; every error, in file order (empty: all good)."""
    load = _Load()
    _read_all(paths, load)
    return _finish(load).errors
