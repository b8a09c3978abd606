"""Acknowledged alerts: a small SQLite file of the console's own, next to the store.

The event store stays read-only for the console; an acknowledgement is a row here (alert id,
when, by whom, a note). One connection per call, so any thread may use it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from runwatch.textsafe import printable

MAX_NOTE = 200
"""Characters of a note that are kept."""


@dataclass(frozen=True)
class Ack:
    """One acknowledgement: which alert, when (ns since the epoch), by whom, and a note."""

    alert_id: str
    time: int
    by: str
    note: str | None = None


class AckError(Exception):
    """The acknowledgement file cannot be opened or written (one-line message)."""


def default_path(db: str | os.PathLike[str]) -> Path:
    """Where the acknowledgements of store ``db`` live unless told: ``DB.console-acks``."""
    return Path(f"{db}.console-acks")


class AckBook:
    """The acknowledgements kept in ``path`` (created on first use)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _conn(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
            conn.execute("CREATE TABLE IF NOT EXISTS acks (alert_id TEXT PRIMARY KEY, time INTEGER NOT NULL, "
                         "by TEXT NOT NULL, note TEXT)")
        except sqlite3.Error as exc:
            raise AckError(f"cannot open acknowledgements {self.path}: {exc}") from None
        return conn

    def acknowledge(self, alert_id: str, by: str, note: str | None = None) -> Ack:
        """Record that ``by`` acknowledged ``alert_id`` (the first acknowledgement is kept)."""
        text = " ".join(note.split())[:MAX_NOTE] if note else None
        ack = Ack(alert_id, time.time_ns(), printable(by), printable(text) if text else None)
        conn = self._conn()
        try:
            conn.execute("INSERT OR IGNORE INTO acks (alert_id, time, by, note) VALUES (?, ?, ?, ?)",
                         (ack.alert_id, ack.time, ack.by, ack.note))
            row = conn.execute("SELECT time, by, note FROM acks WHERE alert_id = ?", (alert_id,)).fetchone()
        except sqlite3.Error as exc:
            raise AckError(f"cannot write acknowledgements {self.path}: {exc}") from None
        finally:
            conn.close()
        return Ack(alert_id, int(row[0]), str(row[1]), row[2])

    def all(self) -> dict[str, Ack]:
        """Every acknowledgement by alert id (none while the file does not exist)."""
        if not self.path.exists():
            return {}
        conn = self._conn()
        try:
            rows = conn.execute("SELECT alert_id, time, by, note FROM acks").fetchall()
        except sqlite3.Error as exc:
            raise AckError(f"cannot read acknowledgements {self.path}: {exc}") from None
        finally:
            conn.close()
        return {r[0]: Ack(r[0], int(r[1]), str(r[2]), r[3]) for r in rows}
