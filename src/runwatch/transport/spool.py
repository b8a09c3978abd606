"""The publisher's spool on disk: messages kept in order while NATS cannot take them.

One SQLite file (WAL) with one table of ``(seq, subject, msg_id, payload)``; ``seq`` keeps the
order across restarts of the agent, so a node that was cut off for a while, or restarted while
cut off, publishes what it saw in the order it saw it once NATS answers again. Bounded by
:class:`~runwatch.store.spool.SpoolLimits` (messages and payload bytes, the same bounds the
store's in-memory spool takes): a message that does not fit is counted under ``spool_full``
and never retried. Thread safety: one thread (the publisher's) uses a spool.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence

from runwatch.privatefile import ensure_private
from runwatch.store.spool import SpoolLimits

Message = tuple[str, str, bytes]
"""(subject, msg id, payload)."""


class SpoolError(Exception):
    """The spool file cannot be opened (one line naming it)."""


class DiskSpool:
    """Bounded FIFO of messages in the SQLite file at ``path`` (see the module)."""

    def __init__(self, path: str | os.PathLike[str], limits: SpoolLimits | None = None) -> None:
        self.path = str(path)
        self.limits = limits or SpoolLimits()
        try:
            ensure_private(self.path)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                             "subject TEXT NOT NULL, msg_id TEXT NOT NULL, payload BLOB NOT NULL)")
            row = self._db.execute("SELECT count(*), coalesce(sum(length(payload)), 0) FROM spool").fetchone()
        except (OSError, sqlite3.Error) as exc:
            raise SpoolError(f"cannot open the NATS spool {self.path}: {exc}") from None
        self.count, self.bytes = int(row[0]), int(row[1])
        self.spooled = 0  # messages ever taken in (this process)
        self.peak = self.count
        self.sent = 0  # messages published from the spool and removed
        self.lost = 0  # messages that did not fit

    def __len__(self) -> int:
        return self.count

    def add(self, messages: Sequence[Message]) -> int:
        """Append what fits, in order; returns how many were lost (counted in :attr:`lost`)."""
        keep: list[Message] = []
        for m in messages:
            size = len(m[2])
            if self.count + len(keep) >= self.limits.events or self.bytes + size > self.limits.bytes:
                self.lost += 1
                continue
            keep.append(m)
            self.bytes += size
        if keep:
            with self._db:
                self._db.executemany("INSERT INTO spool (subject, msg_id, payload) VALUES (?, ?, ?)", keep)
            self.count += len(keep)
            self.spooled += len(keep)
            self.peak = max(self.peak, self.count)
        return len(messages) - len(keep)

    def head(self, n: int) -> list[tuple[int, Message]]:
        """The oldest ``n`` messages with their sequence numbers."""
        rows = self._db.execute("SELECT seq, subject, msg_id, payload FROM spool ORDER BY seq LIMIT ?", (n,))
        return [(int(r[0]), (r[1], r[2], bytes(r[3]))) for r in rows]

    def remove_through(self, seq: int, count: int, size: int) -> None:
        """Forget every message up to ``seq`` (``count`` messages of ``size`` bytes: published)."""
        with self._db:
            self._db.execute("DELETE FROM spool WHERE seq <= ?", (seq,))
        self.count -= count
        self.bytes -= size
        self.sent += count

    def stats(self) -> dict[str, int]:
        """``held``, ``held_bytes``, ``peak``, ``spooled``, ``sent`` and ``lost``."""
        return {"held": self.count, "held_bytes": self.bytes, "peak": self.peak, "spooled": self.spooled,
                "sent": self.sent, "lost": self.lost}

    def close(self) -> None:
        """Close the file (what it holds stays for the next start). Idempotent."""
        self._db.close()
