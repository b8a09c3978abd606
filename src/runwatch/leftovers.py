"""What a runwatch killed with SIGKILL left behind, found and removed by the next one.

A clean exit removes everything (sockets, the command's cgroup); a process killed outright
cannot. The next session, before it binds anything, removes

* stale unix sockets at the paths it is about to use: a socket file that nothing listens on
  (a connect, of either socket type, is refused). A socket something answers on, or a path
  that is not a socket, is never touched;
* empty command cgroups of dead runs: ``/runwatch-run/PID`` directories whose PID is no
  longer a process (``rmdir`` only succeeds on an empty cgroup, so nothing in use goes).

:func:`sweep` does both and returns one line saying what it removed (None when nothing was).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from runwatch.host import cgroup_v2_if_any
from runwatch.listeners import is_stale_socket

RUN_CGROUPS = "runwatch-run"
"""Parent (under the cgroup v2 root) of the watched commands' cgroups (policy/apply.py)."""


def remove_stale_sockets(paths: Iterable[str]) -> list[str]:
    """Remove each stale socket among ``paths`` (see :func:`is_stale_socket`); the ones removed."""
    removed: list[str] = []
    for path in dict.fromkeys(paths):  # in order, once each
        if is_stale_socket(path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed.append(path)
    return removed


def remove_dead_run_cgroups(parent: Path, rel: str = f"/{RUN_CGROUPS}") -> list[str]:
    """Remove the empty ``parent/PID`` cgroups whose PID is gone; their cgroup paths (``rel/PID``)."""
    removed: list[str] = []
    try:
        entries = sorted(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.isdigit() or Path(f"/proc/{entry.name}").exists():
            continue  # not a run's cgroup, or its runwatch (or a process with its pid) still runs
        try:
            entry.rmdir()
        except OSError:
            continue  # not empty: something still runs in it
        removed.append(f"{rel}/{entry.name}")
    return removed


def sweep(socket_paths: Iterable[str]) -> str | None:
    """Remove stale sockets at ``socket_paths`` and empty cgroups of dead runs; one line, or None."""
    sockets = remove_stale_sockets(socket_paths)
    cgroups: list[str] = []
    root = cgroup_v2_if_any()
    if root is not None:
        cgroups = remove_dead_run_cgroups(root.dir_of(f"/{RUN_CGROUPS}"))
    parts = []
    if sockets:
        parts.append(f"stale socket{'s' if len(sockets) > 1 else ''} {', '.join(sockets)}")
    if cgroups:
        parts.append(f"empty run cgroup{'s' if len(cgroups) > 1 else ''} {', '.join(cgroups)}")
    return f"removed what a runwatch that was killed left behind: {'; '.join(parts)}" if parts else None
