"""The rule-test runner: test cases inside rule files, pass and fail."""

from __future__ import annotations

from pathlib import Path

from runwatch.rules import run_rule_tests

RULES = """\
- list: shells
  items: [sh, bash]
- rule: shell_below_python
  condition: kind = process.exec and proc.name in (shells) and proc.pname = python3
  severity: high
  tests:
    - name: fires
      events:
        - {kind: process.exec, exe: /bin/sh, ancestry: [/usr/bin/python3]}
        - {kind: process.exec, exe: /bin/bash, ancestry: [/usr/bin/python3]}
      expect: {count: 2}
    - name: quiet
      events:
        - {kind: process.exec, exe: /bin/sh, ancestry: [/usr/sbin/sshd]}
      expect: {count: 0, rules: []}
    - name: wrong on purpose
      events:
        - {kind: process.exec, exe: /bin/sh, ancestry: [/usr/bin/python3]}
      expect: {count: 3}
- rule: disabled_but_tested
  enabled: false
  condition: kind = file.open and file.path = /etc/shadow
  tests:
    - events:
        - {kind: file.open, file: {path: /etc/shadow}}
        - {kind: process.exec, exe: /bin/sh, ancestry: [/usr/bin/python3]}
      expect: {rules: [disabled_but_tested, shell_below_python]}
- sequence: tool_then_shell
  by: tool.call_id
  within: 5s
  steps:
    - kind = tool.start
    - kind = process.exec and proc.name in (shells)
  tests:
    - name: in window
      events:
        - {kind: tool.start, tool_call: {name: run, call_id: c1}}
        - {at: 4s, kind: process.exec, exe: /bin/sh, tool_call: {name: run, call_id: c1}}
      expect: {count: 1}
    - name: out of window
      events:
        - {kind: tool.start, tool_call: {name: run, call_id: c1}}
        - {at: 6s, kind: process.exec, exe: /bin/sh, tool_call: {name: run, call_id: c1}}
      expect: {count: 0}
"""


def test_runner_reports_pass_and_fail(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(RULES)
    results = run_rule_tests([path])
    assert [(r.rule, r.name, r.line, r.passed) for r in results] == [
        ("shell_below_python", "fires", 7, True),
        ("shell_below_python", "quiet", 12, True),
        ("shell_below_python", "wrong on purpose", 16, False),
        ("disabled_but_tested", "test 1", 24, True),
        ("tool_then_shell", "in window", 35, True),
        ("tool_then_shell", "out of window", 40, True),
    ]
    failed = results[2]
    assert failed.message == "expected 3 alert(s) from shell_below_python, got 1"
    assert str(failed) == (f"FAIL shell_below_python / wrong on purpose ({path}:16): "
                           "expected 3 alert(s) from shell_below_python, got 1")
