"""Times and durations on the command line: ``--since``/``--until`` and retention ages.

A time is nanoseconds since the epoch (digits only), ISO-8601 (``2026-12-04T20:15:00Z``; an
offset-less time is UTC), or a duration before now (``15m``, ``2h``, ``7d``). A duration is a
number and a unit: ``ns``, ``us``, ``ms``, ``s``, ``m``, ``h``, ``d`` or ``w``.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

import click

_UNITS_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9,
             "d": 86400 * 10**9, "w": 7 * 86400 * 10**9}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h|d|w)")


def parse_duration(value: str) -> int:
    """``value`` (e.g. ``15m``) in nanoseconds; ValueError with a one-line reason."""
    m = _DURATION.fullmatch(value.strip())
    if m is None:
        raise ValueError(f"{value!r} is not a duration (a number and one of {', '.join(_UNITS_NS)}, e.g. 15m, 7d)")
    return int(float(m.group(1)) * _UNITS_NS[m.group(2)])


def parse_time(value: str, now_ns: int | None = None) -> int:
    """``value`` as nanoseconds since the epoch (see the module); ValueError with a reason."""
    text = value.strip()
    if text.isdigit():
        return int(text)
    if _DURATION.fullmatch(text):
        return (time.time_ns() if now_ns is None else now_ns) - parse_duration(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value!r} is not a time (ns since the epoch, ISO-8601 such as 2026-12-04T20:15:00Z, "
                         "or a duration before now such as 15m or 2h)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000


class TimeParam(click.ParamType[int]):
    """A click parameter for :func:`parse_time`."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_time(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class DurationParam(click.ParamType[int]):
    """A click parameter for :func:`parse_duration` (a positive duration, in ns)."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            ns = parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if ns <= 0:
            self.fail(f"{value!r} must be longer than 0", param, ctx)
        return ns


TIME = TimeParam()
DURATION = DurationParam()
