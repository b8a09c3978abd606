"""Compiled rule objects: rules, sequences, output templates, rule tests and the rule set.

All of these are immutable after loading and safe to share between engines and threads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from runwatch.config.errors import ConfigWarning
from runwatch.events import Event
from runwatch.rules.compiler import IndexTerm, KindTest, Pred
from runwatch.rules.diagnostics import RuleError
from runwatch.rules.fields import EvalCtx, FieldSpec, field_text, resolve_field

SEVERITIES: tuple[str, ...] = ("info", "low", "medium", "high", "critical")
ACTIONS: tuple[str, ...] = ("alert", "deny", "kill")
MAPPING_KEYS: tuple[str, ...] = ("owasp_agentic", "owasp_llm", "owasp_nhi", "nist_csf")

_TEMPLATE = re.compile(r"%%|%\{([^}]*)\}|%([A-Za-z_][A-Za-z0-9_.]*(?:\[[^\]\s]+\])?)")


class OutputTemplate:
    """An output template with ``%field`` / ``%{field}`` placeholders, parsed once.

    Raises ``ValueError`` naming the first unknown field.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.parts: list[str | FieldSpec] = []
        pos = 0
        for m in _TEMPLATE.finditer(text):
            self.parts.append(text[pos:m.start()])
            pos = m.end()
            if m.group(0) == "%%":
                self.parts.append("%")
                continue
            name = m.group(1) if m.group(1) is not None else m.group(2)
            trail = ""
            if m.group(2) is not None:
                while name.endswith("."):  # "... %proc.name." ends a sentence
                    name, trail = name[:-1], trail + "."
            spec = resolve_field(name)
            if spec is None:
                raise ValueError(f"unknown field {name!r} in output")
            self.parts.append(spec)
            self.parts.append(trail)
        self.parts.append(text[pos:])
        self.parts = [p for p in self.parts if p != ""]
        self.needs = frozenset(p.needs for p in self.parts if isinstance(p, FieldSpec) and p.needs)

    def render(self, event: Event, ctx: EvalCtx) -> str:
        """The template filled from ``event`` (absent values as ``<NA>``)."""
        return "".join(p if isinstance(p, str) else field_text(p.get(event, ctx)) for p in self.parts)


@dataclass(frozen=True, slots=True)
class RuleMeta:
    """What every rule and sequence carries into its alerts."""

    name: str
    desc: str
    severity: str
    attack: tuple[str, ...]
    mappings: dict[str, list[str]]
    action: str
    enabled: bool
    tags: tuple[str, ...]
    output: OutputTemplate
    file: str
    line: int


@dataclass(frozen=True, slots=True)
class Expect:
    """Expected outcome of a rule test: alerts of the owning rule and/or all rule ids raised."""

    count: int | None
    rules: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class RuleTestCase:
    """One test case from a rule's ``tests`` list, with its events already decoded."""

    rule: str
    name: str
    events: tuple[Event, ...]
    expect: Expect
    file: str
    line: int


@dataclass(slots=True, eq=False)  # identity equality and hashing: the engine keys on rules
class Rule:
    """A compiled single-event rule."""

    meta: RuleMeta
    condition: str
    pred: Pred
    kinds: KindTest | None
    needs: frozenset[str]
    tests: tuple[RuleTestCase, ...] = ()
    index: tuple[IndexTerm, ...] = ()  # top-level terms the engine may index on

    @property
    def name(self) -> str:
        """The rule id."""
        return self.meta.name


@dataclass(slots=True, eq=False)
class Sequence:
    """A compiled sequence: ordered step predicates, key fields and the window."""

    meta: RuleMeta
    steps: tuple[Pred, ...]
    step_kinds: tuple[KindTest | None, ...]
    by: tuple[FieldSpec, ...]
    within_ns: int
    needs: frozenset[str]
    tests: tuple[RuleTestCase, ...] = ()
    across: FieldSpec | None = None  # completes only where the last step's value differs from the first's

    @property
    def name(self) -> str:
        """The sequence id."""
        return self.meta.name


@dataclass(slots=True)
class RuleSet:
    """Everything loaded from a set of rule files.

    ``errors`` is empty unless loading was asked to keep going (``skip_invalid``); then
    ``skipped`` maps each rule that did not load to a one-line reason. ``warnings`` are
    located problems that did not stop loading (unused macros and lists, any-kind rules).
    """

    rules: list[Rule] = field(default_factory=list)
    sequences: list[Sequence] = field(default_factory=list)
    lists: dict[str, list[Any]] = field(default_factory=dict)
    macros: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)
    warnings: list[ConfigWarning] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> Rule | Sequence | None:
        """A rule or sequence by id."""
        for r in self.rules:
            if r.name == name:
                return r
        for s in self.sequences:
            if s.name == name:
                return s
        return None

    def enabled_only(self, also: str | None = None) -> RuleSet:
        """A copy holding the enabled rules (plus ``also``, enabled or not)."""
        return RuleSet(
            rules=[r for r in self.rules if r.meta.enabled or r.name == also],
            sequences=[s for s in self.sequences if s.meta.enabled or s.name == also],
            lists=self.lists, macros=self.macros, files=self.files,
            errors=self.errors, warnings=self.warnings, skipped=self.skipped,
        )
