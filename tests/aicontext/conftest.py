"""A live join: the kernel sensor and the SDK collector polled together, enriched and joined."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runwatch.testing.capture import LiveCapture, live_capture, socket_dir


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A fresh directory for the SDK socket (bind-mounted into containers), removed after."""
    with socket_dir("rw-sdk-") as d:
        yield d


@pytest.fixture
def live_join(sock_dir: Path) -> Iterator[LiveCapture]:
    """KernelSource (this test's descendants) + SdkCollector, enriched and joined; stopped at teardown."""
    with live_capture(sdk_socket=sock_dir / "sdk.sock", hold_ms=200.0, quiet=0.4, limit=15.0) as live:
        yield live
