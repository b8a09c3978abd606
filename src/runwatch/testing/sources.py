"""Polling a source until it has nothing more to give."""

from __future__ import annotations

from runwatch.events import Event
from runwatch.sensors.base import Source


def drain(source: Source, timeout: float = 0.0) -> list[Event]:
    """Every event ``source`` yields, polling with ``timeout`` until a poll returns none."""
    out: list[Event] = []
    while batch := source.poll(timeout):
        out.extend(batch)
    return out
