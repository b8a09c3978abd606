"""Path and cgroup helpers shared by the enforcers: resolve a path in a container's view,
identify files by (device, inode), and compare cgroup paths (read through :mod:`runwatch.host`).

Nothing here opens a file that a policy may protect: only ``stat``, ``readlink`` and reads
of ``/proc`` and the cgroup filesystem (never marked by fanotify).
"""

from __future__ import annotations

import os
from pathlib import Path

from runwatch.host import CgroupV2Missing, cgroup_v2, procfs

_MAX_LINKS = 40


def resolve_in_root(root: str, path: str) -> str:
    """Resolve ``path`` as a process whose root is ``root`` would (``/proc/<pid>/root``).

    Symlinks are followed inside ``root``: an absolute target restarts at ``root``, never
    at the host's ``/``. Returns the host-reachable path (``root`` + resolved path). Raises
    FileNotFoundError if a component is missing, OSError(ELOOP) on a symlink loop.
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = root + "/" + "/".join([*done, part])
        try:
            target = os.readlink(candidate)
        except OSError as exc:
            if exc.errno == 22:  # EINVAL: not a symlink
                done.append(part)
                continue
            raise
        links += 1
        if links > _MAX_LINKS:
            raise OSError(40, f"too many symbolic links resolving {path} in {root}")
        more = [p for p in target.split("/") if p not in ("", ".")]
        if target.startswith("/"):
            done = []
        parts = more + parts
    return root + "/" + "/".join(done)


def container_stat(pid: int, path: str) -> os.stat_result:
    """``stat`` of ``path`` as seen inside the container of ``pid``."""
    return os.stat(resolve_in_root(f"/proc/{pid}/root", path))


def file_key(st: os.stat_result) -> tuple[int, int]:
    """(st_dev, st_ino): how enforcers identify a file."""
    return (st.st_dev, st.st_ino)


def within(child: str, parent: str) -> bool:
    """Whether cgroup path ``child`` equals ``parent`` or lies below it."""
    return parent == "/" or child == parent or child.startswith(parent.rstrip("/") + "/")


def target_cgroup(cgroup_dir: Path) -> str:
    """The cgroup path of an enforcement target's directory (``/runwatch/rw-...``).

    Raises ValueError (one line) when it is not in the host's cgroup v2 hierarchy or the host
    has none.
    """
    try:
        return cgroup_v2().rel(cgroup_dir)
    except CgroupV2Missing as exc:
        raise ValueError(str(exc)) from None


def check_not_own(cgroup_dir: Path) -> None:
    """Raise ValueError if ``cgroup_dir`` holds this process (itself or as an ancestor) or is not
    a cgroup v2 directory (see :func:`target_cgroup`)."""
    own = procfs.cgroup_path(os.getpid())
    target = target_cgroup(cgroup_dir)
    if own is not None and within(own, target):
        raise ValueError(f"refusing to enforce on cgroup {target}: runwatch itself runs in {own}")
