"""The first of several alternative sources that can start (the eBPF sensor, else the proc connector).

:class:`FirstAvailable` holds unstarted candidates; :meth:`FirstAvailable.start` starts them in
order and keeps the first that starts, remembering why each earlier one could not. It then
behaves as that source (name, poll, stats, track). A candidate may also be passed over
without trying (``skip``: for example not running as root).

Thread safety: as for any source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runwatch.events import Event
from runwatch.sensors.base import Source


class NoSourceError(RuntimeError):
    """None of the alternatives can run here (the message lists every reason)."""


@dataclass(frozen=True)
class Candidate:
    """One alternative (unstarted) and, if it must not be tried, why not."""

    label: str  # how reasons name it, e.g. "eBPF sensor"
    source: Source
    skip: str | None = None


class FirstAvailable:
    """Acts as the first candidate that starts; raises :class:`NoSourceError` if none does."""

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        if not candidates:
            raise ValueError("FirstAvailable needs at least one candidate")
        self.candidates = list(candidates)
        self.chosen: Source | None = None
        self.reasons: list[str] = []  # "label: why", for each candidate passed over

    @property
    def name(self) -> str:
        """The chosen source's name (``a|b`` before start)."""
        if self.chosen is not None:
            return self.chosen.name
        return "|".join(c.label for c in self.candidates)

    def prepare(self) -> None:
        """Let the first candidate not skipped begin its slow part of start (if it has one)."""
        for cand in self.candidates:
            if cand.skip is None:
                prepare = getattr(cand.source, "prepare", None)
                if callable(prepare):
                    prepare()
                return

    def start(self) -> None:
        """Start the first candidate that can; see the module docstring."""
        for cand in self.candidates:
            if cand.skip is not None:
                self.reasons.append(f"{cand.label}: {cand.skip}")
                continue
            src = cand.source
            try:
                src.start()
            except (OSError, RuntimeError) as exc:
                self.reasons.append(f"{cand.label}: {exc}")
                continue
            self.chosen = src
            return
        if len(self.candidates) == 1:
            raise NoSourceError("; ".join(self.reasons))
        raise NoSourceError("no event source can run here: " + "; ".join(self.reasons))

    def pending(self) -> bool | None:
        """The chosen source's watermark (None: it cannot tell, or nothing was chosen)."""
        pending = getattr(self.chosen, "pending", None)
        return pending() if callable(pending) else None

    def wake(self) -> None:
        """Wake the chosen source's poll, if it can be woken."""
        wake = getattr(self.chosen, "wake", None)
        if callable(wake):
            wake()

    def poll(self, timeout: float) -> list[Event] | None:
        """The chosen source's batch (None before start)."""
        return self.chosen.poll(timeout) if self.chosen is not None else None

    def stop(self) -> None:
        """Stop the chosen source, and every candidate passed over (one prepared releases what
        it loaded); idempotent."""
        for cand in self.candidates:
            if cand.skip is None:
                cand.source.stop()

    def stats(self) -> dict[str, int]:
        """The chosen source's counters."""
        return self.chosen.stats() if self.chosen is not None else {"events": 0, "drops": 0}

    def track(self, pid: int) -> None:
        """Forward to the chosen source if it can follow a subtree."""
        fn = getattr(self.chosen, "track", None)
        if fn is not None:
            fn(pid)

    def untrack(self, pid: int) -> None:
        """Forward to the chosen source if it has ``untrack``."""
        fn = getattr(self.chosen, "untrack", None)
        if fn is not None:
            fn(pid)
