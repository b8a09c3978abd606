"""The watch list: name patterns, configuration from the environment, inodes found at load."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runwatch.sensors.kernel.layout import NameKind, WatchFlag
from runwatch.sensors.kernel.watchlist import (
    DEFAULT_WATCHES,
    Watch,
    default_watches,
    ino_bit,
    ino_bits,
    kernel_dev,
    name_first,
    watched_inodes,
)

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


def _has(bits: object, c: str) -> bool:
    b = ord(c)
    return bool(bits[b >> 6] & (1 << (b & 63)))  # type: ignore[index]


def test_name_first_bitmaps_hold_each_first_byte_the_kernel_tests() -> None:
    nf = name_first([Watch("/etc/", WatchFlag.WRITE), Watch("/run/secrets/", RW), Watch("**/*.pem", RW),
                     Watch("**/.ssh/", RW), Watch("**/authorized_keys", WatchFlag.WRITE)])
    assert [c for c in "ert/.pa" if _has(nf.top, c)] == ["e", "r"]  # the byte after the prefix's leading "/"
    assert [c for c in "pk.a" if _has(nf.suffix, c)] == ["p"]
    assert [c for c in ".pa" if _has(nf.dir, c)] == ["."]
    assert [c for c in ".pa" if _has(nf.leaf, c)] == ["a"]


def test_the_root_prefix_lets_every_top_directory_through() -> None:
    nf = name_first([Watch("/", RW)])
    assert all(word == (1 << 64) - 1 for word in nf.top)


def test_every_default_prefix_has_its_top_byte() -> None:
    nf = name_first(default_watches(env={}))
    for w in default_watches(env={}):
        if not w.is_pattern:
            assert _has(nf.top, w.prefix[1]), w.prefix


def test_inode_bits_are_the_kernels_hash() -> None:
    # the top 16 bits of (ino ^ dev << 32) * 0x9E3779B97F4A7C15 mod 2**64, as ino_bit() in files.bpf.h
    assert ino_bit(0, 0) == 0
    assert ino_bit(1, 0) == 0x9E37
    assert ino_bit(2, 0) == (2 * 0x9E3779B97F4A7C15 % 2**64) >> 48
    assert ino_bit(12, 8 << 20 | 1) == ((12 ^ (8 << 20 | 1) << 32) * 0x9E3779B97F4A7C15 % 2**64) >> 48
    bits = ino_bits([(1, 0), (2, 0)])
    set_bits = {i * 64 + j for i, word in enumerate(bits.w) for j in range(64) if word >> j & 1}
    assert set_bits == {ino_bit(1, 0), ino_bit(2, 0)}
