"""Mount table parsing and cgroup v2 root detection, from written mountinfo files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runwatch.host import CgroupV2, CgroupV2Missing, cgroup_v2, cgroup_v2_if_any, find_cgroup_v2, use_cgroup_v2
from runwatch.host.mounts import Mount, cgroup_v1_mounted, parse_mountinfo, visible

HYBRID = (
    "23 1 259:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
    "25 23 0:22 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755\n"
    "26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate\n"
    "27 25 0:24 / /sys/fs/cgroup/memory rw,nosuid shared:11 - cgroup cgroup rw,memory\n"
    "28 25 0:25 / /sys/fs/cgroup/cpu rw,nosuid shared:12 - cgroup cgroup rw,cpu\n"
)
# What `unshare -m` then `mount -t cgroup2 cgroup2 /sys/fs/cgroup` shows: the new mount sits on
# the tmpfs, hiding it and every hierarchy below it.
STACKED = HYBRID + "641 25 0:23 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n"
PURE = (
    "23 1 259:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
    "30 23 0:27 / /sys/fs/cgroup rw,nosuid,nodev shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
)
V1_ONLY = (
    "23 1 259:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
    "25 23 0:22 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755\n"
    "27 25 0:24 / /sys/fs/cgroup/memory rw,nosuid shared:11 - cgroup cgroup rw,memory\n"
)


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.fixture
def forget() -> Iterator[None]:
    """Leave the process-wide detection as it was found: detected again on next use."""
    yield
    use_cgroup_v2(None)


def test_parse_fields_escapes_and_skips_garbage() -> None:
    mounts = parse_mountinfo(
        "26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate\n"
        "31 23 0:41 /sub\\134dir /mnt/with\\040space\\011tab rw - tmpfs my\\040src rw\n"
        "not a mountinfo line\n"
        "x 23 0:41 / /bad rw - tmpfs tmpfs rw\n"
        "32 23 0:42 / /no-separator rw tmpfs tmpfs rw\n"
    )
    assert mounts == [
        Mount(26, 25, "/", "/sys/fs/cgroup/unified", "cgroup2", "cgroup2"),
        Mount(31, 23, "/sub\\dir", "/mnt/with space\ttab", "tmpfs", "my src"),
    ]


def test_visible_drops_covered_mounts_and_what_lies_below_them() -> None:
    assert [m.mount_id for m in visible(parse_mountinfo(HYBRID))] == [23, 25, 26, 27, 28]
    assert [m.mount_id for m in visible(parse_mountinfo(STACKED))] == [23, 641]
    # a mount stacked on the stacked one hides it in turn; its own parent chain stays visible
    twice = STACKED + "642 641 0:50 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
    assert [(m.mount_id, m.fstype) for m in visible(parse_mountinfo(twice))] == [(23, "ext4"), (642, "tmpfs")]


def test_root_on_hybrid_pure_stacked_v1_only_and_unreadable(tmp_path: Path) -> None:
    assert find_cgroup_v2(_write(tmp_path, "hybrid", HYBRID)) == CgroupV2(Path("/sys/fs/cgroup/unified"))
    assert find_cgroup_v2(_write(tmp_path, "pure", PURE)) == CgroupV2(Path("/sys/fs/cgroup"))
    assert find_cgroup_v2(_write(tmp_path, "stacked", STACKED)) == CgroupV2(Path("/sys/fs/cgroup"))
    odd = _write(tmp_path, "odd", "30 24 0:27 / /mnt/cg\\0402 rw - cgroup2 none rw\n")
    assert find_cgroup_v2(odd) == CgroupV2(Path("/mnt/cg 2"))
    assert find_cgroup_v2(_write(tmp_path, "v1", V1_ONLY)) is None
    assert find_cgroup_v2(str(tmp_path / "missing")) is None
    v1 = [cgroup_v1_mounted(_write(tmp_path, name, text)) for name, text in
          (("h", HYBRID), ("p", PURE), ("s", STACKED), ("v", V1_ONLY))]
    assert v1 == [True, False, False, True]
    assert cgroup_v1_mounted(str(tmp_path / "missing")) is False


def test_v1_only_host_is_one_clear_line(forget: None) -> None:
    use_cgroup_v2(None)
    assert cgroup_v2_if_any() is not None  # this host has one: detected from the real mount table
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("runwatch.host.cgroups.find_cgroup_v2", lambda: None)
        use_cgroup_v2(None)
        assert cgroup_v2_if_any() is None
        with pytest.raises(CgroupV2Missing) as err:
            cgroup_v2()
    assert str(err.value) == "no cgroup v2 hierarchy is mounted (no cgroup2 line in /proc/self/mountinfo)"


def test_detected_once_then_reused_and_injectable(forget: None) -> None:
    use_cgroup_v2(None)
    calls: list[int] = []
    real = find_cgroup_v2

    def counting() -> CgroupV2 | None:
        calls.append(1)
        return real()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("runwatch.host.cgroups.find_cgroup_v2", counting)
        first = cgroup_v2()
        assert cgroup_v2() is first and cgroup_v2_if_any() is first
    assert len(calls) == 1
    use_cgroup_v2("/tmp/cg-23")
    assert cgroup_v2() == CgroupV2(Path("/tmp/cg-23"))


def test_paths_and_ids_under_a_root(tmp_path: Path) -> None:
    (tmp_path / "runwatch" / "c23").mkdir(parents=True)
    cg = CgroupV2(tmp_path)
    assert cg.dir_of("/runwatch/c23") == tmp_path / "runwatch" / "c23"
    assert cg.dir_of("/") == tmp_path
    assert cg.rel(tmp_path / "runwatch" / "c23") == "/runwatch/c23"
    assert cg.rel(tmp_path) == "/"
    assert cg.id_of("/runwatch/c23") == (tmp_path / "runwatch" / "c23").stat().st_ino
    assert cg.id_of("/runwatch/gone") is None
    with pytest.raises(ValueError) as err:
        cg.rel("/sys/fs/cgroup/unified/runwatch/c23")
    assert str(err.value) == f"/sys/fs/cgroup/unified/runwatch/c23 is not in the cgroup v2 hierarchy at {tmp_path}"
