"""The mount table of this process (``/proc/self/mountinfo``), parsed.

A mount stacked on another at the same point hides it and everything mounted below it (a
private mount namespace with a cgroup2 mount on ``/sys/fs/cgroup`` hides a hybrid host's
``/sys/fs/cgroup/unified``): :func:`visible` drops those, so callers see what a path lookup
would reach.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MOUNTINFO = "/proc/self/mountinfo"
_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True, slots=True)
class Mount:
    """One line of mountinfo: ids, the mounted subtree (``root``), where (``point``) and the type."""

    mount_id: int
    parent_id: int
    root: str
    point: str
    fstype: str
    source: str


def _unescape(field: str) -> str:
    """Undo the kernel's octal escapes (``\\040`` space, ``\\011`` tab, ``\\134`` backslash)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """Every well-formed line of ``text``, in order; lines that are not mountinfo are skipped."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 2:
            continue
        try:
            ids = int(fields[0]), int(fields[1])
        except ValueError:
            continue
        mounts.append(Mount(ids[0], ids[1], _unescape(fields[3]), _unescape(fields[4]), tail[0], _unescape(tail[1])))
    return mounts


def read_mountinfo(path: str = MOUNTINFO) -> list[Mount]:
    """The parsed mount table at ``path``; raises OSError when it cannot be read."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return parse_mountinfo(f.read())


def cgroup_v1_mounted(path: str = MOUNTINFO) -> bool:
    """Whether a cgroup v1 hierarchy is visible (a hybrid host when v2 is mounted too)."""
    try:
        return any(m.fstype == "cgroup" for m in visible(read_mountinfo(path)))
    except OSError:
        return False


def visible(mounts: Iterable[Mount]) -> list[Mount]:
    """The mounts a path lookup can reach: not covered by a mount stacked on the same point,
    and not below a covered one. Order is kept."""
    listed = list(mounts)
    by_id = {m.mount_id: m for m in listed}
    cover: dict[int, int] = {}  # covered mount id -> id of the mount stacked on it
    for m in listed:
        parent = by_id.get(m.parent_id)
        if parent is not None and parent is not m and parent.point == m.point:
            cover[parent.mount_id] = m.mount_id
    shown: list[Mount] = []
    for m in listed:
        hidden = m.mount_id in cover
        child, seen = m, {m.mount_id}
        while not hidden:
            parent = by_id.get(child.parent_id)
            if parent is None or parent.mount_id in seen:
                break
            hidden = parent.mount_id in cover and cover[parent.mount_id] != child.mount_id
            child = parent
            seen.add(parent.mount_id)
        if not hidden:
            shown.append(m)
    return shown
