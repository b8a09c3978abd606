"""The command line begins the sensor's load before ``run``/``watch`` import the rest; the
sensor adopts it only when built with the same options, and a load nobody takes is freed."""

from __future__ import annotations

import contextlib
import os
import threading
import time

import pytest

from runwatch.cli.prefetch import sensor_for
from runwatch.sensors.kernel import loader
from runwatch.sensors.kernel.source import KernelSource

pytestmark = pytest.mark.kernel


@pytest.fixture(autouse=True)
def _nothing_left() -> object:
    loader._discard_preloaded()
    yield
    loader._discard_preloaded()


def _bpf_fds() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own fd is gone by now
            n += os.readlink(f"/proc/self/fd/{fd}").startswith("anon_inode:bpf")
    return n


def _pending() -> list[loader.LoadOptions]:
    return [opts for opts, _ in loader._preloaded]


@pytest.mark.skipif(os.geteuid() != 0, reason="loading the sensor needs root")
def test_run_and_watch_preload_with_their_options_and_other_lines_do_not() -> None:
    for argv in (["run", "--ring-mb", "32", "--", "x"], ["run", "--source=proc", "--", "x"], ["events"],
                 ["watch", "--help"], ["run", "-h"], []):
        sensor_for(argv)
        assert _pending() == [], argv
    sensor_for(["run", "--db", "x.db", "--", "sh", "-c", "--ring-mb"])  # after "--": the command's own
    assert _pending() == [loader.LoadOptions(filter_tracked=True, ring_bytes=1 << 24)]
    loader._discard_preloaded()
    sensor_for(["watch", "--duration", "3"])
    assert _pending() == [loader.LoadOptions(filter_tracked=False, ring_bytes=1 << 24)]


@pytest.mark.skipif(os.geteuid() != 0, reason="loading the sensor needs root")
def test_the_sensor_adopts_a_matching_preload_and_a_mismatch_is_freed() -> None:
    loader.preload(loader.LoadOptions(filter_tracked=True, ring_bytes=1 << 24))
    src = KernelSource(track_pids=[])
    src.prepare()
    assert _pending() == []  # taken
    src.start()
    try:
        assert len(src.report.active) > 20
    finally:
        src.stop()
    before = _bpf_fds()
    loader.preload(loader.LoadOptions(filter_tracked=False, ring_bytes=1 << 22))
    other = KernelSource(track_pids=[])  # tracking: not the preloaded options
    assert loader.take_preloaded(other._opts) is None and _pending() == []
    # the mismatched load is closed once it finishes, from its own thread
    deadline = time.monotonic() + 30
    while any(t.name.startswith("bpf-preload") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name.startswith("bpf-preload") for t in threading.enumerate())
    assert _bpf_fds() == before, "the load nobody took still holds programs or maps"
