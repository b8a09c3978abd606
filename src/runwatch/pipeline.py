"""The one-direction flow: source -> enrich -> sinks, on one consumer thread.

Start-up is an ordered list of steps and teardown always runs (sinks are closed even if
the source fails). Detection and policy stages slot in between enrich and sinks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from runwatch.events import Event
from runwatch.sensors.base import Source


class Sink(Protocol):
    """Anything that takes batches of events (store, JSONL file, live printer)."""

    def write(self, events: list[Event]) -> None: ...

    def close(self) -> None: ...


Stage = Callable[[list[Event]], list[Event]]


class Pipeline:
    """Pulls batches from one source through the stages into every sink.

    ``run`` blocks until ``stop`` is set, then drains what the source still holds.
    Thread safety: ``run`` on one thread; ``stop`` (a threading.Event) from any.
    """

    def __init__(self, source: Source, stages: Sequence[Stage], sinks: Sequence[Sink],
                 poll_interval: float = 0.05) -> None:
        self.source = source
        self.stages = list(stages)
        self.sinks = list(sinks)
        self.poll_interval = poll_interval
        self.stop = threading.Event()
        self.events = 0
        self.errors: list[str] = []

    def _push(self, batch: list[Event], first_stage: int = 0) -> None:
        for stage in self.stages[first_stage:]:
            batch = stage(batch)
        if batch:
            self.events += len(batch)
            for sink in self.sinks:
                sink.write(batch)

    def step(self, timeout: float) -> bool:
        """One poll; returns False when the source has ended.

        Stages run even on an empty poll: a stage that holds events back (the AI-context
        join's reorder buffer) releases them as time passes.
        """
        batch = self.source.poll(timeout)
        if batch is None:
            return False
        self._push(batch)
        return True

    def flush_stages(self) -> None:
        """Release what every holding stage still keeps, through the stages after it."""
        for i, stage in enumerate(self.stages):
            flush = getattr(stage, "flush", None)
            if flush is not None:
                released = flush()
                if released:
                    self._push(released, i + 1)

    def drain(self, quiet_rounds: int = 3, max_s: float = 5.0) -> None:
        """Poll until the source yields nothing ``quiet_rounds`` times in a row (or max_s),
        then flush the holding stages."""
        quiet, deadline = 0, time.monotonic() + max_s
        while quiet < quiet_rounds and time.monotonic() < deadline:
            batch = self.source.poll(0.02)
            if batch is None:
                break
            quiet = 0 if batch else quiet + 1
            self._push(batch)
        self.flush_stages()

    def run(self) -> None:
        """Consume until ``stop`` is set, then drain."""
        while not self.stop.is_set():
            if not self.step(self.poll_interval):
                break
        self.drain()

    def close(self) -> None:
        """Stop the source and close every sink; always safe to call once."""
        try:
            self.source.stop()
        finally:
            for sink in self.sinks:
                try:
                    sink.close()
                except Exception as exc:  # a failing sink must not hide the others
                    self.errors.append(f"closing {type(sink).__name__}: {exc}")
