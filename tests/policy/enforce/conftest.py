"""Fixtures for kernel enforcement tests: running Enforcers, a TCP/UDP listener, policies from YAML."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from runwatch.policy import load_policy_texts
from runwatch.policy.enforce import Enforcement, Enforcers
from runwatch.policy.model import Policy


class Collected:
    """Decisions delivered to the Enforcers callback (the dispatcher thread appends)."""

    def __init__(self) -> None:
        self.items: list[Enforcement] = []

    def __call__(self, d: Enforcement) -> None:
        self.items.append(d)

    def wait(self, pred: Callable[[Enforcement], bool], count: int, timeout: float = 5.0) -> list[Enforcement]:
        """Matching decisions once at least ``count`` arrived (or the timeout passed), after a short settle."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len([d for d in self.items if pred(d)]) < count:
            time.sleep(0.02)
        time.sleep(0.2)  # anything extra would show up now
        return [d for d in self.items if pred(d)]


@pytest.fixture
def decisions() -> Collected:
    return Collected()


@pytest.fixture
def enforcers(decisions: Collected) -> Iterator[Enforcers]:
    enf = Enforcers(on_decision=decisions).start()
    try:
        assert enf.problems == []
        yield enf
    finally:
        enf.stop()


def _policy(text: str) -> Policy:
    body = "selector: {container: [any]}\n" + text
    return next(iter(load_policy_texts([(body, "test-policy.yaml")])))


@pytest.fixture
def policy() -> Callable[[str], Policy]:
    """Build one policy from YAML text (the selector is filled in)."""
    return _policy


@pytest.fixture
def tcp_port() -> Iterator[int]:
    """A TCP listener on 0.0.0.0 that accepts and closes every connection."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", 0))
    srv.listen(128)
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    thread.join()
    srv.close()


@pytest.fixture
def udp_sink() -> Iterator[socket.socket]:
    """A UDP socket on 127.0.0.1 that tests read datagrams from."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    yield sock
    sock.close()
