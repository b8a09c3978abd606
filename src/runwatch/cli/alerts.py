"""``runwatch alerts``: stored alerts, for people (text) or machines (json, ocsf)."""

from __future__ import annotations

import json
import sys

import click

from runwatch.cli.common import db_option, fail


@click.command()
@db_option()
@click.option("--format", "fmt", type=click.Choice(["text", "json", "ocsf"]), default="text", show_default=True,
              help="text for people; json (the alert contract, one per line) or ocsf (OCSF 1.8 Detection "
              "Finding, class 2004, one per line).")
@click.option("--rule", metavar="ID", help="Only this rule's alerts.")
@click.option("--limit", type=click.IntRange(min=0), help="At most this many.")
def alerts(db: str, fmt: str, rule: str | None, limit: int | None) -> None:
    """Show the alerts stored by `runwatch run` / `runwatch watch`."""
    from runwatch.alerts.render import render_text, to_json, to_ocsf
    from runwatch.store.sqlite import StoreError, query_alerts

    try:
        found = query_alerts(db, rule=rule, limit=limit)
    except StoreError as exc:
        fail(str(exc))
    out = sys.stdout
    for a in found:
        if fmt == "text":
            out.write(render_text(a) + "\n")
        elif fmt == "json":
            out.write(to_json(a).decode() + "\n")
        else:
            out.write(json.dumps(to_ocsf(a)) + "\n")
    out.flush()
