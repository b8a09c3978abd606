"""The cgroup v2 hierarchy of this host: where it is mounted, and paths and ids in it.

The root is detected once per process from the mount table (:func:`cgroup_v2`) and passed
down as a :class:`CgroupV2`; :func:`use_cgroup_v2` sets it instead (tests, a host whose
hierarchy lives elsewhere). Among the visible cgroup2 mounts, ``/sys/fs/cgroup`` (pure v2)
is preferred, then ``/sys/fs/cgroup/unified`` (hybrid v1 + v2), then the first listed.

A cgroup *path* is relative to the root and starts with ``/`` (``/runwatch/abc``), as in
``/proc/<pid>/cgroup``; a cgroup *id* is the inode of its directory, which is what
``bpf_get_current_cgroup_id()`` returns.

Thread safety: detection and :func:`use_cgroup_v2` take one lock; a :class:`CgroupV2` is
immutable.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from runwatch.host import procfs
from runwatch.host.mounts import MOUNTINFO, read_mountinfo, visible

_PREFERRED = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")


class CgroupV2Missing(RuntimeError):
    """No cgroup v2 hierarchy is mounted (a cgroup v1-only host): nothing can be attributed or enforced."""


@dataclass(frozen=True, slots=True)
class CgroupV2:
    """The cgroup v2 hierarchy mounted at ``root``."""

    root: Path

    def dir_of(self, path: str) -> Path:
        """The directory of cgroup ``path`` (``/runwatch/abc`` -> ``<root>/runwatch/abc``)."""
        rel = path.strip("/")
        return self.root / rel if rel else self.root

    def rel(self, cgroup_dir: str | os.PathLike[str]) -> str:
        """The cgroup path of a directory under the root; ValueError (one line) when it is not under it."""
        try:
            rel = Path(cgroup_dir).relative_to(self.root)
        except ValueError:
            raise ValueError(f"{os.fspath(cgroup_dir)} is not in the cgroup v2 hierarchy at {self.root}") from None
        return "/" + str(rel) if str(rel) != "." else "/"

    def id_of(self, path: str) -> int | None:
        """The id (directory inode) of cgroup ``path``, or None when it does not exist (any more)."""
        try:
            return os.stat(self.dir_of(path)).st_ino
        except OSError:
            return None

    def id_of_pid(self, pid: int, proc: str = procfs.PROC) -> int | None:
        """The cgroup id of process ``pid``, or None when it is gone or its cgroup is."""
        path = procfs.cgroup_path(pid, proc)
        return self.id_of(path) if path is not None else None


def cgroup_within(cgroup: str, outer: str) -> bool:
    """Whether cgroup path ``cgroup`` is ``outer`` or below it (every path is below ``/``)."""
    outer = outer.rstrip("/")
    return cgroup == outer or cgroup.startswith(outer + "/")


def find_cgroup_v2(mountinfo: str = MOUNTINFO) -> CgroupV2 | None:
    """Detect the hierarchy from the mount table at ``mountinfo`` (no caching); None without one."""
    try:
        mounts = visible(read_mountinfo(mountinfo))
    except OSError:
        return None
    points = [m.point for m in mounts if m.fstype == "cgroup2"]
    for preferred in _PREFERRED:
        if preferred in points:
            return CgroupV2(Path(preferred))
    return CgroupV2(Path(points[0])) if points else None


_lock = threading.Lock()
_known: list[CgroupV2 | None] = []  # empty until detected or set; then one entry


def cgroup_v2_if_any() -> CgroupV2 | None:
    """This host's hierarchy, detected on first use and then reused; None when there is none."""
    with _lock:
        if not _known:
            _known.append(find_cgroup_v2())
        return _known[0]


def cgroup_v2() -> CgroupV2:
    """This host's hierarchy (as :func:`cgroup_v2_if_any`); raises :class:`CgroupV2Missing` without one."""
    found = cgroup_v2_if_any()
    if found is None:
        raise CgroupV2Missing(f"no cgroup v2 hierarchy is mounted (no cgroup2 line in {MOUNTINFO})")
    return found


def use_cgroup_v2(root: str | os.PathLike[str] | None) -> None:
    """Use the hierarchy at ``root`` from now on; ``None`` forgets it so the next use detects again."""
    with _lock:
        _known.clear()
        if root is not None:
            _known.append(CgroupV2(Path(root)))
