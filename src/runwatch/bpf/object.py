"""A libbpf object: open, load, attach programs, look up maps, and close it completely.

:class:`BpfObject` owns every link it makes; :meth:`BpfObject.close` destroys the links
still held, then frees the object, so after close no file descriptor of it (program, map,
link) is left in the process.

Destroying a link of a ``tracepoint/`` program waits in the kernel for RCU grace periods
(about 70 ms each here), one after the other when done in a loop. :func:`destroy_links`
therefore destroys many links concurrently from a few threads: ctypes releases the GIL
during each foreign call, so the waits overlap (see ``bench/RESULTS.md``).

A process about to exit need not wait at all: :func:`hand_off_links` gives the links'
descriptors, and nothing else of the process, to a short-lived child in a session of its
own. The child's exit drops the last references, so the detach and its grace periods run
there, after this process's own close returned.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from runwatch.bpf.libbpf import LibbpfError, LogCapture, check_ptr, lib

#: Most threads one :func:`destroy_links` call uses (each mostly sleeps in the kernel).
MAX_DESTROY_THREADS = 64


def destroy_links(links: Iterable[int]) -> None:
    """Destroy libbpf links (pointers from ``bpf_program__attach*``); returns when all are gone."""
    todo = [link for link in links if link]
    if len(todo) <= 1:
        for link in todo:
            lib().bpf_link__destroy(link)
        return
    with ThreadPoolExecutor(max_workers=min(len(todo), MAX_DESTROY_THREADS),
                            thread_name_prefix="bpf-link-destroy") as pool:
        list(pool.map(lib().bpf_link__destroy, todo))


#: Where the holder is looked for: fixed paths, never $PATH (it is handed the sensor's links as root).
_HOLDERS = ("/usr/bin/cat", "/bin/cat")


def _holder() -> list[str]:
    """A program that reads its stdin to the end, then exits (its exit closes what it inherited)."""
    for cat in _HOLDERS:
        if os.access(cat, os.X_OK):
            return [cat]
    return [sys.executable, "-I", "-S", "-c", "import sys; sys.stdin.buffer.read()"]


def hand_off_links(links: Iterable[int]) -> None:
    """Destroy libbpf links without waiting for the kernel to detach them.

    A child inherits the links' descriptors (and no other descriptor of this process: not
    its stdout, not its sockets) and holds them until this process has dropped its own
    references (the end of a pipe it reads), then exits. The programs stay attached until
    that exit has released them (seconds for dozens of tracepoints). Where no child can be
    started, the links are destroyed here.
    """
    todo = [link for link in links if link]
    fds = [fd for fd in (lib().bpf_link__fd(link) for link in todo) if fd >= 0]
    read_end, write_end = os.pipe()
    try:
        child = subprocess.Popen(_holder(), pass_fds=fds, stdin=read_end, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True, cwd="/")
    except OSError:
        os.close(write_end)
        destroy_links(todo)
        return
    finally:
        os.close(read_end)
    try:
        for link in todo:
            lib().bpf_link__destroy(link)  # not the last reference: returns at once
    finally:
        os.close(write_end)  # the child's cue: its exit releases the links
    # reaped by a thread of its own should this process live on; it holds nothing of ours
    threading.Thread(target=child.wait, name="bpf-link-holder", daemon=True).start()


class BpfObject:
    """An opened (then loaded) libbpf object. Close it exactly once (later calls do nothing).

    Not thread safe: callers serialise calls on one object.
    """

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise FileNotFoundError(f"BPF object {path} not found: run scripts/install.sh to build it")
        self.path = path
        self.ptr = check_ptr(lib().bpf_object__open_file(str(path).encode(), None), f"open {path}")
        self.programs: dict[str, int] = {}
        self.maps: dict[str, int] = {}
        self._links: set[int] = set()
        p = None
        while p := lib().bpf_object__next_program(self.ptr, p):
            self.programs[lib().bpf_program__name(p).decode()] = p
        m = None
        while m := lib().bpf_object__next_map(self.ptr, m):
            self.maps[lib().bpf_map__name(m).decode()] = m

    def map(self, name: str) -> int:
        """The libbpf map pointer of a map by name (``.rodata`` finds the read-only globals)."""
        return check_ptr(lib().bpf_object__find_map_by_name(self.ptr, name.encode()), f"map {name}")

    def map_fd(self, name: str) -> int:
        """The file descriptor of a map (after load)."""
        fd: int = lib().bpf_map__fd(self.map(name))
        if fd < 0:
            raise LibbpfError(-fd, f"map {name} has no fd")
        return fd

    def set_autoload(self, enabled: set[str]) -> None:
        """Load only the programs named in ``enabled`` (call before :meth:`load`)."""
        for name, prog in self.programs.items():
            lib().bpf_program__set_autoload(prog, name in enabled)

    def load(self, quiet: bool = False) -> None:
        """Load into the kernel; LibbpfError's ``strerror`` has the reason and the verifier's last lines.

        ``quiet``: libbpf logs nothing (its reason is then the error alone). Its log lines
        each call back into Python, which needs the GIL: a load on a thread of its own while
        another thread runs Python waits for the GIL at every line (seconds, not ms)."""
        if quiet:
            old = lib().libbpf_set_print(None)
            try:
                rc = lib().bpf_object__load(self.ptr)
            finally:
                lib().libbpf_set_print(old)
            if rc != 0:
                err = -rc if rc < 0 else 1
                raise LibbpfError(err, os.strerror(err))
            return
        with LogCapture() as log:
            rc = lib().bpf_object__load(self.ptr)
        if rc != 0:
            err = -rc if rc < 0 else 1
            raise LibbpfError(err, f"{os.strerror(err)}: {log.tail(3)}")

    def attach(self, name: str) -> int:
        """Attach program ``name`` to the hook its section names; returns the link.

        LibbpfError's ``strerror`` has the reason and libbpf's last log line.
        """
        with LogCapture() as log:
            link = lib().bpf_program__attach(self.programs[name])
        return self._keep(link, log)

    def attach_cgroup(self, name: str, cgroup_fd: int) -> int:
        """Attach program ``name`` to the cgroup open as ``cgroup_fd``; returns the link.

        The link holds its own reference to the cgroup, so the caller may close the fd.
        """
        with LogCapture() as log:
            link = lib().bpf_program__attach_cgroup(self.programs[name], cgroup_fd)
        return self._keep(link, log)

    def _keep(self, link: int | None, log: LogCapture) -> int:
        if not link:
            err = ctypes.get_errno() or 1
            raise LibbpfError(err, f"{os.strerror(err)} {log.tail(1)}".strip())
        self._links.add(link)
        return link

    def destroy(self, links: Iterable[int]) -> None:
        """Destroy links this object made (concurrently, see :func:`destroy_links`)."""
        mine = [link for link in links if link in self._links]
        self._links.difference_update(mine)
        destroy_links(mine)

    def hand_off(self, links: Iterable[int]) -> None:
        """Destroy links this object made without waiting for their detach (see :func:`hand_off_links`)."""
        mine = [link for link in links if link in self._links]
        self._links.difference_update(mine)
        hand_off_links(mine)

    def close(self) -> None:
        """Destroy every link still held, then free the object with its programs and maps."""
        if self._links:
            self.destroy(list(self._links))
        if self.ptr:
            lib().bpf_object__close(self.ptr)
            self.ptr = 0
