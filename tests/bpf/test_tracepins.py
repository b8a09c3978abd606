"""Tracepoint pins: one disabled perf event per sensor syscall tracepoint, released on close."""

from __future__ import annotations

import os

import pytest

from runwatch.policy.enforce.bpfobj import SPEC as ENFORCE_SPEC
from runwatch.sensors.kernel.loader import SPEC
from runwatch.testing.tracepins import TracepointPins, tracepoints_of

pytestmark = pytest.mark.kernel


def test_the_sensor_has_65_syscall_tracepoints_and_the_enforcers_none() -> None:
    tps = tracepoints_of([SPEC, ENFORCE_SPEC])
    assert len(tps) == 65 and len(set(tps)) == 65
    assert "syscalls/sys_exit_openat" in tps and "syscalls/sys_exit_connect" in tps
    assert "syscalls/sys_enter_openat" not in tps  # file.open reads its arguments at the exit
    assert "syscalls/sys_exit_execve" in tps and "syscalls/sys_enter_fchmodat2" in tps
    assert tracepoints_of([ENFORCE_SPEC]) == []


def test_pins_are_perf_events_until_closed() -> None:
    if os.geteuid() != 0:
        pytest.skip("perf events on tracepoints need root")
    pins = TracepointPins([*tracepoints_of([SPEC])[:7], "syscalls/sys_enter_no_such_call"]).open()
    try:
        assert pins.skipped == ["syscalls/sys_enter_no_such_call"]
        assert len(pins.fds) == 7
        assert {os.readlink(f"/proc/self/fd/{fd}") for fd in pins.fds} == {"anon_inode:[perf_event]"}
        held = list(pins.fds)
    finally:
        pins.close()
    assert pins.fds == []
    assert all(not os.path.exists(f"/proc/self/fd/{fd}") or
               os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:[perf_event]" for fd in held)
    pins.close()  # idempotent
