"""The write intent of an open blocked on a fanotify permission event, read from ``/proc/<tid>/syscall``.

fanotify does not report the opener's flags. While the event is pending the opening thread
sits in its syscall, so ``/proc/<tid>/syscall`` holds the syscall number and its arguments.
Only the open syscalls (``open``, ``openat``, ``creat``, ``openat2``, ``open_by_handle_at``)
carry flags that say read or write, and ``execve``/``execveat`` open for exec (a read).

Anything else leaves the intent **unknown**, never "read": an io_uring ``IORING_OP_OPENAT``
runs inside ``io_uring_enter`` (inline) or in an io_uring worker thread, a 32-bit call has
other numbers, and the kernel opens files on a task's behalf in other calls too (``acct``,
``swapon``, core dumps). An io_uring worker (io-wq or SQPOLL, ``PF_IO_WORKER`` in
``/proc/<tid>/stat``) is never in a syscall: its saved registers are a copy of whatever call
its creator made (any ``openat`` of another file), so they are not read at all. The caller
decides what unknown means (the policy's ``fail``).
"""

from __future__ import annotations

import os
import platform
import struct
import time
from dataclasses import dataclass

O_ACCMODE, O_TRUNC = 0o3, 0o1000
PF_IO_WORKER = 0x10  # task flags (include/linux/sched.h), field 9 of /proc/<tid>/stat
_X32_BIT = 0x40000000
_SYSCALL_TRIES = 8

# How a syscall's intent is read: an argument index (its open flags) or one of these.
_WRITES, _EXEC, _HOW, _NO_FLAGS = -1, -2, -3, -4  # creat; exec opens; openat2's struct open_how; no flags
_TABLES: dict[str, dict[int, tuple[str, int]]] = {  # machine -> syscall number -> (name, how)
    "x86_64": {2: ("open", 1), 85: ("creat", _WRITES), 257: ("openat", 2), 437: ("openat2", _HOW),
               304: ("open_by_handle_at", 2), 59: ("execve", _EXEC), 322: ("execveat", _EXEC),
               426: ("io_uring_enter", _NO_FLAGS)},
    "aarch64": {56: ("openat", 2), 437: ("openat2", _HOW), 265: ("open_by_handle_at", 2),
                221: ("execve", _EXEC), 281: ("execveat", _EXEC), 426: ("io_uring_enter", _NO_FLAGS)},
}
_TABLE = _TABLES.get(platform.machine(), {})


@dataclass(frozen=True)
class OpenIntent:
    """Whether an open asks for write access: ``write`` is None when it cannot be known.

    ``via`` names what the thread was doing (``openat``, ``io_uring_enter``, ``syscall 9``,
    ``no syscall``, ``unreadable``), for the reason of a decision.
    """

    write: bool | None
    via: str


def _flags_write(flags: int) -> bool:
    return bool(flags & O_ACCMODE) or bool(flags & O_TRUNC)


def _io_worker(tid: int) -> bool | None:
    """Whether ``tid`` is an io_uring worker thread (None: it cannot be read, e.g. gone)."""
    try:
        with open(f"/proc/{tid}/stat", "rb") as f:
            flags = int(f.read().rsplit(b")", 1)[1].split()[6])
    except (OSError, ValueError, IndexError):
        return None
    return bool(flags & PF_IO_WORKER)


def _syscall_fields(tid: int) -> list[bytes] | None:
    """The fields of ``/proc/<tid>/syscall``. The kernel answers ``running`` when it could not
    catch the thread off the CPU at that instant (a wake-up under load): it is asked again a
    few times before giving up (None)."""
    for attempt in range(_SYSCALL_TRIES):
        try:
            with open(f"/proc/{tid}/syscall", "rb") as f:
                fields = f.read().split()
        except OSError:
            return None
        if fields and fields[0] != b"running":
            return fields
        time.sleep(0.001 * (attempt + 1))
    return None


def open_intent(tid: int) -> OpenIntent:
    """The intent of the open that thread ``tid`` is blocked in (see the module docstring)."""
    worker = _io_worker(tid)
    if worker is None:
        return OpenIntent(None, "unreadable")
    if worker:
        return OpenIntent(None, "an io_uring worker")
    fields = _syscall_fields(tid)
    if fields is None:
        return OpenIntent(None, "unreadable")
    try:
        nr = int(fields[0])
        args = [int(a, 16) for a in fields[1:7]] if nr >= 0 else []
    except (ValueError, IndexError):
        return OpenIntent(None, "unreadable")
    if nr < 0:
        return OpenIntent(None, "no syscall")
    name, arg = _TABLE.get(nr & ~_X32_BIT, (f"syscall {nr}", _NO_FLAGS))
    if arg == _NO_FLAGS:
        return OpenIntent(None, name)
    if arg in (_EXEC, _WRITES):
        return OpenIntent(arg == _WRITES, name)
    if arg == _HOW:
        try:
            fd = os.open(f"/proc/{tid}/mem", os.O_RDONLY | os.O_CLOEXEC)
            try:
                flags = struct.unpack("=Q", os.pread(fd, 8, args[2]))[0]
            finally:
                os.close(fd)
        except (OSError, struct.error, IndexError):
            return OpenIntent(None, name)
        return OpenIntent(_flags_write(flags), name)
    try:
        return OpenIntent(_flags_write(args[arg]), name)
    except IndexError:
        return OpenIntent(None, name)
