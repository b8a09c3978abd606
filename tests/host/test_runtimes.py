"""Runtimes' records read from written state roots (runc, containerd namespaces, Docker, storage)."""

from __future__ import annotations

import json
from pathlib import Path

from runwatch.host import runtimes
from runwatch.host.runtimes import RuncState


def _state(root: Path, cid: str, **state: object) -> Path:
    path = root / cid
    path.mkdir(parents=True)
    (path / "state.json").write_text(json.dumps(state))
    return path


def _roots(tmp_path: Path) -> list[tuple[str, str]]:
    return [(str(tmp_path / "runc"), "runc"), (str(tmp_path / "containerd") + "/*", "containerd")]


def test_state_of_runc_and_namespaced_containerd_containers(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"annotations": {"io.kubernetes.pod.name": "web-23", "n": 7}}))
    _state(tmp_path / "runc", "rw-23", init_process_pid=4111,
           cgroup_paths={"": "/sys/fs/cgroup/runwatch/rw-23", "memory": "/sys/fs/cgroup/memory/runwatch/rw-23"},
           config={"labels": [f"bundle={bundle}", "a=b=c", "junk"], "cgroups": {"path": "/runwatch/rw-23"}})
    _state(tmp_path / "containerd" / "k8s.io", "c1", init_process_pid=0, config={"labels": "not a list"})
    (tmp_path / "runc" / "rw-new").mkdir()  # created, state.json not written yet
    _state(tmp_path / "runc", "rw-bad", config=[])
    (tmp_path / "runc" / "rw-bad" / "state.json").write_text("{not json")
    roots = _roots(tmp_path)
    got = runtimes.runc_state("rw-23", roots)
    assert got == RuncState("rw-23", "runc", 4111, {"bundle": str(bundle), "a": "b=c"},
                            "/sys/fs/cgroup/runwatch/rw-23", "/runwatch/rw-23")
    assert got is not None and got.bundle == str(bundle)
    assert runtimes.bundle_annotations(str(bundle)) == {"io.kubernetes.pod.name": "web-23"}
    assert runtimes.runc_state("c1", roots) == RuncState("c1", "containerd", None, {}, None, None)
    assert runtimes.state_dir("c1", roots) == (str(tmp_path / "containerd" / "k8s.io" / "c1"), "containerd")
    assert runtimes.state_dir("rw-new", roots) == (str(tmp_path / "runc" / "rw-new"), "runc")
    assert runtimes.runc_state("rw-new", roots) is None and runtimes.runc_state("rw-bad", roots) is None
    assert runtimes.runc_state("absent", roots) is None
    assert sorted(s.id for s in runtimes.runc_states(roots)) == ["c1", "rw-23"]


def test_oversized_record_is_malformed(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"pad": "x" * runtimes.MAX_FILE}))
    small = tmp_path / "small.json"
    small.write_text('{"k": 23}')
    assert runtimes.read_json(str(big)) is None
    assert runtimes.read_json(str(small)) == {"k": 23}
    assert runtimes.read_json(str(tmp_path / "missing.json")) is None


def test_docker_and_storage_names(tmp_path: Path) -> None:
    cid = "a" * 64
    (tmp_path / "docker" / "containers" / cid).mkdir(parents=True)
    (tmp_path / "docker" / "containers" / cid / "config.v2.json").write_text('{"Name": "/db-23"}')
    (tmp_path / "storage" / "vfs-containers").mkdir(parents=True)
    (tmp_path / "storage" / "vfs-containers" / "containers.json").write_text(
        json.dumps([{"id": "other", "names": ["x"]}, {"id": cid, "names": ["pod-web", "alias"]}]))
    assert runtimes.docker_name(cid, str(tmp_path / "docker")) == "db-23"
    assert runtimes.docker_name("b" * 64, str(tmp_path / "docker")) is None
    assert runtimes.storage_name(cid, str(tmp_path / "storage")) == "pod-web"
    assert runtimes.storage_name("b" * 64, str(tmp_path / "storage")) is None


def test_spec_devices_lists_the_device_nodes_the_config_creates(tmp_path: Path) -> None:
    spec = {"linux": {"devices": [
        {"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0},
        {"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255},
        {"path": "/dev/sdb", "type": "b", "major": 8, "minor": 16},
        {"path": "/dev/fifo0", "type": "p"}, {"type": "c"}, "junk"]}}
    assert runtimes.spec_devices(spec) == ("/dev/nvidia0", "/dev/nvidiactl", "/dev/sdb")
    assert runtimes.spec_devices({"linux": {}}) == () == runtimes.spec_devices(None)
    (tmp_path / "config.json").write_text(json.dumps(spec))
    assert runtimes.bundle_devices(str(tmp_path)) == ("/dev/nvidia0", "/dev/nvidiactl", "/dev/sdb")
    assert runtimes.bundle_devices(str(tmp_path / "none")) == ()
