"""Path and cgroup helpers shared by the enforcers: resolve a path in a container's view,
identify files by (device, inode), and find which cgroup a process is in.

Nothing here opens a file that a policy may protect: only ``stat``, ``readlink`` and reads
of ``/proc`` and the cgroup filesystem (never marked by fanotify).
"""

from __future__ import annotations

import os
from pathlib import Path

UNIFIED = Path("/sys/fs/cgroup/unified")
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


def process_cgroup(pid: int) -> str | None:
    """The cgroup v2 path of ``pid`` (``/runwatch/rw-...``), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/cgroup", "rb") as f:
            for line in f:
                if line.startswith(b"0::"):
                    return line[3:].strip().decode(errors="replace")
    except OSError:
        return None
    return None


def cgroup_rel(cgroup_dir: Path) -> str:
    """The cgroup path of a directory under the v2 mount (``/runwatch/rw-...``)."""
    rel = Path(cgroup_dir).relative_to(UNIFIED)
    return "/" + str(rel) if str(rel) != "." else "/"


def within(child: str, parent: str) -> bool:
    """Whether cgroup path ``child`` equals ``parent`` or lies below it."""
    return parent == "/" or child == parent or child.startswith(parent.rstrip("/") + "/")


def check_not_own(cgroup_dir: Path) -> None:
    """Raise ValueError if ``cgroup_dir`` holds this process (itself or as an ancestor)."""
    own = process_cgroup(os.getpid())
    target = cgroup_rel(cgroup_dir)
    if own is not None and within(own, target):
        raise ValueError(f"refusing to enforce on cgroup {target}: runwatch itself runs in {own}")
