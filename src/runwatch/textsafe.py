"""Text from workloads made safe to show a person: control characters are written out, not obeyed.

Command lines, paths, tool names and container names come from the watched workloads. Printed
raw, an escape sequence clears the screen or recolours it, and a newline forges a whole alert
line. :func:`printable` shows each such character as its escape (``\\x1b``, ``\\n``, ``\\u202e``);
everything else, backslashes included, is left as it is, so applying it twice changes nothing.
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls, the Unicode line/paragraph separators and the bidi controls
# that reorder what a terminal shows.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character shown as its escape."""
    return _UNSAFE.sub(_escape, text) if _UNSAFE.search(text) else text
