"""Pure parsing of cgroup paths and mountinfo (no kernel state needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runwatch.enrich.containers import parse_cgroup_path
from runwatch.host import find_cgroup_v2, procfs

H1 = "3f4a9c1be0d27a6f58c1d09e7b2a4c6d8e0f1a2b3c4d5e6f708192a3b4c5d6e7"
H2 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
UID = "8d3e1c2a-5b7f-4e0d-9a16-2c4b6d8e0f13"
UID_SD = UID.replace("-", "_")

CASES: list[tuple[str, tuple[str, str, str | None] | None]] = [
    # our own runc containers
    ("/runwatch/agent-7", ("runc", "agent-7", None)),
    ("/runwatch/" + H1, ("runc", H1, None)),
    ("/runwatch", None),
    ("/other/runwatch/x", None),
    # docker, cgroupfs and systemd drivers
    ("/docker/" + H1, ("docker", H1, None)),
    ("/system.slice/docker-" + H1 + ".scope", ("docker", H1, None)),
    ("/docker/" + H1 + "/init.scope", ("docker", H1, None)),
    ("/docker/" + H1 + "/docker/" + H2, ("docker", H2, None)),  # docker in docker: innermost
    ("/system.slice/docker.service", None),
    ("/docker/abc", None),
    # podman / libpod
    ("/libpod_parent/libpod-" + H1, ("podman", H1, None)),
    ("/machine.slice/libpod-" + H1 + ".scope", ("podman", H1, None)),
    ("/machine.slice/libpod-" + H1 + ".scope/container", ("podman", H1, None)),
    ("/libpod_parent/libpod-conmon-" + H1, None),
    ("/machine.slice/libpod-conmon-" + H1 + ".scope", None),
    # containerd CRI and CRI-O outside Kubernetes slices
    ("/system.slice/cri-containerd-" + H1 + ".scope", ("containerd", H1, None)),
    ("/system.slice/crio-" + H1 + ".scope", ("cri-o", H1, None)),
    ("/system.slice/crio-conmon-" + H1 + ".scope", None),
    # Kubernetes, cgroupfs driver
    (f"/kubepods/besteffort/pod{UID}/{H1}", ("kubernetes", H1, UID)),
    (f"/kubepods/burstable/pod{UID}/{H2}", ("kubernetes", H2, UID)),
    (f"/kubepods/pod{UID}/{H1}", ("kubernetes", H1, UID)),
    (f"/kubepods/burstable/pod{UID}/crio-{H1}", ("cri-o", H1, UID)),
    (f"/kubepods/burstable/pod{UID}", None),
    ("/kubepods/burstable", None),
    # Kubernetes, systemd driver
    (
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SD}.slice/cri-containerd-{H1}.scope",
        ("containerd", H1, UID),
    ),
    (
        f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_SD}.slice/crio-{H2}.scope",
        ("cri-o", H2, UID),
    ),
    (f"/kubepods.slice/kubepods-pod{UID_SD}.slice/cri-containerd-{H1}.scope", ("containerd", H1, UID)),
    (
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SD}.slice/docker-{H2}.scope",
        ("docker", H2, UID),
    ),
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SD}.slice", None),
    # host
    ("/", None),
    ("", None),
    ("/user.slice/user-0.slice/session-3.scope", None),
    ("/system.slice/ssh.service", None),
    ("/init.scope", None),
    # upper-case hex is not a runtime id
    ("/docker/" + H1.upper(), None),
]


@pytest.mark.parametrize(("path", "expected"), CASES, ids=[c[0][-48:] or "empty" for c in CASES])
def test_parse_cgroup_path(path: str, expected: tuple[str, str, str | None] | None) -> None:
    assert parse_cgroup_path(path) == expected


def test_parse_tolerates_whitespace_and_trailing_slash() -> None:
    assert parse_cgroup_path(" /docker/" + H1 + "/\n") == ("docker", H1, None)


def find_cgroup2_mount(mountinfo: str) -> str | None:
    found = find_cgroup_v2(mountinfo)
    return str(found.root) if found is not None else None


def test_find_cgroup2_mount_hybrid_pure_and_none(tmp_path: Path) -> None:
    hybrid = tmp_path / "hybrid"
    hybrid.write_text(
        "25 24 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n"
        "26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
        "27 25 0:24 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    )
    pure = tmp_path / "pure"
    pure.write_text("30 24 0:27 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n")
    odd = tmp_path / "odd"
    odd.write_text("30 24 0:27 / /mnt/cg\\0402 rw - cgroup2 none rw\n")
    none = tmp_path / "none"
    none.write_text("27 25 0:24 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n")
    assert find_cgroup2_mount(str(hybrid)) == "/sys/fs/cgroup/unified"
    assert find_cgroup2_mount(str(pure)) == "/sys/fs/cgroup"
    assert find_cgroup2_mount(str(odd)) == "/mnt/cg 2"
    assert find_cgroup2_mount(str(none)) is None
    assert find_cgroup2_mount(str(tmp_path / "missing")) is None


def test_cgroup_path_of_pid_reads_the_v2_line(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "4111").mkdir(parents=True)
    (proc / "4111" / "cgroup").write_text(
        "9:name=systemd:/runwatch/abc\n4:memory:/runwatch/abc\n0::/runwatch/abc\n"
    )
    (proc / "4127").mkdir()
    (proc / "4127" / "cgroup").write_text("4:memory:/x\n1:cpu:/x\n")  # v1 only
    assert procfs.cgroup_path(4111, str(proc)) == "/runwatch/abc"
    assert procfs.cgroup_path(4127, str(proc)) is None
    assert procfs.cgroup_path(4133, str(proc)) is None
    # and the real one for this process agrees with the kernel's own file
    with open(f"/proc/{os.getpid()}/cgroup") as f:
        line = next(ln for ln in f if ln.startswith("0::"))
    assert procfs.cgroup_path(os.getpid()) == "/" + line[3:].strip().strip("/")
