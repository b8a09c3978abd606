"""Helpers of the console's browser tests: logging in and the screenshots for docs/console/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from console_synthetic import TOKEN

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
"""Where the browser tests save a screenshot of each page (referenced from docs/console.md)."""
VIEWPORT = {"width": 1280, "height": 760}


def log_in(page: Any, url: str, token: str = TOKEN) -> None:
    """Open ``url``; the console sends the browser to its login form; log in with ``token``."""
    page.goto(url)
    page.wait_for_url("**/login?next=*")
    page.fill("input[name=token]", token)
    page.click("form.login button")
    page.wait_for_load_state("load")


def shot(page: Any, name: str) -> None:
    """Save the viewport as docs/console/NAME.png."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))
