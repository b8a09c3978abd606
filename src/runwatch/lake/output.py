"""The lake as an output of events and alerts (registered as ``lake``; ``--lake DIR``).

Events are rendered with the OCSF event mapping (:func:`runwatch.outputs.ocsf.to_ocsf`) and
alerts as Detection Findings (:func:`runwatch.alerts.render.to_ocsf`): the same records as
``runwatch events --format ocsf`` and ``runwatch alerts --format ocsf``, with the original
event or alert in ``raw_data`` (:mod:`runwatch.lake.records`). ``flush`` returns once
everything written so far is durable in Parquet files; ``close`` flushes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from runwatch.alerts.model import Alert
from runwatch.events import Event
from runwatch.lake.records import alert_record, event_record
from runwatch.outputs.base import register_output

if TYPE_CHECKING:
    from runwatch.lake.writer import LakeWriter


class LakeOutput:
    """Events and alerts as OCSF records in the lake at ``root``; ``writer`` options (bounds,
    de-duplication) are passed on to :class:`~runwatch.lake.writer.LakeWriter`."""

    name = "lake"

    def __init__(self, root: str | os.PathLike[str], *, hostname: str | None = None, **writer: Any) -> None:
        from runwatch.lake.writer import LakeWriter  # pyarrow is imported only by a session with a lake

        self.root = str(root)
        self.hostname = hostname
        self.writer: LakeWriter = LakeWriter(root, **writer)

    def open(self) -> None:
        """Create the lake directory and load the recent record ids (LakeError names the path)."""
        self.writer.open()

    def write(self, events: Sequence[Event]) -> None:
        """Buffer the events' OCSF records (written when a bound is reached or on flush)."""
        self.writer.add(event_record(e, hostname=self.hostname) for e in events)

    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        """Buffer the alerts' Detection Findings."""
        self.writer.add(alert_record(a, hostname=self.hostname) for a in alerts)

    def flush(self) -> int:
        """Write every buffered record durably; returns how many were written."""
        return self.writer.flush()

    def close(self) -> None:
        """Flush and close. Idempotent."""
        self.writer.close()


register_output("lake", LakeOutput)
