"""Fixtures for the OTLP tests: a real receiver on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runwatch.sensors.ingest.otlp import OtlpReceiver


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    """A started OtlpReceiver on 127.0.0.1 (port chosen by the kernel), stopped at teardown."""
    rx = OtlpReceiver("127.0.0.1", 0)
    rx.start()
    try:
        yield rx
    finally:
        rx.stop()
