"""Which processes are the container runtime itself, decided by the executed file's identity.

A runtime such as runc mounts, unshares, changes ids and capabilities for every container
start; rules except it. Names cannot tell it apart from a workload: any process can set its
argv to ``init`` and its comm to ``runc:[2:INIT]``, and a container can ship its own
``/usr/sbin/runc``. What the workload cannot forge is the inode and device of the file the
kernel executed, so a process is the runtime when:

- it executed a file whose ``(st_dev, st_ino)`` is one of the installed runtime binaries
  (``runc``, ``crun``, ``youki`` found on this host when the tracker starts); or
- it was the runtime and executed itself again from a memory file (runc 1.1 copies itself
  into a sealed memfd and re-executes ``/proc/self/exe init`` from it: ``/dev/fd/N``,
  ``/proc/self/fd/N``, ``memfd:...``); or
- it was forked by the runtime (``runc:[1:CHILD]`` and ``runc:[2:INIT]`` are clones).

Executing anything else (the container's entrypoint, a probe's command after
``runc exec``) ends it. Every event of such a process gets ``attrs.exe_is_runtime = true``,
read by the rule field ``proc.exe_is_runtime``.

Only events seen from the start of the runtime's exec can be marked: a process whose exec
happened before the sensor started (or outside what it reports) is checked once by its
``/proc/<pid>/exe`` identity. Not thread-safe: the pipeline's enrichment owns it. Bounded
by ``max_pids`` (oldest marks forgotten first).
"""

from __future__ import annotations

import os
import shutil
from collections import OrderedDict
from collections.abc import Iterable

from runwatch.events import Event

#: The attribute set on events of runtime processes.
RUNTIME_ATTR = "exe_is_runtime"

#: Runtime binaries looked for on PATH and in the usual directories.
RUNTIME_NAMES: tuple[str, ...] = ("runc", "crun", "youki")
_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/sbin", "/bin")
_MEMORY_IMAGES = ("/dev/fd/", "/proc/self/fd/", "memfd:", "/memfd:")


def runtime_binaries(names: Iterable[str] = RUNTIME_NAMES) -> frozenset[tuple[int, int]]:
    """``(st_dev, st_ino)`` of every runtime binary installed on this host."""
    found: set[tuple[int, int]] = set()
    for name in names:
        paths = [os.path.join(d, name) for d in _DIRS]
        which = shutil.which(name)
        if which:
            paths.append(which)
        for path in paths:
            try:
                st = os.stat(path)
            except OSError:
                continue
            found.add((st.st_dev, st.st_ino))
    return frozenset(found)


def _memory_image(exe: str) -> bool:
    return exe.startswith(_MEMORY_IMAGES) or (exe.startswith("/proc/") and "/fd/" in exe)


class RuntimeTracker:
    """Marks the events of container-runtime processes (see the module docstring)."""

    def __init__(self, binaries: frozenset[tuple[int, int]] | None = None, proc_root: str = "/proc",
                 max_pids: int = 16384) -> None:
        self.binaries = runtime_binaries() if binaries is None else binaries
        self.proc_root = proc_root
        self._max = max_pids
        self._state: OrderedDict[int, bool] = OrderedDict()  # pid -> is the runtime

    def _set(self, pid: int, value: bool) -> None:
        st = self._state
        st[pid] = value
        st.move_to_end(pid)
        if len(st) > self._max:
            st.popitem(last=False)

    def _is_binary(self, dev: int | None, ino: int | None) -> bool:
        return dev is not None and ino is not None and (dev, ino) in self.binaries

    def _from_proc(self, pid: int) -> bool:
        try:
            st = os.stat(f"{self.proc_root}/{pid}/exe")
        except OSError:
            return False
        return (st.st_dev, st.st_ino) in self.binaries

    def observe(self, event: Event) -> None:
        """Update from a kernel or proc event of ``event.pid`` and mark it if it is the runtime."""
        pid = event.pid
        if pid <= 0 or not self.binaries:
            return
        kind = event.kind
        if kind == "process.exec":
            was = self._state.get(pid, False)
            now = self._is_binary(event.exe_dev, event.exe_ino) or (was and _memory_image(event.exe))
            self._set(pid, now)
        elif pid not in self._state:
            self._set(pid, self._from_proc(pid))
        is_runtime = self._state.get(pid, False)
        if kind == "process.fork" and event.child_pid and event.child_pid != pid:
            self._set(event.child_pid, is_runtime)
        elif kind == "process.exit":
            self._state.pop(pid, None)
        if is_runtime:
            event.attrs = {**(event.attrs or {}), RUNTIME_ATTR: True}
