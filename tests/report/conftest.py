"""The synthetic store the report tests read (written once per test through the real writer)."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_synthetic import write_store


@pytest.fixture
def synthetic_db(tmp_path: Path) -> Path:
    """A store holding :mod:`report_synthetic`'s events and alerts."""
    return write_store(tmp_path / "events.db")
