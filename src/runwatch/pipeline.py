"""The one-direction flow: source -> enrich -> sinks, on one consumer thread.

Start-up is an ordered list of steps and teardown always runs (sinks are closed even if
the source fails). Detection and policy stages slot in between enrich and sinks.

Supervision: a stage that raises on a batch is skipped for that batch (the events go on to the
next stage and the sinks), a sink that raises loses that batch alone (counted per sink), and a
poll that raises is retried; each is counted with the first reason (:meth:`Pipeline.faults`).
Only a source that fails :data:`MAX_POLL_FAILURES` times in a row, or an error outside these,
ends the run, with a one-line :attr:`Pipeline.failure`. Nothing stops silently.
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

MAX_POLL_FAILURES = 100
"""Consecutive failed polls after which the source is taken as broken and the run ends."""


def _name(obj: object) -> str:
    return getattr(obj, "__name__", None) or type(obj).__name__


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


class Pipeline:
    """Pulls batches from one source through the stages into every sink.

    ``run`` blocks until ``stop`` is set, then drains what the source still holds.
    Thread safety: ``run`` on one thread; ``stop`` (a threading.Event) from any.
    """

    def __init__(self, source: Source, stages: Sequence[Stage], sinks: Sequence[Sink],
                 poll_interval: float = 0.01) -> None:
        self.source = source
        self.stages = list(stages)
        self.sinks = list(sinks)
        self.poll_interval = poll_interval
        self.stop = threading.Event()
        self.events = 0
        self.errors: list[str] = []
        self.failure: str | None = None
        """Why the run ended early (one line), or None."""
        self._stage_errors: dict[str, int] = {}
        self._lost: dict[str, int] = {}
        self._poll_errors = 0
        self._failed_polls = 0  # in a row
        self._first_error: str | None = None

    def faults(self) -> dict[str, object]:
        """``stage_errors`` and ``lost`` (events, per sink) by name, ``poll_errors``, ``first_error``."""
        return {"stage_errors": dict(self._stage_errors), "lost": dict(self._lost),
                "poll_errors": self._poll_errors, "first_error": self._first_error}

    def _fault(self, table: dict[str, int], name: str, count: int, what: str, exc: BaseException) -> None:
        table[name] = table.get(name, 0) + count
        if self._first_error is None:
            self._first_error = f"{what} {name}: {_reason(exc)}"

    def _push(self, batch: list[Event], first_stage: int = 0) -> None:
        for stage in self.stages[first_stage:]:
            try:
                batch = stage(batch)
            except Exception as exc:  # skipped for this batch: its events still reach the sinks
                self._fault(self._stage_errors, _name(stage), 1, "stage", exc)
        if batch:
            self.events += len(batch)
            for sink in self.sinks:
                try:
                    sink.write(batch)
                except Exception as exc:  # this sink loses this batch; the others keep it
                    self._fault(self._lost, _name(sink), len(batch), "sink", exc)

    def _poll(self, timeout: float) -> list[Event] | None:
        try:
            batch = self.source.poll(timeout)
        except Exception as exc:
            self._poll_errors += 1
            self._failed_polls += 1
            if self._first_error is None:
                self._first_error = f"source: {_reason(exc)}"
            if self._failed_polls >= MAX_POLL_FAILURES:
                self.failure = f"source: {self._failed_polls} polls in a row failed; last: {_reason(exc)}"
                return None
            return []
        self._failed_polls = 0
        return batch

    def step(self, timeout: float) -> bool:
        """One poll; returns False when the source has ended (or keeps failing).

        Stages run even on an empty poll: a stage that holds events back (the AI-context
        join's reorder buffer) releases them as time passes.
        """
        batch = self._poll(timeout)
        if batch is None:
            return False
        self._push(batch)
        return True

    def flush_stages(self) -> None:
        """Release what every holding stage still keeps, through the stages after it."""
        for i, stage in enumerate(self.stages):
            flush = getattr(stage, "flush", None)
            if flush is None:
                continue
            try:
                released = flush()
            except Exception as exc:
                self._fault(self._stage_errors, _name(stage), 1, "stage", exc)
                continue
            if released:
                self._push(released, i + 1)

    def request_stop(self) -> None:
        """Ask :meth:`run` to drain and return, waking the source's wait if it can be woken."""
        self.stop.set()
        wake = getattr(self.source, "wake", None)
        if callable(wake):
            wake()

    def drain(self, quiet_rounds: int = 3, max_s: float = 5.0) -> None:
        """Poll until the source holds nothing more, then flush the holding stages.

        A source with a watermark (``pending()``: the kernel ring and the SDK socket empty)
        is drained until it says so after an empty poll; one that cannot tell, until it
        yields nothing ``quiet_rounds`` times in a row. Never longer than ``max_s``.
        """
        pending = getattr(self.source, "pending", None)
        quiet, deadline = 0, time.monotonic() + max_s
        while quiet < quiet_rounds and time.monotonic() < deadline and self.failure is None:
            known = pending() if callable(pending) else None
            batch = self._poll(0.0 if known is not None else 0.02)
            if batch is None:
                break
            if batch:
                quiet = 0
                self._push(batch)
            elif known is False:
                break
            else:
                quiet += 1
        self.flush_stages()

    def run(self) -> None:
        """Consume until ``stop`` is set, then drain. Never raises: see :attr:`failure`."""
        try:
            while not self.stop.is_set():
                if not self.step(self.poll_interval):
                    break
            self.drain()
        except BaseException as exc:  # outside every guard: end the run, say why
            self.failure = f"pipeline stopped: {_reason(exc)}"

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
