"""Hostile rule and policy files: alias bombs and deep nesting (YAML or condition) give located errors, fast."""

from __future__ import annotations

import time

import pytest

from runwatch.config.errors import ConfigError
from runwatch.config.yamlsrc import MAX_DEPTH, MAX_VALUES, load_yaml_documents
from runwatch.rules import RuleLoadError, load_texts
from runwatch.rules.language import MAX_NESTING

BOMB = "\n".join([
    "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]",
    *[f"{chr(ord('b') + i)}: &{chr(ord('b') + i)} [{', '.join(['*' + chr(ord('a') + i)] * 9)}]" for i in range(8)],
    "rule: *i",
])


def _load(text: str) -> tuple[list[object], list[ConfigError], float]:
    errors: list[ConfigError] = []
    start = time.monotonic()
    docs = load_yaml_documents(text, "hostile.yaml", errors)
    return docs, errors, time.monotonic() - start


def test_an_alias_bomb_is_refused_at_its_line() -> None:
    docs, errors, took = _load(BOMB)
    assert took < 5, took
    assert docs == []
    # each line repeats the one above nine times: line 6 ("f", 9**6 values) passes the bound
    assert [(e.file, e.line) for e in errors] == [("hostile.yaml", 6)]
    assert f"expands to more than {MAX_VALUES} values" in errors[0].message


def test_deep_nesting_is_refused_at_its_line() -> None:
    depth = 5000
    docs, errors, took = _load("rule:\n  condition: " + "[" * depth + "]" * depth + "\n")
    assert took < 5, took
    assert docs == []
    assert [(e.line, f"nested deeper than {MAX_DEPTH} levels" in e.message) for e in errors] == [(2, True)]


def test_ordinary_aliases_and_nesting_still_load() -> None:
    docs, errors, _ = _load("base: &b {x: [1, 2, {y: 3}]}\nuse: *b\nagain: *b\n")
    assert errors == []
    assert docs == [{"base": {"x": [1, 2, {"y": 3}]}, "use": {"x": [1, 2, {"y": 3}]},
                     "again": {"x": [1, 2, {"y": 3}]}}]


def test_a_condition_nested_past_the_bound_is_a_located_error() -> None:
    depth = 3001
    rule = (f"- rule: deep\n  desc: d\n  condition: {'(' * depth}kind = process.exec{')' * depth}\n"
            "  output: x\n  severity: low\n")
    with pytest.raises(RuleLoadError) as raised:
        load_texts([(rule, "deep.yaml")])
    assert str(raised.value) == f"deep.yaml:3: rule 'deep': the condition nests deeper than {MAX_NESTING} levels"
    fine = (f"- rule: ok\n  desc: d\n  condition: {'not (' * 31}kind = process.exec{')' * 31}\n"
            "  output: x\n  severity: low\n")
    assert len(load_texts([(fine, "ok.yaml")]).rules) == 1
