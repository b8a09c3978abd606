"""Fixtures of the fleet tests: a real nats-server per test, and the processes a test starts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet_helpers import Procs

from runwatch.testing.natsserver import nats_server  # noqa: F401  (the fixture)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Start agents and workers; all stopped at the end of the test."""
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.stop_all()
