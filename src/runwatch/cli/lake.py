"""``runwatch query``: SQL (DuckDB) over the OCSF lake, as a table or as JSON lines or CSV."""

from __future__ import annotations

import csv
import datetime
import decimal
import json
import os
import sys
from typing import Any

import click

from runwatch.cli.common import fail

DEFAULT_LAKE = os.environ.get("RUNWATCH_LAKE", "runwatch-lake")


def _plain(value: Any) -> Any:
    """A value DuckDB returned, as JSON takes it (dates and times ISO 8601, decimals as numbers)."""
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _table(columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, show_lines=False, highlight=False)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console(highlight=False).print(table)
    click.echo(f"{len(rows)} row(s)", err=True)


@click.command()
@click.option("--lake", default=DEFAULT_LAKE, show_default=True, metavar="DIR",
              help="The lake directory (written by run/watch --lake; default $RUNWATCH_LAKE or ./runwatch-lake).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True,
              help="table for people; json (one object per row and line) or csv (with a header) for machines.")
@click.argument("sql")
def query(lake: str, fmt: str, sql: str) -> None:
    """Run SQL over the OCSF lake with DuckDB.

    Each OCSF class is a view named after it: process_activity, file_activity,
    network_activity, dns_activity, kernel_activity, kernel_extension_activity, api_activity,
    detection_finding, base_event; `records` is every class together. Nested OCSF objects
    are JSON text (process->>'$.file.path'); class_uid, day and hour are the partition columns.

    Example: runwatch query --lake lake "SELECT count(*) FROM process_activity WHERE day = today()"
    """
    from runwatch.lake.query import run_sql
    from runwatch.lake.schema import LakeError

    if not sql.strip():
        fail("no SQL given (for example: runwatch query \"SHOW TABLES\")", code=2)
    try:
        columns, rows = run_sql(lake, sql)
    except LakeError as exc:
        fail(str(exc))
    if fmt == "table":
        _table(columns, rows)
        return
    out = sys.stdout
    if fmt == "json":
        for row in rows:
            out.write(json.dumps(dict(zip(columns, (_plain(v) for v in row), strict=True)), default=str) + "\n")
    else:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if v is None else v for v in (_plain(x) for x in row)])
    out.flush()
