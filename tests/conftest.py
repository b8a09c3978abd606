"""Suite-wide set-up: the shared fixtures, after checking this interpreter has runwatch installed.

``python -m pytest`` and ``.venv/bin/pytest`` collect and run the same tests when both come from
the project's virtual environment; an interpreter without runwatch (a system ``python3``) stops
with one line saying which interpreter to use, instead of a plugin import traceback.

Under pytest-xdist each worker gets its own default agent-SDK socket (``RUNWATCH_SOCKET``,
read by the SDK, the collector and ``runwatch run``/``watch``), so a test's agents never
report to a ``runwatch`` that another worker started at the same moment.
"""

import importlib.util
import os
import sys

import pytest

if importlib.util.find_spec("runwatch") is None or importlib.util.find_spec("pytest_timeout") is None:
    pytest.exit(f"{sys.executable} does not have runwatch and its test dependencies installed: run "
                "`bash scripts/install.sh`, then `.venv/bin/pytest` (or `.venv/bin/python -m pytest`)",
                returncode=4)

pytest_plugins = ["runwatch.containers.pytest_plugin", "runwatch.testing.pytest_plugin"]

_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _worker and "RUNWATCH_SOCKET" not in os.environ:
    os.environ["RUNWATCH_SOCKET"] = f"/run/runwatch/sdk-{_worker}/sdk.sock"
