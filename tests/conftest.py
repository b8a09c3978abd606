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
from collections.abc import Iterator
from typing import Any

import pytest

if importlib.util.find_spec("runwatch") is None or importlib.util.find_spec("pytest_timeout") is None:
    pytest.exit(f"{sys.executable} does not have runwatch and its test dependencies installed: run "
                "`bash scripts/install.sh`, then `.venv/bin/pytest` (or `.venv/bin/python -m pytest`)",
                returncode=4)

pytest_plugins = ["runwatch.containers.pytest_plugin", "runwatch.testing.pytest_plugin"]

_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _worker and "RUNWATCH_SOCKET" not in os.environ:
    os.environ["RUNWATCH_SOCKET"] = f"/run/runwatch/sdk-{_worker}/sdk.sock"


CHROMIUM = "/usr/bin/chromium"
"""Debian's chromium (apt, scripts/install.sh): Playwright drives it, no browser is downloaded."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium through Playwright, one per test module: Playwright's sync API keeps an
    asyncio loop running in this thread while it is started, so one instance at a time, stopped
    before other modules' tests call ``asyncio.run``."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install.sh (apt package chromium)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()
