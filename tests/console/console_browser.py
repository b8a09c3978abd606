"""Helpers of the console's browser tests: logging in and the screenshots for docs/console/."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from console_synthetic import TOKEN

DOCS_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
RECORD_ENV = "RUNWATCH_RECORD_CONSOLE_SHOTS"
"""Set to 1 to write the screenshots into docs/console/ (referenced from docs/console.md); otherwise
they are taken all the same (a page that cannot be drawn fails the test) into a scratch folder, so
a test run leaves the checkout as it was."""
SHOTS = DOCS_SHOTS if os.environ.get(RECORD_ENV) == "1" else Path(tempfile.gettempdir()) / "runwatch-console-shots"
VIEWPORT = {"width": 1280, "height": 760}


def log_in(page: Any, url: str, token: str = TOKEN) -> None:
    """Open ``url``; the console sends the browser to its login form; log in with ``token``."""
    page.goto(url)
    page.wait_for_url("**/login?next=*")
    page.fill("input[name=token]", token)
    page.click("form.login button")
    page.wait_for_load_state("load")


def shot(page: Any, name: str) -> None:
    """Save the viewport as NAME.png under :data:`SHOTS`."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))
