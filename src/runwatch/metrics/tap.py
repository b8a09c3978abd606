"""The metrics tap: the counts ``/metrics`` needs that no other part of the session keeps.

:class:`MetricsTap` is an event output and an alert output (the session adds it last, so it
sees each batch as every other output does). Per event batch it does one C-level pass (kinds
and sources counted) and, only for a batch holding ``policy.decision`` events, one pass over
that batch for their verdicts. The lag is taken from the batch's first and last events alone
(their mean lag stands for every event of the batch). Alerts are few: each is counted by rule
and severity.

Thread safety: ``write``/``write_alerts`` from the pipeline thread; :meth:`MetricsTap.snapshot`
from the scrape thread (it copies the tables; a copy that races a new key is retried).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TypeVar

from runwatch.alerts.model import Alert
from runwatch.events import Event

_KIND_SOURCE = attrgetter("kind", "source")
_DECISION = "policy.decision"

K = TypeVar("K")


def copy_table(table: dict[K, int]) -> dict[K, int]:
    """A copy of ``table`` made while another thread may add keys to it."""
    for _ in range(16):
        try:
            return dict(table)
        except RuntimeError:  # changed size during the copy
            continue
    return {}


@dataclass
class TapSnapshot:
    """What the tap has counted, at one instant."""

    events: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, source) -> events
    decisions: dict[tuple[str, str], int] = field(default_factory=dict)  # (verdict, layer) -> decisions
    alerts: dict[tuple[str, str], int] = field(default_factory=dict)  # (rule, severity) -> alerts
    alert_matches: dict[tuple[str, str], int] = field(default_factory=dict)  # the matches they stand for
    lag_sum_ns: int = 0  # over every event: processing time minus event time (see the module docstring)
    lag_count: int = 0
    lag_last_max_ns: int = 0  # of the last batch: the larger of its first and last event's lag


class MetricsTap:
    """Counts events, decisions, alerts and pipeline lag for the metrics collector."""

    name = "metrics"

    def __init__(self) -> None:
        self._events: Counter[tuple[str, str]] = Counter()
        self._decisions: Counter[tuple[str, str]] = Counter()
        self._alerts: Counter[tuple[str, str]] = Counter()
        self._matches: Counter[tuple[str, str]] = Counter()
        self._lag_sum = 0
        self._lag_count = 0
        self._lag_last_max = 0

    def open(self) -> None:
        """Nothing to open."""

    def write(self, events: Sequence[Event]) -> None:
        """Count the batch (see the module docstring)."""
        if not events:
            return
        now = time.time_ns()
        batch = Counter(map(_KIND_SOURCE, events))
        self._events.update(batch)
        if any(kind == _DECISION for kind, _source in batch):
            self._decisions.update((d.verdict, d.layer or "") for e in events
                                   if e.kind == _DECISION and (d := e.decision) is not None)
        n, first, last = len(events), events[0].time, events[-1].time
        self._lag_sum += n * now - (n * (first + last)) // 2
        self._lag_count += n
        self._lag_last_max = now - min(first, last)

    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        """Count each alert by rule and severity (and the matches a throttled one stands for)."""
        for a in alerts:
            key = (a.rule, a.severity)
            self._alerts[key] += 1
            self._matches[key] += a.count

    def snapshot(self) -> TapSnapshot:
        """A copy of every count (safe from another thread)."""
        return TapSnapshot(events=copy_table(self._events), decisions=copy_table(self._decisions),
                           alerts=copy_table(self._alerts), alert_matches=copy_table(self._matches),
                           lag_sum_ns=self._lag_sum, lag_count=self._lag_count, lag_last_max_ns=self._lag_last_max)

    def flush(self) -> None:
        """Nothing is buffered."""

    def close(self) -> None:
        """Nothing to release."""
