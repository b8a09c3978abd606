"""``runwatch doctor``: which sources and hooks are active on this host, and why others are not."""

from __future__ import annotations

import dataclasses
import json

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from runwatch.cli.common import db_option
from runwatch.doctor import diagnose
from runwatch.sensors.kernel.loader import PROGRAMS


@click.command()
@db_option()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def doctor(db: str, fmt: str) -> None:
    """Check this host: kernel, BTF, libbpf, every sensor hook (really loaded), fallback, drops."""
    d = diagnose(db)
    if fmt == "json":
        click.echo(json.dumps(dataclasses.asdict(d), indent=2))
        return
    con = Console(highlight=False)
    checks = Table(title="host", show_header=False, box=None)
    for c in d.checks:
        checks.add_row("[green]ok[/]" if c.ok else "[red]no[/]", c.name, c.detail)
    con.print(checks)
    hooks = Table(title=f"sensor hooks (source in use: {d.source})")
    hooks.add_column("program")
    hooks.add_column("hook")
    hooks.add_column("events")
    hooks.add_column("state")
    for p in PROGRAMS:
        if p.name in d.hooks_active:
            state = "[green]active[/]"
        else:
            state = f"[red]refused[/]: {d.hooks_refused.get(p.name, 'not attempted')}"
        hooks.add_row(p.name, p.hook, ", ".join(p.provides), state)
    con.print(hooks)
    if d.kinds_lost:
        con.print(f"[yellow]event kinds unavailable:[/] {', '.join(d.kinds_lost)}")
    if d.runs:
        runs = Table(title=f"recent runs in {db}")
        for col in ("command", "state", "source", "events", "alerts", "drops", "lost", "exit"):
            runs.add_column(col)
        for r in d.runs:
            state = "[red]crashed[/]" if r["state"] == "crashed" else r["state"]
            runs.add_row(escape(r["command"] or ""), state, str(r["source"]), str(r["events"]), str(r["alerts"]),
                         str(r["drops"]), str(r["lost"]), str(r["exit_code"]))
        con.print(runs)
