"""Where to put fanotify marks for one ``files`` pattern in a container, or why it cannot be done.

:func:`plan_marks` resolves a pattern in the container's view (``/proc/<pid>/root``, the
container's own mount table) and returns a :class:`MarkPlan`:

* a literal file: an inode mark on it. A bind-mounted file (a runc or Kubernetes secret) is
  the host file's inode, so the mark covers every view of it. A literal file that does not
  exist yet: its directory is marked (``FAN_EVENT_ON_CHILD``) so the file is covered once
  created.
* a ``dir/`` prefix or a glob: its literal directory (the part before the first wildcard)
  and every directory below it get a ``FAN_EVENT_ON_CHILD`` mark (files created later in
  them), every existing matching file an inode mark (hard links elsewhere too), and every
  directory *mount* at or below the directory a mount mark (anything created later inside
  it, at any depth). The walk crosses into mounts, so files bind-mounted into the directory
  (whose dentries have another parent, which a directory mark never sees) get inode marks.
* a tree of more than :data:`WALK_LIMIT` entries (``/usr/lib/``) is not walked: the mount
  holding the directory gets a mount mark instead (every open on that mount is then
  classified by path, at any depth), plus the mounts below it and inode marks on the files
  bind-mounted there. Applying stays fast; opens elsewhere on that mount pay the responder.

Nothing is marked here and nothing is opened but directories (listing them): a directory
open raises no event on marks without ``FAN_ONDIR``, so planning never waits on a mark.
A pattern that cannot be covered raises :class:`TargetError` (one line).
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

from runwatch.host.mounts import Mount, visible
from runwatch.policy.enforce.paths import resolve_in_root
from runwatch.policy.model import is_glob, path_match

PSEUDO_FS = frozenset({"proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "bpf", "tracefs",
                       "debugfs", "securityfs", "pstore", "configfs", "fusectl", "binfmt_misc"})
"""Filesystems never walked or marked (no files a policy protects; some refuse marks)."""
WALK_LIMIT = 2048
"""Files and directories one pattern's walk may visit before its mount is marked instead."""

Key = tuple[int, int]  # (st_dev, st_ino)


class TargetError(Exception):
    """A pattern cannot be marked in a container; the message is one line."""


@dataclass
class MarkPlan:
    """What to mark for one pattern; host paths are reachable through ``/proc/<pid>/root``.

    ``match`` is the pattern with its literal directory resolved in the container (symlinks
    followed), the form event paths take; ``files`` maps each file's (device, inode) to its
    host path.
    """

    match: str
    files: dict[Key, str] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)


def literal_dir(pattern: str) -> str:
    """The directory part of ``pattern`` before its first wildcard, ending in ``/``."""
    for i, ch in enumerate(pattern):
        if ch in "*?[":
            return pattern[:i].rsplit("/", 1)[0] + "/"
    return pattern if pattern.endswith("/") else pattern.rsplit("/", 1)[0] + "/"


def plan_marks(pid: int, pattern: str, mounts: list[Mount]) -> MarkPlan:
    """The marks that cover ``pattern`` in the container of ``pid`` (``mounts``: its mount table)."""
    root = f"/proc/{pid}/root"
    if is_glob(pattern) or pattern.endswith("/"):
        return _plan_tree(root, pattern, mounts)
    return _plan_file(root, pattern)


def _resolve(root: str, path: str) -> str | None:
    try:
        return resolve_in_root(root, path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TargetError(f"{path} cannot be resolved in the container: {exc.strerror or exc}") from None


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def _plan_file(root: str, pattern: str) -> MarkPlan:
    parent = pattern.rsplit("/", 1)[0] or "/"
    host_parent = _resolve(root, parent)
    if host_parent is None or not os.path.isdir(host_parent):
        raise TargetError(f"neither {pattern} nor its directory {parent} exists in the container")
    host = _resolve(root, pattern)
    if host is None:  # not there yet: cover its creation through the directory
        return MarkPlan(match=host_parent[len(root):].rstrip("/") + "/" + pattern.rsplit("/", 1)[1],
                        dirs=[host_parent])
    st = os.stat(host)
    if stat.S_ISDIR(st.st_mode):
        raise TargetError(f"{pattern} is a directory: write {pattern}/ to cover what is below it")
    if not stat.S_ISREG(st.st_mode):
        raise TargetError(f"{pattern} is a {_kind(st.st_mode)}, not a regular file")
    return MarkPlan(match=pattern, files={(st.st_dev, st.st_ino): host})


def _plan_tree(root: str, pattern: str, mounts: list[Mount]) -> MarkPlan:
    directory = literal_dir(pattern)
    host_dir = _resolve(root, directory)
    if host_dir is None or not os.path.isdir(host_dir):
        raise TargetError(f"directory {directory} does not exist in the container")
    top = host_dir[len(root):].rstrip("/") + "/"  # the directory as event paths show it
    plan = MarkPlan(match=top + pattern[len(directory):])
    shown = visible(mounts)
    pseudo = {m.point for m in shown if m.fstype in PSEUDO_FS}
    if any(top.startswith(point.rstrip("/") + "/") for point in pseudo):
        raise TargetError(f"{directory} is on a pseudo filesystem (proc, sysfs, ...), which fanotify does not cover")
    below = [m for m in shown if m.fstype not in PSEUDO_FS and (m.point.rstrip("/") + "/").startswith(top)]
    plan.mounts = [root + m.point for m in below if os.path.isdir(root + m.point)]
    if not _walk(root, host_dir, plan, pseudo, {m.point for m in below}):
        holder = max((m for m in shown if top.startswith(m.point.rstrip("/") + "/")), key=lambda m: len(m.point),
                     default=None)
        if holder is None:
            raise TargetError(f"no mount of the container holds {directory}")
        plan.dirs, plan.files = [], {}
        plan.mounts.append(root + holder.point)
        for m in below:  # bind-mounted files are mounts of their own
            with contextlib.suppress(OSError):
                st = os.stat(root + m.point)
                if stat.S_ISREG(st.st_mode) and path_match(plan.match, m.point):
                    plan.files[(st.st_dev, st.st_ino)] = root + m.point
    return plan


def _walk(root: str, host_dir: str, plan: MarkPlan, pseudo: set[str], points: set[str]) -> bool:
    """Fill ``plan.dirs`` and ``plan.files`` from the tree at ``host_dir``; False past :data:`WALK_LIMIT`.

    Cheap enough to run at every apply: entry types come from the directory listing, and
    only matching files are stat'ed (a listing's inode number is not always the file's:
    overlayfs, or a mount point, whose listing shows the dentry the mount covers).
    """
    match = _matcher(plan.match)
    stack = [host_dir.rstrip("/") or "/"]
    seen = 0
    while stack:
        here = stack.pop()
        plan.dirs.append(here)
        try:
            entries = list(os.scandir(here))
        except OSError:
            continue  # vanished or unreadable: its own mark still covers what appears later
        seen += len(entries)
        if seen > WALK_LIMIT:
            return False
        for entry in entries:
            inside = entry.path[len(root):]
            try:
                if entry.is_dir(follow_symlinks=False) and inside not in points:
                    if inside not in pseudo:
                        stack.append(entry.path)
                    continue
                if not match(inside) and inside not in points:
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if inside not in pseudo:
                    stack.append(entry.path)
            elif stat.S_ISREG(st.st_mode) and match(inside):
                plan.files[(st.st_dev, st.st_ino)] = entry.path
    return True


def _matcher(pattern: str) -> Callable[[str], bool]:
    """:func:`path_match` for one pattern, compiled once."""
    if not is_glob(pattern):
        return (lambda p: p.startswith(pattern)) if pattern.endswith("/") else (lambda p: p == pattern)
    rx = re.compile(fnmatch.translate(pattern))
    return lambda p: rx.match(p) is not None
