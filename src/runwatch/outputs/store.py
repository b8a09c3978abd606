"""The SQLite store as an output of both events and alerts (registered as ``sqlite``).

:meth:`StoreOutput.open` opens the database (its writer thread starts there), ``write`` and
``write_alerts`` enqueue, ``flush`` waits until everything enqueued is committed, and
``close`` flushes and closes the database. The open store is :attr:`StoreOutput.store`
(for run records and queries while the session runs).
"""

from __future__ import annotations

from collections.abc import Sequence

from runwatch.alerts.model import Alert
from runwatch.events import Event
from runwatch.outputs.base import register_output
from runwatch.store.sqlite import Retention, SpoolLimits, SqliteStore


class StoreOutput:
    """Events and alerts into the SQLite database at ``path``.

    ``spool`` bounds what the store keeps in memory while it cannot write (a full filesystem,
    a lock held by another writer); see :mod:`runwatch.store.spool`. Such faults never raise
    here: they are in the store's ``stats()``. ``retention`` bounds what the store keeps (by age
    and size; see :mod:`runwatch.store.retention`).
    """

    name = "sqlite"

    def __init__(self, path: str, spool: SpoolLimits | None = None, retention: Retention | None = None) -> None:
        self.path = path
        self.spool = spool
        self.retention = retention
        self.store: SqliteStore | None = None

    def open(self) -> None:
        """Open (creating or migrating) the database; StoreError names the path."""
        if self.store is None:
            self.store = SqliteStore(self.path, spool=self.spool, retention=self.retention)

    def _open_store(self) -> SqliteStore:
        if self.store is None:
            raise RuntimeError(f"{self.path}: the store output is not open")
        return self.store

    def write(self, events: Sequence[Event]) -> None:
        """Enqueue events for the writer."""
        self._open_store().write(events)

    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        """Enqueue alerts for the writer."""
        self._open_store().write_alerts(alerts)

    def flush(self) -> None:
        """Wait until everything enqueued is committed (or spooled while the store cannot write)."""
        if self.store is not None:
            self.store.flush()

    def close(self) -> None:
        """Flush and close the database (StoreError after a fatal writer error). Idempotent."""
        if self.store is not None:
            self.store.close()


register_output("sqlite", StoreOutput)
