"""The publisher's spool on disk: messages kept in order while NATS cannot take them.

A thin layer over the outputs' :class:`~runwatch.store.spool.DiskSpool` (one file per item in a
directory, written whole or not at all, numbered so the order survives restarts): each item is
one batch of messages ``(subject, msg id, payload)`` as msgpack, so an outage costs one file per
batch, not per event. A node that was cut off for a while, or restarted while cut off,
publishes what it saw in the order it saw it once NATS answers again. Bounded by
:class:`~runwatch.store.spool.SpoolLimits` in messages (``events``) and payload bytes: a message
that does not fit is counted in :attr:`MessageSpool.lost` and never retried. Thread safety: one
thread (the publisher's) uses a spool.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import msgspec

from runwatch.store.spool import DiskSpool, SpoolLimits

Message = tuple[str, str, bytes]
"""(subject, msg id, payload)."""

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(list[tuple[str, str, bytes]]).decode


class SpoolError(Exception):
    """The spool directory cannot be opened (one line naming it)."""


class MessageSpool:
    """Bounded FIFO of message batches in ``directory`` (see the module)."""

    def __init__(self, directory: str | os.PathLike[str], limits: SpoolLimits | None = None) -> None:
        self.path = str(directory)
        self.limits = limits or SpoolLimits()
        # the item bound is ours (in messages); the directory only bounds bytes
        self._disk = DiskSpool(self.path, SpoolLimits(events=max(1, self.limits.events), bytes=self.limits.bytes))
        self._counts: dict[int, tuple[int, int]] = {}  # item seq -> (messages, payload bytes)
        try:
            self._disk.open()
            for seq, data in self._disk.entries():  # what a previous start left
                batch = _decode(data)
                self._counts[seq] = (len(batch), sum(len(m[2]) for m in batch))
        except (OSError, msgspec.DecodeError) as exc:
            raise SpoolError(f"cannot open the NATS spool {self.path}: {exc}") from None
        self.count = sum(n for n, _ in self._counts.values())
        self.bytes = sum(b for _, b in self._counts.values())
        self.spooled = 0  # messages ever taken in (this process)
        self.peak = self.count
        self.sent = 0  # messages published from the spool and removed
        self.lost = 0  # messages that did not fit

    def __len__(self) -> int:
        return self.count

    def add(self, messages: Sequence[Message]) -> int:
        """Append the messages that fit, in order, as one item; returns how many were lost."""
        keep: list[Message] = []
        size = 0
        for m in messages:
            if self.count + len(keep) >= self.limits.events or self.bytes + size + len(m[2]) > self.limits.bytes:
                break
            keep.append(m)
            size += len(m[2])
        while keep and not self._disk.put(self._disk.next_seq, _encode(keep)):  # framing pushed it over
            size -= len(keep.pop()[2])
        if keep:
            self._counts[self._disk.next_seq - 1] = (len(keep), size)
            self.count += len(keep)
            self.bytes += size
            self.spooled += len(keep)
            self.peak = max(self.peak, self.count)
        lost = len(messages) - len(keep)
        self.lost += lost
        return lost

    def head(self) -> tuple[int, list[Message]] | None:
        """The oldest batch (its item number and messages), or None when empty."""
        item = self._disk.head()
        if item is None:
            return None
        return item[0], [tuple(m) for m in _decode(item[1])]  # type: ignore[misc]

    def remove(self, seq: int) -> None:
        """Forget batch ``seq`` (every message of it was acked)."""
        n, size = self._counts.pop(seq, (0, 0))
        self._disk.remove(seq)
        self.count -= n
        self.bytes -= size
        self.sent += n

    def stats(self) -> dict[str, int]:
        """``held``, ``held_bytes``, ``peak``, ``spooled``, ``sent`` and ``lost``."""
        return {"held": self.count, "held_bytes": self.bytes, "peak": self.peak, "spooled": self.spooled,
                "sent": self.sent, "lost": self.lost}

    def close(self) -> None:
        """Nothing to release: every item is a closed file (what it holds stays for the next start)."""
