"""Closing a BPF object leaves no file descriptor behind: programs, maps and every link."""

from __future__ import annotations

import contextlib
import gc
import os
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
