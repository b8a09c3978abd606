"""A clean exit of ``runwatch run``/``watch`` leaves nothing; what a ``kill -9`` left, the next run removes.

Real processes and real files: the SDK, decide and control sockets and the command's own cgroup
(``/runwatch-run/PID``, made with ``--policy``). After SIGKILL they stay behind; the next
``runwatch run`` on the same paths removes each stale socket (only one nothing listens on) and
each empty cgroup of a dead run, and says so in one line. A socket something still listens on
is never touched.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runwatch.host import cgroup_v2_if_any
from runwatch.leftovers import remove_dead_run_cgroups, remove_stale_sockets
from runwatch.policy.apply import CMD_PARENT
from runwatch.store.sqlite import query_runs
from runwatch.testing.runs import runs_so_far

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))


POLICY = "id: leftovers-23\nselector: {process: ['*']}\nmode: monitor\negress:\n  allow: ['127.0.0.23:9']\n"

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _args(tmp_path: Path) -> list[str]:
    (tmp_path / "p.yaml").write_text(POLICY)
    run_dir = tmp_path / "run"
    return ["--db", str(tmp_path / "r.db"), "--no-rules", "--sdk-socket", str(run_dir / "sdk.sock"),
            "--control-socket", str(run_dir / "control.sock"), "--policy", str(tmp_path / "p.yaml")]


def _sockets(tmp_path: Path) -> list[str]:
    run_dir = tmp_path / "run"
    return sorted(p.name for p in run_dir.iterdir()) if run_dir.exists() else []


def _run_cgroup(pid: int) -> Path:
    cgroups = cgroup_v2_if_any()
    assert cgroups is not None
    return cgroups.dir_of(f"/{CMD_PARENT}/{pid}")


@pytest.mark.kernel
@root_only
def test_run_exits_leaving_no_socket_or_cgroup(tmp_path: Path) -> None:
    proc = subprocess.Popen([RUNWATCH, "run", *_args(tmp_path), "--", "/bin/true"], stderr=subprocess.PIPE,
                            text=True)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "applied to the command's cgroup" in err
    assert _sockets(tmp_path) == []
    assert not _run_cgroup(proc.pid).exists()


@pytest.mark.kernel
@root_only
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["INT", "TERM", "HUP"])
def test_watch_stopped_by_a_signal_leaves_no_socket(tmp_path: Path, sig: signal.Signals) -> None:
    proc = subprocess.Popen([RUNWATCH, "watch", *_args(tmp_path)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while _sockets(tmp_path) != ["control.sock", "policy.sock", "sdk.sock"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _sockets(tmp_path) == ["control.sock", "policy.sock", "sdk.sock"]
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert _sockets(tmp_path) == []


@pytest.mark.kernel
@root_only
def test_the_next_run_removes_what_a_killed_run_left(tmp_path: Path) -> None:
    first = subprocess.Popen([RUNWATCH, "run", *_args(tmp_path), "--", "sleep", "60"], stderr=subprocess.DEVNULL,
                             start_new_session=True)
    cgroup = _run_cgroup(first.pid)
    try:
        deadline = time.monotonic() + 60
        while not (_sockets(tmp_path) == ["control.sock", "policy.sock", "sdk.sock"] and cgroup.exists()
                   and (cgroup / "cgroup.procs").read_text().strip() and runs_so_far(tmp_path / "r.db")) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the sleeping command as well
    deadline = time.monotonic() + 10
    while cgroup.exists() and time.monotonic() < deadline:
        try:
            if not (cgroup / "cgroup.procs").read_text().strip():
                break
        except FileNotFoundError:  # swept already by a session another test started
            break
        time.sleep(0.05)
    assert _sockets(tmp_path) == ["control.sock", "policy.sock", "sdk.sock"]  # what SIGKILL left

    second = subprocess.run([RUNWATCH, "run", *_args(tmp_path), "--", "/bin/true"], capture_output=True, text=True,
                            timeout=120, check=False)
    assert second.returncode == 0, second.stderr[-2000:]
    run_dir = tmp_path / "run"
    lines = [line for line in second.stderr.splitlines() if "left behind" in line]
    sockets = (f"runwatch: removed what a runwatch that was killed left behind: stale sockets "
               f"{run_dir / 'sdk.sock'}, {run_dir / 'policy.sock'}, {run_dir / 'control.sock'}")
    # dead runs' cgroups are swept machine-wide: a session another test started meanwhile
    # may have removed this one first
    assert lines in ([f"{sockets}; empty run cgroup /{CMD_PARENT}/{first.pid}"], [sockets]), second.stderr[-2000:]
    crashed = [line for line in second.stderr.splitlines() if "marked crashed" in line]
    assert len(crashed) == 1 and f"pid {first.pid})" in crashed[0], second.stderr[-2000:]
    assert [r.crashed for r in query_runs(tmp_path / "r.db")] == [True, False]
    assert not cgroup.exists()
    assert _sockets(tmp_path) == []


@root_only
def test_a_socket_something_listens_on_is_kept(tmp_path: Path) -> None:
    live_stream, live_dgram = tmp_path / "live.sock", tmp_path / "live-dgram.sock"
    dead_stream, dead_dgram, plain = tmp_path / "dead.sock", tmp_path / "dead-dgram.sock", tmp_path / "plain.sock"
    keep = []
    for path, kind in ((live_stream, socket.SOCK_STREAM), (live_dgram, socket.SOCK_DGRAM),
                       (dead_stream, socket.SOCK_STREAM), (dead_dgram, socket.SOCK_DGRAM)):
        s = socket.socket(socket.AF_UNIX, kind)
        s.bind(str(path))
        if kind == socket.SOCK_STREAM:
            s.listen()
        keep.append(s)
    keep[2].close()
    keep[3].close()
    plain.write_text("not a socket")
    try:
        removed = remove_stale_sockets([str(p) for p in (live_stream, live_dgram, dead_stream, dead_dgram, plain,
                                                          tmp_path / "absent.sock")])
    finally:
        keep[0].close()
        keep[1].close()
    assert removed == [str(dead_stream), str(dead_dgram)]
    assert live_stream.exists() and live_dgram.exists() and plain.exists()
    assert not dead_stream.exists() and not dead_dgram.exists()


@root_only
def test_only_empty_cgroups_of_dead_runs_are_removed(tmp_path: Path) -> None:
    parent = tmp_path / CMD_PARENT  # a plain directory tree stands in for the cgroup parent
    parent.mkdir()
    alive = subprocess.Popen(["sleep", "30"])
    try:
        dead = subprocess.Popen(["true"])
        dead.wait()
        (parent / str(dead.pid)).mkdir()
        (parent / str(alive.pid)).mkdir()
        (parent / "not-a-run").mkdir()
        busy = parent / "4194301"  # above pid_max's default: never a live pid; not empty
        busy.mkdir()
        (busy / "inner").mkdir()
        removed = remove_dead_run_cgroups(parent, rel=f"/{CMD_PARENT}")
    finally:
        alive.kill()
        alive.wait()
    assert removed == [f"/{CMD_PARENT}/{dead.pid}"]
    assert sorted(p.name for p in parent.iterdir()) == sorted([str(alive.pid), "not-a-run", "4194301"])
