"""Where a detector worker puts what it consumed: the sink seam and the SQLite sink.

A sink takes a batch of events and alerts with ``write`` and makes it durable with ``flush``:
when ``flush`` returns, the batch survives a crash of the worker (the worker acknowledges the
messages only then), else it raises :class:`SinkError` and the messages are redelivered. Sinks
de-duplicate by id (an event's id is the message id without its node prefix; an alert raised by
a worker has an id derived from its rule and evidence), so a message delivered twice (a worker
killed after the write and before the ack) is stored once.

A sink whose de-duplication can miss what another process wrote since it looked (the lake
keeps the ids per partition in memory) offers ``refresh()``: the worker calls it before a batch
that holds a redelivered message and after it takes partitions over.

Sinks register by name with :func:`register_sink` (the SQLite store is ``sqlite``, the lake
``lake``); a second registration of a name is refused. Thread safety: one thread drives a sink.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from runwatch.alerts.model import Alert
from runwatch.events import Event
from runwatch.registry import Registry
from runwatch.store.sqlite import SqliteStore, StoreError


class SinkError(Exception):
    """The sink could not make a batch durable (one line); the batch is not acknowledged."""


@runtime_checkable
class FleetSink(Protocol):
    """A worker's sink (see the module): open, write, flush (durable), close."""

    name: str

    def open(self) -> None: ...

    def write(self, events: Sequence[Event], alerts: Sequence[Alert]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class SqliteSink:
    """The project's SQLite store as a worker sink: events keyed by id (``INSERT OR IGNORE``),
    alerts by id. Several workers may share one file (one writer at a time, WAL)."""

    name = "sqlite"

    def __init__(self, path: str, flush_timeout: float = 30.0) -> None:
        self.path = path
        self.flush_timeout = flush_timeout
        self.store: SqliteStore | None = None

    def open(self) -> None:
        """Open (creating or migrating) the database."""
        if self.store is None:
            self.store = SqliteStore(self.path)

    def _open(self) -> SqliteStore:
        if self.store is None:
            raise SinkError(f"{self.path}: the sink is not open")
        return self.store

    def write(self, events: Sequence[Event], alerts: Sequence[Alert]) -> None:
        """Enqueue the batch for the store's writer."""
        store = self._open()
        try:
            if events:
                store.write(events)
            if alerts:
                store.write_alerts(alerts)
        except StoreError as exc:
            raise SinkError(str(exc)) from None

    def flush(self) -> None:
        """Return once everything written is committed; SinkError while the store cannot write
        (what it holds then is retried by the store, and redelivered to the worker anyway)."""
        store = self._open()
        try:
            store.flush(timeout=self.flush_timeout)
        except StoreError as exc:
            raise SinkError(str(exc)) from None
        st = store.stats()
        if st["spooled"] or st["fault"]:
            raise SinkError(f"{self.path}: not written yet ({st['fault'] or 'spooled'})")

    def stats(self) -> dict[str, Any]:
        """The store's writer counters (written, duplicates, ...)."""
        return self.store.stats() if self.store is not None else {}

    def close(self) -> None:
        """Flush and close the store. Idempotent."""
        store, self.store = self.store, None
        if store is not None:
            store.close()


SinkFactory = Callable[..., FleetSink]

#: The worker sink registry; importing these modules registers the built-in sinks.
SINKS: Registry[SinkFactory] = Registry("sink", ("runwatch.transport.sink", "runwatch.lake.sink"))


def register_sink(name: str, factory: SinkFactory) -> None:
    """Register a worker sink factory under ``name``; a second registration of a name is an error."""
    SINKS.register(name, factory)


register_sink("sqlite", SqliteSink)
