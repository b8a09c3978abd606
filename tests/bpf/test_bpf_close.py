"""Closing a BPF object leaves no file descriptor behind: programs, maps and every link."""

from __future__ import annotations

import contextlib
import gc
import os
import subprocess
import time
from pathlib import Path

import pytest

from runwatch.bpf.object import BpfObject
from runwatch.policy.enforce.bpfobj import EnforceObject
from runwatch.sensors.kernel import loader

pytestmark = pytest.mark.kernel


def _fds() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the fd of the listing itself is gone by now
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return out


@pytest.fixture(autouse=True)
def _settled() -> None:
    gc.collect()  # objects of earlier tests awaiting collection would close their fds mid-test


def _new_since(before: dict[int, str]) -> dict[int, str]:
    """Descriptors open now that were not open (to the same file) in ``before``."""
    return {fd: target for fd, target in _fds().items() if before.get(fd) != target}


def _links(fds: dict[int, str]) -> int:
    return sum(1 for target in fds.values() if target == "anon_inode:bpf_link")


def _cgroup2_root() -> Path:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[0] == "cgroup2":
            return Path(left.split()[4])
    pytest.fail("no cgroup2 mount on this host")


def test_unload_of_the_sensor_leaves_no_fd():
    before = _fds()
    obj, links, report = loader.load()
    during = _fds()
    assert len(links) == len(report.active) == len(loader.PROGRAMS) - len(report.refused)
    assert _links(during) - _links(before) == len(links)
    loader.unload(obj, links)
    assert links == []
    assert _new_since(before) == {}


def test_close_alone_destroys_the_links_the_object_made():
    before = _fds()
    obj, links, _ = loader.load()
    assert _links(_fds()) - _links(before) == len(links) > 0
    obj.close()
    obj.close()  # a second close does nothing
    assert _new_since(before) == {}


def test_destroying_some_links_keeps_the_others():
    before = _fds()
    obj = BpfObject(loader.object_path())
    try:
        obj.set_autoload({"rw_exec", "rw_fork", "rw_exit"})
        obj.load()
        made = [obj.attach(name) for name in ("rw_exec", "rw_fork", "rw_exit")]
        obj.destroy(made[:2])
        assert _links(_fds()) - _links(before) == 1
    finally:
        obj.close()
    assert _new_since(before) == {}


def test_enforcer_close_destroys_cgroup_links_still_attached():
    cgroup = _cgroup2_root() / f"rw-close-{os.getpid()}"
    cgroup.mkdir()
    try:
        before = _fds()
        enf = EnforceObject()
        links = enf.attach_cgroup(cgroup)
        assert len(links) == 5
        assert len(enf.syscall_links) == 2 and enf.syscall_problem is None
        assert _links(_fds()) - _links(before) == 5 + 2 + (1 if enf.exec_link else 0)
        enf.close()
        assert _new_since(before) == {}
    finally:
        cgroup.rmdir()


def _link_ids(pid: int | str) -> set[int]:
    """The BPF link ids process ``pid`` holds a descriptor of (from fdinfo's ``link_id``)."""
    ids: set[int] = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/fdinfo/{name}").read_text().splitlines():
                if line.startswith("link_id:"):
                    ids.add(int(line.split()[1]))
    return ids


def _holders() -> list[int]:
    """Children of this process that the hand-off started (they read a pipe, hold links)."""
    kids = Path(f"/proc/self/task/{os.getpid()}/children").read_text().split()
    return [int(k) for k in kids if _link_ids(k)]


def test_hand_off_drops_every_reference_here_and_the_holder_releases_them(tmp_path, monkeypatch):
    # a "cat" first on PATH must never be the program handed the sensor's links (as root)
    marker = tmp_path / "ran"
    fake = tmp_path / "cat"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ.get('PATH', '')}")
    before = _fds()
    others = _link_ids("self")  # links this worker already holds (the shared live sensor's)
    obj, links, _report = loader.load()
    mine = _link_ids("self") - others
    assert len(mine) == len(links) > 20
    other_r, other_w = os.pipe()  # a descriptor of ours the holder must not keep
    try:
        loader.unload(obj, links, wait=False)
        assert links == []
        assert _new_since(before) == {fd: t for fd, t in _fds().items() if fd in (other_r, other_w)}
        assert _link_ids("self") & mine == set() and _link_ids("self") == others
        seen: set[int] = set()
        holders = _holders()
        for pid in holders:  # it may already have let go: then the kernel is releasing them
            held = _link_ids(pid)
            seen |= held
            with contextlib.suppress(FileNotFoundError):  # gone meanwhile
                fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
                assert os.readlink(f"/proc/self/fd/{other_r}") not in fds
                assert fds.count("anon_inode:bpf_link") == len(held)
                assert {t for t in fds if t != "anon_inode:bpf_link"} <= {"/dev/null"} | {
                    t for t in fds if t.startswith("pipe:")}
        assert seen <= mine
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            alive = {int(line.split(":")[0]) for line in subprocess.run(
                ["bpftool", "link", "list"], capture_output=True, text=True, check=True).stdout.splitlines()
                if line[:1].isdigit()}
            if not alive & mine:
                break
            time.sleep(0.2)
        assert alive & mine == set(), "the handed-off links are released once the holder exits"
        assert not marker.exists(), "the holder was looked up on PATH"
    finally:
        os.close(other_r)
        os.close(other_w)
