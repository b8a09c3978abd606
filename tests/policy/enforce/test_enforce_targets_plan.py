"""Planning fanotify marks for ``files`` patterns (no marks placed: this process's own view, ``/proc/<pid>/root``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runwatch.host.mounts import read_mountinfo
from runwatch.policy.enforce import targets
from runwatch.policy.enforce.targets import TargetError, literal_dir, plan_marks

PID = os.getpid()
ROOT = f"/proc/{PID}/root"


def _plan(pattern: str):  # type: ignore[no-untyped-def]
    return plan_marks(PID, pattern, read_mountinfo(f"/proc/{PID}/mountinfo"))


def _key(p: Path) -> tuple[int, int]:
    st = p.stat()
    return (st.st_dev, st.st_ino)


def test_literal_dir_is_the_part_before_the_first_wildcard() -> None:
    assert [literal_dir(p) for p in ("/run/secrets/", "/run/secrets/*", "/etc/ssl/*.pem", "/a/b[12]/c", "/x/y")] == [
        "/run/secrets/", "/run/secrets/", "/etc/ssl/", "/a/", "/x/"]


def test_a_tree_plans_every_directory_and_every_matching_file(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    files = [tmp_path / "a.key", tmp_path / "b.txt", tmp_path / "d" / "c.key", tmp_path / "d" / "e" / "f.key"]
    for f in files:
        f.write_text("x")
    (tmp_path / "link.key").symlink_to(files[1])
    plan = _plan(f"{tmp_path}/*.key")
    assert plan.match == f"{tmp_path}/*.key"
    assert sorted(plan.dirs) == sorted(ROOT + str(p) for p in (tmp_path, tmp_path / "d", tmp_path / "d" / "e"))
    assert plan.files == {_key(f): ROOT + str(f) for f in (files[0], files[2], files[3])}
    whole = _plan(f"{tmp_path}/")
    assert set(whole.files) == {_key(f) for f in files}


def test_a_symlinked_directory_is_matched_as_event_paths_show_it(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "token").write_text("x")
    (tmp_path / "alias").symlink_to("real")
    plan = _plan(f"{tmp_path}/alias/")
    assert plan.match == f"{tmp_path}/real/"
    assert list(plan.files) == [_key(tmp_path / "real" / "token")]


def test_a_literal_file_missing_is_covered_through_its_directory(tmp_path: Path) -> None:
    plan = _plan(f"{tmp_path}/later")
    assert (plan.match, plan.dirs, plan.files, plan.mounts) == (f"{tmp_path}/later", [ROOT + str(tmp_path)], {}, [])


@pytest.mark.parametrize(("pattern", "why"), [
    ("/nope-53/dir/token", "neither /nope-53/dir/token nor its directory /nope-53/dir exists in the container"),
    ("/nope-53/", "directory /nope-53/ does not exist in the container"),
    ("/dev/null", "/dev/null is a character device, not a regular file"),
    ("/proc/sys/", "/proc/sys/ is on a pseudo filesystem (proc, sysfs, ...), which fanotify does not cover"),
])
def test_patterns_that_cannot_be_covered_say_why(pattern: str, why: str) -> None:
    with pytest.raises(TargetError) as info:
        _plan(pattern)
    assert str(info.value) == why


def test_a_directory_written_without_its_slash_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match=f"^{tmp_path} is a directory: write {tmp_path}/ to cover what is below it$"):
        _plan(str(tmp_path))


def test_a_tree_past_the_walk_limit_marks_its_mount(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(targets, "WALK_LIMIT", 3)
    for i in range(5):
        (tmp_path / f"f{i}").write_text("x")
    plan = _plan(f"{tmp_path}/")
    mounts = read_mountinfo(f"/proc/{PID}/mountinfo")
    holder = max((m.point for m in mounts if f"{tmp_path}/".startswith(m.point.rstrip("/") + "/")), key=len)
    assert (plan.dirs, plan.files, plan.mounts[-1]) == ([], {}, ROOT + holder)
