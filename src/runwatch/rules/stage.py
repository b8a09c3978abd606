"""The detection stage for ``runwatch.pipeline.Pipeline``: engine + throttle, alerts handed on.

``DetectionStage`` is a pipeline ``Stage`` (``list[Event] -> list[Event]``): it passes the
batch through unchanged and hands the (throttled) alerts of each batch to ``emit``, a plain
callable; where alerts go (console, files, store, policy actions) is the outputs' business,
not detection's. ``close()`` hands on pending throttle summaries.

Thread safety: called from the pipeline's one consumer thread only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from runwatch.alerts.model import Alert
from runwatch.alerts.throttle import Throttle
from runwatch.events import Event
from runwatch.rules.engine import Engine

Emit = Callable[[Sequence[Alert]], None]


class DetectionStage:
    """Runs the engine over each batch and hands throttled alerts to ``emit``.

    ``throttle`` may be None to hand on every alert.
    """

    def __init__(self, engine: Engine, emit: Emit, throttle: Throttle | None = None) -> None:
        self.engine = engine
        self.emit = emit
        self.throttle = throttle
        self.emitted = 0

    def _emit(self, alerts: list[Alert]) -> None:
        if alerts:
            self.emitted += len(alerts)
            self.emit(alerts)

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
        """Hand on the throttle's pending summaries."""
        if self.throttle is not None:
            self._emit(self.throttle.flush())

    def stats(self) -> dict[str, object]:
        """Engine and throttle counters plus alerts emitted."""
        return {"engine": self.engine.stats(), "throttle": self.throttle.stats() if self.throttle else None,
                "emitted": self.emitted}
