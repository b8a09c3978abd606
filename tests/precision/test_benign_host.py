"""Ordinary host work under ``runwatch run`` raises no alert: a bare shell, and a developer's
afternoon (a venv, a local pip install, git, make, a Python tool that runs a pipeline in a shell).

Rules about model servers and agents apply to declared AI workloads (a role label, a selecting
policy, an SDK attach); host tooling that is none of these is not their subject."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runwatch.testing.workloads import tiny_wheel

pytestmark = pytest.mark.kernel

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))


def run_under_runwatch(tmp_path: Path, *cmd: str, sdk: bool = True) -> tuple[list[dict[str, object]], int]:
    """Run ``cmd`` under ``runwatch run``; (alerts as JSON, events stored)."""
    db = tmp_path / "run.db"
    args = [RUNWATCH, "run", "--db", str(db)] + ([] if sdk else ["--no-sdk"]) + ["--", *cmd]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    shown = subprocess.run([RUNWATCH, "alerts", "--db", str(db), "--format", "json"],
                           capture_output=True, text=True, timeout=60, check=True)
    events = subprocess.run([RUNWATCH, "events", "--db", str(db), "--kind", "process.exec", "--format", "json"],
                            capture_output=True, text=True, timeout=60, check=True)
    return [json.loads(line) for line in shown.stdout.splitlines() if line.strip()], len(events.stdout.splitlines())


@pytest.mark.parametrize("sdk", [True, False], ids=["sdk", "no-sdk"])
def test_a_bare_shell_raises_nothing(tmp_path: Path, sdk: bool) -> None:
    alerts, execs = run_under_runwatch(tmp_path, "/bin/sh", "-c", "true", sdk=sdk)
    assert execs == 1
    assert [a["rule"] for a in alerts] == []


@pytest.mark.skipif(shutil.which("git") is None or shutil.which("make") is None, reason="needs git and make")
def test_a_developers_afternoon_raises_nothing(tmp_path: Path) -> None:
    wheel = tiny_wheel(tmp_path)
    (tmp_path / "Makefile").write_text("out.txt:\n\techo built > out.txt\n")
    (tmp_path / "tool.py").write_text(textwrap.dedent("""\
        import subprocess
        out = subprocess.run(["sh", "-c", "ls | wc -l"], capture_output=True, text=True, check=True)
        print(out.stdout.strip())
    """))
    script = textwrap.dedent(f"""\
        set -e
        cd {tmp_path}
        {sys.executable} -m venv --system-site-packages venv
        venv/bin/python -m pip install --no-index --no-build-isolation --no-deps -q {wheel}
        venv/bin/python -c 'import tinypkg; assert tinypkg.VALUE == 23'
        git init -q repo && cd repo && git config user.email dev@example.com && git config user.name dev
        echo hello > a.txt && git add a.txt && git commit -q -m first && git log --oneline | wc -l
        cd .. && make -s && cat out.txt
        venv/bin/python tool.py
    """)
    alerts, execs = run_under_runwatch(tmp_path, "/bin/bash", "-c", script)
    assert (tmp_path / "out.txt").read_text() == "built\n"
    assert execs > 20
    assert [a["rule"] for a in alerts] == [], [str(a.get("output"))[:100] for a in alerts]
