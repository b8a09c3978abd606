"""Times and durations on the command line: ``--since``/``--until`` and retention ages.

A time is what :mod:`runwatch.report.timearg` reads (ns since the epoch, ISO-8601, ``now``,
or a duration before now such as ``15m``); a duration is the relative form alone (a number
and ``ms``, ``s``, ``m``, ``h``, ``d`` or ``w``: ``7d``, ``12h``).
"""

from __future__ import annotations

from typing import Any

import click

from runwatch.report.timearg import TimeArgError, parse_time, relative_ns


def parse_duration(value: str) -> int:
    """``value`` (e.g. ``15m``) in nanoseconds; ValueError with a one-line reason."""
    ns = relative_ns(value)
    if ns is None or ns <= 0:
        raise ValueError(f"{value!r} is not a duration (a number and one of ms, s, m, h, d, w, e.g. 15m, 7d)")
    return ns


class TimeParam(click.ParamType[int]):
    """A click parameter for :func:`runwatch.report.timearg.parse_time`."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_time(str(value))
        except TimeArgError as exc:
            self.fail(str(exc), param, ctx)


class DurationParam(click.ParamType[int]):
    """A click parameter for :func:`parse_duration` (a positive duration, in ns)."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


TIME = TimeParam()
DURATION = DurationParam()
