"""The README documents every command and every option of run/watch (a missing one fails)."""

from __future__ import annotations

from pathlib import Path

import click

from runwatch.cli import cli

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_command_is_in_the_readme() -> None:
    missing = [name for name in cli.commands if f"runwatch {name}" not in README]
    assert missing == []


def test_every_run_and_watch_option_is_in_the_readme() -> None:
    missing = []
    for name in ("run", "watch"):
        cmd = cli.commands[name]
        for param in cmd.params:
            if isinstance(param, click.Option) and not any(opt in README for opt in param.opts):
                missing.append(f"{name} {param.opts[0]}")
    assert missing == []
