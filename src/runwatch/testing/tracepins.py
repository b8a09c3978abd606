"""Keep the kernel's perf registration of tracepoints for the length of a test session.

Detaching a ``tracepoint/`` BPF link is slow when it drops the tracepoint's last perf user:
the kernel then unregisters its perf probe and waits for RCU grace periods, one tracepoint at
a time under one mutex (about 30 ms each, a second for the sensor's 30 syscall tracepoints).
A disabled perf event opened on each of those tracepoints keeps one user there, so the many
sensor loads and closes of a test run detach in milliseconds. The pins record nothing (they
are never enabled) and change nothing the tests check; ``bench/bpf_close.py`` measures the
teardown without them. Opening needs root; a tracepoint that cannot be pinned is skipped.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
from collections.abc import Iterable
from pathlib import Path

from runwatch.bpf.spec import ObjectSpec

TRACEFS = Path("/sys/kernel/tracing")
_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241}
_PERF_TYPE_TRACEPOINT = 2
_ATTR_SIZE = 128  # PERF_ATTR_SIZE_VER8; the kernel accepts any known size
_FLAG_DISABLED = 1  # perf_event_attr.disabled (bit 0 of the flags word at offset 40)
_PERF_FLAG_FD_CLOEXEC = 8


def tracepoints_of(specs: Iterable[ObjectSpec]) -> list[str]:
    """``category/name`` of every ``tracepoint/`` program section in ``specs``, once each."""
    seen: dict[str, None] = {}
    for spec in specs:
        for prog in spec.programs:
            kind, _, rest = prog.section.partition("/")
            if kind == "tracepoint":
                seen[rest] = None
    return list(seen)


class TracepointPins:
    """Disabled perf events on tracepoints, held until :meth:`close`. Not thread safe."""

    def __init__(self, tracepoints: Iterable[str]) -> None:
        self.tracepoints = list(tracepoints)
        self.fds: list[int] = []
        self.skipped: list[str] = []

    def open(self) -> TracepointPins:
        """Pin each tracepoint; those the kernel refuses (or that do not exist) are skipped."""
        nr = _PERF_EVENT_OPEN.get(platform.machine())
        libc = ctypes.CDLL(None, use_errno=True)
        for tp in self.tracepoints:
            fd = -1
            try:
                tp_id = int((TRACEFS / "events" / tp / "id").read_text())
            except (OSError, ValueError):
                tp_id = -1
            if nr is not None and tp_id >= 0:
                attr = ctypes.create_string_buffer(_ATTR_SIZE)
                struct.pack_into("IIQ", attr, 0, _PERF_TYPE_TRACEPOINT, _ATTR_SIZE, tp_id)
                struct.pack_into("Q", attr, 40, _FLAG_DISABLED)
                fd = libc.syscall(nr, attr, -1, 0, -1, _PERF_FLAG_FD_CLOEXEC)  # any process, CPU 0
            if fd < 0:
                self.skipped.append(tp)
            else:
                self.fds.append(fd)
        return self

    def close(self) -> None:
        """Release every pin (idempotent)."""
        fds, self.fds = self.fds, []
        for fd in fds:
            os.close(fd)


def absent_hooks() -> set[str]:
    """Names of sensor programs whose syscall tracepoint this kernel does not have.

    A kernel built without module support has no ``init_module``/``finit_module``
    tracepoints; the loader refuses those programs and keeps the rest.
    """
    from runwatch.sensors.kernel.loader import PROGRAMS

    return {p.name for p in PROGRAMS
            if p.hook.startswith("tracepoint/") and not (TRACEFS / "events" / p.hook.split("/", 1)[1]).is_dir()}
