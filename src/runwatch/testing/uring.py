"""A minimal io_uring driver over raw syscalls, for tests that submit requests the sensor must see.

No liburing: ``io_uring_setup`` and ``io_uring_enter`` through libc's ``syscall``, the rings
mapped with :mod:`mmap`. One request at a time, waited for; enough for opens and connects
(inline, with ``IOSQE_ASYNC`` forced to an io-wq worker, or into a registered file slot).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct

_SETUP, _ENTER, _REGISTER = 425, 426, 427
_GETEVENTS = 1
_OFF_SQES, _OFF_CQ = 0x10000000, 0x8000000
_REGISTER_FILES2 = 13
_RSRC_REGISTER_SPARSE = 1

OP_OPENAT, OP_CONNECT, OP_OPENAT2 = 18, 16, 28
IOSQE_ASYNC = 1 << 4
AT_FDCWD = -100
FILE_INDEX_ALLOC = 0xFFFFFFFF


class Ring:
    """One io_uring instance: submit a request, wait for its completion, get its result."""

    def __init__(self, entries: int = 4) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        params = ctypes.create_string_buffer(120)
        self.fd = self._libc.syscall(_SETUP, entries, params)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "io_uring_setup")
        n = struct.unpack_from("<I", params, 0)[0]
        self._sq_off = struct.unpack_from("<7I", params, 40)  # head tail mask entries flags dropped array
        self._cq_off = struct.unpack_from("<6I", params, 80)  # head tail mask entries overflow cqes
        self._sq = mmap.mmap(self.fd, self._sq_off[6] + n * 4, offset=0)
        self._sqes = mmap.mmap(self.fd, n * 64, offset=_OFF_SQES)
        self._cq = mmap.mmap(self.fd, self._cq_off[5] + 16 * 2 * n, offset=_OFF_CQ)
        self._keep: list[object] = []

    def submit(self, op: int, fd: int, addr: int, length: int = 0, off: int = 0, op_flags: int = 0,
               flags: int = 0, file_index: int = 0) -> int:
        """Submit one SQE, wait for its CQE and return its result (a fd, a slot, 0 or -errno)."""
        tail, mask = self._sq_off[1], self._sq_off[2]
        t = struct.unpack_from("<I", self._sq, tail)[0]
        slot = t & struct.unpack_from("<I", self._sq, mask)[0]
        sqe = bytearray(64)
        struct.pack_into("<BBHiQQII", sqe, 0, op, flags, 0, fd, off, addr, length, op_flags)
        struct.pack_into("<I", sqe, 44, file_index)
        self._sqes[slot * 64:(slot + 1) * 64] = bytes(sqe)
        struct.pack_into("<I", self._sq, self._sq_off[6] + slot * 4, slot)
        struct.pack_into("<I", self._sq, tail, t + 1)
        if self._libc.syscall(_ENTER, self.fd, 1, 1, _GETEVENTS, None, 0) != 1:
            raise OSError(ctypes.get_errno(), "io_uring_enter")
        cqh = struct.unpack_from("<I", self._cq, self._cq_off[0])[0]
        cqm = struct.unpack_from("<I", self._cq, self._cq_off[2])[0]
        res: int = struct.unpack_from("<Qi", self._cq, self._cq_off[5] + (cqh & cqm) * 16)[1]
        struct.pack_into("<I", self._cq, self._cq_off[0], cqh + 1)
        return res

    def openat(self, path: str, flags: int = os.O_RDONLY, *, sqe_flags: int = 0, file_index: int = 0) -> int:
        """IORING_OP_OPENAT relative to the working directory; ``file_index`` opens into a fixed slot."""
        buf = ctypes.create_string_buffer(path.encode())
        self._keep.append(buf)
        return self.submit(OP_OPENAT, AT_FDCWD, ctypes.addressof(buf), op_flags=flags, flags=sqe_flags,
                           file_index=file_index)

    def connect(self, sock_fd: int, sockaddr: bytes) -> int:
        """IORING_OP_CONNECT of ``sock_fd`` to a packed ``sockaddr``."""
        buf = ctypes.create_string_buffer(sockaddr, len(sockaddr))
        self._keep.append(buf)
        return self.submit(OP_CONNECT, sock_fd, ctypes.addressof(buf), off=len(sockaddr))

    def register_sparse_files(self, n: int) -> None:
        """Register ``n`` empty fixed-file slots (IORING_REGISTER_FILES2, sparse)."""
        raw = struct.pack("<IIQQQ", n, _RSRC_REGISTER_SPARSE, 0, 0, 0)
        reg = ctypes.create_string_buffer(raw, len(raw))
        if self._libc.syscall(_REGISTER, self.fd, _REGISTER_FILES2, reg, ctypes.sizeof(reg)) < 0:
            raise OSError(ctypes.get_errno(), "io_uring_register")

    def close(self) -> None:
        """Unmap the rings and close the ring's fd."""
        for m in (self._sq, self._sqes, self._cq):
            m.close()
        os.close(self.fd)
