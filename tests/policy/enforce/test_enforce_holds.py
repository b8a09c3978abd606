"""Holds in the kernel: a cgroup created inside the hold scope stops its first exec until
released; when holding stops, every held cgroup is released, so nothing stays stopped."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from runwatch.host import cgroup_v2
from runwatch.policy.enforce import Enforcers, Hold

pytestmark = pytest.mark.kernel


def state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def wait_state(pid: int, want: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = state(pid)
        if got == want:
            return got
        time.sleep(0.01)
    return state(pid)


def test_a_new_cgroup_in_scope_is_held_until_holding_stops(tmp_path: Path) -> None:
    root = cgroup_v2()
    scope = root.dir_of(f"/rw-hold-test-{os.getpid()}")
    scope.mkdir()
    child = scope / "c23"
    held: list[Hold] = []
    enf = Enforcers().start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        scope_id = os.stat(scope).st_ino
        enf.hold(scope_id, held.append)  # a binder that never answers
        # the cgroup is made by a task inside the scope, as a runtime would
        subprocess.run(["/bin/sh", "-c", f"echo $$ > {scope}/cgroup.procs && mkdir {child}"], check=True)
        assert enf.is_held(os.stat(child).st_ino)
        first = subprocess.Popen(["/bin/sh", "-c", f"echo $$ > {child}/cgroup.procs && exec /bin/sleep 0.1"])
        procs.append(first)
        assert wait_state(first.pid, "T") == "T"  # stopped at its exec, before its first instruction
        deadline = time.monotonic() + 5
        while not held and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [(h.pid, h.cgroup_id) for h in held] == [(first.pid, os.stat(child).st_ino)]
        enf.stop_holding()
        assert not enf.is_held(os.stat(child).st_ino)
        second = subprocess.Popen(["/bin/sh", "-c", f"echo $$ > {child}/cgroup.procs && exec /bin/true"])
        procs.append(second)
        assert second.wait(timeout=5) == 0  # released: it ran
        os.kill(first.pid, 18)  # SIGCONT: the one reported before holding stopped is the caller's
        assert first.wait(timeout=5) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        enf.stop()
        for d in (child, scope):
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
