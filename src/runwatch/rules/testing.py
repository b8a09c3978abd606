"""Run the test cases written inside rule files (events in, expected alerts out).

Each case runs on a fresh :class:`Engine` over every loaded enabled rule plus the owning
rule (even when disabled), without throttling. ``expect.count`` counts the owning rule's
alerts; ``expect.rules`` is the ordered list of rule ids of all alerts raised.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from runwatch.rules.engine import Engine
from runwatch.rules.loader import load_rules
from runwatch.rules.model import RuleSet, RuleTestCase


@dataclass(frozen=True, slots=True)
class TestResult:
    """The outcome of one rule test case; ``message`` explains a failure in one line."""

    __test__ = False  # not a pytest class

    rule: str
    name: str
    file: str
    line: int
    passed: bool
    message: str = ""

    def __str__(self) -> str:
        state = "PASS" if self.passed else "FAIL"
        tail = f": {self.message}" if self.message else ""
        return f"{state} {self.rule} / {self.name} ({self.file}:{self.line}){tail}"


def run_case(ruleset: RuleSet, case: RuleTestCase) -> TestResult:
    """Run one case against ``ruleset``."""
    engine = Engine(ruleset, include=(case.rule,))
    fired = [a.rule for a in engine.process_batch(case.events)]
    own = sum(1 for r in fired if r == case.rule)
    problems = []
    if case.expect.count is not None and own != case.expect.count:
        problems.append(f"expected {case.expect.count} alert(s) from {case.rule}, got {own}")
    if case.expect.rules is not None and tuple(fired) != case.expect.rules:
        problems.append(f"expected rules {list(case.expect.rules)}, got {fired}")
    return TestResult(case.rule, case.name, case.file, case.line, not problems, "; ".join(problems))


def run_ruleset_tests(ruleset: RuleSet) -> list[TestResult]:
    """Every test case of every rule and sequence in ``ruleset``, in load order."""
    cases = [c for r in ruleset.rules for c in r.tests] + [c for s in ruleset.sequences for c in s.tests]
    cases.sort(key=lambda c: (ruleset.files.index(c.file) if c.file in ruleset.files else 0, c.line))
    return [run_case(ruleset, c) for c in cases]


def run_rule_tests(paths: Iterable[str | os.PathLike[str]]) -> list[TestResult]:
    """Load rule files (raising ``RuleLoadError`` with every error) and run their tests."""
    return run_ruleset_tests(load_rules(paths))
