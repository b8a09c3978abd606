"""``runwatch events``: read stored events back, for people (text) or machines (json, ocsf), from
the SQLite store or (``--lake DIR``) from the OCSF lake."""

from __future__ import annotations

import sys
from typing import Any

import click
import msgspec
from rich.console import Console

from runwatch.cli.common import db_option, fail
from runwatch.events import KINDS
from runwatch.store.sqlite import StoreError, query_events


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
              "--newest).")
@click.option("--newest", is_flag=True, help="Newest first.")
def events(db: str, lake: str | None, fmt: str, kinds: tuple[str, ...], container: str | None, pid: int | None,
           limit: int | None, newest: bool) -> None:
    """Show events from the store (or from the lake with --lake)."""
    wanted: list[str] | None = None
    if kinds:
        wanted = []
        for k in kinds:
            match = [x for x in KINDS if x == k or (k.endswith(".") and x.startswith(k))]
            if not match:
                fail(f"unknown event kind {k!r} (known: {', '.join(KINDS)})", code=2)
            wanted.extend(match)
    if lake is not None:
        _from_lake(lake, fmt, wanted, container, pid, limit, newest)
        return
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
