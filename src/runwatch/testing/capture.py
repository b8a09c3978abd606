"""Live captures for tests: the real kernel sensor (optionally with the SDK collector), enriched.

:class:`LiveCapture` runs a :class:`KernelSource` that follows everything this test process
starts (the test process itself is the sensor's own process and is never reported; its
children and their descendants, containers included, are). With ``sdk_socket`` an
:class:`SdkCollector` listens there too, merged through :class:`MultiSource`; with ``hold_ms``
batches also go through a :class:`ToolCallJoin`, ticked with empty batches so held events
leave. One consumer thread polls, enriches and joins, like the pipeline.

Loading and detaching the sensor takes seconds, so a test session shares one capture
(:class:`SharedCapture`, the ``live_sensor`` fixture of :mod:`runwatch.testing.pytest_plugin`):
each test starts with :meth:`LiveCapture.reset`, which lets the previous test's events drain,
swaps in a fresh join, forgets everything seen so far and follows this process's children
again; :meth:`LiveCapture.pause` at the end of the test stops following new children (as if
the sensor were detached) and drops what still arrives.

Thread safety: ``events`` is appended by the consumer thread under a lock; read it through
:meth:`LiveCapture.settle` (or after :meth:`LiveCapture.stop`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from runwatch.enrich.aicontext import ToolCallJoin
from runwatch.enrich.stage import Enrichment
from runwatch.events import Event, from_json, to_json
from runwatch.sensors.base import Source
from runwatch.sensors.inproc.collector import SdkCollector
from runwatch.sensors.kernel.loader import object_path
from runwatch.sensors.kernel.source import KernelSource
from runwatch.sensors.kernel.watchlist import Watch
from runwatch.sensors.multi import MultiSource


class LiveCapture:
    """Kernel sensor (+ SDK collector) -> Enrichment (-> ToolCallJoin) on one consumer thread.

    ``quiet`` (seconds) and ``limit`` (seconds) are the defaults of :meth:`settle`.
    """

    def __init__(self, *, sdk_socket: Path | None = None, hold_ms: float | None = None,
                 watches: list[Watch] | None = None, quiet: float = 0.3, limit: float = 10.0) -> None:
        kernel = KernelSource(track_pids=[os.getpid()], watches=watches)
        self.kernel = kernel
        self.collector: SdkCollector | None = None
        self.source: Source = kernel
        if sdk_socket is not None:
            self.collector = SdkCollector(sdk_socket)
            self.source = MultiSource([kernel, self.collector])
        self.enrich = Enrichment()
        self.hold_ms = hold_ms
        self.join: ToolCallJoin | None = None if hold_ms is None else ToolCallJoin(hold_ms=hold_ms)
        self.quiet, self.limit = quiet, limit
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._swap = threading.Event()
        self._keep = True  # whether the consumer keeps what it enriches (see reset/pause)
        self.record_raw = False  # keep each event's JSON as the source emitted it (see raw_events)
        self._raw: list[bytes] = []
        self._rounds = 0  # consumer iterations completed (under the lock)
        self._pending = 0  # events the join held after the last iteration (under the lock)
        self._last_arrival = time.monotonic()  # when the sources last handed the consumer events
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> LiveCapture:
        """Start the source and the consumer thread; returns self."""
        self.enrich.containers.watch_states()
        self.source.start()
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            batch = self.source.poll(0.02) or []
            if batch and self.record_raw and self._keep:
                raw = [to_json(e) for e in batch]  # before enrichment fills them in
                with self._lock:
                    self._raw.extend(raw)
            out = self.enrich(batch) if batch else []
            hold_ms = self.hold_ms
            if self.join is not None and hold_ms is not None:
                out = self.join(out)
                if self._swap.is_set():
                    out += self.join.flush()
                    self.join = ToolCallJoin(hold_ms=hold_ms)
                    self._swap.clear()
            held = self._held()
            with self._lock:
                self._pending = held  # published with the events it excludes, so settle sees both at once
                if self._keep:
                    self.events.extend(out)
                if batch:  # what the join releases later is not new input (settle checks held())
                    self._last_arrival = time.monotonic()
                self._rounds += 1

    def _held(self) -> int:
        join = self.join
        return 0 if join is None else join.held()

    def fresh_join(self) -> None:
        """Settle, then start a new ToolCallJoin (the consumer thread swaps it; this waits).

        The join keys agents by pid-namespace inode, and the kernel hands a finished
        container's inode to the next container; a fresh join keeps one SDK case's calls
        from being attributed to the next case's processes. Needs ``hold_ms``.
        """
        if self.join is None:
            raise ValueError("fresh_join needs a capture made with hold_ms")
        self.settle(0.3)
        self._swap.set()
        deadline = time.monotonic() + 10
        while self._swap.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)

    def reset(self, *, quiet: float | None = None, limit: float | None = None) -> LiveCapture:
        """Start afresh for the next test: drain, swap the join (if any), forget all events; returns self.

        ``quiet`` and ``limit`` replace the defaults of :meth:`settle`. Events of processes the
        previous test left running that arrive after this are the next test's: tests wait for
        their workloads (and settle) before they end.
        """
        if self.join is not None:
            self.fresh_join()
        else:
            self.settle(0.3)
        self.kernel.track(os.getpid())
        with self._lock:
            self.events.clear()
            self._raw.clear()
            self._keep = True
        self.record_raw = False
        if quiet is not None:
            self.quiet = quiet
        if limit is not None:
            self.limit = limit
        return self

    def pause(self) -> None:
        """Stop following what this process starts next, stop keeping events, forget those kept.

        Processes already followed still report (enriched and joined, then dropped), so the
        process tree stays whole; :meth:`reset` follows new children again.
        """
        self.kernel.untrack(os.getpid())
        with self._lock:
            self._keep = False
            self.events.clear()
            self._raw.clear()

    def settle(self, quiet: float | None = None) -> list[Event]:
        """Wait until nothing new arrived for ``quiet`` s and the join holds nothing; return all events.

        Whatever the sources had queued when this was called is consumed first (two consumer
        iterations must complete), so a workload that has returned is fully seen; the quiet
        time counts from the last arrival, not from the call. Gives up after ``limit`` seconds.
        """
        quiet = self.quiet if quiet is None else quiet
        now = time.monotonic()
        deadline = now + self.limit
        with self._lock:
            first_round = self._rounds
        while now < deadline:
            with self._lock:
                drained = self._rounds >= first_round + 2
                idle = now - self._last_arrival
                pending = self._pending
            if drained and idle >= quiet and pending == 0:
                break
            time.sleep(min(0.02, max(quiet - idle, 0.005)) if drained else 0.005)
            now = time.monotonic()
        with self._lock:
            return list(self.events)

    def raw_events(self) -> list[Event]:
        """Settle, then the events kept since the last reset as their source emitted them.

        Only while ``record_raw`` was set; in arrival order, ``cgroup.mkdir`` records included.
        """
        self.settle()
        with self._lock:
            return [from_json(line) for line in self._raw]

    def where(self, pred: Callable[[Event], bool]) -> list[Event]:
        """Settled events matching ``pred``."""
        return [e for e in self.settle() if pred(e)]

    def stop(self) -> None:
        """Stop the consumer thread, then the source."""
        self._stop.set()
        self._thread.join(timeout=10)
        self.source.stop()
        self.enrich.containers.close()


def require_kernel_sensor() -> None:
    """Skip the test without root; fail it when the compiled BPF object is missing."""
    if os.geteuid() != 0:
        pytest.skip("the eBPF sensor needs root")
    if not object_path().exists():
        pytest.fail(f"{object_path()} is missing: run scripts/install.sh")


@contextmanager
def live_capture(*, sdk_socket: Path | None = None, hold_ms: float | None = None,
                 watches: list[Watch] | None = None, quiet: float = 0.3,
                 limit: float = 10.0) -> Iterator[LiveCapture]:
    """A started :class:`LiveCapture` (after :func:`require_kernel_sensor`), stopped on exit."""
    require_kernel_sensor()
    capture = LiveCapture(sdk_socket=sdk_socket, hold_ms=hold_ms, watches=watches, quiet=quiet, limit=limit)
    capture.start()
    try:
        yield capture
    finally:
        capture.stop()


class SharedCapture:
    """One :class:`LiveCapture` (kernel sensor + SDK collector + join) for many tests.

    Started on the first :meth:`get`, with its SDK socket at ``socket`` in a private directory
    (bind-mountable into containers); :meth:`close` stops it and removes the directory, and a
    later :meth:`get` starts a new one. Not thread safe: the test runner's thread only.
    """

    def __init__(self, *, hold_ms: float = 200.0) -> None:
        self.hold_ms = hold_ms
        self._capture: LiveCapture | None = None
        self._dir: Path | None = None

    @property
    def started(self) -> bool:
        """Whether a capture is running now."""
        return self._capture is not None

    def get(self) -> LiveCapture:
        """The running capture (started now if needed, after :func:`require_kernel_sensor`)."""
        if self._capture is None:
            require_kernel_sensor()
            self._dir = Path(tempfile.mkdtemp(prefix="rw-live-"))
            os.chmod(self._dir, 0o755)
            capture = LiveCapture(sdk_socket=self._dir / "sdk.sock", hold_ms=self.hold_ms)
            try:
                capture.start()
            except BaseException:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None
                raise
            self._capture = capture
        return self._capture

    def close(self) -> None:
        """Stop the capture and remove its socket directory; idempotent."""
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


@contextmanager
def socket_dir(prefix: str) -> Iterator[Path]:
    """A fresh, short temp directory (mode 0755) for an SDK socket, removed on exit.

    Unix socket paths are limited to 107 bytes; the directory may be bind-mounted into containers.
    """
    d = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
