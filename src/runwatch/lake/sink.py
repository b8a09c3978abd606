"""The lake as a detector worker's sink (registered as ``lake``: ``runwatch worker --sink lake --out DIR``).

``write`` buffers the batch's OCSF records (:class:`~runwatch.lake.output.LakeOutput`) and
``flush`` returns once :meth:`~runwatch.lake.writer.LakeWriter.flush` has made them durable, so
the worker acknowledges only then. Records are de-duplicated by id per lake partition; the ids
a writer knows are those of the files as of when it loaded the partition, so before a batch
that may hold records another worker (or this one before a restart) already wrote, the worker
calls :meth:`LakeSink.refresh` and the ids are read again from the files. See docs/fleet.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runwatch.alerts.model import Alert
from runwatch.events import Event
from runwatch.lake.output import LakeOutput
from runwatch.lake.schema import LakeError
from runwatch.transport.sink import SinkError, register_sink


class LakeSink:
    """Events and alerts into the lake at ``root`` (several workers may share one directory)."""

    name = "lake"

    def __init__(self, root: str, **writer: Any) -> None:
        self.root = root
        self.output = LakeOutput(root, **writer)
        self.refreshes = 0  # times the ids were read again from the files

    def open(self) -> None:
        """Create the lake directory (SinkError names it when that fails)."""
        try:
            self.output.open()
        except LakeError as exc:
            raise SinkError(str(exc)) from None

    def refresh(self) -> None:
        """Forget the record ids known so far: the next records of each partition are checked
        against the partition's files as they are now (what other workers wrote included)."""
        self.output.writer.forget()
        self.refreshes += 1

    def write(self, events: Sequence[Event], alerts: Sequence[Alert]) -> None:
        """Buffer the batch's records (a record already in the lake is skipped)."""
        try:
            if events:
                self.output.write(events)
            if alerts:
                self.output.write_alerts(alerts)
        except LakeError as exc:
            raise SinkError(str(exc)) from None

    def flush(self) -> None:
        """Return once every record written is durable in Parquet files; SinkError otherwise (the
        records stay buffered, and the batch is redelivered as it is not acknowledged)."""
        try:
            self.output.flush()
        except LakeError as exc:
            raise SinkError(str(exc)) from None

    def stats(self) -> dict[str, Any]:
        """The writer's counters (records, files, duplicates, ...) and the refreshes."""
        return {**self.output.writer.stats(), "refreshes": self.refreshes}

    def close(self) -> None:
        """Flush and close. Idempotent."""
        try:
            self.output.close()
        except LakeError as exc:
            raise SinkError(str(exc)) from None


register_sink("lake", LakeSink)
