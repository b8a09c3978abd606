"""Alert outputs: one line per alert on a text stream (text or JSON), or JSON lines in a file.

Both follow :class:`~runwatch.outputs.base.AlertOutput` (open, write_alerts, flush, close) and
are registered as ``alerts-stream`` and ``alerts-jsonl``. Thread safety: one writer thread.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import BinaryIO, TextIO

from runwatch.alerts.model import Alert
from runwatch.alerts.render import render_text, to_json
from runwatch.outputs.base import register_output
from runwatch.privatefile import open_append


class StreamAlertOutput:
    """Writes alerts to a text stream as text lines (default: stderr) or JSON lines."""

    name = "alerts-stream"

    def __init__(self, stream: TextIO | None = None, fmt: str = "text") -> None:
        if fmt not in ("text", "json"):
            raise ValueError(f"unknown alert format {fmt!r} (text or json)")
        self.stream = stream if stream is not None else sys.stderr
        self.fmt = fmt

    def open(self) -> None:
        """Nothing to open: the stream belongs to the caller."""

    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        """Write one line per alert and flush."""
        for a in alerts:
            self.stream.write((render_text(a) if self.fmt == "text" else to_json(a).decode()) + "\n")
        self.stream.flush()

    def flush(self) -> None:
        """Flush the stream."""
        self.stream.flush()

    def close(self) -> None:
        """Flush (the stream is not ours to close)."""
        self.stream.flush()


class JsonlAlertOutput:
    """Appends alerts as JSON lines to a file (``runwatch run --alerts-out FILE``)."""

    name = "alerts-jsonl"

    def __init__(self, path: str) -> None:
        self.path = path
        self._fh: BinaryIO | None = None

    def open(self) -> None:
        """Open the file for append (OSError names the path)."""
        if self._fh is None:
            self._fh = open_append(self.path)  # 0600; closed in close()

    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        """Append one JSON line per alert and flush."""
        if self._fh is None:
            self.open()
        assert self._fh is not None
        self._fh.write(b"".join(to_json(a) + b"\n" for a in alerts))
        self._fh.flush()

    def flush(self) -> None:
        """Push buffered lines to the file."""
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        """Close the file (idempotent)."""
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()


register_output("alerts-stream", StreamAlertOutput)
register_output("alerts-jsonl", JsonlAlertOutput)
