"""The watch list: name patterns, configuration from the environment, inodes found at load."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runwatch.sensors.kernel.layout import NameKind, WatchFlag
from runwatch.sensors.kernel.watchlist import DEFAULT_WATCHES, Watch, default_watches, kernel_dev, watched_inodes

RW = WatchFlag.READ | WatchFlag.WRITE


@pytest.mark.parametrize(("pattern", "key"), [
    ("**/release_agent", (NameKind.LEAF, "release_agent")),
    ("**/.ssh/", (NameKind.DIR, ".ssh")),
    ("**/*.pem", (NameKind.SUFFIX, "pem")),
])
def test_name_patterns(pattern: str, key: tuple[NameKind, str]) -> None:
    assert Watch(pattern, RW).is_pattern and Watch(pattern, RW).name_key() == key


@pytest.mark.parametrize("bad", ["**/a/b", "**/", "**/*.", "**/" + "x" * 31])
def test_bad_patterns_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="name pattern"):
        Watch(bad, RW).name_key()


def test_environment_adds_and_removes_entries() -> None:
    env = {"RUNWATCH_WATCH_PATHS": "/srv/keys/, **/*.p12", "RUNWATCH_UNWATCH": "/var/log/,**/.profile"}
    got = default_watches(env=env)
    prefixes = [w.prefix for w in got]
    assert "/var/log/" not in prefixes and "**/.profile" not in prefixes
    added = [w for w in got if w.prefix in ("/srv/keys/", "**/*.p12")]
    assert added == [Watch("/srv/keys/", RW), Watch("**/*.p12", RW)]
    assert len([w for w in got if w in DEFAULT_WATCHES]) == len(DEFAULT_WATCHES) - 2


def test_per_user_ssh_is_a_pattern_not_the_user_list() -> None:
    assert Watch("**/.ssh/", RW) in DEFAULT_WATCHES
    assert Watch("/root/.ssh/", RW) in default_watches(env={})  # for failed opens, matched by string


def test_inodes_of_watched_dirs_files_and_hard_links(tmp_path: Path) -> None:
    (tmp_path / "sec").mkdir()
    (tmp_path / "sec" / "single").write_text("a")
    (tmp_path / "sec" / "linked").write_text("b")
    os.link(tmp_path / "sec" / "linked", tmp_path / "other")
    keys = Watch(str(tmp_path / "sec") + "/", RW | WatchFlag.KEYS)
    got = list(watched_inodes([Watch(str(tmp_path / "sec") + "/", RW), Watch(str(tmp_path / "nothing"), RW), keys]))
    st_dir, st_link = os.stat(tmp_path / "sec"), os.stat(tmp_path / "other")
    assert got == [(st_dir.st_ino, kernel_dev(st_dir.st_dev), RW), (st_link.st_ino, kernel_dev(st_link.st_dev), RW)]


def test_kernel_dev_encoding() -> None:
    assert kernel_dev(os.makedev(259, 3)) == 259 << 20 | 3
