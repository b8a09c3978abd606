"""Which alerts (and events) an output receives: a severity floor, rule tags, workload owners.

A :class:`Route` passes an alert when its severity is at least ``min_severity``, it carries
one of ``tags`` (any tag when none are given) and its workload's owner (the team or person
answerable for it, ``Container.owner``; on the alert ``workload.owner``) matches
one of ``owners`` (shell patterns, ``team-*``; any owner, or none, when none are given). An
event passes when its container's owner matches ``owners`` (severity and tags are alert
properties). :func:`routed` wraps an output so that only what passes reaches it, and counts
what was held back (``filtered``). Thread safety: that of the wrapped output.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runwatch.alerts.model import SEVERITY_ORDER, Alert
from runwatch.events import Event
from runwatch.outputs.base import AlertOutput, Output


@dataclass(frozen=True)
class Route:
    """The alerts an output takes (see the module docstring)."""

    min_severity: str = "info"
    tags: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.min_severity not in SEVERITY_ORDER:
            raise ValueError(f"unknown severity {self.min_severity!r} (one of {', '.join(SEVERITY_ORDER)})")

    @property
    def passes_all(self) -> bool:
        """Whether this route holds nothing back."""
        return self.min_severity == "info" and not self.tags and not self.owners

    def _owner_ok(self, owner: str | None) -> bool:
        return not self.owners or (owner is not None and any(fnmatch.fnmatchcase(owner, p) for p in self.owners))

    def alert(self, a: Alert) -> bool:
        """Whether alert ``a`` goes to the output."""
        if SEVERITY_ORDER.get(a.severity, 0) < SEVERITY_ORDER[self.min_severity]:
            return False
        if self.tags and not set(self.tags).intersection(a.tags):
            return False
        return self._owner_ok(a.workload.owner)

    def event(self, e: Event) -> bool:
        """Whether event ``e`` goes to the output (only ``owners`` applies to events)."""
        return self._owner_ok(e.container.owner if e.container is not None else None)


class _Routed:
    """What every routed output shares: the wrapped output, its route, the count held back."""

    def __init__(self, inner: Any, route: Route) -> None:
        self.inner, self.route = inner, route
        self.name: str = inner.name
        self.filtered = 0

    def open(self) -> None:
        """Open the wrapped output."""
        self.inner.open()

    def flush(self) -> object:
        """Flush the wrapped output."""
        return self.inner.flush()

    def close(self) -> None:
        """Close the wrapped output."""
        self.inner.close()

    def output_stats(self) -> dict[str, Any]:
        """The wrapped output's counters plus ``filtered`` (alerts and events held back)."""
        stats = getattr(self.inner, "output_stats", None)
        out: dict[str, Any] = dict(stats()) if callable(stats) else {}
        out["filtered"] = self.filtered
        return out


class _RoutedAlerts(_Routed):
    """An alert output behind a route."""

    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        """Hand on the alerts the route passes (order kept)."""
        kept = [a for a in alerts if self.route.alert(a)]
        self.filtered += len(alerts) - len(kept)
        if kept:
            self.inner.write_alerts(kept)


class _RoutedEvents(_Routed):
    """An event output behind a route (only ``owners`` applies)."""

    def write(self, events: Sequence[Event]) -> None:
        """Hand on the events the route passes (order kept)."""
        kept = [e for e in events if self.route.event(e)] if self.route.owners else list(events)
        self.filtered += len(events) - len(kept)
        if kept:
            self.inner.write(kept)


class _RoutedBoth(_RoutedAlerts, _RoutedEvents):
    """An output of events and alerts behind a route."""


def routed(output: Output | AlertOutput, route: Route | None) -> Output | AlertOutput:
    """``output`` behind ``route`` (itself when the route holds back nothing it receives)."""
    if route is None or route.passes_all:
        return output
    takes_alerts, takes_events = isinstance(output, AlertOutput), isinstance(output, Output)
    if takes_alerts and takes_events:
        return _RoutedBoth(output, route)
    if takes_alerts:
        return _RoutedAlerts(output, route)
    if takes_events and route.owners:
        return _RoutedEvents(output, route)
    return output
