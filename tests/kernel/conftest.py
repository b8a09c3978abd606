"""A live capture of sensor events for kernel tests: the real BPF programs, enriched."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runwatch.testing.capture import LiveCapture, live_capture


@pytest.fixture
def capture() -> Iterator[LiveCapture]:
    """A started capture of everything this test process starts, stopped at teardown."""
    with live_capture(quiet=0.3, limit=10.0) as cap:
        yield cap
