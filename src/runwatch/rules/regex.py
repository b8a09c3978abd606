"""The ``regex`` operator: RE2 regular expressions (linear time in the input, no backtracking).

Patterns are compiled once at rule load with google-re2. RE2 refuses what it cannot run in
linear time (back-references, look-around); such a pattern, like any invalid one, is a load
error at the condition's line. Matching is a search (unanchored): write ``^``/``$`` to
anchor. :func:`literal_prefix` gives the literal text every match of an anchored pattern
starts with, so the rule index can file the rule under that prefix.

Compiled patterns are immutable and safe to share between threads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import re2  # type: ignore[import-untyped]

#: Characters with a meaning in RE2 syntax outside a character class.
_META = frozenset(".^$*+?()[]{}|\\")
#: Characters that, after a literal, make it optional or repeated.
_QUANTIFIERS = frozenset("*?{+")
#: Escapes that stand for a punctuation character itself (``\.``, ``\/``).
_ESCAPED_LITERAL = frozenset("./-_:=@%,#&~!\"'<>;`^$*+?()[]{}|\\ ")

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # errors are raised and reported with the rule's location


class RegexError(ValueError):
    """A pattern RE2 does not accept; the message says why."""


def compile_quiet(pattern: str) -> Any:
    """``re2.compile`` without RE2's own error log on standard error; raises ``re2.error``."""
    return re2.compile(pattern, _OPTIONS)


def compile_search(patterns: list[str]) -> Callable[[str], bool]:
    """A test that is true when any of ``patterns`` matches somewhere in its argument.

    Raises :class:`RegexError` naming the first pattern RE2 rejects.
    """
    compiled = []
    for p in patterns:
        try:
            compiled.append(re2.compile(p, _OPTIONS))
        except re2.error as exc:
            msg = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            raise RegexError(f"invalid regular expression {p!r}: {msg} (RE2 syntax: no back-references or "
                             "look-around)") from None
    if len(compiled) == 1:
        search = compiled[0].search
        return lambda x: search(x) is not None
    searches = tuple(c.search for c in compiled)
    return lambda x: any(s(x) is not None for s in searches)


def literal_prefix(pattern: str) -> str:
    """The literal text every match of ``pattern`` starts with, ``""`` when there is none.

    Conservative: only a pattern anchored with ``^``, with no alternation anywhere and no
    inline flags, has a prefix; it ends at the first metacharacter, and a literal followed by
    a quantifier is left out.
    """
    if not pattern.startswith("^") or "|" in pattern or pattern.startswith("^(?"):
        return ""
    out: list[str] = []
    i, n = 1, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 < n and pattern[i + 1] in _ESCAPED_LITERAL:
                lit, step = pattern[i + 1], 2
            else:
                break  # a class such as \d, \s or \w
        elif ch in _META:
            break
        else:
            lit, step = ch, 1
        if i + step < n and pattern[i + step] in _QUANTIFIERS:
            break
        out.append(lit)
        i += step
    return "".join(out)


__all__ = ["RegexError", "compile_quiet", "compile_search", "literal_prefix"]
