"""``runwatch events``: read stored events back, for people (text) or machines (json, ocsf)."""

from __future__ import annotations

import sys

import click
import msgspec
from rich.console import Console

from runwatch.cli.common import db_option, fail
from runwatch.events import KINDS
from runwatch.store.sqlite import StoreError, query_events


@click.command()
@db_option()
@click.option("--format", "fmt", type=click.Choice(["text", "json", "ocsf"]), default="text", show_default=True,
              help="text for people; json (one event per line) or ocsf (OCSF 1.8 JSON per line) for machines.")
@click.option("--kind", "kinds", multiple=True, metavar="KIND",
              help="Only this kind (e.g. process.exec, or a prefix such as net.); repeatable.")
@click.option("--container", metavar="ID", help="Only this container (name, id or id prefix).")
@click.option("--pid", type=int, help="Only this process id.")
@click.option("--limit", type=click.IntRange(min=0), help="At most this many (the newest when combined with "
              "--newest).")
@click.option("--newest", is_flag=True, help="Newest first.")
def events(db: str, fmt: str, kinds: tuple[str, ...], container: str | None, pid: int | None,
           limit: int | None, newest: bool) -> None:
    """Show events from the store."""
    wanted: list[str] | None = None
    if kinds:
        wanted = []
        for k in kinds:
            match = [x for x in KINDS if x == k or (k.endswith(".") and x.startswith(k))]
            if not match:
                fail(f"unknown event kind {k!r} (known: {', '.join(KINDS)})", code=2)
            wanted.extend(match)
    try:
        found = query_events(db, kinds=wanted, container=container, pid=pid, limit=limit,
                             order="desc" if newest else "asc")
    except StoreError as exc:
        fail(str(exc))
    if fmt == "text":
        from runwatch.outputs.text import render_events

        render_events(found, Console(highlight=False, soft_wrap=True))
        return
    out = sys.stdout.buffer
    if fmt == "json":
        enc = msgspec.json.Encoder()
        for e in found:
            out.write(enc.encode(e) + b"\n")
    else:
        from runwatch.outputs.ocsf import to_ocsf

        for e in found:
            out.write(msgspec.json.encode(to_ocsf(e)) + b"\n")
    out.flush()
