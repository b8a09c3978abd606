"""``runwatch events``: read stored events back, for people (text) or machines (json, ocsf), from
the SQLite store or (``--lake DIR``) from the OCSF lake.

Events from the store stream: each is written as it is read, so ``| head -1`` returns at once and memory
stays flat however many match; ``--follow`` then keeps showing what a running session writes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any

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
@click.option("--lake", metavar="DIR", help="Read the OCSF lake DIR instead of the store (events as OCSF records: "
              "--format text or ocsf).")
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
def events(db: str, lake: str | None, fmt: str, kinds: tuple[str, ...], container: str | None, pid: int | None,
           limit: int | None, newest: bool, since: int | None, until: int | None, follow: bool,
           workload: str | None) -> None:
    """Show events from the store (or from the lake with --lake)."""
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
    if lake is not None:
        if since is not None or until is not None or follow or workload is not None:
            fail("--since, --until, --follow and --workload read the store; drop them with --lake", code=2)
        _from_lake(lake, fmt, wanted, container, pid, limit, newest)
        return
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


def _from_lake(lake: str, fmt: str, kinds: list[str] | None, container: str | None, pid: int | None,
               limit: int | None, newest: bool) -> None:
    """``events --lake``: the lake's event records (not its findings) with the same filters."""
    from runwatch.lake.query import iter_records
    from runwatch.lake.schema import LakeError

    if fmt == "json":
        fail("the lake holds OCSF records: use --format ocsf or text with --lake", code=2)
    where: list[str] = ["class_uid <> 2004"]
    params: list[object] = []
    if kinds:
        where.append(f"unmapped->>'$.kind' IN ({', '.join('?' for _ in kinds)})")
        params.extend(kinds)
    if container:
        where.append("(starts_with(container->>'$.uid', ?) OR container->>'$.name' = ?)")
        params.extend([container, container])
    if pid is not None:
        where.append("(TRY_CAST(actor->>'$.process.pid' AS BIGINT) = ? OR TRY_CAST(process->>'$.pid' AS BIGINT) = ?)")
        params.extend([pid, pid])
    order = "time DESC, record_id DESC" if newest else "time, record_id"
    out = sys.stdout
    try:
        for record in iter_records(lake, "records", " AND ".join(where), params, order, limit):
            out.write((msgspec.json.encode(record).decode() if fmt == "ocsf" else _ocsf_line(record)) + "\n")
    except LakeError as exc:
        fail(str(exc))
    out.flush()


def _ocsf_line(r: dict[str, Any]) -> str:
    """One human line for an OCSF event record: time, type, pid, what it was about, container."""
    import time

    from runwatch.textsafe import printable

    ms = int(r.get("time") or 0)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"
    proc, actor = r.get("process") or {}, (r.get("actor") or {}).get("process") or {}
    dst = r.get("dst_endpoint") or {}
    what = ((r.get("file") or {}).get("path") or (r.get("query") or {}).get("hostname")
            or (f"{dst.get('ip', dst.get('hostname', ''))}:{dst.get('port', '')}" if dst else None)
            or (proc.get("file") or {}).get("path") or proc.get("cmd_line") or "")
    where = (r.get("container") or {}).get("name") or ((r.get("container") or {}).get("uid") or "host")[:12]
    pid = proc.get("pid") if r.get("class_uid") == 1007 else actor.get("pid", proc.get("pid"))
    return printable(f"{stamp} {r.get('type_name', '')} pid={pid} {what} [{where}]")
