"""What ``Event.exe`` means, in every source: the executed file, never the name asked for.

``exe`` is the path of the file the kernel executed (``bprm->file``), as the process's own
root sees it, the way ``readlink /proc/PID/exe`` shows it: symlinks, ``./x``, ``/proc/self/exe``
and ``/dev/fd/N`` are resolved. Three kinds of file have no such path:

- a memfd is ``memfd:NAME`` (the name given to ``memfd_create``);
- a file on a detached mount (runc re-executes itself from a bind mount of its binary that
  it detached) has its path within its filesystem, and ``attrs["exe_detached"]``;
- a deleted file keeps its last path with the kernel's `` (deleted)`` suffix, and the event
  says ``exe_deleted``.

The name passed to ``execve`` (or the program a Python caller asked for) is ``exec_name``.
This module holds the one statement of those forms, shared by the kernel decoder, the
/proc fallback, the upgrade of old recordings and ``policy suggest``. The audit hook
(:mod:`runwatch.sdk.audithook`, which imports nothing outside the SDK) resolves the program it
was asked for itself, and sends no ``exe`` when it cannot. Stdlib only.
"""

from __future__ import annotations

import re

#: Suffix the kernel's ``d_path`` puts on a file that no directory holds any more.
DELETED_SUFFIX = " (deleted)"
#: Prefix of a memfd's name (``memfd_create``), and of its ``exe``.
MEMFD_PREFIX = "memfd:"


_INDIRECT = re.compile(r"^/(?:proc/(?:self|thread-self|\d+(?:/task/\d+)?)/(?:exe|fd/\d+)|dev/fd/\d+)$")


def is_indirect(name: str) -> bool:
    """Whether ``name`` only points at an executable (``/proc/self/exe``, ``/proc/PID/exe``,
    ``/dev/fd/N``, ``/proc/self/fd/N``): an execve name of that form never is an ``exe``."""
    return _INDIRECT.match(name) is not None


def is_memfd(parts: list[str], *, detached: bool) -> bool:
    """Whether a walk that found ``parts`` (root first) ended on a memfd."""
    return detached and len(parts) == 1 and parts[0].startswith(MEMFD_PREFIX)


def is_memfd_exe(exe: str) -> bool:
    """Whether an ``exe`` is a memfd's (``memfd:NAME``; a file's ``exe`` starts with ``/``)."""
    return exe.startswith(MEMFD_PREFIX)


def compose(parts: list[str], *, unlinked: bool, detached: bool) -> str:
    """The ``exe`` of a file whose path components are ``parts``, root first.

    ``unlinked``: no directory entry holds the file. ``detached``: the file is on no mount
    the process reaches; ``parts`` are then its path within its filesystem, or a memfd's
    single name ``memfd:NAME`` (which is the ``exe`` as it is).
    """
    if is_memfd(parts, detached=detached):
        return parts[0]
    path = "/" + "/".join(parts)
    return path + DELETED_SUFFIX if unlinked else path


def from_link(target: str, *, nlink: int | None = None) -> tuple[str, bool]:
    """(``exe``, deleted) from a ``/proc/PID/exe`` link target.

    ``nlink`` is the link count of the file (``os.stat`` of the link); 0 confirms that a
    `` (deleted)`` suffix is the kernel's and not part of the file's name. Without it the
    suffix is believed.
    """
    suffixed = target.endswith(DELETED_SUFFIX)
    deleted = nlink == 0 if nlink is not None else suffixed
    if deleted and suffixed:
        bare = target[: -len(DELETED_SUFFIX)]
        if bare.startswith("/" + MEMFD_PREFIX) and "/" not in bare[1:]:
            return bare[1:], True
    return target, deleted
