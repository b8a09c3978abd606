"""The synthetic store the report tests read (written once per test through the real writer)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from report_synthetic import write_store

CHROMIUM = "/usr/bin/chromium"
"""Debian's chromium (apt, scripts/install.sh): Playwright drives it, no browser is downloaded."""


@pytest.fixture
def synthetic_db(tmp_path: Path) -> Path:
    """A store holding :mod:`report_synthetic`'s events and alerts."""
    return write_store(tmp_path / "events.db")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium through Playwright, one per test module: Playwright's sync API keeps an
    asyncio loop running in this thread while it is started, so it must stop before other modules'
    tests call ``asyncio.run``."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install.sh (apt package chromium)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()
