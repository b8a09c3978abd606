"""Several sources started, polled and stopped as one (kernel sensor, SDK collector, ...).

Lifecycle: members are added unstarted, in the order they must start; :meth:`MultiSource.start`
starts them in that order and :meth:`MultiSource.stop` stops every member that started, in
reverse, even if one fails. A member added as *optional* that cannot start is a notice (in
:attr:`MultiSource.notices`), not an error; a required member that cannot start stops those
already started and re-raises. Members cannot be added once the group has started.

Batches are concatenated in member order; events of different sources are not time
ordered relative to each other (stages that need order, such as the AI-context join, hold
and sort). ``poll(timeout)``: every running member is first polled without waiting; only if
none had anything does the first (primary) member wait for up to ``timeout``, then the
others are polled once more without waiting. So a secondary's events wait at most one
``timeout`` behind a quiet primary.

A source whose ``poll`` returns ``None`` has ended and is not polled again; the merged
source ends when all have (after ``stop`` too, members still hand out what they held).
Thread safety: ``start``/``stop`` from the owning thread, ``poll`` from one consumer thread,
``stats`` from any.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from runwatch.events import Event
from runwatch.sensors.base import Source


class MultiSource:
    """Merges ``sources`` into one :class:`~runwatch.sensors.base.Source` named ``name``.

    ``optional`` maps member names to the words naming them in a notice when they cannot
    start (for example ``{"sdk": "agent SDK collector on /run/runwatch/sdk.sock"}``).
    """

    def __init__(self, sources: Sequence[Source] = (), name: str | None = None, *,
                 optional: dict[str, str] | None = None) -> None:
        self.sources: list[Source] = []
        self._optional: dict[str, str] = {}
        self._fixed_name = name
        self._active: list[Source] = []
        self._started: list[Source] = []
        self._running = False
        self.notices: list[str] = []
        for src in sources:
            self.add(src, optional=(optional or {}).get(src.name))

    def add(self, source: Source, *, optional: str | None = None) -> None:
        """Append an unstarted member; ``optional``: how a notice names it if it cannot start."""
        if self._running:
            raise RuntimeError(f"cannot add source {source.name!r}: the group has started")
        if any(s.name == source.name for s in self.sources):
            raise ValueError(f"MultiSource sources must have distinct names, got {source.name!r} twice")
        self.sources.append(source)
        if optional is not None:
            self._optional[source.name] = optional

    @property
    def name(self) -> str:
        """The given name, else the running members' names joined by ``+`` (all members before start)."""
        if self._fixed_name is not None:
            return self._fixed_name
        members = self._started if self._running else self.sources
        return "+".join(s.name for s in members)

    @property
    def running(self) -> list[Source]:
        """Members that started (in start order)."""
        return list(self._started)

    def start(self) -> None:
        """Start every member in order (see the module docstring for optional members)."""
        if not self.sources:
            raise ValueError("MultiSource needs at least one source")
        self._running = True
        for src in self.sources:
            try:
                src.start()
            except BaseException as exc:
                label = self._optional.get(src.name)
                if label is not None and isinstance(exc, (OSError, RuntimeError)):
                    self._stop_one(src)
                    self.notices.append(f"{label} not started: {exc}")
                    continue
                self._stop_one(src)
                self.stop()
                raise
            self._started.append(src)
        self._active = list(self._started)

    @staticmethod
    def _stop_one(src: Source) -> None:
        with contextlib.suppress(Exception):  # the start error is the one to report
            src.stop()  # a source that failed to start releases what it took

    def _poll_each(self, out: list[Event], sources: Sequence[Source], timeout: float) -> None:
        for src in sources:
            batch = src.poll(timeout)
            if batch is None:
                if src in self._active:
                    self._active.remove(src)
            elif batch:
                out.extend(batch)

    def pending(self) -> bool | None:
        """Whether a running member holds input not yet polled; None when one cannot tell."""
        answers = []
        for src in self._active:
            pending = getattr(src, "pending", None)
            if not callable(pending):
                return None
            answers.append(pending())
        return None if None in answers else any(answers)

    def wake(self) -> None:
        """End the current poll's wait now (members that can be woken; from another thread)."""
        for src in list(self._active):
            wake = getattr(src, "wake", None)
            if callable(wake):
                wake()

    def poll(self, timeout: float) -> list[Event] | None:
        """Merged batch (possibly empty); None once every member has ended."""
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
        """Stop every started member (in reverse order), even if one fails; re-raise the first error."""
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
        """Each member's counters prefixed by its name, plus summed ``events`` and ``drops``."""
        out: dict[str, int] = {"events": 0, "drops": 0}
        for src in self.sources:
            for key, value in src.stats().items():
                out[f"{src.name}.{key}"] = value
                if key in ("events", "drops"):
                    out[key] += value
        return out

    def track(self, pid: int) -> None:
        """Forward to every running member that can follow a process subtree (the kernel sensor)."""
        for src in self._started:
            fn = getattr(src, "track", None)
            if fn is not None:
                fn(pid)

    def untrack(self, pid: int) -> None:
        """Forward to every running member that has ``untrack``."""
        for src in self._started:
            fn = getattr(src, "untrack", None)
            if fn is not None:
                fn(pid)

    def source(self, name: str) -> Source:
        """The member source called ``name`` (KeyError if none)."""
        for src in self.sources:
            if src.name == name:
                return src
        raise KeyError(f"no source {name!r} in {self.name}")
