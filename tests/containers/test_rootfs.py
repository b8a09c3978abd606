"""The cached busybox rootfs: layout, idempotent rebuilds, clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runwatch.containers.rootfs import RootfsError, build_rootfs

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="building the rootfs chowns /home/user (needs root)"
)


@needs_root
def test_layout(tmp_path: Path) -> None:
    rootfs = build_rootfs(tmp_path / "rfs")
    root = rootfs.path
    assert root == tmp_path / "rfs"
    assert (root / "bin" / "busybox").is_file()
    assert os.readlink(root / "bin" / "sh") == "busybox"
    assert os.readlink(root / "lib") == "usr/lib"
    assert os.readlink(root / "lib64") == "usr/lib64"
    passwd = (root / "etc" / "passwd").read_text().splitlines()
    assert passwd[:2] == ["root:x:0:0:root:/root:/bin/sh", "user:x:1000:1000:user:/home/user:/bin/sh"]
    assert (root / "etc" / "resolv.conf").read_text() == "nameserver 127.0.0.1\n"
    assert (root / "home" / "user").stat().st_uid == 1000
    assert rootfs.host_binds[0] == Path("/usr")
    assert rootfs.python_prefix in rootfs.host_binds
    assert rootfs.src_dir is not None and (rootfs.src_dir / "runwatch" / "__init__.py").is_file()


@needs_root
def test_second_build_reuses_tree_and_stale_stamp_rebuilds(tmp_path: Path) -> None:
    dest = tmp_path / "rfs"
    build_rootfs(dest)
    inode = (dest / "bin" / "busybox").stat().st_ino
    marker = dest / "tmp" / "marker-47"
    marker.write_text("kept")
    build_rootfs(dest)
    assert (dest / "bin" / "busybox").stat().st_ino == inode
    assert marker.read_text() == "kept"

    stamp = dest / ".runwatch-rootfs.json"
    data = json.loads(stamp.read_text())
    data["format"] = -1
    stamp.write_text(json.dumps(data))
    build_rootfs(dest)
    assert not marker.exists()
    assert json.loads(stamp.read_text())["format"] != -1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".rfs.lock", "rfs"]


def test_missing_busybox_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(RootfsError, match=r"^cannot build rootfs: busybox /nope/busybox does not exist$"):
        build_rootfs(tmp_path / "rfs", busybox=Path("/nope/busybox"))
    assert not (tmp_path / "rfs").exists()
