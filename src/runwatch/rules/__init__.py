"""Detection rules: language, compiler, loader, engine, sequences and rule tests.

This package imports without the CLI, the store or any sink (engine apart from app).
Public API::

    load_rules(paths, skip_invalid=False) -> RuleSet      # raises RuleLoadError (all errors)
    load_texts([(text, source)], skip_invalid=False) -> RuleSet
    check_files(paths) -> list[RuleError]
    lint_files(paths) -> (errors, warnings)               # warnings: ConfigWarning, path:line:col
    Engine(ruleset).process(event) -> list[Alert]; .process_batch(events); .stats()
    run_rule_tests(paths) -> list[TestResult]
    DetectionStage(engine, emit, throttle)                 # pipeline stage; emit(alerts)
"""

from runwatch.rules.diagnostics import RuleError, RuleLoadError
from runwatch.rules.engine import Engine
from runwatch.rules.fields import FIELDS, INDEXED_FIELDS, resolve_field
from runwatch.rules.loader import check_files, lint_files, load_rules, load_texts, parse_duration, rule_files
from runwatch.rules.model import Rule, RuleSet, Sequence
from runwatch.rules.stage import DetectionStage
from runwatch.rules.testing import TestResult, run_rule_tests, run_ruleset_tests

__all__ = [
    "FIELDS",
    "INDEXED_FIELDS",
    "DetectionStage",
    "Engine",
    "Rule",
    "RuleError",
    "RuleLoadError",
    "RuleSet",
    "Sequence",
    "TestResult",
    "check_files",
    "lint_files",
    "load_rules",
    "load_texts",
    "parse_duration",
    "resolve_field",
    "rule_files",
    "run_rule_tests",
    "run_ruleset_tests",
]
