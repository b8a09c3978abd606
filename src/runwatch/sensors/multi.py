"""Several sources polled as one (for example the kernel sensor and the SDK collector).

Batches are concatenated in source order; events of different sources are not time
ordered relative to each other (stages that need order, such as the AI-context join, hold
and sort). ``poll(timeout)``: every source is first polled without waiting; only if
none had anything does the first (primary) source wait for up to ``timeout``, then the
others are polled once more without waiting. So a secondary's events wait at most one
``timeout`` behind a quiet primary.

A source whose ``poll`` returns ``None`` has ended and is not polled again; the merged
source ends when all have. Thread safety: as for any source, ``poll`` from one thread.
"""

from __future__ import annotations

from collections.abc import Sequence

from runwatch.events import Event
from runwatch.sensors.base import Source


class MultiSource:
    """Merges ``sources`` into one :class:`~runwatch.sensors.base.Source` named ``name``."""

    def __init__(self, sources: Sequence[Source], name: str | None = None) -> None:
        if not sources:
            raise ValueError("MultiSource needs at least one source")
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ValueError(f"MultiSource sources must have distinct names, got {names}")
        self.sources = list(sources)
        self.name = name if name is not None else "+".join(names)
        self._active = list(self.sources)
        self._started: list[Source] = []

    def start(self) -> None:
        """Start every source in order; if one fails, stop those already started and re-raise."""
        for src in self.sources:
            try:
                src.start()
            except BaseException:
                self.stop()
                raise
            self._started.append(src)

    def _poll_each(self, out: list[Event], sources: Sequence[Source], timeout: float) -> None:
        for src in sources:
            batch = src.poll(timeout)
            if batch is None:
                if src in self._active:
                    self._active.remove(src)
            elif batch:
                out.extend(batch)

    def poll(self, timeout: float) -> list[Event] | None:
        """Merged batch (possibly empty); None once every source has ended."""
        if not self._active:
            return None
        out: list[Event] = []
        self._poll_each(out, list(self._active), 0.0)
        if not out and self._active:
            first, rest = self._active[0], self._active[1:]
            self._poll_each(out, [first], timeout)
            self._poll_each(out, rest, 0.0)
        if not out and not self._active:
            return None
        return out

    def stop(self) -> None:
        """Stop every started source (in reverse order), even if one fails; re-raise the first error."""
        first: BaseException | None = None
        for src in reversed(self._started):
            try:
                src.stop()
            except BaseException as exc:
                first = first or exc
        self._started = []
        if first is not None:
            raise first

    def stats(self) -> dict[str, int]:
        """Each source's counters prefixed by its name, plus summed ``events`` and ``drops``."""
        out: dict[str, int] = {"events": 0, "drops": 0}
        for src in self.sources:
            for key, value in src.stats().items():
                out[f"{src.name}.{key}"] = value
                if key in ("events", "drops"):
                    out[key] += value
        return out

    def track(self, pid: int) -> None:
        """Forward to every member source that can follow a process subtree (the kernel sensor)."""
        for src in self.sources:
            fn = getattr(src, "track", None)
            if fn is not None:
                fn(pid)

    def untrack(self, pid: int) -> None:
        """Forward to every member source that has ``untrack``."""
        for src in self.sources:
            fn = getattr(src, "untrack", None)
            if fn is not None:
                fn(pid)

    def source(self, name: str) -> Source:
        """The member source called ``name`` (KeyError if none)."""
        for src in self.sources:
            if src.name == name:
                return src
        raise KeyError(f"no source {name!r} in {self.name}")
