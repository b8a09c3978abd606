"""``runwatch report``: what one workload did in a window, what secrets it touched, and
whether data left afterwards (Markdown, HTML or JSON)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click

from runwatch.cli.common import db_option, fail


def _write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (a temporary file renamed over it)."""
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent if str(target.parent) else ".")
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        fail(f"cannot write {path}: {exc.strerror or exc}")


@click.command()
@db_option()
@click.option("--workload", "-w", required=True, metavar="W",
              help="Pod name, namespace/pod, SPIFFE id, container name or container id prefix.")
@click.option("--since", metavar="T", help="From T (inclusive): ns since the epoch, ISO-8601, or relative (15m, 2h).")
@click.option("--until", metavar="T", help="Up to T (exclusive), in the same forms.")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "json"]), default="md", show_default=True,
              help="md (Markdown), html (one self-contained file with the process tree and timeline drawn) "
              "or json (the report model).")
@click.option("--output", "-o", "output", metavar="FILE", help="Write to FILE instead of stdout.")
@click.option("--lake", metavar="DIR", help="Read the OCSF lake DIR (written by --lake or `worker --sink lake`) "
              "instead of the store.")
def report(db: str, workload: str, since: str | None, until: str | None, fmt: str, output: str | None,
           lake: str | None) -> None:
    """Investigate one workload: timeline, process tree, tool calls and routes, secrets read,
    where data went after each read, policy decisions and alerts."""
    from runwatch.report.build import build_report
    from runwatch.report.timearg import TimeArgError, parse_time
    from runwatch.report.workload import WorkloadNotFound
    from runwatch.store.source import LakeDir
    from runwatch.store.sqlite_layout import StoreError

    try:
        since_ns = parse_time(since) if since is not None else None
        until_ns = parse_time(until) if until is not None else None
    except TimeArgError as exc:
        fail(str(exc), code=2)
    if since_ns is not None and until_ns is not None and since_ns >= until_ns:
        fail(f"--since ({since}) must be before --until ({until})", code=2)
    try:
        rep = build_report(LakeDir(lake) if lake is not None else db, workload, since_ns=since_ns, until_ns=until_ns)
    except (StoreError, WorkloadNotFound) as exc:
        fail(str(exc))
    if fmt == "json":
        from runwatch.report.render_json import render as render_json

        data = render_json(rep)
    elif fmt == "html":
        from runwatch.report.render_html import render as render_html

        data = render_html(rep).encode()
    else:
        from runwatch.report.render_md import render as render_md

        data = render_md(rep).encode()
    if output is None or output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        _write(output, data)
