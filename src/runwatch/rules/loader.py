"""Load rule files: read located YAML, collect typed items, build the compiled rule set.

The two steps are :mod:`runwatch.rules.collect` (files -> typed, located items) and
:mod:`runwatch.rules.build` (items -> compiled rules, plus warnings). Every problem is
collected with its ``file:line`` in one pass; :func:`load_rules` raises one
:class:`RuleLoadError` carrying all of them, :func:`check_files` returns them and
:func:`lint_files` returns errors and warnings.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from runwatch.config.errors import ConfigWarning
from runwatch.config.values import parse_duration
from runwatch.rules.build import Builder
from runwatch.rules.collect import KEYS, TEST_BASE_NS, Collector, test_event
from runwatch.rules.diagnostics import Report, RuleError, RuleLoadError
from runwatch.rules.model import RuleSet

__all__ = [
    "KEYS",
    "TEST_BASE_NS",
    "check_files",
    "lint_files",
    "load_rules",
    "load_texts",
    "parse_duration",
    "rule_files",
    "test_event",
]


def rule_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files named by ``paths``: files as given, directories as their ``*.yaml``/``*.yml`` in name order."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix in (".yaml", ".yml") and q.is_file()))
        else:
            out.append(p)
    return out


def _build(collector: Collector) -> RuleSet:
    return Builder(collector.finish(), collector.report).build()


def _finish(rs: RuleSet, skip_invalid: bool) -> RuleSet:
    if rs.errors and not skip_invalid:
        raise RuleLoadError(list(rs.errors))
    return rs


def load_texts(texts: Iterable[tuple[str, str]], *, skip_invalid: bool = False) -> RuleSet:
    """Load rules from ``(text, source_name)`` pairs (for importers and tests).

    Raises :class:`RuleLoadError` with every error unless ``skip_invalid``; then the rule
    set holds the rules that loaded, ``errors`` and ``skipped`` (rule -> reason). Warnings
    are in ``warnings`` either way.
    """
    collector = Collector(Report())
    for text, source in texts:
        collector.add_text(text, source)
    return _finish(_build(collector), skip_invalid)


def _read(paths: Iterable[str | os.PathLike[str]]) -> RuleSet:
    collector = Collector(Report())
    for p in rule_files(paths):
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            collector.unreadable(str(p), str(exc.strerror) if isinstance(exc, OSError) else str(exc))
            continue
        collector.add_text(text, str(p))
    return _build(collector)


def load_rules(paths: Iterable[str | os.PathLike[str]], *, skip_invalid: bool = False) -> RuleSet:
    """Load rule files and directories; raises :class:`RuleLoadError` carrying every located error."""
    return _finish(_read(paths), skip_invalid)


def check_files(paths: Iterable[str | os.PathLike[str]]) -> list[RuleError]:
    """Parse, compile and lint rule files; every error, in file order (empty: all good)."""
    return _read(paths).errors


def lint_files(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[RuleError], list[ConfigWarning]]:
    """Every error and every warning of the given rule files, each in file order."""
    rs = _read(paths)
    return rs.errors, rs.warnings
