"""Run records: one row per ``runwatch run``/``watch`` session, who owns it, and crashed runs.

A session records its run at start (``ended`` NULL) and again at the end. The row names its
owner, the process that writes it: pid, that process's start time (clock ticks since boot,
``/proc/PID/stat``) and the boot id, so a pid reused by another process or after a reboot is
never taken for the owner. Every write transaction of the owner also adds what it committed to
the row (``stored_events``, ``stored_alerts``, ``updated`` = commit time), in the same
transaction as the events, so the counts are exactly what the file holds of that run.

A row whose ``ended`` is still NULL while its owner is gone belongs to a run that died
without closing (SIGKILL, OOM kill, power loss). :func:`recover_crashed` marks such a run
``crashed``, sets ``ended`` to its last commit and puts the stored counts in its stats
(``events``, ``alerts``, ``crashed: true``); a writer open does it, and so does
``runwatch doctor``. Readers (:func:`read_runs`) show a dead owner's open run as crashed even
before that.

Functions that write expect the caller to own the connection; :func:`recover_crashed` opens
its own ``BEGIN IMMEDIATE`` transaction. A store file is used from one host (the boot id and
pids are this host's).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from runwatch.host import procfs

BOOT_ID = "/proc/sys/kernel/random/boot_id"

RUN_COLUMNS = (
    "pid INTEGER", "pid_start INTEGER", "boot_id TEXT", "updated INTEGER",
    "stored_events INTEGER NOT NULL DEFAULT 0", "stored_alerts INTEGER NOT NULL DEFAULT 0",
    "crashed INTEGER NOT NULL DEFAULT 0",
)
"""Columns layout 4 adds to ``runs`` (add-only: ``ALTER TABLE ... ADD COLUMN``)."""

UPSERT_RUN = (
    "INSERT INTO runs (id, started, ended, command, exit_code, stats, pid, pid_start, boot_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET started = excluded.started,"
    " ended = excluded.ended, command = excluded.command, exit_code = excluded.exit_code,"
    " stats = excluded.stats, pid = excluded.pid, pid_start = excluded.pid_start, boot_id = excluded.boot_id"
)
"""A run record; the stored counts of an existing row are kept."""

ADD_STORED = (
    "UPDATE runs SET stored_events = stored_events + ?, stored_alerts = stored_alerts + ?, updated = ?"
    " WHERE id = ?"
)

_SELECT = (
    "SELECT id, started, ended, command, exit_code, stats, pid, pid_start, boot_id, updated,"
    " stored_events, stored_alerts, crashed FROM runs"
)


def boot_id() -> str | None:
    """This boot's id, or None where the kernel does not say."""
    try:
        return Path(BOOT_ID).read_text().strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class Owner:
    """The process that writes a run: pid, its start time (ticks since boot) and the boot id."""

    pid: int
    start: int | None
    boot: str | None

    @classmethod
    def this_process(cls) -> Owner:
        """The calling process."""
        pid = os.getpid()
        return cls(pid, procfs.start_ticks(pid), boot_id())

    def alive(self) -> bool:
        """Whether this very process still runs (same boot, same pid, same start time)."""
        if self.boot is not None and self.boot != boot_id():
            return False
        start = procfs.start_ticks(self.pid)
        if start is None:  # gone, or hidden from us (hidepid): only a missing pid is taken as gone
            return os.path.exists(f"/proc/{self.pid}")
        return self.start is None or start == self.start


class RunRecord(msgspec.Struct, frozen=True):
    """One ``runwatch run``/``watch`` session: times in ns since the epoch, stats as recorded.

    ``crashed`` is true for a run whose owner died before it ended (its ``stats`` then carry
    the stored counts); ``stored_events``/``stored_alerts`` are what the run committed.
    """

    id: str
    started: int
    ended: int | None
    command: str
    exit_code: int | None
    stats: dict[str, Any]
    pid: int | None = None
    crashed: bool = False
    stored_events: int = 0
    stored_alerts: int = 0


def _dead(pid: int | None, pid_start: int | None, boot: str | None) -> bool:
    return pid is not None and not Owner(int(pid), pid_start, boot).alive()


def _crashed_stats(stats_json: str, events: int, alerts: int) -> dict[str, Any]:
    try:
        stats = msgspec.json.decode(stats_json)
    except msgspec.DecodeError:
        stats = {}
    if not isinstance(stats, dict):
        stats = {}
    stats.update(events=events, alerts=alerts, crashed=True)
    return stats


def read_runs(conn: sqlite3.Connection) -> list[RunRecord]:
    """Every run, oldest first; an open run of a dead owner is shown as crashed."""
    out: list[RunRecord] = []
    for (rid, started, ended, command, exit_code, stats_json, pid, pid_start, boot, updated,
         events, alerts, crashed) in conn.execute(_SELECT + " ORDER BY started, id"):
        gone = bool(crashed) or (ended is None and _dead(pid, pid_start, boot))
        stats = _crashed_stats(stats_json, events, alerts) if gone else msgspec.json.decode(stats_json)
        if gone and ended is None:
            ended = updated if updated is not None else started
        out.append(RunRecord(id=rid, started=started, ended=ended, command=command, exit_code=exit_code,
                             stats=stats, pid=pid, crashed=gone, stored_events=events, stored_alerts=alerts))
    return out


def recover_crashed(conn: sqlite3.Connection) -> list[str]:
    """Mark every open run of a dead owner crashed (see the module); one line per run marked."""
    lines: list[str] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = conn.execute(
            "SELECT id, command, stats, pid, pid_start, boot_id, updated, started, stored_events, stored_alerts"
            " FROM runs WHERE ended IS NULL AND crashed = 0 AND pid IS NOT NULL"
        ).fetchall()
        for rid, command, stats_json, pid, pid_start, boot, updated, started, events, alerts in rows:
            if not _dead(pid, pid_start, boot):
                continue
            stats = msgspec.json.encode(_crashed_stats(stats_json, events, alerts)).decode()
            conn.execute("UPDATE runs SET crashed = 1, ended = ?, stats = ? WHERE id = ?",
                         (updated if updated is not None else started, stats, rid))
            lines.append(f"run {rid[:12]} ({command or 'no command'}, pid {pid}) ended without closing: "
                         f"marked crashed; {events} events and {alerts} alerts stored")
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    return lines
