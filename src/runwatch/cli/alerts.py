"""``runwatch alerts``: stored alerts, for people (text) or machines (json, ocsf), streamed as
they are read (see :mod:`runwatch.cli.query`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import chain

import click

from runwatch.alerts.model import SEVERITY_ORDER, Alert
from runwatch.cli.common import db_option, fail
from runwatch.cli.query import filter_options
from runwatch.cli.stream import write_lines


@click.command()
@db_option()
@click.option("--format", "fmt", type=click.Choice(["text", "json", "ocsf"]), default="text", show_default=True,
              help="text for people; json (the alert contract, one per line) or ocsf (OCSF 1.8 Detection "
              "Finding, class 2004, one per line).")
@click.option("--rule", metavar="ID", help="Only this rule's alerts.")
@click.option("--severity", type=click.Choice(list(SEVERITY_ORDER)), help="Only alerts of this severity or higher.")
@click.option("--container", metavar="ID", help="Only this container's alerts (name, id or id prefix).")
@click.option("--limit", type=click.IntRange(min=0), help="At most this many.")
@filter_options
def alerts(db: str, fmt: str, rule: str | None, severity: str | None, container: str | None, limit: int | None,
           since: int | None, until: int | None, follow: bool, workload: str | None) -> None:
    """Show the alerts stored by `runwatch run` / `runwatch watch`."""
    from runwatch.store.sqlite import StoreError, iter_alerts

    try:
        found = iter_alerts(db, rule=rule, since_ns=since, until_ns=until, severity=severity, container=container,
                            workload=workload, limit=limit, follow=follow)
        first = next(found, None)  # opens the file: a missing or unreadable store is one error line now
    except StoreError as exc:
        fail(str(exc))
    write_lines(_lines(first, found, fmt), flush_each=follow)


def _lines(first: Alert | None, rest: Iterator[Alert], fmt: str) -> Iterator[bytes]:
    from runwatch.alerts.render import render_text, to_json, to_ocsf

    if first is None:
        return
    for alert in chain((first,), rest):
        if fmt == "text":
            yield render_text(alert).encode()
        elif fmt == "json":
            yield to_json(alert)
        else:
            yield json.dumps(to_ocsf(alert)).encode()
