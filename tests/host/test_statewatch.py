"""RuntimeStates: runc state read as it is written, in roots that appear later, kept after deletion."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from runwatch.host.statewatch import RuntimeStates


def _write_state(root: Path, cid: str, name: str, bundle: Path) -> None:
    """Write a state the way runc does: a temporary file renamed onto state.json."""
    bundle.mkdir(parents=True, exist_ok=True)
    (bundle / "config.json").write_text(json.dumps({"annotations": {"runwatch.container.name": name}}))
    state_dir = root / cid
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / "state-tmp"
    tmp.write_text(json.dumps({"init_process_pid": 4321, "config": {"labels": [f"bundle={bundle}"]},
                               "cgroup_paths": {"": f"/sys/fs/cgroup/x/{cid}"}}))
    os.rename(tmp, state_dir / "state.json")


def _wait(states: RuntimeStates, cid: str) -> None:
    deadline = time.monotonic() + 5
    while states.get(cid) is None:
        assert time.monotonic() < deadline, f"{cid} never read"
        time.sleep(0.005)


def test_states_are_read_as_written_and_kept_after_the_container_is_gone(tmp_path: Path) -> None:
    runc = tmp_path / "run" / "runc"  # does not exist yet: armed through its ancestor
    containerd = tmp_path / "containerd"
    (containerd / "default").mkdir(parents=True)
    _write_state(containerd / "default", "before-7", "already-there", tmp_path / "b0")
    states = RuntimeStates([(str(runc), "runc"), (str(containerd) + "/*", "containerd")], max_entries=5)
    assert states.start()
    try:
        kept = states.get("before-7")
        assert kept is not None and (kept.state.runtime, kept.annotations) == (
            "containerd", {"runwatch.container.name": "already-there"})
        for i in range(3):
            _write_state(runc, f"short-{i}", f"name-{i}", tmp_path / f"b{i + 1}")
            _wait(states, f"short-{i}")
            shutil.rmtree(runc / f"short-{i}")
        _write_state(containerd / "k8s.io", "ns-9", "in-a-new-namespace", tmp_path / "b9")
        _wait(states, "ns-9")
        record = states.get("short-1")
        assert record is not None
        assert (record.state.id, record.state.runtime, record.state.init_pid, record.annotations) == (
            "short-1", "runc", 4321, {"runwatch.container.name": "name-1"})
        assert record.state.cgroup_dir == "/sys/fs/cgroup/x/short-1"
        for i in range(3, 7):  # the bound: the oldest are dropped first
            _write_state(runc, f"short-{i}", f"name-{i}", tmp_path / f"b{i + 1}")
            _wait(states, f"short-{i}")
        assert len(states) == 5
        assert states.get("before-7") is None and states.get("short-0") is None
    finally:
        states.close()
    assert states.get("short-6") is not None  # what was read still answers after close


def test_malformed_lines_from_the_child_are_counted(tmp_path: Path) -> None:
    states = RuntimeStates([(str(tmp_path), "runc")])
    states._keep(b"{not json")  # what a broken child line would be: counted, never raised
    assert (states.malformed, len(states)) == (1, 0)
    states.close()  # never started: a no-op
