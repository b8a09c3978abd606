"""pytest fixtures for real runc containers.

Register from a conftest with ``pytest_plugins = ["runwatch.containers.pytest_plugin"]``.

* ``runc_rootfs`` (session): the cached busybox rootfs (:func:`build_rootfs`), built once;
  stale containers of dead runwatch processes are swept first.
* ``runc_container`` (function): a factory ``runc_container(**options) -> RuncContainer``
  taking :class:`~runwatch.containers.oci.ContainerOptions` keywords; every container it
  made is closed (killed, runc state, cgroups, mounts and bundle removed) at teardown, even
  when the test failed.

Both need root and the ``runc`` binary; without root the tests using them are skipped.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from runwatch.containers.rootfs import Rootfs, build_rootfs
from runwatch.containers.runc import ContainerError, RuncContainer
from runwatch.containers.sweep import sweep_stale_containers

ContainerFactory = Callable[..., RuncContainer]


@pytest.fixture(scope="session")
def runc_rootfs() -> Rootfs:
    """The session's rootfs (built or reused from the cache directory).

    Also sweeps containers left by earlier runwatch processes that were killed before they
    could clean up (never touching containers whose owner still runs).
    """
    if os.geteuid() != 0:
        pytest.skip("runc containers need root")
    _, problems = sweep_stale_containers()
    for problem in problems:
        warnings.warn(problem, stacklevel=1)
    return build_rootfs()


@pytest.fixture
def runc_container(runc_rootfs: Rootfs) -> Iterator[ContainerFactory]:
    """Factory for :class:`RuncContainer` objects that are all cleaned up after the test."""
    made: list[RuncContainer] = []

    def factory(**options: Any) -> RuncContainer:
        container = RuncContainer(runc_rootfs, **options)
        made.append(container)
        return container

    yield factory

    errors = []
    for container in reversed(made):
        try:
            container.close()
        except ContainerError as exc:
            errors.append(str(exc))
    if errors:
        pytest.fail("; ".join(errors), pytrace=False)
