"""Fixtures for the zero-code instrumentation tests: a real SDK collector and this process's transport."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runwatch.events import Event
from runwatch.sdk import audithook
from runwatch.sdk.transport import Transport, set_transport
from runwatch.sensors.inproc.collector import SdkCollector
from runwatch.testing.capture import socket_dir
from runwatch.testing.children import child_env, run_py


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short, fresh directory for the SDK socket (unix socket paths are limited to 107 bytes)."""
    with socket_dir("rw-auto-") as d:
        yield d


@pytest.fixture
def collector(sock_dir: Path) -> Iterator[SdkCollector]:
    """A listening SdkCollector, stopped at teardown."""
    col = SdkCollector(sock_dir / "sdk.sock")
    col.start()
    reader = _Reader(col)
    _READERS[id(col)] = reader
    try:
        yield col
    finally:
        reader.close()
        del _READERS[id(col)]
        col.stop()


@pytest.fixture
def transport(collector: SdkCollector) -> Iterator[Transport]:
    """This process's SDK transport pointed at ``collector``; the hook is turned off afterwards."""
    t = Transport(str(collector.path))
    old = set_transport(t)
    try:
        yield t
    finally:
        audithook.uninstall()
        t.close()
        set_transport(old)


class Helpers:
    """Helpers handed to tests through the ``helpers`` fixture (test modules cannot import conftest)."""

    @staticmethod
    def drain(col: SdkCollector, quiet: float = 0.3, limit: float = 10.0) -> list[Event]:
        return drain(col, quiet, limit)

    @staticmethod
    def child_env(socket_path: Path | None, **extra: str) -> dict[str, str]:
        return child_env(socket_path, **extra)

    @staticmethod
    def run_py(args: list[str], env: dict[str, str], cwd: Path | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run_py(args, env, cwd, timeout)


@pytest.fixture
def helpers() -> type[Helpers]:
    """See :class:`Helpers`."""
    return Helpers


class _Reader:
    """Reads a collector all the time, as runwatch does: a unix datagram socket queues only a
    few datagrams (net.unix.max_dgram_qlen), and an exiting agent flushes for a bounded time,
    so a collector read only after the agent ran could lose its last messages."""

    def __init__(self, col: SdkCollector) -> None:
        self.col = col
        self.events: list[Event] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sdk-collector-reader", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            batch = self.col.poll(0.05)
            if batch:
                with self.lock:
                    self.events.extend(batch)

    def take(self) -> list[Event]:
        with self.lock:
            out, self.events = self.events, []
        return out

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


_READERS: dict[int, _Reader] = {}


def drain(col: SdkCollector, quiet: float = 0.3, limit: float = 10.0) -> list[Event]:
    """Every event the collector receives until nothing arrives for ``quiet`` s."""
    out: list[Event] = []
    deadline = time.monotonic() + limit
    last = time.monotonic()
    reader = _READERS.get(id(col))
    while time.monotonic() < deadline:
        if reader is not None:
            time.sleep(0.05)
            batch = reader.take()
        else:
            batch = col.poll(0.05) or []
        if batch:
            out.extend(batch)
            last = time.monotonic()
        elif time.monotonic() - last > quiet:
            break
    return out
