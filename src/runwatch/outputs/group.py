"""The session's outputs as one group: opened in declared order, closed in reverse.

:class:`OutputGroup` is itself an :class:`~runwatch.outputs.base.Output` and an
:class:`~runwatch.outputs.base.AlertOutput`: events go to every member that takes events and
alerts to every member that takes alerts, in declared order. An event output that raises
stops the batch; the session therefore hands the pipeline :attr:`OutputGroup.event_outputs`
as separate sinks, so a failing one loses that batch alone (counted per output, as for any
sink) while the others keep every event. An alert output that raises is
recorded in :attr:`OutputGroup.errors` and does not stop the others (one failing alert
destination must not hide an alert from the rest). ``flush`` and ``close`` always reach every
member; their errors are recorded, one line each.

Thread safety: ``write``/``write_alerts`` from the pipeline thread; ``open``/``close`` from
the owner, before and after it runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from runwatch.alerts.model import Alert
from runwatch.events import Event
from runwatch.outputs.base import AlertOutput, Output

Member = Output | AlertOutput


class OutputGroup:
    """``members`` (event and/or alert outputs) with one ordered lifecycle."""

    name = "outputs"

    def __init__(self, members: Sequence[Member] = ()) -> None:
        self.members: list[Member] = []
        self._events: list[Output] = []
        self._alerts: list[AlertOutput] = []
        self._opened: list[Member] = []
        self.errors: list[str] = []
        self.alerts_written = 0
        for m in members:
            self.add(m)

    def add(self, member: Member) -> None:
        """Append a member (before :meth:`open`); it must take events, alerts, or both."""
        if self._opened:
            raise RuntimeError(f"cannot add output {member.name!r}: the group is open")
        takes_events, takes_alerts = isinstance(member, Output), isinstance(member, AlertOutput)
        if not (takes_events or takes_alerts):
            raise TypeError(f"{type(member).__name__} is neither an Output nor an AlertOutput")
        self.members.append(member)
        if takes_events:
            self._events.append(member)  # type: ignore[arg-type]
        if takes_alerts:
            self._alerts.append(member)  # type: ignore[arg-type]

    @property
    def event_outputs(self) -> list[Output]:
        """The members that take events, in declared order (the pipeline's sinks)."""
        return list(self._events)

    @property
    def takes_alerts(self) -> bool:
        """Whether any member takes alerts."""
        return bool(self._alerts)

    def open(self) -> None:
        """Open every member in order; if one fails, close those opened (reverse) and re-raise."""
        for m in self.members:
            try:
                m.open()
            except BaseException:
                self.close()
                raise
            self._opened.append(m)

    def write(self, events: Sequence[Event]) -> None:
        """Hand the batch to every event output, in order."""
        for m in self._events:
            m.write(events)

    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        """Hand the alerts to every alert output, in order; see the module docstring for errors."""
        if not alerts:
            return
        self.alerts_written += len(alerts)
        for m in self._alerts:
            try:
                m.write_alerts(alerts)
            except Exception as exc:
                self.errors.append(f"{type(m).__name__}: {exc}")

    def flush(self) -> None:
        """Flush every opened member."""
        for m in self._opened:
            try:
                m.flush()
            except Exception as exc:
                self.errors.append(f"flushing {type(m).__name__}: {exc}")

    def close(self) -> None:
        """Close every opened member in reverse order; idempotent."""
        opened, self._opened = self._opened, []
        for m in reversed(opened):
            try:
                m.close()
            except Exception as exc:
                self.errors.append(f"closing {type(m).__name__}: {exc}")
