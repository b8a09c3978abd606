"""``python -m pytest`` and the ``pytest`` script collect the same tests; a bare interpreter says why not."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTEST = Path(sys.executable).with_name("pytest")
TARGET = "tests/docs"


def _collect(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*argv, "--collect-only", "-q", "-p", "no:cacheprovider", TARGET], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)


def test_module_and_script_collect_the_same_tests() -> None:
    by_module = _collect(sys.executable, "-m", "pytest")
    by_script = _collect(str(PYTEST))
    assert by_module.returncode == by_script.returncode == 0, by_module.stderr + by_script.stderr
    ids = [line for line in by_module.stdout.splitlines() if "::" in line]
    assert ids == [line for line in by_script.stdout.splitlines() if "::" in line]
    assert f"{TARGET}/test_pytest_entrypoints.py::test_module_and_script_collect_the_same_tests" in ids


def test_an_interpreter_without_runwatch_stops_with_one_clear_line() -> None:
    python3 = shutil.which("python3")
    if python3 is None:
        pytest.skip("no system python3")
    probe = subprocess.run([python3, "-c", "import pytest, sys; import importlib.util as u; "
                            "sys.exit(0 if u.find_spec('runwatch') is None else 1)"],
                           capture_output=True, timeout=60, check=False)
    if probe.returncode != 0:
        pytest.skip(f"{python3} has no pytest, or has runwatch installed")
    res = _collect(python3, "-m", "pytest")
    assert res.returncode == 4
    assert "does not have runwatch and its test dependencies installed: run `bash scripts/install.sh`" in (
        res.stdout + res.stderr)
