"""Fixtures of the policy tests."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from runwatch.host import procfs
from runwatch.host.cgroups import cgroup_v2_if_any

SRC = str(Path(__file__).resolve().parents[2] / "src")
_names = itertools.count(23)


@pytest.fixture
def requester_env() -> Iterator[dict[str, str]]:
    """The environment of a child process that asks for challenges (``PYTHONPATH`` set).

    When the test runs in a cgroup other than the root, ``RW_TEST_CGROUP`` names a fresh
    child cgroup the requester must move itself into first (write 0 to its ``cgroup.procs``):
    otherwise the test process and its other children share the requester's cgroup and the
    cgroup rule rightly refuses their answers. The root cgroup turns that rule off."""
    env = {**os.environ, "PYTHONPATH": SRC}
    own = procfs.cgroup_path(os.getpid())
    if own in (None, "/"):
        yield env
        return
    v2 = cgroup_v2_if_any()
    path = v2.dir_of(f"{own}/rwtest-{os.getpid()}-{next(_names)}") if v2 is not None else None
    try:
        if path is None:
            raise OSError("no cgroup v2 hierarchy")
        path.mkdir()
    except OSError as exc:
        pytest.skip(f"the test runs in cgroup {own} and cannot make a child cgroup for the requester: {exc}")
    try:
        yield {**env, "RW_TEST_CGROUP": str(path)}
    finally:
        with contextlib.suppress(OSError):
            path.rmdir()
