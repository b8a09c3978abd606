"""Running instrumented child interpreters from tests: a clean environment and a captured run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PYTHON = sys.executable


def child_env(socket_path: Path | None, **extra: str) -> dict[str, str]:
    """An environment for child interpreters: RUNWATCH_* and PYTHONPATH cleared, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWATCH_") and k != "PYTHONPATH"}
    if socket_path is not None:
        env["RUNWATCH_SOCKET"] = str(socket_path)
    env.update(extra)
    return env


def run_py(args: list[str], env: dict[str, str], cwd: Path | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run this interpreter with ``args``; text output captured."""
    return subprocess.run([PYTHON, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
