"""Located errors: every error class reported with its exact file:line, all in one pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from runwatch.rules import RuleLoadError, check_files, load_rules, load_texts
from runwatch.rules.testing import run_ruleset_tests

BAD = """\
- list: shells
  items: [sh, bash]
- macro: broken_macro
  condition: kind = process.exec and bogus.field = 1
- rule: bad_operator
  condition: >
    kind = process.exec
    and proc.name pmatch (x)
  severity: urgent
- rule: bad_ids
  condition: kind = process.exec and nosuch_macro
  attack: [X1234]
  mappings: {owasp_llm: [LLM11], owasp_agentic: [ASI1], owasp_nhi: [NHI11], nist_csf: [DE-CM-01]}
- rule: bad_ids
  condition: kind = process.exec
- rule: bad_values
  condition: proc.pid = abc
  output: "pid %proc.nope"
- rule: uses_broken
  condition: broken_macro and proc.name = x
- rule: unbalanced
  condition: "kind = process.exec and (proc.name = x"
- rule: undefined_list
  condition: proc.name in nolist
- rule: type_mismatch
  condition: proc.pid startswith 1
- rule: bad_action
  condition: kind = file.open
  action: explode
  bogus_key: 1
- rule: bad_cidr
  condition: net.dst.ip cidr 10.0.0.0/33
"""


def test_every_error_class_located_in_one_pass(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    errors = check_files([path])
    got = [(e.line, e.message) for e in errors]
    assert all(e.file == str(path) for e in errors)
    assert got == [
        (4, "macro 'broken_macro': unknown field 'bogus.field'"),
        (8, "rule 'bad_operator': unknown operator 'pmatch' after 'proc.name'"),
        (9, "rule 'bad_operator': bad severity 'urgent' (one of info, low, medium, high, critical)"),
        (11, "rule 'bad_ids': undefined macro 'nosuch_macro'"),
        (12, "rule 'bad_ids': bad ATT&CK/ATLAS id 'X1234' (like T1059.004, TA0002, AML.T0051)"),
        (13, "rule 'bad_ids': bad owasp_llm id 'LLM11'"),
        (13, "rule 'bad_ids': bad owasp_agentic id 'ASI1'"),
        (13, "rule 'bad_ids': bad owasp_nhi id 'NHI11'"),
        (13, "rule 'bad_ids': bad nist_csf id 'DE-CM-01'"),
        (14, f"duplicate rule 'bad_ids' (first defined at {path}:10)"),
        (17, "rule 'bad_values': expected a number for 'proc.pid', found 'abc'"),
        (18, "rule 'bad_values': unknown field 'proc.nope' in output"),
        (22, "rule 'unbalanced': missing ')'"),
        (24, "rule 'undefined_list': undefined list 'nolist'"),
        (26, "rule 'type_mismatch': operator 'startswith' is not allowed on int field 'proc.pid'"),
        (29, "rule 'bad_action': bad action 'explode' (one of alert, deny, kill)"),
        (30, "unknown key 'bogus_key' in rule 'bad_action'"),
        (32, "rule 'bad_cidr': bad network '10.0.0.0/33' for cidr"),
    ]
    # str() is the one-line file:line: message form
    assert str(errors[0]) == f"{path}:4: macro 'broken_macro': unknown field 'bogus.field'"


def test_load_rules_raises_one_error_with_all(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    with pytest.raises(RuleLoadError) as info:
        load_rules([path])
    assert len(info.value.errors) == 18
    assert str(info.value) == f"{path}:4: macro 'broken_macro': unknown field 'bogus.field' (and 17 more)"


def test_skip_invalid_keeps_good_rules_and_gives_reasons(tmp_path: Path) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text(BAD + "- rule: good\n  condition: kind = process.exec\n")
    rs = load_rules([path], skip_invalid=True)
    assert [r.name for r in rs.rules] == ["good"]
    assert rs.skipped["uses_broken"] == "uses macro 'broken_macro' which has errors"
    assert rs.skipped["unbalanced"] == "rule 'unbalanced': missing ')'"
    assert len(rs.skipped) == 9


def test_yaml_syntax_error_line(tmp_path: Path) -> None:
    path = tmp_path / "syntax.yaml"
    path.write_text("- rule: a\n  condition: kind = process.exec\n- rule: b\n  condition: [unclosed\n")
    errors = check_files([path])
    assert len(errors) == 1
    assert errors[0].line == 5 and errors[0].message.startswith("YAML syntax error:")


def test_errors_across_files_and_unreadable_file(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text("- rule: same\n  condition: kind = process.exec\n")
    b.write_text("\n\n- rule: same\n  condition: kind = file.open\n")
    missing = tmp_path / "missing.yaml"
    errors = check_files([a, b, missing])
    assert [str(e) for e in errors] == [
        f"{b}:3: duplicate rule 'same' (first defined at {a}:1)",
        f"{missing}:1: cannot read rule file: No such file or directory",
    ]


def test_directory_loads_yaml_files_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("- rule: second\n  condition: kind = file.open\n")
    (tmp_path / "a.yml").write_text("- rule: first\n  condition: kind = file.open\n")
    (tmp_path / "notes.txt").write_text("not rules")
    assert [r.name for r in load_rules([tmp_path]).rules] == ["first", "second"]


def test_macro_cycle_and_duplicate_key() -> None:
    text = ("- macro: a\n  condition: b and kind = file.open\n"
            "- macro: b\n  condition: a\n"
            "- rule: r\n  condition: kind = file.open\n  condition: kind = net.connect\n")
    with pytest.raises(RuleLoadError) as info:
        load_texts([(text, "c.yaml")])
    assert [str(e) for e in info.value.errors] == [
        "c.yaml:4: macro 'b': macro cycle: a -> b -> a",
        "c.yaml:7: duplicate key 'condition'",
    ]


def test_bad_test_cases_are_located() -> None:
    text = """\
- rule: r
  condition: kind = file.open
  tests:
    - events:
        - {kind: file.open, pid: notanumber}
      expect: {count: 1}
    - events: [{kind: file.open}]
      expect: {count: -1}
"""
    with pytest.raises(RuleLoadError) as info:
        load_texts([(text, "t.yaml")])
    assert [str(e) for e in info.value.errors] == [
        "t.yaml:5: rule 'r' test 1: bad event: Expected `int`, got `str` - at `$.pid`",
        "t.yaml:8: rule 'r' test 2: expect must be {count: N} and/or {rules: [ids]}",
    ]


def test_sequence_errors() -> None:
    text = """\
- sequence: s
  by: proc.bogus
  within: soon
  steps:
    - kind = file.open
"""
    with pytest.raises(RuleLoadError) as info:
        load_texts([(text, "s.yaml")])
    assert [str(e) for e in info.value.errors] == [
        "s.yaml:2: sequence 's': unknown or unusable key field 'proc.bogus'",
        "s.yaml:3: sequence 's': bad duration 'soon' (use e.g. 500ms, 60s, 5m, 1h)",
        "s.yaml:5: sequence 's': steps must be a list of two or more conditions",
    ]


def test_enabled_override_and_list_append() -> None:
    text = """\
- list: shells
  items: [sh]
- rule: r
  condition: proc.name in (shells)
- list: shells
  append: true
  items: [bash]
- rule: r
  enabled: false
"""
    rs = load_texts([(text, "o.yaml")])
    assert rs.lists["shells"] == ["sh", "bash"]
    assert rs.rules[0].meta.enabled is False


UNDEFINED_IN_PARENS = """\
- list: shell_binaries
  items: [sh, bash]
- rule: typo_in_list_name
  condition: >
    kind = process.exec
    and proc.name in (shell_binarys)
- rule: list_from_a_file_not_loaded
  condition: kind = dns.query and dns.name endswith (exfil_domains)
- rule: macro_with_undefined_list
  condition: kind = process.exec and in_tools
- macro: in_tools
  condition: proc.pname in (tool_runners)
"""


def test_undefined_list_in_parentheses_is_a_located_error(tmp_path: Path) -> None:
    path = tmp_path / "lists.yaml"
    path.write_text(UNDEFINED_IN_PARENS)
    assert [str(e) for e in check_files([path])] == [
        f"{path}:6: rule 'typo_in_list_name': undefined list 'shell_binarys' (a literal in parentheses "
        "alone must be quoted: \"shell_binarys\")",
        f"{path}:8: rule 'list_from_a_file_not_loaded': undefined list 'exfil_domains' (a literal in "
        "parentheses alone must be quoted: \"exfil_domains\")",
        f"{path}:12: macro 'in_tools': undefined list 'tool_runners' (a literal in parentheses alone must be "
        "quoted: \"tool_runners\")",
    ]


def test_literals_in_parentheses_stay_literals() -> None:
    text = """\
- list: shell_binaries
  items: [sh, bash]
- rule: r
  condition: >
    kind = process.exec and (proc.name in (shell_binaries, python3) or proc.name in ("curl")
    or proc.name in (nc.traditional) or proc.argv in (755) or file.path in (/etc/shadow) or proc.name in (sshd)
    or file.name in (release_agent, notify_on_release) or proc.name in (tool_runner, "x"))
  tests:
    - name: quoted single literal
      events: [{kind: process.exec, exe: /usr/bin/curl}]
      expect: {count: 1}
    - name: bare word beside other values
      events: [{kind: process.exec, exe: /usr/bin/tool_runner}]
      expect: {count: 1}
    - name: list expanded
      events: [{kind: process.exec, exe: /bin/bash}]
      expect: {count: 1}
    - name: one plain word alone is a literal
      events: [{kind: process.exec, exe: /usr/sbin/sshd}]
      expect: {count: 1}
    - name: no match
      events: [{kind: process.exec, exe: /bin/true}]
      expect: {count: 0}
"""
    rules = load_texts([(text, "ok.yaml")])
    assert [r.name for r in rules.rules] == ["r"]
    assert [(t.name, t.passed, t.message) for t in run_ruleset_tests(rules)] == [
        ("quoted single literal", True, ""), ("bare word beside other values", True, ""),
        ("list expanded", True, ""), ("one plain word alone is a literal", True, ""),
        ("no match", True, "")]
