"""The report as JSON: the model as it is (see :mod:`runwatch.report.model`), every key present."""

from __future__ import annotations

import msgspec

from runwatch.report.model import Report

_ENCODER = msgspec.json.Encoder()


def render(r: Report) -> bytes:
    """The report as one JSON document (UTF-8, newline-terminated)."""
    return _ENCODER.encode(r) + b"\n"
