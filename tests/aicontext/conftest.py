"""A live join: the kernel sensor and the SDK collector polled together, enriched and joined."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runwatch.enrich.aicontext import ToolCallJoin
from runwatch.enrich.stage import Enrichment
from runwatch.events import Event
from runwatch.sensors.inproc.collector import SdkCollector
from runwatch.sensors.kernel.loader import object_path
from runwatch.sensors.kernel.source import KernelSource
from runwatch.sensors.multi import MultiSource


class LiveJoin:
    """KernelSource (following this test process's descendants) + SdkCollector via MultiSource.

    Batches go through the production Enrichment and ToolCallJoin stages on one consumer
    thread, like the pipeline; the join is ticked with empty batches so held events leave.
    """

    def __init__(self, sock_dir: Path, hold_ms: float = 200.0) -> None:
        self.sock_dir = sock_dir
        self.collector = SdkCollector(sock_dir / "sdk.sock")
        self.source = MultiSource([KernelSource(track_pids=[os.getpid()]), self.collector])
        self.enrich = Enrichment()
        self.join = ToolCallJoin(hold_ms=hold_ms)
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> LiveJoin:
        self.source.start()
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            batch = self.source.poll(0.02) or []
            out = self.join(self.enrich(batch))
            with self._lock:
                self.events.extend(out)

    def settle(self, quiet: float = 0.4) -> list[Event]:
        """Wait until nothing new arrives for ``quiet`` s and nothing is held; return all events."""
        n, deadline = -1, time.monotonic() + 15
        while time.monotonic() < deadline:
            time.sleep(quiet)
            with self._lock:
                now = len(self.events)
            if now == n and self.join.held() == 0:
                break
            n = now
        with self._lock:
            return list(self.events)

    def where(self, pred: Callable[[Event], bool]) -> list[Event]:
        """Settled events matching ``pred``."""
        return [e for e in self.settle() if pred(e)]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.source.stop()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A fresh directory for the SDK socket (bind-mounted into containers), removed after."""
    d = Path(tempfile.mkdtemp(prefix="rw-sdk-"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def live_join(sock_dir: Path) -> Iterator[LiveJoin]:
    """A started LiveJoin, stopped at teardown."""
    if os.geteuid() != 0:
        pytest.skip("the eBPF sensor needs root")
    if not object_path().exists():
        pytest.fail(f"{object_path()} is missing: run scripts/install.sh")
    live = LiveJoin(sock_dir).start()
    try:
        yield live
    finally:
        live.stop()
