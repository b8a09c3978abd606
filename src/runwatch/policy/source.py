"""Decision events into the pipeline: a bounded bus and the ``policy`` source draining it.

Every decider (request-time :class:`~runwatch.policy.decide.Decider`, kernel enforcers)
calls :func:`record_decision` with a finished ``policy.decision`` :class:`Event`; the
session polls :class:`DecisionSource` alongside its other sources, so decisions are
enriched, matched by rules and stored like every event.

Contract: :meth:`DecisionBus.put` never blocks and never raises; when ``capacity`` events
wait undrained (no session, or a stalled one) new events are dropped and counted
(``stats()["drops"]``). Order: events leave in the order they were put.
Thread safety: ``put`` from any thread; ``drain``/``poll`` from the pipeline thread.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from typing import TYPE_CHECKING

from runwatch.events import AiInfo, Container, DecisionInfo, Event, ToolCall, new_id
from runwatch.sensors.base import register_source

if TYPE_CHECKING:
    from runwatch.policy.challenges import ChallengeBook


class DecisionBus:
    """A bounded FIFO of decision events with a drop counter."""

    def __init__(self, capacity: int = 65536) -> None:
        self.capacity = capacity
        self._q: collections.deque[Event] = collections.deque()
        self._wake = threading.Event()
        # Counters are itertools.count objects: next() is atomic under the GIL.
        self._put = itertools.count()
        self._drops = itertools.count()
        self._put_n = 0
        self._drop_n = 0

    def put(self, event: Event) -> None:
        """Queue one event (dropped and counted when the bus is full)."""
        if len(self._q) >= self.capacity:
            self._drop_n = next(self._drops) + 1
            return
        self._q.append(event)
        self._put_n = next(self._put) + 1
        self._wake.set()

    def drain(self, timeout: float = 0.0) -> list[Event]:
        """Everything queued, waiting up to ``timeout`` s for the first event."""
        if not self._q and timeout > 0:
            self._wake.wait(timeout)
        self._wake.clear()
        out: list[Event] = []
        q = self._q
        while q:
            out.append(q.popleft())
        return out

    def stats(self) -> dict[str, int]:
        """``recorded`` (accepted), ``drops`` and ``queued``."""
        return {"recorded": self._put_n, "drops": self._drop_n, "queued": len(self._q)}


#: The process-wide bus every decider writes to unless given another.
BUS = DecisionBus()


def record_decision(event: Event) -> None:
    """Hand a finished ``policy.decision`` event to the pipeline (via :data:`BUS`). Never blocks."""
    BUS.put(event)


def decision_event(*, policy: str, verdict: str, rule: str | None, reason: str | None, latency_ns: int | None,
                   mode: str | None, target: str | None, layer: str, pid: int = 0, exe: str = "",
                   container: Container | None = None, tool_call: ToolCall | None = None,
                   challenge_id: str | None = None, attrs: dict[str, object] | None = None,
                   ai: AiInfo | None = None, time_ns: int | None = None) -> Event:
    """Build a ``policy.decision`` event (``time_ns``: epoch ns, default now)."""
    t = time.time_ns() if time_ns is None else time_ns
    return Event(
        id=new_id(t), time=t, kind="policy.decision", source="policy", pid=pid, exe=exe,
        container=container, tool_call=tool_call,
        decision=DecisionInfo(policy=policy, verdict=verdict, rule=rule, reason=reason, latency_ns=latency_ns,
                              mode=mode, target=target, layer=layer, challenge_id=challenge_id),
        attrs=attrs or None, ai=ai,
    )


class DecisionSource:
    """The ``policy`` source: drains a :class:`DecisionBus` each poll (and applies challenge
    timeouts of ``challenges`` so a timed-out challenge is recorded even if nobody waits)."""

    name = "policy"

    def __init__(self, bus: DecisionBus | None = None, challenges: ChallengeBook | None = None) -> None:
        self.bus = bus if bus is not None else BUS
        self.challenges = challenges
        self._events = 0
        self._stopped = False

    def start(self) -> None:
        """Nothing to open: deciders write to the bus whether or not a source drains it."""
        self._stopped = False

    def poll(self, timeout: float) -> list[Event] | None:
        """Queued decision events (possibly empty); None after :meth:`stop` once the bus is empty."""
        if self.challenges is not None:
            self.challenges.expire_due()
        batch = self.bus.drain(timeout)
        self._events += len(batch)
        if self._stopped and not batch:
            return None
        return batch

    def stop(self) -> None:
        """Stop; a later poll still returns what is queued, then None."""
        self._stopped = True

    def stats(self) -> dict[str, int]:
        """``events`` drained, plus the bus's ``recorded``, ``drops`` and ``queued``."""
        return {"events": self._events, **self.bus.stats()}


register_source("policy", DecisionSource)
