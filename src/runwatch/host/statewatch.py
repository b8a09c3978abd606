"""Runtime state read as the runtime writes it, and kept after the container is gone.

runc records a container (its labels, bundle and cgroup) in ``<root>[/<ns>]/<id>/state.json``
and deletes that directory when the container ends, often before the events of a container that
lived 50 ms have been enriched. :class:`RuntimeStates` follows the state roots with inotify,
reads each state file (and the bundle's annotations) the moment it is renamed into place, and
remembers the last one of each container, bounded, so names resolve after the container has gone.

The following runs in a small child process of its own (``python -m runwatch.host.statewatch``),
scheduled SCHED_FIFO where permitted, so neither a busy pipeline holding the interpreter lock nor
a loaded host delays it past a container's end; it writes
one JSON record per state read to a pipe the parent drains (on a thread, and on every miss).

Roots that do not exist yet (runc creates ``/run/runc`` on its first container) are waited for
through their nearest existing ancestor. A full inotify queue is counted and answered by a rescan.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import select
import signal
import struct
import subprocess
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import msgspec

from runwatch.host import runtimes
from runwatch.host.runtimes import Roots

_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_DELETE_SELF = 0x00000400
_IN_Q_OVERFLOW = 0x00004000
_IN_IGNORED = 0x00008000
_IN_ONLYDIR = 0x01000000
_IN_ISDIR = 0x40000000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (name follows)
_STATE_FILE = "state.json"

Level = Literal["base", "root", "container", "ancestor"]


@dataclass(frozen=True, slots=True)
class StateRecord:
    """The last state runc wrote for one container, with its bundle's OCI annotations."""

    state: runtimes.RuncState
    annotations: dict[str, str]


@dataclass(frozen=True, slots=True)
class _Watch:
    path: str
    level: Level
    runtime: str
    pattern: str  # the configured root this watch serves


class _Follower:
    """The inotify side: arms the roots, reads each state file as it lands, hands it to ``emit``."""

    def __init__(self, roots: Roots, emit: Callable[[StateRecord], None]) -> None:
        self.roots = tuple(roots)
        self.emit = emit
        self._watches: dict[int, list[_Watch]] = {}  # one directory may serve several roots
        self.stats = dict.fromkeys(("states_read", "overflows", "watch_errors"), 0)
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._fd = self._libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        for root, runtime in self.roots:
            self._arm(root, runtime)

    def run(self, stop_fd: int) -> None:
        """Follow until ``stop_fd`` is readable (or at end of file)."""
        while True:
            ready, _, _ = select.select([self._fd, stop_fd], [], [])
            if stop_fd in ready:
                return
            try:
                data = os.read(self._fd, 64 * 1024)
            except BlockingIOError:
                continue
            self._handle(data)

    # -- arming ---------------------------------------------------------------------------

    def _add(self, path: str, level: Level, runtime: str, pattern: str) -> bool:
        mask = {"container": _IN_MOVED_TO | _IN_CLOSE_WRITE | _IN_DELETE_SELF}.get(level, _IN_CREATE | _IN_MOVED_TO)
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(path), mask | _IN_ONLYDIR)
        if wd < 0:
            if ctypes.get_errno() not in (errno.ENOENT, errno.ENOTDIR):
                self.stats["watch_errors"] += 1
            return False
        watch = _Watch(path, level, runtime, pattern)
        served = self._watches.setdefault(wd, [])
        if watch not in served:
            served.append(watch)
        return True

    def _arm(self, pattern: str, runtime: str, depth: int = 0) -> None:
        """Watch ``pattern``'s root (or the ancestor it will appear in) and what is already there."""
        base = pattern[:-2] if pattern.endswith("/*") else pattern
        if not self._add(base, "base" if base != pattern else "root", runtime, pattern):
            parent = os.path.dirname(base.rstrip("/"))
            while parent and parent != "/" and not os.path.isdir(parent):
                parent = os.path.dirname(parent)
            parent = parent or "/"
            self._add(parent, "ancestor", runtime, pattern)
            # a directory made below the ancestor before its watch was in place sends no event:
            # look once more at the next step towards the root
            rest = os.path.relpath(base, parent).split(os.sep)[0]
            if depth < 16 and rest not in ("", ".", "..") and os.path.isdir(os.path.join(parent, rest)):
                self._arm(pattern, runtime, depth + 1)
            return
        for root in runtimes.parents_of(pattern):
            if root != base:
                self._add(root, "root", runtime, pattern)
            self._scan(root, runtime, pattern)

    def _scan(self, root: str, runtime: str, pattern: str) -> None:
        for path in runtimes.subdirs(root):
            self._container(path, runtime, pattern)

    def _container(self, path: str, runtime: str, pattern: str) -> None:
        self._add(path, "container", runtime, pattern)
        self._read(path, runtime)  # it may have been written before the watch was in place

    def _read(self, path: str, runtime: str) -> None:
        state = runtimes.read_state(path, runtime)
        if state is None:
            return
        annotations = runtimes.bundle_annotations(state.bundle) if state.bundle else {}
        self.stats["states_read"] += 1
        self.emit(StateRecord(state, annotations))

    # -- events ---------------------------------------------------------------------------

    def _handle(self, data: bytes) -> None:
        offset = 0
        while offset + _HEADER.size <= len(data):
            wd, mask, _cookie, size = _HEADER.unpack_from(data, offset)
            raw = data[offset + _HEADER.size: offset + _HEADER.size + size]
            offset += _HEADER.size + size
            name = os.fsdecode(raw.split(b"\0", 1)[0])
            if mask & _IN_Q_OVERFLOW:
                self.stats["overflows"] += 1
                self._rearm()
                continue
            if mask & (_IN_IGNORED | _IN_DELETE_SELF):
                self._watches.pop(wd, None)
                continue
            for watch in list(self._watches.get(wd, ())):
                self._event(watch, name, mask)

    def _event(self, watch: _Watch, name: str, mask: int) -> None:
        path = os.path.join(watch.path, name)
        if watch.level == "container":
            if name == _STATE_FILE:
                self._read(watch.path, watch.runtime)
        elif watch.level == "root" and mask & _IN_ISDIR:
            self._container(path, watch.runtime, watch.pattern)
        elif watch.level == "base" and mask & _IN_ISDIR:
            self._add(path, "root", watch.runtime, watch.pattern)
            self._scan(path, watch.runtime, watch.pattern)
        elif watch.level == "ancestor" and mask & _IN_ISDIR:
            self._arm(watch.pattern, watch.runtime)

    def _rearm(self) -> None:
        for wd in list(self._watches):
            self._libc.inotify_rm_watch(self._fd, wd)
        self._watches.clear()
        for root, runtime in self.roots:
            self._arm(root, runtime)


class RuntimeStates:
    """Follows runc state roots in a child process; :meth:`get` answers once a state was read.

    Args:
        roots: ``(state root, runtime)`` pairs, as for :func:`runwatch.host.runtimes.state_dir`
            (a root ending in ``/*`` has one level of namespaces).
        max_entries: how many containers are remembered (least recently written dropped first).
    """

    def __init__(self, roots: Roots = runtimes.DEFAULT_RUNC_ROOTS, max_entries: int = 16384) -> None:
        self.roots = tuple(roots)
        self.max_entries = max_entries
        self._records: OrderedDict[str, StateRecord] = OrderedDict()
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._partial = b""
        self.malformed = 0
        """Lines from the child that did not decode (counted, never raised)."""

    def start(self) -> bool:
        """Start following; False (and nothing is ever known) where the child cannot start."""
        if self._child is not None:
            return True
        try:
            child = subprocess.Popen(
                [sys.executable, "-m", "runwatch.host.statewatch", json.dumps(self.roots)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True)
        except OSError:
            return False
        assert child.stdout is not None
        while True:  # the states already there, then word that the roots are armed
            line = child.stdout.readline()
            if line == _READY:
                break
            if not line:
                child.wait()
                return False
            with self._lock:
                self._keep(line)
        os.set_blocking(child.stdout.fileno(), False)
        self._child = child
        self._thread = threading.Thread(target=self._pump, name="runtime-states", daemon=True)
        self._thread.start()
        return True

    def close(self) -> None:
        """Stop the child; what was received stays answerable."""
        child, self._child = self._child, None
        if child is None:
            return
        assert child.stdin is not None and child.stdout is not None
        child.stdin.close()  # end of file: the child returns
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            self._drain(child.stdout.fileno())
        child.stdout.close()

    def get(self, cid: str) -> StateRecord | None:
        """The last state received for container ``cid`` (the pipe is drained first), or None."""
        with self._lock:
            record = self._records.get(cid)
            child = self._child
            if record is None and child is not None and child.stdout is not None:
                self._drain(child.stdout.fileno())
                record = self._records.get(cid)
            return record

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def _pump(self) -> None:
        child = self._child
        assert child is not None and child.stdout is not None
        fd = child.stdout.fileno()
        while True:
            try:
                select.select([fd], [], [])
            except (OSError, ValueError):
                return
            with self._lock:
                if self._child is not child or not self._drain(fd):
                    return

    def _drain(self, fd: int) -> bool:
        """Read what the child wrote so far; False at end of file. Holds the lock."""
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not data:
                return False
            lines = (self._partial + data).split(b"\n")
            self._partial = lines.pop()
            for line in lines:
                self._keep(line)

    def _keep(self, line: bytes) -> None:
        try:
            record = _DECODER.decode(line)
        except msgspec.DecodeError:
            self.malformed += 1
            return
        self._records[record.state.id] = record
        self._records.move_to_end(record.state.id)
        while len(self._records) > self.max_entries:
            self._records.popitem(last=False)


_READY = b"ready\n"
_DECODER = msgspec.json.Decoder(StateRecord)


def main(argv: list[str]) -> int:
    """The child: follow the roots given as JSON, print each state read as a JSON line."""
    roots = [(str(root), str(runtime)) for root, runtime in json.loads(argv[0])]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    # A state lives as long as its container, 30 ms for a short one: woken at normal priority
    # on a busy host the follower may run only after it is gone. SCHED_FIFO at the lowest RT
    # priority runs it at once; its work per event is bounded. Best effort (CAP_SYS_NICE).
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    out = sys.stdout.buffer
    encode = msgspec.json.Encoder().encode

    def emit(record: StateRecord) -> None:
        out.write(encode(record) + b"\n")
        out.flush()

    try:
        follower = _Follower(roots, emit)
    except OSError:
        return 1
    out.write(_READY)
    out.flush()
    with contextlib.suppress(BrokenPipeError):  # the parent is gone
        follower.run(sys.stdin.fileno())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
