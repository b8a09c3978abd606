"""Where a configuration problem is, and the typed errors and warnings that carry it.

Lines and columns are 1-based; ``0`` means unknown (a whole-file problem, an unreadable
file). :class:`ConfigError` prints as ``file:line: message`` and shows (``located()``, what
the commands print) as ``path:line:col: message``; :class:`ConfigWarning` prints with the
column, ``path:line:col: warning: message``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar


@dataclass(frozen=True, slots=True, order=True)
class Location:
    """A place in a configuration file; ``str()`` is ``path:line:col`` (unknown parts left off)."""

    path: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.path
        if self.column <= 0:
            return f"{self.path}:{self.line}"
        return f"{self.path}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class ConfigError:
    """One located problem that stops a file from loading; ``str()`` is ``file:line: message``."""

    file: str
    line: int
    message: str
    column: int = field(default=0, kw_only=True)

    @property
    def location(self) -> Location:
        """The error's place as a :class:`Location`."""
        return Location(self.file, self.line, self.column)

    def located(self) -> str:
        """The one line a command shows: ``path:line:col: message`` (unknown parts left off)."""
        return f"{self.location}: {self.message}"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class ConfigWarning:
    """A located problem that does not stop loading (an unused macro, a rule matching every kind).

    ``code`` names the kind of warning (stable, for filtering); ``str()`` is
    ``path:line:col: warning: message``.
    """

    location: Location
    message: str
    code: str = ""

    @property
    def file(self) -> str:
        """The file the warning is about."""
        return self.location.path

    @property
    def line(self) -> int:
        """The warning's 1-based line."""
        return self.location.line

    def __str__(self) -> str:
        return f"{self.location}: warning: {self.message}"


E = TypeVar("E", bound=ConfigError)


class ConfigLoadError(Exception, Generic[E]):
    """A load failed; ``errors`` holds every located error (collected in one pass)."""

    def __init__(self, errors: Sequence[E]) -> None:
        self.errors = list(errors)
        first = str(self.errors[0]) if self.errors else "no errors"
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        super().__init__(first + more)
