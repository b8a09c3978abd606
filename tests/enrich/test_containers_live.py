"""ContainerResolver against real cgroup v2 directories, real processes and fake runtime state."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runwatch.enrich.containers import ContainerResolver
from runwatch.events import Container
from runwatch.host import cgroup_v2_if_any, procfs

_V2 = cgroup_v2_if_any()
CGROOT = str(_V2.root) if _V2 is not None else None
pytestmark = pytest.mark.skipif(
    CGROOT is None or os.geteuid() != 0, reason="needs root and a cgroup v2 hierarchy"
)
HEX = "5e0c8a1f2b3d4c6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6"
_counter = itertools.count(1)


class CgroupArea:
    """A private subtree ``/runwatch-test-<n>`` of the v2 hierarchy, removed at teardown."""

    def __init__(self) -> None:
        assert CGROOT is not None
        self.rel = f"/runwatch-test-{os.getpid()}-{next(_counter)}"
        self.abs = CGROOT + self.rel
        os.mkdir(self.abs)
        self.procs: list[subprocess.Popen[bytes]] = []

    def mkdir(self, rel: str) -> int:
        """Create ``<area>/<rel>`` (parents too) and return its inode (the cgroup id)."""
        path = os.path.join(self.abs, rel)
        os.makedirs(path, exist_ok=True)
        return os.stat(path).st_ino

    def rmdir(self, rel: str) -> None:
        os.rmdir(os.path.join(self.abs, rel))

    def spawn_into(self, rel: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["sleep", "30"])
        self.procs.append(proc)
        with open(os.path.join(self.abs, rel, "cgroup.procs"), "w") as f:
            f.write(str(proc.pid))
        return proc

    def cleanup(self) -> None:
        assert CGROOT is not None
        for proc in self.procs:
            with contextlib.suppress(OSError), open(os.path.join(CGROOT, "cgroup.procs"), "w") as f:
                f.write(str(proc.pid))  # move back to the root before killing
            proc.kill()
            proc.wait()
        for _ in range(50):
            dirs = [d for d, _, _ in os.walk(self.abs, topdown=False)]
            for d in dirs:
                with contextlib.suppress(OSError):
                    os.rmdir(d)
            if not os.path.exists(self.abs):
                return
            time.sleep(0.02)
        raise RuntimeError(f"could not remove test cgroup {self.abs}")


@pytest.fixture
def area() -> Iterator[CgroupArea]:
    a = CgroupArea()
    try:
        yield a
    finally:
        a.cleanup()


def write_runc_state(root: Path, cid: str, cgroup_abs: str | None, annotations: dict[str, str],
                     labels: list[str] | None = None) -> Path:
    """A runc-shaped state dir ``<root>/<cid>/state.json`` plus bundle ``config.json``."""
    bundle = root.parent / f"bundle-{cid}"
    bundle.mkdir(parents=True)
    (bundle / "config.json").write_text(json.dumps({"ociVersion": "1.0.2", "annotations": annotations}))
    state_dir = root / cid
    state_dir.mkdir(parents=True)
    state = {
        "id": cid,
        "init_process_pid": 1,
        "config": {"labels": [*(labels or []), f"bundle={bundle}"], "cgroups": {"path": "system.slice:x:y"}},
        "cgroup_paths": {"": cgroup_abs} if cgroup_abs else {},
    }
    (state_dir / "state.json").write_text(json.dumps(state))
    return state_dir


def resolver(tmp_path: Path, **kw: object) -> ContainerResolver:
    return ContainerResolver(
        runc_roots=[(str(tmp_path / "runc"), "runc"),
                    (str(tmp_path / "containerd-runc") + "/*", "containerd")],
        docker_root=str(tmp_path / "docker"),
        storage_root=str(tmp_path / "storage"),
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("use_handles", [True, False], ids=["handle", "walk"])
def test_resolve_real_process_in_fake_runc_container(area: CgroupArea, tmp_path: Path,
                                                     use_handles: bool) -> None:
    cid = "fake-agent-31"
    rel = f"{area.rel}/{cid}"
    ino = area.mkdir(cid)
    write_runc_state(tmp_path / "runc", cid, area.abs + "/" + cid, {
        "io.kubernetes.pod.name": "agent-pod-7",
        "io.kubernetes.pod.namespace": "ml-team",
        "io.kubernetes.pod.uid": "11111111-2222-3333-4444-555555555555",
        "io.kubernetes.container.name": "kube-name",
        "runwatch.container.name": "tool-runner",
    })
    proc = area.spawn_into(cid)
    r = resolver(tmp_path, use_handles=use_handles, rescan_interval=0.0)
    expected = Container(id=cid, runtime="runc", name="tool-runner", pod="agent-pod-7",
                         pod_uid="11111111-2222-3333-4444-555555555555", namespace="ml-team", cgroup=rel)
    assert procfs.cgroup_path(proc.pid) == rel
    assert r.resolve(ino) == expected
    assert r.resolve_pid(proc.pid) == expected
    assert r.path_of(ino) == rel
    assert r.resolve_pid(os.getpid()) is None  # this test process is on the host
    st = r.stats()
    assert st["containers"] == 1
    assert st["meta_reads"] == 1  # the second lookup came from the cache
    assert st["handle_lookups"] == (1 if use_handles else 0)


def test_kubernetes_names_from_containerd_namespace_root(area: CgroupArea, tmp_path: Path) -> None:
    cid = HEX
    uid = "8d3e1c2a-5b7f-4e0d-9a16-2c4b6d8e0f13"
    rel_child = f"pod{uid}/{cid}"
    ino = area.mkdir(rel_child)
    write_runc_state(tmp_path / "containerd-runc" / "k8s.io", cid, None, {
        "io.kubernetes.cri.sandbox-name": "llm-server-0",
        "io.kubernetes.cri.sandbox-namespace": "serving",
        "io.kubernetes.cri.container-name": "vllm",
        "io.kubernetes.cri.image-name": "registry.local/vllm:0.9",
    })
    r = resolver(tmp_path)
    assert r.resolve(ino) == Container(id=cid, runtime="containerd", name="vllm", pod="llm-server-0",
                                       pod_uid=uid, namespace="serving", cgroup=f"{area.rel}/{rel_child}",
                                       image="registry.local/vllm:0.9", image_repository="registry.local/vllm",
                                       image_tag="0.9")


def test_docker_and_podman_names_from_their_records(area: CgroupArea, tmp_path: Path) -> None:
    d_ino = area.mkdir(f"docker/{HEX}")
    (tmp_path / "docker" / "containers" / HEX).mkdir(parents=True)
    (tmp_path / "docker" / "containers" / HEX / "config.v2.json").write_text(json.dumps({"Name": "/web-1"}))
    pod_id = HEX[::-1]
    p_ino = area.mkdir(f"libpod-{pod_id}.scope")
    c_ino = area.mkdir(f"libpod-conmon-{pod_id}.scope")
    (tmp_path / "storage" / "overlay-containers").mkdir(parents=True)
    (tmp_path / "storage" / "overlay-containers" / "containers.json").write_text(
        json.dumps([{"id": "x" * 64, "names": ["other"]}, {"id": pod_id, "names": ["notebook"]}]))
    r = resolver(tmp_path, meta_retry=0.0)
    assert r.resolve(d_ino) == Container(id=HEX, runtime="docker", name="web-1",
                                         cgroup=f"{area.rel}/docker/{HEX}")
    assert r.resolve(p_ino) == Container(id=pod_id, runtime="podman", name="notebook",
                                         cgroup=f"{area.rel}/libpod-{pod_id}.scope")
    assert r.resolve(c_ino) is None


def test_malformed_runtime_files_mean_unknown_names(area: CgroupArea, tmp_path: Path) -> None:
    cid = "broken-state"
    ino = area.mkdir(cid)
    (tmp_path / "runc" / cid).mkdir(parents=True)
    (tmp_path / "runc" / cid / "state.json").write_text("{not json")
    cid2 = "bad-bundle"
    ino2 = area.mkdir(cid2)
    bundle = tmp_path / "bundle-bad"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"annotations": ["not", "a", "map"]}))
    (tmp_path / "runc" / cid2).mkdir()
    (tmp_path / "runc" / cid2 / "state.json").write_text(
        json.dumps({"config": {"labels": [7, f"bundle={bundle}"]}}))
    (tmp_path / "docker" / "containers" / HEX).mkdir(parents=True)
    (tmp_path / "docker" / "containers" / HEX / "config.v2.json").write_bytes(b"\xff\xfe")
    d_ino = area.mkdir(f"docker/{HEX}")
    r = resolver(tmp_path, meta_retry=0.0)
    assert r.resolve(ino) == Container(id=cid, runtime="runc", cgroup=f"{area.rel}/{cid}")
    assert r.resolve(ino2) == Container(id=cid2, runtime="runc", cgroup=f"{area.rel}/{cid2}")
    assert r.resolve(d_ino) == Container(id=HEX, runtime="docker", cgroup=f"{area.rel}/docker/{HEX}")


def test_name_arrives_after_state_is_written(area: CgroupArea, tmp_path: Path) -> None:
    cid = "late-state"
    ino = area.mkdir(cid)
    (tmp_path / "runc" / cid).mkdir(parents=True)  # runc makes the dir before state.json
    r = resolver(tmp_path, meta_retry=30.0)
    assert r.resolve(ino) == Container(id=cid, runtime="runc", cgroup=f"{area.rel}/{cid}")
    shutil.rmtree(tmp_path / "runc" / cid)
    write_runc_state(tmp_path / "runc", cid, None, {"runwatch.container.name": "late"})
    time.sleep(0.6)  # retries are spaced 0.5 s apart
    assert r.resolve(ino) == Container(id=cid, runtime="runc", name="late", cgroup=f"{area.rel}/{cid}")


def test_unrelated_cgroup_and_name_clash_are_host(area: CgroupArea, tmp_path: Path) -> None:
    ino = area.mkdir("plain-service")
    clash = area.mkdir("clash")
    write_runc_state(tmp_path / "runc", "clash", "/sys/fs/cgroup/unified/elsewhere/clash", {})
    r = resolver(tmp_path)
    assert r.resolve(ino) is None
    assert r.resolve(clash) is None
    assert r.path_of(ino) == f"{area.rel}/plain-service"


def test_rescan_finds_new_dir_and_evicts_removed(area: CgroupArea, tmp_path: Path) -> None:
    first = area.mkdir("first")
    write_runc_state(tmp_path / "runc", "first", None, {})
    write_runc_state(tmp_path / "runc", "second", None, {})
    r = resolver(tmp_path, use_handles=False, rescan_interval=0.0)
    assert r.resolve(first) == Container(id="first", runtime="runc", cgroup=f"{area.rel}/first")
    assert r.stats()["rescans"] == 1
    second = area.mkdir("second")  # appears after the walk: the miss must walk again
    assert r.resolve(second) == Container(id="second", runtime="runc", cgroup=f"{area.rel}/second")
    assert r.stats()["rescans"] == 2
    area.rmdir("first")
    r.rescan()
    st = r.stats()
    assert st["evicted"] == 1 and st["cached"] == 1
    assert r.resolve(first) is None
    assert r.path_of(first) is None


def test_rescans_are_rate_limited_under_a_flood_of_unknown_ids(area: CgroupArea, tmp_path: Path) -> None:
    r = resolver(tmp_path, use_handles=False, rescan_interval=3600.0)
    bogus = [(1 << 40) + 23 * i for i in range(23)]
    assert [r.resolve(b) for b in bogus] == [None] * 23
    st = r.stats()
    assert st["rescans"] == 1  # the first miss walked; the other 22 were refused
    assert st["rescans_skipped"] == 22
    late = area.mkdir("late")
    assert r.resolve(late) is None  # still inside the interval
    r.rescan()
    assert r.path_of(late) == f"{area.rel}/late"


def test_proven_unknown_ids_do_not_walk_again(tmp_path: Path) -> None:
    r = resolver(tmp_path, use_handles=False, rescan_interval=0.0)
    for _ in range(23):
        assert r.resolve((1 << 41) + 7) is None
    st = r.stats()
    assert st["rescans"] == 1 and st["unknown_ids"] == 1


def test_handle_lookup_of_removed_cgroup_is_none(area: CgroupArea, tmp_path: Path) -> None:
    ino = area.mkdir("short-lived")
    area.rmdir("short-lived")
    r = resolver(tmp_path)
    assert r.resolve(ino) is None
    st = r.stats()
    assert st["unknown_ids"] == 1 and st["rescans"] == 0


def test_cache_is_bounded(area: CgroupArea, tmp_path: Path) -> None:
    inos = [area.mkdir(f"c{i:02d}") for i in range(23)]
    r = resolver(tmp_path, max_entries=5)
    paths = [r.path_of(i) for i in inos]
    assert paths == [f"{area.rel}/c{i:02d}" for i in range(23)]
    for i in inos:
        r.resolve(i)
    st = r.stats()
    assert st["cached"] == 5 and st["evicted"] == 18
    assert r.resolve(inos[0]) is None and r.path_of(inos[0]) == f"{area.rel}/c00"


def test_bad_arguments_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="max_entries must be at least 1, got 0"):
        ContainerResolver(max_entries=0)
    r = ContainerResolver(cgroup_root="")
    assert not r.available
    assert r.resolve(12345) is None and r.resolve_pid(os.getpid()) is None


@pytest.mark.kernel
@pytest.mark.skipif(shutil.which("runc") is None or shutil.which("busybox") is None,
                    reason="needs runc + busybox")
def test_real_runc_container(tmp_path: Path) -> None:
    cid = f"rwtest-{os.getpid()}"
    bundle = tmp_path / "bundle"
    (bundle / "rootfs" / "bin").mkdir(parents=True)
    busybox = shutil.which("busybox")
    assert busybox is not None
    shutil.copy(busybox, bundle / "rootfs" / "bin" / "busybox")
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["args"] = ["/bin/busybox", "sleep", "30"]
    spec["process"]["terminal"] = False
    spec["linux"]["cgroupsPath"] = f"/runwatch/{cid}"
    spec["annotations"] = {"runwatch.container.name": "real-one", "io.kubernetes.pod.name": "p-29"}
    (bundle / "config.json").write_text(json.dumps(spec))
    try:
        subprocess.run(["runc", "run", "-d", cid], cwd=bundle, check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        state = json.loads(subprocess.run(["runc", "state", cid], check=True, capture_output=True).stdout)
        r = ContainerResolver()
        assert r.cgroup_root is not None
        ino = os.stat(f"{r.cgroup_root}/runwatch/{cid}").st_ino
        expected = Container(id=cid, runtime="runc", name="real-one", pod="p-29", cgroup=f"/runwatch/{cid}",
                             privileged=False)  # runc spec's config: masked paths, no device allowed
        assert r.resolve(ino) == expected
        assert r.resolve_pid(state["pid"]) == expected
    finally:
        subprocess.run(["runc", "delete", "--force", cid], capture_output=True)
