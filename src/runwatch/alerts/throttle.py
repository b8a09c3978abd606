"""Dedupe and throttle alerts per (rule, workload, process) so a noisy rule cannot flood a team.

The key is :attr:`Alert.fold_key`: rule, workload (container id, or ``host``) and the
process's executable, so two programs of one workload (or two host programs) never fold into
one alert. The first alert of a key is emitted at once. Further alerts of that key within
``window`` of the last emitted one are suppressed and counted; the next alert after the
window (or :meth:`Throttle.flush_due` / :meth:`Throttle.flush`) carries the suppressed count
in ``count``, the time of the first suppressed match in ``first_time``, the evidence ids of
the suppressed matches before its own (at most :data:`MAX_EVIDENCE`, the rest counted in
``evidence_dropped``) and the distinct tool names of all of them in ``tools``. Times are the
alerts' own (event) times, so replay gives the same result as live.

Thread safety: none; one throttle is driven by one thread (the detection stage).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import msgspec

from runwatch.alerts.model import Alert

MAX_EVIDENCE = 16
"""Most evidence ids one folded alert keeps (the first ones; the rest are counted)."""


@dataclass(slots=True)
class _Slot:
    emitted_at: int  # ns, time of the last emitted alert for the key
    suppressed: int = 0
    first_suppressed: int = 0
    last: Alert | None = None  # the latest suppressed alert (carried by the summary)
    evidence: list[str] = field(default_factory=list)  # of the suppressed alerts, bounded
    dropped: int = 0  # evidence ids of suppressed alerts left out
    tools: set[str] = field(default_factory=set)

    def take(self, alert: Alert) -> None:
        """Fold a suppressed alert in."""
        if not self.suppressed:
            self.first_suppressed = alert.first_time or alert.time
        self.suppressed += alert.count
        self.last = alert
        room = MAX_EVIDENCE - len(self.evidence)
        self.evidence.extend(alert.evidence[:room])
        self.dropped += max(0, len(alert.evidence) - room) + alert.evidence_dropped
        self.tools.update(alert.tools)

    def carry(self, alert: Alert, count: int) -> Alert:
        """``alert`` standing also for what this slot holds; the slot is emptied."""
        evidence = (self.evidence + alert.evidence)[:MAX_EVIDENCE]
        dropped = self.dropped + alert.evidence_dropped + len(self.evidence) + len(alert.evidence) - len(evidence)
        out = msgspec.structs.replace(alert, count=count, first_time=self.first_suppressed, evidence=evidence,
                                      evidence_dropped=dropped, tools=sorted(self.tools.union(alert.tools)))
        self.suppressed, self.first_suppressed, self.last, self.dropped = 0, 0, None, 0
        self.evidence, self.tools = [], set()
        return out


class Throttle:
    """Per-(rule, workload, process) throttling with counted suppression and bounded state.

    ``window_s`` is seconds; ``max_keys`` bounds the state (least recently used key goes
    first, its pending summary emitted rather than lost).
    """

    def __init__(self, window_s: float = 60.0, max_keys: int = 10_000) -> None:
        if window_s < 0 or max_keys < 1:
            raise ValueError("throttle window must be >= 0 and max_keys >= 1")
        self.window_ns = int(window_s * 1_000_000_000)
        self.max_keys = max_keys
        self._slots: OrderedDict[tuple[str, str, str], _Slot] = OrderedDict()
        self.offered = 0
        self.emitted = 0
        self.suppressed = 0
        self.summaries = 0
        self.evicted_keys = 0

    @staticmethod
    def _summary(slot: _Slot) -> Alert:
        last = slot.last
        if last is None:
            raise RuntimeError("a throttle summary needs a suppressed alert")
        # The summary is the last suppressed alert standing for all of them (its own
        # evidence is already in the slot).
        bare = msgspec.structs.replace(last, evidence=[], evidence_dropped=0, tools=[])
        return slot.carry(bare, slot.suppressed)

    def offer(self, alert: Alert) -> list[Alert]:
        """Alerts to emit now for this one: ``[]`` (suppressed), ``[alert]``, or with an evicted summary."""
        self.offered += 1
        key = alert.fold_key
        slot = self._slots.get(key)
        out: list[Alert] = []
        if slot is None:
            if len(self._slots) >= self.max_keys:
                _, old = self._slots.popitem(last=False)
                self.evicted_keys += 1
                if old.suppressed:
                    out.append(self._summary(old))
                    self.summaries += 1
            self._slots[key] = _Slot(alert.time)
            self.emitted += 1
            out.append(alert)
            return out
        self._slots.move_to_end(key)
        if alert.time - slot.emitted_at >= self.window_ns:
            if slot.suppressed:
                alert = slot.carry(alert, alert.count + slot.suppressed)
            slot.emitted_at = alert.time
            self.emitted += 1
            out.append(alert)
            return out
        slot.take(alert)
        self.suppressed += 1
        return out

    def flush_due(self, now_ns: int) -> list[Alert]:
        """Summaries for keys whose window has passed by ``now_ns`` (pending counts only)."""
        out: list[Alert] = []
        for slot in self._slots.values():
            if slot.suppressed and now_ns - slot.emitted_at >= self.window_ns:
                slot.emitted_at = slot.last.time if slot.last is not None else now_ns
                out.append(self._summary(slot))
        self.summaries += len(out)
        return out

    def flush(self) -> list[Alert]:
        """Every pending summary (at shutdown)."""
        out = [self._summary(s) for s in self._slots.values() if s.suppressed]
        self.summaries += len(out)
        return out

    def stats(self) -> dict[str, int]:
        """Counters: offered, emitted, suppressed, summaries, keys, evicted_keys."""
        return {
            "offered": self.offered,
            "emitted": self.emitted,
            "suppressed": self.suppressed,
            "summaries": self.summaries,
            "keys": len(self._slots),
            "evicted_keys": self.evicted_keys,
        }
