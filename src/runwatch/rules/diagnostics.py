"""What one rule load reports: located errors, warnings, and the rules that did not load.

:class:`RuleError` and :class:`RuleLoadError` are the rule flavours of the shared
:mod:`runwatch.config.errors` types. :class:`Report` is filled by the collect and build
steps of :mod:`runwatch.rules.loader`; it is used by one load at a time (not thread-safe).
"""

from __future__ import annotations

from dataclasses import dataclass

from runwatch.config.errors import ConfigError, ConfigLoadError, ConfigWarning, Location


@dataclass(frozen=True, slots=True)
class RuleError(ConfigError):
    """One located problem in a rule file; ``str()`` is the one-line ``file:line: message``."""

    rule: str | None = None  # the entry's name, when known


class RuleLoadError(ConfigLoadError[RuleError]):
    """Rules failed to load; ``errors`` holds every located error (collected in one pass)."""


#: Warning codes (``ConfigWarning.code``).
UNUSED_MACRO = "unused-macro"
UNUSED_LIST = "unused-list"
ANY_KIND = "any-kind"


class Report:
    """Errors, warnings and skipped rules (id -> first reason) of one load, in report order."""

    def __init__(self) -> None:
        self.errors: list[RuleError] = []
        self.warnings: list[ConfigWarning] = []
        self.skipped: dict[str, str] = {}

    def err(self, at: Location, message: str, rule: str | None = None) -> None:
        """Record an error at ``at``; naming ``rule`` marks that rule as not loaded."""
        self.errors.append(RuleError(at.path, at.line, message, rule, column=at.column))
        if rule is not None and rule not in self.skipped:
            self.skipped[rule] = message

    def config_error(self, error: ConfigError) -> None:
        """Record an error found by the YAML reader."""
        self.err(error.location, error.message)

    def warn(self, at: Location, message: str, code: str) -> None:
        """Record a warning (loading goes on)."""
        self.warnings.append(ConfigWarning(at, message, code))

    def skip(self, rule: str, reason: str) -> None:
        """Mark ``rule`` as not loaded for ``reason`` (no error of its own: the cause is reported elsewhere)."""
        self.skipped.setdefault(rule, reason)
