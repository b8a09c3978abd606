"""The README documents every command and every option of run/watch (a missing one fails)."""

from __future__ import annotations

from pathlib import Path

import click

from runwatch.cli import cli

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
CTX = click.Context(cli)


def command(name: str) -> click.Command:
    cmd = cli.get_command(CTX, name)
    assert cmd is not None, name
    return cmd


def test_every_command_is_listed_and_imports() -> None:
    names = cli.list_commands(CTX)
    assert names == ["alerts", "approve", "challenges", "console", "demo", "doctor", "events", "policy", "prune",
                     "query",
                     "reject", "report", "rules", "run", "selftest", "watch", "worker", "workloads"]
    assert [command(n).name for n in names] == names


def test_every_command_is_in_the_readme() -> None:
    missing = [name for name in cli.list_commands(CTX) if f"runwatch {name}" not in README]
    assert missing == []


def test_every_run_and_watch_option_is_in_the_readme() -> None:
    missing = []
    for name in ("run", "watch"):
        cmd = command(name)
        for param in cmd.params:
            if isinstance(param, click.Option) and not any(opt in README for opt in param.opts):
                missing.append(f"{name} {param.opts[0]}")
    assert missing == []
