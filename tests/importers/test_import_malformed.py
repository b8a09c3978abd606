"""Malformed input: located one-line reasons, and nothing else is lost."""

from __future__ import annotations

from pathlib import Path

from runwatch.rules import load_texts
from runwatch.rules.importers import import_rules

GOOD_SIGMA = """title: Netcat Listener Started
id: 6a3f11c2-0b7e-4c55-9a51-3d2f6f0e7a19
status: test
description: A netcat listener was started.
author: runwatch tests
logsource:
    product: linux
    category: process_creation
detection:
    selection:
        Image|endswith: '/nc'
        CommandLine|contains|all:
            - ' -l'
            - ' -p '
    condition: selection
level: high
tags:
    - attack.command-and-control
    - attack.t1095
"""

BAD_MODIFIER = """title: Odd Modifier
id: 0d2b4f0e-7c1a-4f3b-8e55-8a1f0c9d2e33
logsource:
    product: linux
    category: process_creation
detection:
    selection:
        Image|endswith: '/curl'
        CommandLine|containz: 'http'
    condition: selection
level: low
"""

BROKEN_YAML = """title: Broken
logsource:
    product: linux
detection:
    selection:
        Image: [unclosed
    condition: selection
"""

GOOD_FALCO = """- list: miners
  items: [xmrig, minerd]
- macro: spawned_process
  condition: (evt.type in (execve, execveat) and evt.dir=<)
- rule: Miner started
  desc: A crypto miner started.
  condition: spawned_process and proc.name in (miners)
  output: miner %proc.name (%proc.cmdline) user=%user.name
  priority: ERROR
  tags: [mitre_impact, T1496]
"""

BROKEN_FALCO = """- rule: Broken
  condition: proc.name = x
  desc: [not closed
"""


def test_sigma_unknown_modifier_and_broken_yaml(tmp_path: Path) -> None:
    (tmp_path / "a_good.yml").write_text(GOOD_SIGMA)
    (tmp_path / "b_modifier.yml").write_text(BAD_MODIFIER)
    (tmp_path / "c_broken.yml").write_text(BROKEN_YAML)
    report = import_rules([tmp_path], "sigma")
    assert [(r.name, r.status) for r in report.rules] == [
        ("sigma.a_good", "loaded"), ("sigma.b_modifier", "skipped"), ("sigma.c_broken", "skipped")]
    mod, broken = report.rules[1], report.rules[2]
    assert mod.reason.startswith(f"{tmp_path / 'b_modifier.yml'}:9: ")
    assert "containz" in mod.reason and "\n" not in mod.reason
    assert broken.reason.startswith(f"{tmp_path / 'c_broken.yml'}:7: YAML syntax error: ")
    good = report.rules[0].entry
    assert good["condition"] == ('kind = process.exec and (proc.exe endswith "/nc" and proc.cmdline icontains " -l" '
                                 'and proc.cmdline icontains " -p ")')
    assert good["attack"] == ["TA0011", "T1095"]
    assert load_texts([(report.to_yaml(), "out.yaml")]).errors == []


def test_falco_broken_file_loses_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(GOOD_FALCO)
    (tmp_path / "broken.yaml").write_text(BROKEN_FALCO)
    report = import_rules([tmp_path / "good.yaml", tmp_path / "broken.yaml"], "auto")
    loaded = [r.name for r in report.loaded]
    assert loaded == ["falco.miner_started"]
    (problem,) = report.skipped
    assert problem.reason.startswith(f"{tmp_path / 'broken.yaml'}:4: YAML syntax error: ")
    entry = report.loaded[0].entry
    assert entry["condition"] == 'kind = process.exec and proc.name in ("xmrig", "minerd")'
    assert entry["severity"] == "high"
    assert entry["attack"] == ["TA0040", "T1496"]
    assert entry["output"] == "miner %{proc.name} (%{proc.cmdline}) user=%{proc.user}"
    assert {c.source: (c.loaded, c.skipped) for c in report.corpora} == {
        str(tmp_path / "good.yaml"): (1, 0), str(tmp_path / "broken.yaml"): (0, 1)}


def test_falco_override_append_and_unsupported(tmp_path: Path) -> None:
    base = GOOD_FALCO + """- rule: Tty shell
  desc: interactive shell
  condition: spawned_process and proc.name = bash and proc.sid != 0
  priority: NOTICE
- rule: Chown anything
  desc: chown
  condition: evt.type in (chown, fchown) and fd.name startswith /etc
  priority: NOTICE
"""
    local = """- list: miners
  items: [t-rex]
  override:
    items: append
- rule: Miner started
  condition: and not proc.pname = systemd
  override:
    condition: append
- rule: Tty shell
  enabled: false
"""
    (tmp_path / "base.yaml").write_text(base)
    (tmp_path / "local.yaml").write_text(local)
    report = import_rules([tmp_path / "base.yaml", tmp_path / "local.yaml"], "falco")
    miner = report.get("falco.miner_started")
    assert miner is not None and miner.status == "loaded"
    assert miner.entry["condition"] == ('kind = process.exec and proc.name in ("xmrig", "minerd", "t-rex") and '
                                        'not proc.pname = "systemd"')
    tty = report.get("falco.tty_shell")
    assert tty is not None and tty.reason == "field proc.sid has no runwatch counterpart"
    chown = report.get("falco.chown_anything")
    assert chown is not None
    assert chown.reason == "can never match: runwatch reports no events for syscalls chown, fchown"
