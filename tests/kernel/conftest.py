"""A live capture of sensor events for kernel tests: the real BPF programs, enriched."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from runwatch.enrich.stage import Enrichment
from runwatch.events import Event
from runwatch.sensors.kernel.loader import object_path
from runwatch.sensors.kernel.source import KernelSource


class Capture:
    """Runs a KernelSource that follows everything this test process starts.

    The test process itself is the sensor's own process (never reported); its children and
    their descendants, containers included, are. Events are enriched like in production.
    """

    def __init__(self, **source_kwargs: object) -> None:
        self.source = KernelSource(track_pids=[os.getpid()], **source_kwargs)  # type: ignore[arg-type]
        self.enrich = Enrichment()
        self.events: list[Event] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> Capture:
        self.source.start()
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            batch = self.source.poll(0.02)
            if batch:
                self.events.extend(self.enrich(batch))

    def settle(self, quiet: float = 0.3) -> list[Event]:
        """Wait until no new events arrive for ``quiet`` seconds; return all so far."""
        n, deadline = -1, time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(quiet)
            if len(self.events) == n:
                break
            n = len(self.events)
        return list(self.events)

    def where(self, pred: Callable[[Event], bool]) -> list[Event]:
        """Settled events matching ``pred``."""
        return [e for e in self.settle() if pred(e)]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.source.stop()


@pytest.fixture
def capture() -> Iterator[Capture]:
    """A started capture, stopped at teardown."""
    if os.geteuid() != 0:
        pytest.skip("the eBPF sensor needs root")
    if not object_path().exists():
        pytest.fail(f"{object_path()} is missing: run scripts/install.sh")
    cap = Capture().start()
    try:
        yield cap
    finally:
        cap.stop()
