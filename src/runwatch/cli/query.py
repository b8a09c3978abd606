"""``runwatch events``: read stored events back, for people (text) or machines (json, ocsf).

Events stream: each is written as it is read, so ``| head -1`` returns at once and memory
stays flat however many match; ``--follow`` then keeps showing what a running session writes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from itertools import chain

import click
import msgspec

from runwatch.cli.common import db_option, fail
from runwatch.cli.stream import write_lines
from runwatch.cli.timespec import TIME
from runwatch.events import KINDS, Event
from runwatch.store.sqlite import StoreError, iter_events


def filter_options(f: click.decorators.FC) -> click.decorators.FC:
    """The filters ``events`` and ``alerts`` share: time window, follow, container, workload."""
    f = click.option("--workload", metavar="W", help="Only this workload: pod name, namespace/pod, SPIFFE id or "
                     "container name.")(f)
    f = click.option("--follow", "-f", is_flag=True, help="After the stored ones, keep showing new ones as a "
                     "running session writes them (Ctrl-C ends).")(f)
    f = click.option("--until", type=TIME, help="Only before this time (ns since the epoch, ISO-8601, or a "
                     "duration before now such as 15m).")(f)
    f = click.option("--since", type=TIME, help="Only from this time on (ns since the epoch, ISO-8601 such as "
                     "2026-12-04T20:15:00Z, or a duration before now such as 15m, 2h, 7d).")(f)
    return f


@click.command()
@db_option()
@click.option("--format", "fmt", type=click.Choice(["text", "json", "ocsf"]), default="text", show_default=True,
              help="text for people; json (one event per line) or ocsf (OCSF 1.8 JSON per line) for machines.")
@click.option("--kind", "kinds", multiple=True, metavar="KIND",
              help="Only this kind (e.g. process.exec, or a prefix such as net.); repeatable.")
@click.option("--container", metavar="ID", help="Only this container (name, id or id prefix).")
@click.option("--pid", type=int, help="Only this process id.")
@click.option("--limit", type=click.IntRange(min=0), help="At most this many (the newest when combined with "
              "--newest or --follow).")
@click.option("--newest", is_flag=True, help="Newest first.")
@filter_options
def events(db: str, fmt: str, kinds: tuple[str, ...], container: str | None, pid: int | None,
           limit: int | None, newest: bool, since: int | None, until: int | None, follow: bool,
           workload: str | None) -> None:
    """Show events from the store."""
    wanted: list[str] | None = None
    if kinds:
        wanted = []
        for k in kinds:
            match = [x for x in KINDS if x == k or (k.endswith(".") and x.startswith(k))]
            if not match:
                fail(f"unknown event kind {k!r} (known: {', '.join(KINDS)})", code=2)
            wanted.extend(match)
    if follow and newest:
        fail("--follow shows the newest last; drop --newest", code=2)
    try:
        found = iter_events(db, kinds=wanted, container=container, workload=workload, pid=pid, since_ns=since,
                            until_ns=until, limit=limit, order="desc" if newest else "asc", follow=follow)
        first = next(found, None)  # opens the file: a missing or unreadable store is one error line now
    except StoreError as exc:
        fail(str(exc))
    write_lines(_lines(() if first is None else chain((first,), found), fmt), flush_each=follow)


def _lines(found: Iterable[Event], fmt: str) -> Iterator[bytes]:
    """One output line per event, made as it is read."""
    if fmt == "json":
        enc = msgspec.json.Encoder().encode
        for e in found:
            yield enc(e)
    elif fmt == "ocsf":
        from runwatch.outputs.ocsf import to_ocsf

        for e in found:
            yield msgspec.json.encode(to_ocsf(e))
    else:
        from runwatch.outputs.text import plain_line, render_line

        if sys.stdout.isatty():
            from rich.console import Console

            console = Console(highlight=False, soft_wrap=True)
            for e in found:
                with console.capture() as cap:
                    console.print(render_line(e))
                yield cap.get().rstrip("\n").encode()
        else:  # no styles off a terminal: the plain text, without rich's per-line cost
            for e in found:
                yield plain_line(e).encode()
