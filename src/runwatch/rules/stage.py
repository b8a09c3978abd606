"""The detection stage for ``runwatch.pipeline.Pipeline``: engine + throttle + alert sinks.

``DetectionStage`` is a pipeline ``Stage`` (``list[Event] -> list[Event]``): it passes the
batch through unchanged and hands the (throttled) alerts of each batch to every alert sink,
in order. ``close()`` flushes pending throttle summaries and closes the sinks.

Thread safety: called from the pipeline's one consumer thread only.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Protocol, TextIO

from runwatch.alerts.model import Alert
from runwatch.alerts.render import render_text, to_json
from runwatch.alerts.throttle import Throttle
from runwatch.events import Event
from runwatch.rules.engine import Engine


class AlertSink(Protocol):
    """Anything that takes batches of alerts (the SQLite store, a JSONL file, the console)."""

    def write_alerts(self, alerts: list[Alert]) -> None: ...

    def close(self) -> None: ...


class DetectionStage:
    """Runs the engine over each batch and emits throttled alerts to ``sinks``.

    ``throttle`` may be None to emit every alert. A sink that raises is recorded in
    ``errors`` and does not stop the others.
    """

    def __init__(self, engine: Engine, sinks: Sequence[AlertSink], throttle: Throttle | None = None) -> None:
        self.engine = engine
        self.sinks = list(sinks)
        self.throttle = throttle
        self.errors: list[str] = []
        self.emitted = 0

    def _emit(self, alerts: list[Alert]) -> None:
        if not alerts:
            return
        self.emitted += len(alerts)
        for sink in self.sinks:
            try:
                sink.write_alerts(alerts)
            except Exception as exc:  # one failing sink must not hide the others
                self.errors.append(f"{type(sink).__name__}: {exc}")

    def __call__(self, batch: list[Event]) -> list[Event]:
        raw = self.engine.process_batch(batch)
        if self.throttle is None:
            self._emit(raw)
        else:
            out: list[Alert] = []
            for a in raw:
                out.extend(self.throttle.offer(a))
            if batch:
                out.extend(self.throttle.flush_due(batch[-1].time))
            self._emit(out)
        return batch

    def close(self) -> None:
        """Flush throttle summaries, then close every sink (always all of them)."""
        if self.throttle is not None:
            self._emit(self.throttle.flush())
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                self.errors.append(f"closing {type(sink).__name__}: {exc}")

    def stats(self) -> dict[str, object]:
        """Engine and throttle counters plus alerts emitted."""
        return {"engine": self.engine.stats(), "throttle": self.throttle.stats() if self.throttle else None,
                "emitted": self.emitted, "sink_errors": len(self.errors)}


class StreamAlertSink:
    """Writes alerts to a text stream as text lines (default: stderr) or JSON lines."""

    def __init__(self, stream: TextIO | None = None, fmt: str = "text") -> None:
        if fmt not in ("text", "json"):
            raise ValueError(f"unknown alert format {fmt!r} (text or json)")
        self.stream = stream if stream is not None else sys.stderr
        self.fmt = fmt

    def write_alerts(self, alerts: list[Alert]) -> None:
        """Write one line per alert and flush."""
        for a in alerts:
            self.stream.write((render_text(a) if self.fmt == "text" else to_json(a).decode()) + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Flush (the stream is not ours to close)."""
        self.stream.flush()


class JsonlAlertSink:
    """Appends alerts as JSON lines to a file (``runwatch run --alerts-out FILE``)."""

    def __init__(self, path: str) -> None:
        self._fh = open(path, "ab")  # noqa: SIM115 - closed in close()

    def write_alerts(self, alerts: list[Alert]) -> None:
        """Append one JSON line per alert and flush."""
        self._fh.write(b"".join(to_json(a) + b"\n" for a in alerts))
        self._fh.flush()

    def close(self) -> None:
        """Close the file (idempotent)."""
        if not self._fh.closed:
            self._fh.close()
