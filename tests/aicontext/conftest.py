"""A live join: the kernel sensor and the SDK collector polled together, enriched and joined."""

from __future__ import annotations

from pathlib import Path

import pytest

from runwatch.testing.capture import LiveCapture


@pytest.fixture
def live_join(live_sensor: LiveCapture) -> LiveCapture:
    """The session's live capture (kernel sensor + SdkCollector, enriched, joined), reset for this test."""
    live_sensor.quiet, live_sensor.limit = 0.4, 15.0
    return live_sensor


@pytest.fixture
def sock_dir(live_join: LiveCapture) -> Path:
    """The directory of the live capture's SDK socket (bind-mounted into containers)."""
    assert live_join.collector is not None
    return live_join.collector.path.parent
