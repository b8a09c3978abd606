"""``runwatch rules check``: warnings one line each, errors located, one ``runwatch: error:`` line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))


def rw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUNWATCH, *args], capture_output=True, text=True, timeout=60, check=False)


WARN_ONLY = """\
- list: unused_tools
  items: [curl]
- macro: lonely
  condition: proc.pid = 23
- rule: any_pid
  condition: proc.pid = 23
"""

BAD = """\
- rule: ok_rule
  condition: kind = process.exec
- rule: broken
  condition: kind = process.exec and proc.name pmatch x
"""


def test_warnings_are_one_line_each_and_do_not_fail(tmp_path: Path) -> None:
    path = tmp_path / "warn.yaml"
    path.write_text(WARN_ONLY)
    res = rw("rules", "check", str(path))
    assert (res.returncode, res.stdout) == (0, "ok: 1 rules, 0 sequences\n")
    assert res.stderr.splitlines() == [
        f"{path}:1:3: warning: list 'unused_tools' is not used by any rule or sequence",
        f"{path}:3:3: warning: macro 'lonely' is not used by any rule or sequence",
        f"{path}:6:14: warning: rule 'any_pid' does not constrain the event kind (it is tried on every event); "
        "add a kind term such as 'kind = process.exec'",
    ]


def test_error_is_located_and_ends_in_one_runwatch_error_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    res = rw("rules", "check", str(path))
    assert res.returncode == 1
    assert res.stdout == ""
    assert "Traceback" not in res.stderr
    assert res.stderr.splitlines() == [
        f"{path}:4:48: rule 'broken': unknown operator 'pmatch' after 'proc.name'",
        f"runwatch: error: 1 error(s) in {path}",
    ]


def test_unreadable_rule_file_is_one_located_line(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00- rule")
    res = rw("rules", "check", str(path))
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}:1: cannot read rule file: ")
    assert lines[1] == f"runwatch: error: 1 error(s) in {path}"


def test_run_with_a_bad_rule_file_starts_nothing_and_shows_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    marker = tmp_path / "ran"
    res = rw("run", "--db", str(tmp_path / "x.db"), "--rules", str(path), "--", "/usr/bin/touch", str(marker))
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert res.stderr.splitlines() == [
        f"{path}:4:48: rule 'broken': unknown operator 'pmatch' after 'proc.name'",
        "runwatch: error: 1 error(s) in the rules; nothing was started",
    ]
    assert not marker.exists()
    assert not (tmp_path / "x.db").exists()


def test_policy_check_shows_warnings_and_stays_ok(tmp_path: Path) -> None:
    path = tmp_path / "shadow.yaml"
    path.write_text("id: t23\nselector: {container: [a]}\ntools:\n  deny: [run_shell]\n  allow: [run_shell, ls]\n")
    res = rw("policy", "check", str(path))
    assert (res.returncode, res.stdout) == (0, f"ok: {path}\n")
    assert res.stderr.splitlines() == [
        f"{path}:5:11: warning: policy 't23' tools: 'run_shell' in allow never applies (deny is checked first)"]


@pytest.mark.kernel
def test_run_shows_each_rule_warning_once_as_a_notice(tmp_path: Path) -> None:
    path = tmp_path / "warn.yaml"
    path.write_text(WARN_ONLY)
    res = rw("run", "--db", str(tmp_path / "x.db"), "--no-sdk", "--rules", str(path), "--", "/bin/true")
    assert res.returncode == 0, res.stderr
    shown = [line for line in res.stderr.splitlines() if ": warning: " in line]
    assert [line.partition(f"{path}:")[2].split(":")[0:2] for line in shown] == [["1", "3"], ["3", "3"], ["6", "14"]]
