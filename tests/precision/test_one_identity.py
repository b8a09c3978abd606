"""A zero-code agent seen by the audit hook and the kernel at once: one identity, one alert.

The agent (plain Python under ``python -m runwatch.sdk.run``) spawns a shell, then reads a
mounted secret itself. The kernel says who did each; the audit hook's reports of the same
acts merge into the kernel's events, so the shell is alerted once and the secret read is
Python's, not the shell's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))


@pytest.fixture
def secret() -> Iterator[Path]:
    path = Path("/run/secrets") / f"rw-identity-{os.getpid()}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("s3cret-23\n")
    yield path
    path.unlink(missing_ok=True)


def rw_json(*args: str) -> list[dict[str, object]]:
    res = subprocess.run([RUNWATCH, *args, "--format", "json"], capture_output=True, text=True, timeout=60,
                         check=True)
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def test_spawn_then_secret_read_is_one_shell_alert_and_python_reads(tmp_path: Path, secret: Path) -> None:
    agent = tmp_path / "agent.py"
    agent.write_text(textwrap.dedent(f"""\
        import subprocess
        subprocess.run(["/bin/sh", "-c", "exit 0"], check=True)
        with open({str(secret)!r}) as f:
            assert f.read() == "s3cret-23\\n"
    """))
    db = str(tmp_path / "run.db")
    res = subprocess.run([RUNWATCH, "run", "--db", db, "--", sys.executable, "-m", "runwatch.sdk.run", str(agent)],
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]

    opens = [e for e in rw_json("events", "--db", db, "--kind", "file.open")
             if (e.get("file") or {}).get("path") == str(secret)]  # type: ignore[union-attr]
    assert len(opens) == 1, opens
    assert opens[0]["exe"] == os.path.realpath(sys.executable)
    assert opens[0]["attrs"]["seen_by"] == ["kernel", "audit"]  # type: ignore[index]

    shells = [e for e in rw_json("events", "--db", db, "--kind", "process.exec") if e.get("exe") == "/usr/bin/dash"]
    assert [(e.get("source", "kernel"), e["argv"]) for e in shells] == [("kernel", ["/bin/sh", "-c", "exit 0"])]

    alerts = rw_json("alerts", "--db", db)
    rules = sorted(str(a["rule"]) for a in alerts)
    assert rules.count("shell_spawned_by_model_server") == 1, rules
    assert "secret_read_by_unexpected_process" not in rules
    assert "connect_then_shell_exec" not in rules
