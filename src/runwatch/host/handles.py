"""File handles (``name_to_handle_at``/``open_by_handle_at``): reach a file by identity, not by name.

A handle names an inode within its filesystem; opening it through a mount of that
filesystem gives a descriptor whose ``/proc/self/fd`` link is the file's path in that
mount. runwatch uses this where a name is missing or useless: a cgroup known only by its id
(kernfs handles), and an executable on a mount no path reaches (runc re-executes itself
from a detached bind mount of its binary, so ``/proc/PID/exe`` reads ``/``).

Opening by handle needs ``CAP_DAC_READ_SEARCH``. Errors are ``OSError`` with the errno;
the functions are thread safe (one ``CDLL`` handle, no shared buffers).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import struct

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_SYMLINK_FOLLOW = 0x400
MAX_HANDLE_SZ = 128

_HEADER = struct.Struct("=Ii")  # handle_bytes, handle_type (struct file_handle)
_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.name_to_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p,
                                          ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        lib.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        _libc = lib
    return _libc


def _fail() -> OSError:
    err = ctypes.get_errno()
    return OSError(err, os.strerror(err))


def kernfs_handle(inode_id: int) -> bytes:
    """The handle of a kernfs node (a cgroup directory) from its 64-bit id."""
    return _HEADER.pack(8, 0xFE) + struct.pack("=Q", inode_id)


def handle_at(dir_fd: int, name: str, *, follow: bool = True) -> bytes:
    """The handle of ``name`` relative to ``dir_fd`` (``AT_FDCWD`` for the working directory)."""
    buf = ctypes.create_string_buffer(_HEADER.pack(MAX_HANDLE_SZ, 0) + bytes(MAX_HANDLE_SZ))
    mount_id = ctypes.c_int()
    flags = AT_SYMLINK_FOLLOW if follow else 0
    if _lib().name_to_handle_at(dir_fd, os.fsencode(name), buf, ctypes.byref(mount_id), flags) != 0:
        raise _fail()
    size, _kind = _HEADER.unpack_from(buf.raw)
    return buf.raw[: _HEADER.size + size]


def open_handle(mount_fd: int, handle: bytes, flags: int) -> int:
    """A new descriptor (the caller closes it) of the file ``handle`` names, through the mount of ``mount_fd``."""
    fd: int = _lib().open_by_handle_at(mount_fd, handle, flags | os.O_CLOEXEC)
    if fd < 0:
        raise _fail()
    return fd


def path_in(mount_fd: int, handle: bytes) -> str:
    """The path of the file ``handle`` names as seen through the mount of ``mount_fd`` (a
    directory descriptor); it keeps a `` (deleted)`` suffix when the file has no name left."""
    fd = open_handle(mount_fd, handle, os.O_PATH)
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def open_dir(path: str) -> int:
    """A directory descriptor of ``path``, for :func:`path_in` (the caller closes it)."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
