"""Remove containers left behind by runwatch processes that died without cleaning up.

Every container records its maker as the ``runwatch.owner`` annotation (``pid:start
ticks``). :func:`sweep_stale_containers` removes ``rw-*`` containers, cgroups and bundles
whose owner no longer runs, and never touches a container whose owner is alive, so it is
safe while other sessions on the same machine run containers of their own.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path

from runwatch.containers.hostfs import CgroupError, cgroup_mounts, owner_alive, remove_cgroup
from runwatch.containers.oci import ANNOTATION_OWNER
from runwatch.containers.runc import CGROUP_PARENT, DEFAULT_BUNDLE_PARENT, RUNC_STATE_ROOT
from runwatch.host import runtimes

_ID_PREFIX = "rw-"
_UNCONFIGURED_GRACE_S = 600.0
"""A bundle without config.json younger than this may be mid-creation and is left alone."""


def sweep_stale_containers(
    runc_binary: str = "runc", bundle_parent: Path = DEFAULT_BUNDLE_PARENT
) -> tuple[list[str], list[str]]:
    """Remove stale runwatch containers; return (ids removed, one-line problems)."""
    removed: list[str] = []
    problems: list[str] = []
    candidates: dict[str, Path | None] = {}
    if RUNC_STATE_ROOT.is_dir():
        for state_dir in RUNC_STATE_ROOT.glob(f"{_ID_PREFIX}*"):
            state = runtimes.read_state(str(state_dir), "runc")
            owner = state.labels.get(ANNOTATION_OWNER) if state is not None else None
            if state is not None and owner is not None and not owner_alive(owner):
                candidates[state_dir.name] = Path(state.bundle) if state.bundle else None
    if bundle_parent.is_dir():
        for bundle in bundle_parent.glob(f"{_ID_PREFIX}*"):
            if bundle.name in candidates or (RUNC_STATE_ROOT / bundle.name).exists():
                continue
            owner = runtimes.bundle_annotations(str(bundle)).get(ANNOTATION_OWNER)
            unconfigured_and_old = owner is None and time.time() - _mtime(bundle) > _UNCONFIGURED_GRACE_S
            if unconfigured_and_old or (owner is not None and not owner_alive(owner)):
                candidates[bundle.name] = bundle
    for container_id, found in sorted(candidates.items()):
        try:
            _remove(container_id, found, runc_binary)
            removed.append(container_id)
        except (OSError, CgroupError, subprocess.SubprocessError) as exc:
            problems.append(f"cannot remove stale container {container_id}: {exc}")
    return removed, problems


def _remove(container_id: str, bundle: Path | None, runc_binary: str) -> None:
    if (RUNC_STATE_ROOT / container_id).exists():
        subprocess.run(
            [runc_binary, "delete", "--force", container_id], capture_output=True, timeout=30, check=False
        )
    for mount in cgroup_mounts():
        remove_cgroup(mount / CGROUP_PARENT / container_id)
    if bundle is not None:
        shutil.rmtree(bundle, ignore_errors=True)


def _mtime(path: Path) -> float:
    with contextlib.suppress(OSError):
        return path.stat().st_mtime
    return time.time()
