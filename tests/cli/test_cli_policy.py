"""The policy commands and options of the command line: help, usage errors, located errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))


def rw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUNWATCH, *args], capture_output=True, text=True, timeout=60, check=False)


def test_help_lists_the_policy_commands_and_options():
    top = rw("--help").stdout
    for cmd in ("approve", "reject", "challenges", "policy"):
        assert f"  {cmd} " in top
    sub = rw("policy", "--help").stdout
    assert "  suggest " in sub and "  check " in sub
    for cmd in ("run", "watch"):
        text = rw(cmd, "--help").stdout
        assert "--policy PATH" in text and "--mode [monitor|enforce]" in text and "--control-socket PATH" in text
    for cmd in (("approve",), ("reject",), ("challenges",), ("policy", "suggest"), ("policy", "check")):
        assert rw(*cmd, "--help").returncode == 0


def test_mode_without_policy_is_a_usage_error():
    res = rw("run", "--mode", "enforce", "--", "true")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "runwatch: error: --mode needs --policy (the mode applies to the loaded policies) (see `runwatch run --help`)"]


def test_missing_policy_file_is_one_line(tmp_path):
    res = rw("run", "--db", str(tmp_path / "x.db"), "--policy", str(tmp_path / "nope.yaml"), "--", "true")
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"runwatch: error: {tmp_path / 'nope.yaml'}: no such policy file or directory; nothing was started"]
    assert not (tmp_path / "x.db").exists()


def test_policy_check_reports_every_located_error(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("id: ok-23\nselector: {container: [a]}\negress:\n  allow: ['10.0.0.0/8:443']\n")
    res = rw("policy", "check", str(good))
    assert (res.returncode, res.stdout) == (0, f"ok: {good}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: b\nselector: {container: [a]}\nmode: sometimes\nexec:\n  deny: [relative/path]\n")
    res = rw("policy", "check", str(bad))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert [line.split(":")[1] for line in lines[:-1]] == ["3", "5"]
    assert lines[-1] == "runwatch: error: 2 error(s) in the policies"


def test_suggest_without_a_store_is_one_line(tmp_path):
    res = rw("policy", "suggest", "--db", str(tmp_path / "none.db"), "--container", "x")
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [f"runwatch: error: {tmp_path / 'none.db'}: no such event store"]


def test_challenges_without_a_running_runwatch_is_one_line(tmp_path):
    sock = tmp_path / "c.sock"
    for args in (("challenges",), ("reject", "abc")):
        res = rw(*args, "--control-socket", str(sock))
        assert res.returncode == 1
        assert len(res.stderr.strip().splitlines()) == 1 and f"{sock}: no runwatch is serving" in res.stderr
