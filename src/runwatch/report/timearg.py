"""Time arguments of ``runwatch report``: nanoseconds since the epoch, ISO-8601, or relative.

``1733338800000000000`` (ns epoch), ``2026-12-04T20:00:00Z`` / ``2026-12-04 20:00`` (ISO-8601;
no zone means UTC), ``15m`` / ``2h`` / ``90s`` / ``1d`` / ``1w`` (that long before now), or
``now``. Anything else is a :class:`TimeArgError` with one line saying what is accepted.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from runwatch.config.values import UNIT_NS

_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
ACCEPTED = "nanoseconds since the epoch, ISO-8601 (2026-12-04T20:00:00Z) or relative (90s, 15m, 2h, 1d, 1w)"


class TimeArgError(ValueError):
    """A time argument that is none of the accepted forms; the message is one line."""


def relative_ns(text: str) -> int | None:
    """The length of a relative form (``15m``, ``2h``, ...) in nanoseconds; None for any other text."""
    m = _RELATIVE.fullmatch(text.strip())
    return None if m is None else int(float(m.group(1)) * UNIT_NS[m.group(2)])


def parse_time(text: str, now_ns: int | None = None) -> int:
    """``text`` as nanoseconds since the epoch (relative forms count back from ``now_ns``)."""
    now = time.time_ns() if now_ns is None else now_ns
    s = text.strip()
    if s == "now":
        return now
    if s.isdigit():
        return int(s)
    back = relative_ns(s)
    if back is not None:
        return now - back
    iso = s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        raise TimeArgError(f"cannot read time {text!r}: give {ACCEPTED}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def iso(t_ns: int) -> str:
    """``t_ns`` as ISO-8601 UTC with milliseconds (``2026-12-04T20:00:00.123Z``)."""
    when = datetime.fromtimestamp(t_ns // 10**9, tz=UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{(t_ns % 10**9) // 10**6:03d}Z"
