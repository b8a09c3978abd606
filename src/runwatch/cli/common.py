"""Helpers shared by the subcommands: errors, consoles, database option."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.text import Text

if TYPE_CHECKING:
    from runwatch.config.errors import ConfigError, ConfigWarning

DEFAULT_DB = os.environ.get("RUNWATCH_DB", "runwatch.db")

err_console = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line ``runwatch: error: ...`` to stderr and exit with ``code``."""
    line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    err_console.print(Text.assemble(("runwatch: error: ", "bold red"), line), soft_wrap=True)
    sys.exit(code)


def config_problems(errors: Iterable[ConfigError] = (), warnings: Iterable[ConfigWarning] = ()) -> None:
    """Show rule or policy file problems on stderr, one line each: warnings first, then errors.

    Lines are ``path:line:col: warning: message`` and ``path:line:col: message``; the caller
    ends a failed check with one :func:`fail` line.
    """
    for warning in warnings:
        err_console.print(str(warning), markup=False, highlight=False, soft_wrap=True)
    for error in errors:
        err_console.print(error.located(), markup=False, highlight=False, soft_wrap=True)


def note(message: str) -> None:
    """A one-line notice on stderr."""
    err_console.print(Text.assemble(("runwatch: ", "yellow"), message), soft_wrap=True)


F = TypeVar("F", bound=Callable[..., Any])


def db_option(**kwargs: Any) -> Callable[[F], F]:
    """The shared ``--db PATH`` option (default $RUNWATCH_DB or ./runwatch.db)."""
    return click.option("--db", "db", default=DEFAULT_DB, show_default=True, metavar="PATH",
                        help="SQLite event store (created if missing).", **kwargs)
