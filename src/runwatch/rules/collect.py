"""The collect step of loading rules: located YAML in, typed items out.

Each file is read into :class:`ListItem`, :class:`MacroItem`, :class:`RuleItem` and
:class:`SequenceItem` values that carry their :class:`~runwatch.config.errors.Location`;
names, keys, metadata, exceptions and rule tests are checked here. Overrides
(``enabled: false`` on an earlier rule, ``append: true`` on an earlier list) are applied
when the collection is finished. Conditions stay text: compiling them against the lists and
macros is the build step (:mod:`runwatch.rules.build`). Every problem goes to one
:class:`~runwatch.rules.diagnostics.Report`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec
from yaml.nodes import Node as YamlNode

from runwatch.config.errors import ConfigError, Location
from runwatch.config.values import parse_duration
from runwatch.config.yamlsrc import LocDict, LocList, load_yaml_documents, node_location, scalar_source
from runwatch.events import Event, upgrade
from runwatch.rules.diagnostics import Report
from runwatch.rules.exceptions import ExceptionItem, collect_exceptions
from runwatch.rules.fields import FieldSpec, resolve_field
from runwatch.rules.language import ConditionError, tokenize
from runwatch.rules.model import ACTIONS, MAPPING_KEYS, SEVERITIES, Expect, OutputTemplate, RuleMeta, RuleTestCase

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")
ATTACK_RE = re.compile(r"^(?:T\d{4}(?:\.\d{3})?|TA\d{4}|AML\.T\d{4}(?:\.\d{3})?|AML\.TA\d{4})$")
MAPPING_RE: dict[str, re.Pattern[str]] = {
    "owasp_agentic": re.compile(r"^ASI(?:0[1-9]|10)$"),
    "owasp_llm": re.compile(r"^LLM(?:0[1-9]|10)$"),
    "owasp_nhi": re.compile(r"^NHI(?:[1-9]|10)$"),
    "nist_csf": re.compile(r"^[A-Z]{2}\.[A-Z]{2}-\d{2}$"),
}
#: Test events get times from this base (ns) plus their ``at`` offset.
TEST_BASE_NS = 1_700_000_000_000_000_000

_META_KEYS = {"desc", "output", "severity", "attack", "mappings", "action", "enabled", "tags", "tests"}
KEYS = {
    "list": {"list", "items", "append"},
    "macro": {"macro", "condition"},
    "rule": {"rule", "condition", "exceptions"} | _META_KEYS,
    "sequence": {"sequence", "steps", "by", "within", "across"} | _META_KEYS,
}


@dataclass(frozen=True, slots=True)
class Condition:
    """A condition's text and where it is written (for locating a token of it in the file)."""

    text: str
    at: Location
    node: YamlNode | None
    file_text: str

    def locate(self, token: int | None) -> Location:
        """The place of token ``token`` of the condition (the condition's own place when unknown)."""
        if token is None or token < 0:
            return self.at
        src = scalar_source(self.node, self.file_text)
        if src is None:
            return self.at
        raw, first, column = src
        try:
            want, got = tokenize(self.text), tokenize(raw)
        except ConditionError:
            return self.at
        if [t.text for t in want] != [t.text for t in got] or token >= len(got):
            return self.at
        pos = got[token].pos
        nl = raw.rfind("\n", 0, pos)
        return Location(self.at.path, first + raw[:pos].count("\n"), column + pos if nl < 0 else pos - nl)


@dataclass(frozen=True, slots=True)
class ListItem:
    """A named list; ``items`` include every later ``append``."""

    name: str
    at: Location
    items: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class MacroItem:
    """A named condition fragment; ``condition`` is None when it is not a non-empty string."""

    name: str
    at: Location
    condition: Condition | None


@dataclass(frozen=True, slots=True)
class RuleItem:
    """A single-event rule; a None part had errors (reported)."""

    name: str
    at: Location
    meta: RuleMeta | None
    condition: Condition | None
    exceptions: tuple[ExceptionItem, ...] | None
    tests: tuple[RuleTestCase, ...] | None
    kind: str = "rule"


@dataclass(frozen=True, slots=True)
class SequenceItem:
    """A sequence of steps keyed by ``by`` within ``within_ns``; a None part had errors (reported)."""

    name: str
    at: Location
    meta: RuleMeta | None
    steps: tuple[Condition | None, ...] | None
    by: tuple[FieldSpec, ...] | None
    within_ns: int | None
    tests: tuple[RuleTestCase, ...] | None
    kind: str = "sequence"
    across: FieldSpec | None = None  # the last step's value of this field differs from the first step's


@dataclass(slots=True)
class Collected:
    """Everything collected from a set of rule files, overrides applied."""

    files: list[str] = field(default_factory=list)
    lists: dict[str, ListItem] = field(default_factory=dict)
    macros: dict[str, MacroItem] = field(default_factory=dict)
    rules: list[RuleItem | SequenceItem] = field(default_factory=list)  # in load order


class Collector:
    """Collects rule files into typed items, reporting to ``report``; one load at a time."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.out = Collected()
        self._first: dict[tuple[str, str], Location] = {}  # (space, name) -> where first defined
        self._enabled: dict[str, bool] = {}
        self._appends: dict[str, list[Any]] = {}

    # -- files and entries ----------------------------------------------------------------
    def add_text(self, text: str, source: str) -> None:
        """Collect every entry of one file's text."""
        self.out.files.append(source)
        errors: list[ConfigError] = []
        docs = load_yaml_documents(text, source, errors)
        for error in errors:
            self.report.config_error(error)
        for doc in docs:
            if doc is None:
                continue
            if not isinstance(doc, LocList):
                at = doc.location if isinstance(doc, LocDict) else Location(source, 1)
                self.report.err(at, "a rule file must be a YAML sequence of list/macro/rule/sequence entries")
                continue
            for i, item in enumerate(doc):
                if not isinstance(item, LocDict):
                    self.report.err(doc.item_location(i), "an entry must be a mapping with a list, macro, rule or "
                                    "sequence key")
                    continue
                self.entry(item, text)

    def unreadable(self, source: str, reason: str) -> None:
        """Record a file that could not be read."""
        self.out.files.append(source)
        self.report.err(Location(source, 1), f"cannot read rule file: {reason}")

    def entry(self, d: LocDict, text: str) -> None:
        """Collect one entry (a mapping with exactly one of list, macro, rule, sequence)."""
        kinds = [k for k in ("list", "macro", "rule", "sequence") if k in d]
        if len(kinds) != 1:
            what = "more than one of" if kinds else "none of"
            self.report.err(d.location, f"entry has {what} the keys list, macro, rule, sequence")
            return
        kind = kinds[0]
        name = d[kind]
        if not isinstance(name, str) or not NAME_RE.match(name):
            self.report.err(d.key_location(kind), f"bad {kind} name {name!r} (use letters, digits, _ . : -)")
            return
        for key in d:
            if key not in KEYS[kind]:
                self.report.err(d.key_location(key), f"unknown key {key!r} in {kind} {name!r}",
                                name if kind in ("rule", "sequence") else None)
        space = "rule" if kind == "sequence" else kind
        prior = self._first.get((space, name))
        toggle = kind in ("rule", "sequence") and set(d) <= {kind, "enabled"} and "enabled" in d
        if prior is not None:
            if toggle:
                if isinstance(d["enabled"], bool):
                    self._enabled[name] = d["enabled"]
                else:
                    self.report.err(d.value_location("enabled"), "enabled must be true or false")
                return
            if kind == "list" and d.get("append") is True:
                items = d.get("items")
                if isinstance(items, list):
                    self._appends.setdefault(name, []).extend(items)
                else:
                    self.report.err(d.key_location("items"), f"list {name!r}: items must be a sequence")
                return
            self.report.err(d.key_location(kind), f"duplicate {kind} {name!r} (first defined at "
                            f"{prior.path}:{prior.line})")
            return
        if toggle:
            self.report.err(d.key_location(kind), f"{kind} {name!r} overrides nothing (no earlier definition)")
            return
        self._first[(space, name)] = d.location
        if kind == "list":
            self.list_item(name, d)
        elif kind == "macro":
            self.out.macros[name] = MacroItem(name, d.location, self.condition(d, "macro", name, "condition", text))
        elif kind == "rule":
            self.out.rules.append(self.rule_item(name, d, text))
        else:
            self.out.rules.append(self.sequence_item(name, d, text))

    def finish(self) -> Collected:
        """The collection with overrides applied (call once, after the last file)."""
        for name, extra in self._appends.items():
            item = self.out.lists[name]
            self.out.lists[name] = dataclasses.replace(item, items=(*item.items, *extra))
        for i, r in enumerate(self.out.rules):
            if r.meta is not None and r.name in self._enabled:
                self.out.rules[i] = dataclasses.replace(r, meta=dataclasses.replace(r.meta,
                                                                                   enabled=self._enabled[r.name]))
        return self.out

    # -- the kinds of entry ---------------------------------------------------------------
    def list_item(self, name: str, d: LocDict) -> None:
        items = d.get("items")
        if not isinstance(items, list) or not all(isinstance(i, str | int | float) for i in items):
            self.report.err(d.key_location("items"), f"list {name!r}: items must be a sequence of scalars")
            items = []
        self.out.lists[name] = ListItem(name, d.location, tuple(items))

    def condition(self, d: LocDict, kind: str, name: str, key: str, text: str,
                  step: tuple[Any, YamlNode | None] | None = None) -> Condition | None:
        """The condition under ``key``, or the sequence ``step`` (value, node) found under it; None after an error.

        A bad value is reported at the value of ``key``.
        """
        value, node = step if step is not None else (d.get(key), d.value_nodes.get(key))
        if not isinstance(value, str) or not value.strip():
            self.report.err(d.value_location(key), f"{kind} {name!r}: {key} must be a non-empty string",
                            name if kind != "macro" else None)
            return None
        at = node_location(d.source, node) if node is not None else d.key_location(key)
        return Condition(value, at, node, text)

    def rule_item(self, name: str, d: LocDict, text: str) -> RuleItem:
        meta = self.meta("rule", name, d)
        cond = self.condition(d, "rule", name, "condition", text)
        exceptions = collect_exceptions(self.report, name, d)
        return RuleItem(name, d.location, meta, cond, exceptions, self.tests("rule", name, d))

    def sequence_item(self, name: str, d: LocDict, text: str) -> SequenceItem:
        meta = self.meta("sequence", name, d)
        steps_raw = d.get("steps")
        steps: tuple[Condition | None, ...] | None = None
        if not isinstance(steps_raw, LocList) or len(steps_raw) < 2:
            self.report.err(d.value_location("steps"), f"sequence {name!r}: steps must be a list of two or more "
                            "conditions", name)
        else:
            found: list[Condition | None] = []
            for i, step in enumerate(steps_raw):
                node: YamlNode | None = steps_raw.item_nodes[i]
                if isinstance(step, LocDict):
                    extra = set(step) - {"condition"}
                    if extra:
                        self.report.err(step.key_location(sorted(extra)[0]),
                                        f"sequence {name!r}: unknown key {sorted(extra)[0]!r} in step", name)
                    node, step = step.value_nodes.get("condition"), step.get("condition")
                found.append(self.condition(d, "sequence", name, "steps", text, (step, node)))
            steps = tuple(found)
        by: list[FieldSpec] | None = []
        by_raw = d.get("by")
        names = [by_raw] if isinstance(by_raw, str) else by_raw
        if not isinstance(names, list) or not names or not all(isinstance(x, str) for x in names):
            self.report.err(d.value_location("by"), f"sequence {name!r}: by must be a field or a list of fields",
                            name)
            by = None
        else:
            for field_name in names:
                spec = resolve_field(field_name)
                if spec is None or spec.type in ("list", "object", "bool"):
                    self.report.err(d.value_location("by"), f"sequence {name!r}: unknown or unusable key field "
                                    f"{field_name!r}", name)
                    by = None
                elif by is not None:
                    by.append(spec)
        within: int | None = None
        try:
            within = parse_duration(d.get("within"))
            if within <= 0:
                raise ValueError("within must be positive")
        except ValueError as exc:
            self.report.err(d.value_location("within"), f"sequence {name!r}: {exc}", name)
            within = None
        across: FieldSpec | None = None
        across_raw = d.get("across")
        if across_raw is not None:
            across = resolve_field(across_raw) if isinstance(across_raw, str) else None
            if across is None or across.type in ("list", "object", "bool"):
                self.report.err(d.value_location("across"), f"sequence {name!r}: unknown or unusable across field "
                                f"{across_raw!r}", name)
                by = None  # the sequence is not built
        return SequenceItem(name, d.location, meta, steps,
                            tuple(by) if by is not None else None, within, self.tests("sequence", name, d),
                            across=across)

    # -- metadata --------------------------------------------------------------------------
    def meta(self, kind: str, n: str, d: LocDict) -> RuleMeta | None:
        before = len(self.report.errors)

        def bad(key: str, msg: str) -> None:
            self.report.err(d.value_location(key), f"{kind} {n!r}: {msg}", n)

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
        attack = self.str_list(kind, n, d, "attack")
        for a in attack:
            if not ATTACK_RE.match(a):
                bad("attack", f"bad ATT&CK/ATLAS id {a!r} (like T1059.004, TA0002, AML.T0051)")
        tags = self.str_list(kind, n, d, "tags")
        mappings: dict[str, list[str]] = {k: [] for k in MAPPING_KEYS}
        raw_map = d.get("mappings", {})
        if not isinstance(raw_map, dict):
            bad("mappings", "mappings must be a mapping")
            raw_map = {}
        for key, ids in raw_map.items():
            at = raw_map.key_location(key) if isinstance(raw_map, LocDict) else d.value_location("mappings")
            if key not in MAPPING_RE:
                self.report.err(at, f"{kind} {n!r}: unknown mapping {key!r} (one of {', '.join(MAPPING_KEYS)})", n)
                continue
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                self.report.err(at, f"{kind} {n!r}: mappings.{key} must be a list of ids", n)
                continue
            for i in ids:
                if not MAPPING_RE[key].match(i):
                    self.report.err(at, f"{kind} {n!r}: bad {key} id {i!r}", n)
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
        if len(self.report.errors) != before or output is None:
            return None
        return RuleMeta(n, desc.strip(), severity, tuple(attack), mappings, action, enabled, tuple(tags),
                        output, d.source, d.line)

    def str_list(self, kind: str, name: str, d: LocDict, key: str) -> list[str]:
        value = d.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.report.err(d.value_location(key), f"{kind} {name!r}: {key} must be a list of strings", name)
            return []
        return list(value)

    # -- tests -----------------------------------------------------------------------------
    def tests(self, kind: str, name: str, d: LocDict) -> tuple[RuleTestCase, ...] | None:
        raw = d.get("tests")
        if raw is None:
            return ()
        before = len(self.report.errors)
        if not isinstance(raw, LocList):
            self.report.err(d.value_location("tests"), f"{kind} {name!r}: tests must be a list", name)
            return None
        out: list[RuleTestCase] = []
        for i, case in enumerate(raw):
            if not isinstance(case, LocDict):
                self.report.err(raw.item_location(i), f"{kind} {name!r}: a test must be a mapping", name)
                continue
            tc = self.test_case(kind, name, case, i)
            if tc is not None:
                out.append(tc)
        return tuple(out) if len(self.report.errors) == before else None

    def test_case(self, kind: str, rule: str, case: LocDict, index: int) -> RuleTestCase | None:
        where = f"{kind} {rule!r} test {index + 1}"
        for key in case:
            if key not in ("name", "events", "expect"):
                self.report.err(case.key_location(key), f"{where}: unknown key {key!r}", rule)
                return None
        events_raw = case.get("events")
        if not isinstance(events_raw, LocList) or not events_raw:
            self.report.err(case.value_location("events"), f"{where}: events must be a non-empty list", rule)
            return None
        events: list[Event] = []
        for j, raw in enumerate(events_raw):
            try:
                events.append(test_event(raw, j))
            except (ValueError, msgspec.ValidationError) as exc:
                self.report.err(events_raw.item_location(j), f"{where}: bad event: {exc}", rule)
                return None
        expect = case.get("expect")
        count, rules = (expect.get("count"), expect.get("rules")) if isinstance(expect, dict) else (None, None)
        if (not isinstance(expect, dict) or set(expect) - {"count", "rules"} or (count is None and rules is None)
                or (count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0))
                or (rules is not None and (not isinstance(rules, list)
                                           or not all(isinstance(r, str) for r in rules)))):
            self.report.err(case.value_location("expect"), f"{where}: expect must be {{count: N}} and/or "
                            "{rules: [ids]}", rule)
            return None
        name = case.get("name") or f"test {index + 1}"
        return RuleTestCase(rule, str(name), tuple(events),
                            Expect(count, tuple(rules) if rules is not None else None), case.source, case.line)


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
