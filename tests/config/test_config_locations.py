"""Located configuration: rule and policy errors carry the exact path, line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from runwatch.config import ConfigError, ConfigWarning, Location
from runwatch.policy import PolicyError, PolicyLoadError, check_policies, load_policies
from runwatch.rules import RuleError, RuleLoadError, check_files, load_rules

RULES = """\
- rule: inline_token
  condition: kind = process.exec and proc.name pmatch x
  severity: urgent
- rule: folded_token
  condition: >
    kind = process.exec
      and proc.name pmatch (x)
- rule: quoted_token
  condition: "kind = file.open and fd.name pmatch y"
"""

POLICY = """\
policies:
  - id: p23
    selector: {container: [agent-*]}
    mode: sometimes
    exec:
      deny: [relative/path]
    egress:
      allow: ["10.0.0.0/8:443", "10.0.0.0/33"]
"""


def test_location_prints_what_it_knows() -> None:
    assert str(Location("a.yaml", 7, 23)) == "a.yaml:7:23"
    assert str(Location("a.yaml", 7)) == "a.yaml:7"
    assert str(Location("a.yaml")) == "a.yaml"
    assert str(ConfigError("a.yaml", 7, "bad", column=23)) == "a.yaml:7: bad"
    assert ConfigError("a.yaml", 7, "bad", column=23).location == Location("a.yaml", 7, 23)
    assert str(ConfigWarning(Location("a.yaml", 7, 23), "odd", "x")) == "a.yaml:7:23: warning: odd"


def test_bad_rule_file_errors_carry_path_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(RULES)
    with pytest.raises(RuleLoadError) as info:
        load_rules([path])
    errors = info.value.errors
    assert all(isinstance(e, RuleError) and isinstance(e, ConfigError) for e in errors)
    assert [(str(e.location), e.message) for e in errors] == [
        (f"{path}:2:48", "rule 'inline_token': unknown operator 'pmatch' after 'proc.name'"),
        (f"{path}:3:13", "rule 'inline_token': bad severity 'urgent' (one of info, low, medium, high, critical)"),
        (f"{path}:7:21", "rule 'folded_token': unknown operator 'pmatch' after 'proc.name'"),
        (f"{path}:9:44", "rule 'quoted_token': unknown operator 'pmatch' after 'fd.name'"),
    ]
    assert str(errors[0]) == f"{path}:2: rule 'inline_token': unknown operator 'pmatch' after 'proc.name'"
    assert [e.rule for e in check_files([path])] == ["inline_token", "inline_token", "folded_token", "quoted_token"]


def test_yaml_syntax_error_carries_the_column(tmp_path: Path) -> None:
    path = tmp_path / "syntax.yaml"
    path.write_text("- rule: a\n  condition: kind = process.exec\n   severity: low\n")
    [err] = check_files([path])
    assert err.location == Location(str(path), 3, 12)
    assert err.message.startswith("YAML syntax error: ")


def test_bad_policy_file_errors_carry_path_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad-policy.yaml"
    path.write_text(POLICY)
    with pytest.raises(PolicyLoadError) as info:
        load_policies(path)
    errors = info.value.errors
    assert all(isinstance(e, PolicyError) and isinstance(e, ConfigError) for e in errors)
    assert [(str(e.location), e.policy) for e in errors] == [
        (f"{path}:4:11", "p23"),
        (f"{path}:6:13", "p23"),
        (f"{path}:8:33", "p23"),
    ]
    assert errors[0].message == "policy 'p23': mode must be monitor or enforce, not 'sometimes'"
    assert str(errors[0]) == f"{path}:4: policy 'p23': mode must be monitor or enforce, not 'sometimes'"
    assert [e.location for e in check_policies([path])] == [e.location for e in errors]


def test_policy_and_rule_loaders_share_one_reader() -> None:
    import runwatch.policy.loader as policy_loader
    import runwatch.rules.collect as rule_collect
    from runwatch.config import yamlsrc

    assert policy_loader.load_yaml_documents is yamlsrc.load_yaml_documents
    assert rule_collect.load_yaml_documents is yamlsrc.load_yaml_documents


SHADOWED = """\
- id: tools-23
  selector: {container: [agent]}
  tools:
    deny: [run_shell, "send_*"]
    challenge: [send_email, "send_*"]
    allow: [search, run_shell]
"""


def test_policy_tool_pattern_shadowed_by_an_earlier_list_is_a_warning(tmp_path: Path) -> None:
    from runwatch.policy.loader import lint_policies

    path = tmp_path / "shadow.yaml"
    path.write_text(SHADOWED)
    assert len(load_policies(path)) == 1  # warnings never stop a load
    errors, warnings = lint_policies([path])
    assert errors == []
    assert [(w.location, w.code, w.message) for w in warnings] == [
        (Location(str(path), 5, 29), "shadowed-tool",
         "policy 'tools-23' tools: 'send_*' in challenge never applies (deny is checked first)"),
        (Location(str(path), 6, 21), "shadowed-tool",
         "policy 'tools-23' tools: 'run_shell' in allow never applies (deny is checked first)"),
    ]


def test_libyaml_and_the_reference_parser_give_the_same_located_values() -> None:
    """The fast parser is only a speed-up: same values, lines, columns and scalar source spans."""
    import yaml

    from runwatch.config import yamlsrc
    from runwatch.rules.default import default_rule_paths

    if not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML without libyaml")

    def located(value: object) -> object:
        if isinstance(value, yamlsrc.LocDict):
            spans = {k: yamlsrc.scalar_source(n, text) for k, n in value.value_nodes.items()}
            return (value.line, value.column, dict(value.key_lines), spans,
                    {k: located(v) for k, v in value.items()})
        if isinstance(value, yamlsrc.LocList):
            return (value.line, value.column, list(value.item_lines), [located(v) for v in value])
        return value

    paths = default_rule_paths()
    assert len(paths) == 15
    for path in paths:
        text = path.read_text()
        fast = yamlsrc._load(yamlsrc._FastLoader(text), str(path), [])
        slow = yamlsrc._load(yamlsrc._Loader(text), str(path), [])
        assert fast[1] is slow[1] is False
        assert located(fast[0]) == located(slow[0]), path
