"""Suite-wide set-up: the shared fixtures, after checking this interpreter has runwatch installed.

``python -m pytest`` and ``.venv/bin/pytest`` collect and run the same tests when both come from
the project's virtual environment; an interpreter without runwatch (a system ``python3``) stops
with one line saying which interpreter to use, instead of a plugin import traceback.
"""

import importlib.util
import sys

import pytest

if importlib.util.find_spec("runwatch") is None or importlib.util.find_spec("pytest_timeout") is None:
    pytest.exit(f"{sys.executable} does not have runwatch and its test dependencies installed: run "
                "`bash scripts/install.sh`, then `.venv/bin/pytest` (or `.venv/bin/python -m pytest`)",
                returncode=4)

pytest_plugins = ["runwatch.containers.pytest_plugin", "runwatch.testing.pytest_plugin"]
