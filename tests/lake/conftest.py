"""Fixtures of the lake tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    """A lake directory that does not exist yet."""
    return tmp_path / "lake"
