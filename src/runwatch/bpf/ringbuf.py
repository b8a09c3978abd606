"""A BPF ring buffer consumer in pure Python over mmap (no per-event ctypes callback).

Layout (kernel/bpf/ringbuf.c): page 0 holds the consumer position (we write it), page 1
the producer position (read only), then the data area mapped twice so a record that wraps
is contiguous. Each record has an 8-byte header: u32 length with BUSY (bit 31) and
DISCARD (bit 30) flags, u32 page offset; the payload follows, padded to 8 bytes.

Memory ordering: on x86-64 (TSO) plain loads of the producer position and stores of the
consumer position are ordered as the protocol needs. Other architectures would need
explicit barriers; the loader refuses to run this reader there.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import platform
import select
import struct
from collections.abc import Callable
from typing import TypeVar

BUSY = 1 << 31
DISCARD = 1 << 30
HDR = 8
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")

T = TypeVar("T")


class RingReader:
    """Drains one ring buffer map. Not thread safe: one consumer thread only."""

    def __init__(self, map_fd: int, size: int) -> None:
        if platform.machine() not in ("x86_64", "AMD64"):
            raise RuntimeError(f"the mmap ring reader supports x86-64 only (this is {platform.machine()})")
        if size & (size - 1):
            raise ValueError(f"ring size {size} is not a power of two")
        page = mmap.PAGESIZE
        self.size = size
        self._mask = size - 1
        self._cons = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._prod = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._view = memoryview(self._prod)
        self._data = self._view[page:]
        self._ep = select.epoll()
        self._ep.register(map_fd, select.EPOLLIN)
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)  # wake(): another thread ends a wait
        self._ep.register(self._wake, select.EPOLLIN)
        self.records = 0
        self.discarded = 0

    def wait(self, timeout: float) -> None:
        """Sleep until the kernel forces a wake-up, :meth:`wake` is called or ``timeout`` seconds pass."""
        for fd, _ in self._ep.poll(timeout):
            if fd == self._wake:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(self._wake)

    def wake(self) -> None:
        """End the consumer's current (or next) :meth:`wait` now; callable from any thread."""
        os.eventfd_write(self._wake, 1)

    def pending_bytes(self) -> int:
        """Bytes queued and not yet consumed."""
        prod = _U64.unpack_from(self._view, 0)[0]
        cons = _U64.unpack_from(self._cons, 0)[0]
        return int(prod - cons)

    def drain(self, handle: Callable[[bytes, int, int], T | None], limit_bytes: int = 8 << 20) -> list[T]:
        """Pass each committed record (chunk, offset, length) to ``handle``; collect results.

        The queued bytes (at most ``limit_bytes`` per call) are copied out of the ring in
        one go and records are handed over as offsets into that copy, so ``handle`` may
        keep references. ``None`` results are skipped. The space is released at the end;
        if ``handle`` raises, the position after the failing record is saved first, so a
        bad record is skipped, not re-read forever.
        """
        out: list[T] = []
        cons = _U64.unpack_from(self._cons, 0)[0]
        prod = _U64.unpack_from(self._view, 0)[0]
        if cons >= prod:
            return out
        base = cons & self._mask
        # The data area is mapped twice, so [base, base + size) is contiguous.
        chunk = self._data[base:base + min(prod - cons, limit_bytes, self.size)].tobytes()
        end = len(chunk)
        pos = 0
        u32 = _U32.unpack_from
        try:
            while pos + HDR <= end:
                hdr = u32(chunk, pos)[0]
                if hdr & BUSY:
                    break
                length = hdr & ~(BUSY | DISCARD)
                nxt = pos + ((length + HDR + 7) & ~7)
                if nxt > end:
                    break  # the record continues past what was copied: next time
                at = pos
                pos = nxt  # advanced first: a record that fails to decode is skipped
                self.records += 1
                if hdr & DISCARD:
                    self.discarded += 1
                    continue
                item = handle(chunk, at + HDR, length)
                if item is not None:
                    out.append(item)
        finally:
            _U64.pack_into(self._cons, 0, cons + pos)
        return out

    def close(self) -> None:
        """Unmap and stop polling."""
        self._ep.close()
        os.close(self._wake)
        self._data.release()
        self._view.release()
        self._prod.close()
        self._cons.close()
