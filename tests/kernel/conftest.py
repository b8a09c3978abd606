"""A live capture of sensor events for kernel tests: the real BPF programs, enriched."""

from __future__ import annotations

import pytest

from runwatch.testing.capture import LiveCapture


@pytest.fixture
def capture(live_sensor: LiveCapture) -> LiveCapture:
    """The session's live capture, holding only what this test starts."""
    live_sensor.quiet, live_sensor.limit = 0.3, 10.0
    return live_sensor
