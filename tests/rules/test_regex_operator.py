"""The ``regex`` operator: RE2 search on str and list fields, located errors, index prefixes."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest

from runwatch.events import Event
from runwatch.rules import Engine, RuleLoadError, load_texts
from runwatch.rules.regex import literal_prefix

T0 = 1_700_000_000_000_000_000


def ev(n: int = 0, **kw: Any) -> Event:
    d: dict[str, Any] = {"id": f"e{n}", "time": T0 + n, "kind": "process.exec", "pid": 100 + n,
                         "exe": "/usr/bin/vim", "cmdline": "vim /home/u/.hidden/notes", "argv": ["vim", "/home/u/.x"]}
    d.update(kw)
    return msgspec.convert(d, Event)


def engine_for(condition: str) -> Engine:
    cond = condition.replace("'", "''")
    return Engine(load_texts([(f"- rule: r\n  condition: '{cond}'\n", "t.yaml")]), count_evaluations=True)


@pytest.mark.parametrize(("condition", "expected"), [
    ('proc.cmdline regex "(^|/)\\.[^./]"', True),  # search, not full match
    ('proc.cmdline regex "^vim /home/[a-z]+/"', True),
    ('proc.cmdline regex "^/home"', False),
    ('proc.cmdline regex "NOTES$"', False),  # case-sensitive
    ('proc.cmdline regex "(?i)NOTES$"', True),
    ('proc.cmdline regex ("^emacs", "notes$")', True),  # any pattern of a list
    ('proc.argv regex "^/home/u/\\.x$"', True),  # list field: any element
    ('proc.argv regex "^vim /home"', False),  # elements one at a time
    ('proc.exe regex "^/usr/(s)?bin/vi(m)?$"', True),
    ('file.path regex "."', False),  # absent field: false
])
def test_regex_on_exec(condition: str, expected: bool) -> None:
    assert bool(engine_for(f"kind = process.exec and {condition}").process(ev())) is expected


@pytest.mark.parametrize(("pattern", "why"), [
    ("(a)\\\\1", "invalid escape sequence"),  # back-reference: not linear time
    ("(?=x)y", "invalid perl operator"),  # look-ahead
    ("(unclosed", "missing )"),
])
def test_bad_regex_is_a_located_load_error(pattern: str, why: str) -> None:
    text = f'- rule: ok\n  condition: kind = process.exec\n- rule: bad\n  condition: proc.exe regex "{pattern}"\n'
    with pytest.raises(RuleLoadError) as info:
        load_texts([(text, "bad.yaml")])
    (err,) = info.value.errors
    assert (err.file, err.line, err.rule) == ("bad.yaml", 4, "bad")
    assert err.message.startswith("rule 'bad': invalid regular expression") and why in err.message
    assert str(err).startswith("bad.yaml:4:")


def test_bad_pattern_in_a_list_points_at_that_value() -> None:
    text = '- rule: bad\n  condition: >-\n    proc.exe regex\n    ("^ok", "(?<=x)")\n'
    with pytest.raises(RuleLoadError) as info:
        load_texts([(text, "list.yaml")])
    (err,) = info.value.errors
    assert (err.file, err.line) == ("list.yaml", 4) and "(?<=x)" in err.message


def test_regex_is_refused_on_numbers() -> None:
    with pytest.raises(RuleLoadError) as info:
        load_texts([('- rule: n\n  condition: proc.uid regex "0"\n', "n.yaml")])
    assert info.value.errors[0].message == "rule 'n': operator 'regex' is not allowed on int field 'proc.uid'"


@pytest.mark.parametrize(("pattern", "prefix"), [
    ("^/usr/bin/", "/usr/bin/"),
    ("^/tmp/\\.x", "/tmp/.x"),
    ("^/opt/ab?c", "/opt/a"),  # b is optional
    ("^/opt/a*", "/opt/"),
    ("^/opt/\\d+", "/opt/"),
    ("^(a|b)", ""),
    ("^/a|^/b", ""),  # alternation anywhere: no prefix
    ("/usr/bin", ""),  # unanchored
    ("(?i)^/usr", ""),
])
def test_literal_prefix(pattern: str, prefix: str) -> None:
    assert literal_prefix(pattern) == prefix


def test_anchored_regex_is_indexed_by_prefix_and_unanchored_is_not() -> None:
    text = ('- rule: anchored\n  condition: kind = process.exec and proc.exe regex "^/opt/tool[0-9]+$"\n'
            '- rule: loose\n  condition: kind = process.exec and proc.exe regex "tool[0-9]+$"\n')
    eng = Engine(load_texts([(text, "t.yaml")]), count_evaluations=True)
    events = [ev(i, exe=f"/usr/bin/x{i}") for i in range(23)] + [ev(30 + i, exe=f"/opt/tool{i}") for i in range(7)]
    alerts = eng.process_batch(events)
    assert eng.evaluations() == {"anchored": 7, "loose": 30}
    assert [a.rule for a in alerts] == ["anchored", "loose"] * 7


def test_regex_runs_in_linear_time() -> None:
    # (a+)+$ backtracks exponentially in Python's re on "aaa...!"; RE2 does not.
    eng = engine_for('kind = process.exec and proc.cmdline regex "(a+)+$"')
    start = time.perf_counter()
    assert eng.process(ev(cmdline="a" * 5000 + "!")) == []
    assert time.perf_counter() - start < 1.0
