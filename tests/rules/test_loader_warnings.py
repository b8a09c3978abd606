"""Rule load warnings: unused macros and lists, rules that never constrain the event kind."""

from __future__ import annotations

from pathlib import Path

from runwatch.config import ConfigWarning, Location
from runwatch.rules import lint_files, load_rules, load_texts

RULES = """\
- list: shells
  items: [sh, bash]
- list: login_shells
  items: [zsh, shells]
- list: editors
  items: [vi, nano]
- macro: spawned
  condition: kind = process.exec
- macro: shell_spawned
  condition: spawned and proc.name in (login_shells)
- macro: never_called
  condition: proc.name = make
- macro: called_by_unused_only
  condition: proc.pid = 23
- macro: unused_chain
  condition: called_by_unused_only
- rule: shell_in_container
  condition: shell_spawned
- rule: any_pid
  condition: >
    proc.pid = 23
    or proc.name = init
- sequence: read_then_connect
  steps:
    - kind = file.open
    - proc.name = curl
  by: proc.pid
  within: 5s
"""


def test_unused_macros_lists_and_kindless_rules_are_warnings(tmp_path: Path) -> None:
    path = tmp_path / "warn.yaml"
    path.write_text(RULES)
    rs = load_rules([path])  # warnings never stop a load
    assert [r.name for r in rs.rules] == ["shell_in_container", "any_pid"]
    assert [s.name for s in rs.sequences] == ["read_then_connect"]
    assert rs.errors == []
    f = str(path)
    assert [(w.location, w.code, w.message) for w in rs.warnings] == [
        (Location(f, 5, 3), "unused-list", "list 'editors' is not used by any rule or sequence"),
        (Location(f, 11, 3), "unused-macro", "macro 'never_called' is not used by any rule or sequence"),
        (Location(f, 13, 3), "unused-macro", "macro 'called_by_unused_only' is not used by any rule or sequence"),
        (Location(f, 15, 3), "unused-macro", "macro 'unused_chain' is not used by any rule or sequence"),
        (Location(f, 20, 14), "any-kind", "rule 'any_pid' does not constrain the event kind (it is tried on "
                                          "every event); add a kind term such as 'kind = process.exec'"),
        (Location(f, 26, 7), "any-kind", "sequence 'read_then_connect' step 2 does not constrain the event "
                                         "kind (it is tried on every event); add a kind term such as "
                                         "'kind = process.exec'"),
    ]
    assert all(isinstance(w, ConfigWarning) for w in rs.warnings)
    assert str(rs.warnings[0]) == f"{f}:5:3: warning: list 'editors' is not used by any rule or sequence"


def test_lint_files_returns_errors_and_warnings_in_file_order(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    a.write_text("- macro: lonely\n  condition: proc.pid = 23\n")
    b = tmp_path / "b.yaml"
    b.write_text("- rule: r1\n  condition: kind = process.exec and lonely\n  severity: urgent\n")
    errors, warnings = lint_files([a, b])
    assert [(e.file, e.line, e.column) for e in errors] == [(str(b), 3, 13)]
    # the rule that uses the macro did not load, but the macro is still reached: no warning
    assert warnings == []


def test_no_unused_warning_while_a_condition_does_not_parse() -> None:
    rs = load_texts([("- macro: m\n  condition: proc.pid = 1\n- rule: r\n  condition: kind = (\n", "x.yaml")],
                     skip_invalid=True)
    assert [e.line for e in rs.errors] == [4]
    assert [w.code for w in rs.warnings] == []


def test_the_default_rule_pack_loads_without_warnings() -> None:
    import runwatch.rules

    rs = load_rules([Path(runwatch.rules.__file__).parent / "default"])

    assert len(rs.rules) == 57
    assert [str(w) for w in rs.warnings] == []
