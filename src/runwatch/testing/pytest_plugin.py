"""pytest fixtures shared by the test suites.

Register from a conftest with ``pytest_plugins = ["runwatch.testing.pytest_plugin"]``.

* ``events`` (function): a fresh list of the 23 sample events of :func:`make_events`.
* ``live_sensor`` (function): the session's one live capture (kernel sensor + SDK collector,
  enriched and joined; see :class:`runwatch.testing.capture.SharedCapture`), reset for this
  test so it holds only the events of what the test starts. The sensor is loaded on the first
  test that asks for it and detached after the last one that does (in collection order).
* The sensor's syscall tracepoints are pinned for the session when run as root (see
  :mod:`runwatch.testing.tracepins`: sensor teardown in ms instead of a second);
  ``RUNWATCH_TEST_PIN_TRACEPOINTS=0`` turns that off.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

import pytest

from runwatch.events import Event
from runwatch.testing.capture import LiveCapture, SharedCapture
from runwatch.testing.events import make_events

_SHARED = SharedCapture()
_last_user: list[str] = []  # node id of the last collected test using live_sensor


@pytest.fixture
def events() -> list[Event]:
    """A fresh list of the 23 sample events."""
    return make_events()


@pytest.fixture(scope="session", autouse=True)
def _tracepoint_pins() -> Iterator[None]:
    if os.geteuid() != 0 or os.environ.get("RUNWATCH_TEST_PIN_TRACEPOINTS") == "0":
        yield
        return
    from runwatch.sensors.kernel.loader import SPEC
    from runwatch.testing.tracepins import TracepointPins, tracepoints_of

    pins = TracepointPins(tracepoints_of([SPEC])).open()
    try:
        yield
    finally:
        pins.close()


#: The lock the tests that leave fail-closed pins behind (a SIGKILLed enforcer) hold while they do.
PIN_LOCK = "/run/runwatch-tests-pins.lock"


@contextlib.contextmanager
def turns(lock: str) -> Iterator[None]:
    """Hold the machine-wide lock file ``lock``: tests (on any worker) that hold the same one take turns."""
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture
def pin_adoption() -> Iterator[None]:
    """Held by a test that SIGKILLs an enforcer and then adopts what it pinned: a runwatch that
    starts adopts every dead owner's pins on the machine, so two such tests on different workers
    would adopt each other's. The lock makes them take turns (other tests are unaffected)."""
    with turns(PIN_LOCK):
        yield


@pytest.fixture(scope="session")
def _live_sensor_session() -> Iterator[SharedCapture]:
    try:
        yield _SHARED
    finally:
        _SHARED.close()


@pytest.fixture
def live_sensor(_live_sensor_session: SharedCapture) -> Iterator[LiveCapture]:
    """The shared live capture, reset: ``settle()`` returns only events after this test began.

    The test may set ``quiet``/``limit`` through :meth:`LiveCapture.reset` again; the capture
    stops keeping events when the test ends.
    """
    capture = _live_sensor_session.get().reset(quiet=0.3, limit=10.0)
    try:
        yield capture
    finally:
        capture.pause()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Remember the last test that uses ``live_sensor``, to detach the sensor right after it."""
    users = [item.nodeid for item in items if "live_sensor" in getattr(item, "fixturenames", ())]
    _last_user[:] = users[-1:]


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Detach the shared sensor once the last test using it is torn down (nothing else needs it)."""
    if _last_user and item.nodeid == _last_user[0] and _SHARED.started:
        _SHARED.close()
