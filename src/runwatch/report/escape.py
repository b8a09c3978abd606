"""Workload text made inert for each output: control characters written out (always), then
Markdown punctuation backslash-escaped or HTML special characters replaced."""

from __future__ import annotations

import html
import re

from runwatch.textsafe import printable

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#~!{}])")


def md(text: object) -> str:
    """``text`` safe inside Markdown (table cells included): nothing in it is markup."""
    return _MD_SPECIAL.sub(r"\\\1", printable(str(text)))


def h(text: object) -> str:
    """``text`` safe as HTML or SVG text and attribute values (quotes included)."""
    return html.escape(printable(str(text)), quote=True)
