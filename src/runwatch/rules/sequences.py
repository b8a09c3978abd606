"""Sequence matching: ordered steps within a time window, per key, with bounded state.

Per key the matcher keeps at most one partial match per number of steps reached: a partial
that started later dominates an older one with the same progress (it expires later and is
no less advanced), so state per key is at most ``len(steps) - 1`` partials. Keys are kept
in least-recently-used order and the oldest is evicted past ``max_keys``; evictions,
expiries and completions are counted.

A sequence with ``across: FIELD`` (:class:`AcrossMatcher`) completes only where the last
step's value of FIELD differs from the first step's (for example a secret read on one node and
egress of the same identity on another: ``by: [workload.spiffe_id]``, ``across: workload.node``).
Dominance then holds per first-step value: at most :data:`MAX_ACROSS_VALUES` partials per
number of steps reached, the oldest evicted (counted).

Contract: events arrive in time order per source. Not thread-safe: one matcher per engine.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from runwatch.events import Event
from runwatch.rules.fields import EvalCtx
from runwatch.rules.model import Sequence

_Partial = tuple[int, tuple[str, ...]]  # (start time ns, evidence event ids)


class SequenceMatcher:
    """State for one sequence; :meth:`feed` returns the evidence of a completed match."""

    __slots__ = (
        "_keys",
        "_last",
        "_n",
        "_steps",
        "_within",
        "completed",
        "evicted_keys",
        "evicted_partials",
        "expired",
        "max_keys",
        "seq",
        "started",
    )

    def __init__(self, seq: Sequence, max_keys: int = 10_000) -> None:
        self.seq = seq
        self.max_keys = max_keys
        self._steps = seq.steps
        self._n = len(seq.steps)
        self._within = seq.within_ns
        self._keys: OrderedDict[Any, list[_Partial | None]] = OrderedDict()
        self._last = self._n - 1
        self.started = 0
        self.completed = 0
        self.expired = 0
        self.evicted_keys = 0
        self.evicted_partials = 0

    def key_of(self, e: Event, c: EvalCtx) -> Any:
        """The first present ``by`` field as ``(field, value)``; None if the event has none."""
        for spec in self.seq.by:
            v = spec.get(e, c)
            if v is not None:
                return (spec.name, v)
        return None

    def feed(self, e: Event, c: EvalCtx) -> tuple[int, tuple[str, ...]] | None:
        """Advance this sequence with one event; ``(start_ns, evidence ids)`` when it completes."""
        if not self._keys and not self._steps[0](e, c):
            return None  # nothing in progress and no new start: the common case, no key needed
        key = self.key_of(e, c)
        if key is None:
            return None
        t = e.time
        steps = self._steps
        slots = self._keys.get(key)
        done: _Partial | None = None
        if slots is not None:
            self._keys.move_to_end(key)
            # Highest progress first, so a partial moves at most one step per event.
            for k in range(self._n - 2, -1, -1):
                p = slots[k]
                if p is None:
                    continue
                if t - p[0] > self._within:
                    slots[k] = None
                    self.expired += 1
                    continue
                if not steps[k + 1](e, c):
                    continue
                slots[k] = None
                moved = (p[0], (*p[1], e.id))
                if k + 1 == self._last:
                    if done is None or moved[0] < done[0]:
                        done = moved
                else:
                    q = slots[k + 1]
                    slots[k + 1] = moved if q is None or moved[0] >= q[0] else q
        if steps[0](e, c):
            if slots is None:
                if len(self._keys) >= self.max_keys:
                    _, old = self._keys.popitem(last=False)
                    self.evicted_keys += 1
                    self.evicted_partials += sum(1 for p in old if p is not None)
                slots = [None] * (self._n - 1)
                self._keys[key] = slots
            slots[0] = (t, (e.id,))
            self.started += 1
        if slots is not None and not any(slots):
            del self._keys[key]
        if done is not None:
            self.completed += 1
        return done

    def sweep(self, now_ns: int) -> None:
        """Drop partials that can no longer complete by ``now_ns`` (and keys left empty)."""
        empty = []
        for key, slots in self._keys.items():
            for k, p in enumerate(slots):
                if p is not None and now_ns - p[0] > self._within:
                    slots[k] = None
                    self.expired += 1
            if not any(slots):
                empty.append(key)
        for key in empty:
            del self._keys[key]

    def stats(self) -> dict[str, int]:
        """Counters and current state size."""
        return {
            "keys": len(self._keys),
            "partials": sum(1 for s in self._keys.values() for p in s if p is not None),
            "started": self.started,
            "completed": self.completed,
            "expired": self.expired,
            "evicted_keys": self.evicted_keys,
            "evicted_partials": self.evicted_partials,
        }


MAX_ACROSS_VALUES = 64
"""Distinct first-step values of the ``across`` field kept per key and progress."""


class AcrossMatcher(SequenceMatcher):
    """A :class:`SequenceMatcher` for a sequence with ``across``: see the module docstring."""

    __slots__ = ("_across", "_vkeys")

    def __init__(self, seq: Sequence, max_keys: int = 10_000) -> None:
        super().__init__(seq, max_keys)
        assert seq.across is not None
        self._across = seq.across
        # key -> per progress: first-step value -> partial (insertion order: oldest first)
        self._vkeys: OrderedDict[Any, list[dict[Any, _Partial]]] = OrderedDict()
        self._keys = self._vkeys  # type: ignore[assignment]  # counted by stats() and sweep()

    def feed(self, e: Event, c: EvalCtx) -> tuple[int, tuple[str, ...]] | None:
        """Advance with one event; ``(start_ns, evidence ids)`` when it completes across values."""
        if not self._vkeys and not self._steps[0](e, c):
            return None
        key = self.key_of(e, c)
        if key is None:
            return None
        value = self._across.get(e, c)
        t, steps = e.time, self._steps
        slots = self._vkeys.get(key)
        done: _Partial | None = None
        if slots is not None:
            self._vkeys.move_to_end(key)
            for k in range(self._n - 2, -1, -1):
                held = slots[k]
                for first, p in list(held.items()):
                    if t - p[0] > self._within:
                        del held[first]
                        self.expired += 1
                        continue
                    last = k + 1 == self._last
                    if not steps[k + 1](e, c) or (last and (value is None or value == first)):
                        continue
                    del held[first]
                    moved = (p[0], (*p[1], e.id))
                    if last:
                        if done is None or moved[0] < done[0]:
                            done = moved
                    else:
                        self._put(slots[k + 1], first, moved)
        if value is not None and steps[0](e, c):
            if slots is None:
                if len(self._vkeys) >= self.max_keys:
                    _, old = self._vkeys.popitem(last=False)
                    self.evicted_keys += 1
                    self.evicted_partials += sum(len(h) for h in old)
                slots = [{} for _ in range(self._n - 1)]
                self._vkeys[key] = slots
            self._put(slots[0], value, (t, (e.id,)))
            self.started += 1
        if slots is not None and not any(slots):
            del self._vkeys[key]
        if done is not None:
            self.completed += 1
        return done

    def _put(self, held: dict[Any, _Partial], first: Any, p: _Partial) -> None:
        """Keep ``p`` under ``first`` (a later start dominates); evict the oldest value past the bound."""
        q = held.pop(first, None)
        if q is not None and q[0] > p[0]:
            p = q
        if len(held) >= MAX_ACROSS_VALUES:
            del held[next(iter(held))]
            self.evicted_partials += 1
        held[first] = p

    def sweep(self, now_ns: int) -> None:
        """Drop partials that can no longer complete by ``now_ns`` (and keys left empty)."""
        empty = []
        for key, slots in self._vkeys.items():
            for held in slots:
                for first in [f for f, p in held.items() if now_ns - p[0] > self._within]:
                    del held[first]
                    self.expired += 1
            if not any(slots):
                empty.append(key)
        for key in empty:
            del self._vkeys[key]

    def stats(self) -> dict[str, int]:
        """Counters and current state size."""
        out = super().stats()
        out["partials"] = sum(len(h) for s in self._vkeys.values() for h in s)
        return out


def matcher_for(seq: Sequence, max_keys: int = 10_000) -> SequenceMatcher:
    """The matcher a sequence needs (:class:`AcrossMatcher` when it has ``across``)."""
    return AcrossMatcher(seq, max_keys) if seq.across is not None else SequenceMatcher(seq, max_keys)
