"""Replay of raw recordings: events exactly as the sources emitted them, before enrichment.

A raw recording is JSONL (optionally gzip-compressed), one :class:`Event` per line as
:func:`runwatch.events.to_json` writes it, in the order the sources' batches left them: kernel
records as decoded from the ring buffer (with ``cgroup.mkdir`` records still in), SDK and audit
messages as the collector parsed them. Replaying one through the enrichment stage and the
tool-call join exercises attribution and the join without a kernel
(:mod:`runwatch.testing.replay` builds those stages so they read nothing of this host).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from pathlib import Path

import msgspec

from runwatch.events import Event, from_json, to_json
from runwatch.sensors.base import register_source


class ReplayError(ValueError):
    """A recording line that is not an event; the message is ``path:line: reason``."""


def read_recording(path: str | Path) -> list[Event]:
    """Every event of a raw recording (``.gz`` is decompressed); raises :class:`ReplayError`."""
    p = Path(path)
    try:
        data = p.read_bytes()
        if p.suffix == ".gz":
            data = gzip.decompress(data)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ReplayError(f"{p}: cannot read recording: {exc}") from None
    events: list[Event] = []
    for lineno, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            events.append(from_json(line))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ReplayError(f"{p}:{lineno}: not an event: {exc}") from None
    return events


def write_recording(path: str | Path, events: Iterable[Event]) -> int:
    """Write ``events`` as a raw recording (gzip when the name ends in ``.gz``); returns the count."""
    p = Path(path)
    lines = [to_json(e) + b"\n" for e in events]
    data = b"".join(lines)
    p.write_bytes(gzip.compress(data, mtime=0) if p.suffix == ".gz" else data)
    return len(lines)


class ReplaySource:
    """A :class:`runwatch.sensors.base.Source` that hands out a raw recording's events.

    ``batch`` events per :meth:`poll` (the recording's order is kept); ``poll`` returns
    ``None`` once everything was handed out. :meth:`clock` is the time of the last event
    handed out (nanoseconds, the events' clock), for stages that hold events by age.
    Thread safety: one thread.
    """

    name = "replay"

    def __init__(self, path: str | Path | None = None, *, events: Iterable[Event] | None = None,
                 batch: int = 64) -> None:
        if (path is None) == (events is None):
            raise ValueError("ReplaySource needs exactly one of path or events")
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        self.path = None if path is None else Path(path)
        self._given = None if events is None else list(events)
        self.batch = batch
        self._events: list[Event] = []
        self._pos = 0
        self._now = 0
        self._started = False

    def start(self) -> None:
        """Read the recording (raises :class:`ReplayError` for a bad line)."""
        if self._given is not None:
            self._events = list(self._given)
        else:
            assert self.path is not None
            self._events = read_recording(self.path)
        self._pos, self._started = 0, True

    def poll(self, timeout: float) -> list[Event] | None:
        """The next batch, immediately (``timeout`` is not waited); ``None`` at the end."""
        if not self._started or self._pos >= len(self._events):
            return None
        out = self._events[self._pos:self._pos + self.batch]
        self._pos += len(out)
        self._now = max(self._now, max(e.time for e in out))
        return out

    def clock(self) -> int:
        """Time (ns) of the latest event handed out so far; 0 before the first."""
        return self._now

    def stats(self) -> dict[str, int]:
        """``events`` handed out and ``total`` in the recording."""
        return {"events": self._pos, "total": len(self._events)}

    def stop(self) -> None:
        """Forget the recording; idempotent."""
        self._events, self._pos, self._started = [], 0, False


register_source("replay", ReplaySource)
