"""What the store's writer keeps while it cannot write, and what it had to give up.

When a transaction fails for a reason that passes (the filesystem is full, another writer
holds the lock, an I/O error, a read-only remount), the writer of
:class:`~runwatch.store.sqlite.SqliteStore` puts everything that transaction held, and every
item that arrives after it, into a :class:`Spool`, in arrival order, and tries again later
(with backoff). The spool is bounded by :class:`SpoolLimits` (events and bytes); an item that
does not fit is counted as lost under the fault's reason (:func:`fault_reason`) and is never
retried. Run records are kept apart, the newest per run id, outside the bounds (one per run).

The network outputs (webhook, syslog, OTLP) keep what their endpoint has not taken in a
:class:`DiskSpool`: the same bounds (:class:`SpoolLimits`: items and bytes), one file per
item in a directory, so what waits survives a restart and is sent first by the next session.

Thread safety: none; only the writer thread touches a :class:`Spool`, and the owner of a
:class:`DiskSpool` serialises its calls.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

ROW_OVERHEAD = 96
"""Bytes counted per spooled event on top of its encoded data (ids, keys, list slots)."""

_TRANSIENT = {
    "SQLITE_FULL": "disk_full",
    "SQLITE_BUSY": "locked",
    "SQLITE_LOCKED": "locked",
    "SQLITE_PROTOCOL": "locked",
    "SQLITE_IOERR": "io_error",
    "SQLITE_READONLY": "read_only",
    "SQLITE_CANTOPEN": "cannot_open",
}


@dataclass(frozen=True)
class SpoolLimits:
    """How much the spool holds at most: ``events`` (rows) and ``bytes`` (their encoded size)."""

    events: int = 100_000
    bytes: int = 64 << 20

    def __post_init__(self) -> None:
        if self.events < 0 or self.bytes < 0:
            raise ValueError(f"spool limits must be >= 0, not {self.events} events, {self.bytes} bytes")


def fault_reason(exc: BaseException) -> str | None:
    """The reason (``disk_full``, ``locked``, ``io_error``, ``read_only``, ``cannot_open``) when
    ``exc`` is a database error that may pass, else None (the writer treats it as fatal)."""
    if not isinstance(exc, sqlite3.Error):
        return None
    name = getattr(exc, "sqlite_errorname", None) or ""
    base = name.split("_")[:2]  # SQLITE_IOERR_WRITE -> SQLITE_IOERR
    reason = _TRANSIENT.get("_".join(base))
    if reason is None and isinstance(exc, sqlite3.OperationalError):
        text = str(exc)  # older SQLite bindings give no error name
        if "disk is full" in text:
            reason = "disk_full"
        elif "locked" in text or "busy" in text:
            reason = "locked"
    return reason


def item_size(item: Any) -> tuple[int, int]:
    """(events, bytes) a writer queue item counts against the limits (alerts: 0 events)."""
    if isinstance(item, list):  # an event row's data, and its process context and container when not yet stored
        return len(item), sum(len(r[6]) + (len(r[7][1]) if isinstance(r[7], tuple) else 0)
                              + (len(r[4][5]) if isinstance(r[4], tuple) else 0) + ROW_OVERHEAD for r in item)
    if isinstance(item, tuple) and item and item[0] == "alerts":
        return 0, sum(len(r[6]) + ROW_OVERHEAD for r in item[1])
    return 0, 0


class Spool:
    """Bounded FIFO of writer queue items waiting for the store to recover (see the module)."""

    def __init__(self, limits: SpoolLimits | None = None) -> None:
        self.limits = limits or SpoolLimits()
        self._items: list[Any] = []
        self._runs: dict[str, tuple[Any, ...]] = {}  # run id -> newest run record item
        self.events = 0  # rows held now
        self.bytes = 0
        self.peak = 0  # most rows held at once
        self.spooled = 0  # rows ever taken in
        self.lost: dict[str, int] = {}  # rows given up, per reason
        self.lost_alerts: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self._items or self._runs)

    def add(self, item: Any, reason: str) -> None:
        """Keep ``item`` if it fits, else count it as lost under ``reason``."""
        if isinstance(item, tuple) and item and item[0] == "run":
            self._runs[item[1]] = item
            return
        n, size = item_size(item)
        if self.events + n > self.limits.events or self.bytes + size > self.limits.bytes:
            self.give_up(item, reason)
            return
        self._items.append(item)
        self.events += n
        self.bytes += size
        self.spooled += n
        self.peak = max(self.peak, self.events)

    def give_up(self, item: Any, reason: str) -> None:
        """Count ``item`` as lost under ``reason`` (run records are not counted)."""
        if isinstance(item, list):
            self.lost[reason] = self.lost.get(reason, 0) + len(item)
        elif isinstance(item, tuple) and item and item[0] == "alerts":
            self.lost_alerts[reason] = self.lost_alerts.get(reason, 0) + len(item[1])

    def items(self) -> Iterator[Any]:
        """Everything held, to be written in this order: run records first, then the rest."""
        yield from self._runs.values()
        yield from self._items

    def clear(self) -> None:
        """Forget everything held (after it was committed)."""
        self._items, self._runs = [], {}
        self.events = self.bytes = 0

    def drop_all(self, reason: str) -> None:
        """Count everything held as lost under ``reason`` and forget it."""
        for item in self._items:
            self.give_up(item, reason)
        self.clear()


_SUFFIX = ".item"


class DiskSpool:
    """Bounded FIFO of byte payloads on disk: ``directory/<seq>.item``, oldest sequence first.

    :meth:`open` creates the directory (0700) and takes in what a previous session left there
    (``recovered``); leftover half-written files (``*.tmp``) are removed. :meth:`put` writes an
    item under its sequence number (written to a temporary name, then renamed: an item is
    either whole or absent) and refuses it (False) when it would pass ``limits`` (``events``
    counts items). Sequence numbers order the items; :attr:`next_seq` is one past the largest
    seen, so items numbered by the owner keep their submission order across restarts.
    """

    def __init__(self, directory: str, limits: SpoolLimits | None = None) -> None:
        self.directory = directory
        self.limits = limits or SpoolLimits()
        self._seqs: list[int] = []  # sorted
        self._sizes: dict[int, int] = {}
        self.bytes = 0
        self.recovered = 0  # items found at open
        self.next_seq = 0

    def open(self) -> None:
        """Create the directory and index the items already in it (OSError names the path)."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        for entry in os.scandir(self.directory):
            if entry.name.endswith(".tmp"):
                os.unlink(entry.path)
                continue
            stem = entry.name.removesuffix(_SUFFIX)
            if not entry.name.endswith(_SUFFIX) or not stem.isdigit():
                continue
            seq = int(stem)
            self._sizes[seq] = entry.stat().st_size
            self._seqs.append(seq)
        self._seqs.sort()
        self.bytes = sum(self._sizes.values())
        self.recovered = len(self._seqs)
        self.next_seq = self._seqs[-1] + 1 if self._seqs else 0

    def __len__(self) -> int:
        return len(self._seqs)

    def _path(self, seq: int) -> str:
        return os.path.join(self.directory, f"{seq:016d}{_SUFFIX}")

    def fits(self, size: int) -> bool:
        """Whether one more item of ``size`` bytes stays within the limits."""
        return len(self._seqs) + 1 <= self.limits.events and self.bytes + size <= self.limits.bytes

    def put(self, seq: int, data: bytes) -> bool:
        """Keep ``data`` as item ``seq``; False (nothing written) when it does not fit."""
        if seq in self._sizes or not self.fits(len(data)):
            return False
        path = self._path(seq)
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(path + ".tmp", path)
        bisect.insort(self._seqs, seq)
        self._sizes[seq] = len(data)
        self.bytes += len(data)
        self.next_seq = max(self.next_seq, seq + 1)
        return True

    def head(self) -> tuple[int, bytes] | None:
        """The oldest item (sequence, data), or None when empty."""
        while self._seqs:
            seq = self._seqs[0]
            try:
                with open(self._path(seq), "rb") as fh:
                    return seq, fh.read()
            except FileNotFoundError:  # removed behind our back: forget it
                self._forget(seq)
        return None

    def entries(self) -> Iterator[tuple[int, bytes]]:
        """Every item held (sequence, data), oldest first."""
        for seq in list(self._seqs):
            try:
                with open(self._path(seq), "rb") as fh:
                    yield seq, fh.read()
            except FileNotFoundError:
                self._forget(seq)

    def remove(self, seq: int) -> None:
        """Delete item ``seq`` (after it was delivered or given up)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(seq))
        self._forget(seq)

    def _forget(self, seq: int) -> None:
        if seq in self._sizes:
            self.bytes -= self._sizes.pop(seq)
            self._seqs.remove(seq)
