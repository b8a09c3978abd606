"""Scalar value readers shared by rule and policy files."""

from __future__ import annotations

import re
from typing import Any

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h)?$")
UNIT_NS: dict[str, int] = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9,
                           "d": 86400 * 10**9, "w": 7 * 86400 * 10**9}
"""Nanoseconds per duration unit: the one table; each reader accepts its own subset of units."""


def parse_duration(value: Any) -> int:
    """``60s``, ``500ms``, ``5m``, ``1h`` or a number of seconds, to nanoseconds.

    Raises ValueError with a one-line reason.
    """
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}")
    if isinstance(value, int | float):
        return int(value * 1_000_000_000)
    m = _DURATION.match(str(value).strip())
    if m is None:
        raise ValueError(f"bad duration {value!r} (use e.g. 500ms, 60s, 5m, 1h)")
    return int(float(m.group(1)) * UNIT_NS[m.group(2) or "s"])
