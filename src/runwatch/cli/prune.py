"""``runwatch prune``: apply a retention to a store now, and the ``--retain`` options of
``run``/``watch`` (the same retention, applied by the session's store as it writes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from runwatch.cli.common import db_option, fail
from runwatch.cli.timespec import DURATION


def retention_options(f: Any) -> Any:
    """``--retain`` and ``--retain-mb`` for ``run`` and ``watch``."""
    f = click.option("--retain-mb", type=click.IntRange(min=1), metavar="MIB",
                     help="Keep the store's used size at most MIB: the oldest events go first (checked at start "
                     "and every minute).")(f)
    f = click.option("--retain", type=DURATION, metavar="AGE",
                     help="Keep events (and alerts) no older than AGE, e.g. 7d or 12h; older ones are pruned "
                     "at start and every minute.")(f)
    return f


def retention_from(retain: int | None, retain_mb: int | None) -> Any:
    """The store's Retention for the options (None: keep everything)."""
    from runwatch.store.retention import Retention

    if retain is None and retain_mb is None:
        return None
    return Retention(max_age_ns=retain, max_bytes=None if retain_mb is None else retain_mb << 20)


def retention_note(store: dict[str, Any]) -> str | None:
    """The run summary's one line on what the retention pruned, or None when it pruned nothing."""
    from runwatch.store.retention import Pruned

    pruned = Pruned(**(store.get("pruned") or {}))
    if not (pruned.events or pruned.alerts or pruned.processes):
        return None
    return f"retention {pruned.line()} from {store.get('path')}"


@click.command()
@db_option()
@click.option("--older-than", type=DURATION, metavar="AGE", help="Delete events and alerts older than AGE "
              "(e.g. 7d, 12h, 30m).")
@click.option("--max-mb", type=click.IntRange(min=1), metavar="MIB",
              help="Delete the oldest events until the store's used size is at most MIB.")
@click.option("--vacuum", is_flag=True, help="Then give the freed pages back to the filesystem (rewrites the "
              "file; needs that much free space).")
def prune(db: str, older_than: int | None, max_mb: int | None, vacuum: bool) -> None:
    """Delete old events from the store, by age and/or by size; prints one line with the counts.

    Example: runwatch prune --db runwatch.db --older-than 7d
    """
    import sqlite3

    from runwatch.store.retention import Pruned, used_bytes
    from runwatch.store.sqlite import SqliteStore, StoreError

    if older_than is None and max_mb is None:
        fail("say what to prune: --older-than AGE and/or --max-mb MIB", code=2)
    if not Path(db).is_file():
        fail(f"event store not found: {db}")
    try:
        with SqliteStore(db, retention=retention_from(older_than, max_mb)) as store:
            store.prune_now()
            stats = store.stats()
    except StoreError as exc:
        fail(str(exc))
    if stats.get("prune_fault"):
        fail(f"{db}: prune failed: {stats['prune_fault']}")
    pruned = Pruned(**stats["pruned"])
    conn = sqlite3.connect(db)
    try:
        if vacuum:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the file shrinks when the WAL is written back
        used = used_bytes(conn)
        size = Path(db).stat().st_size
    except sqlite3.Error as exc:
        fail(f"{db}: {'vacuum' if vacuum else 'size check'} failed: {exc}")
    finally:
        conn.close()
    click.echo(f"{db}: {pruned.line()}; {used / (1 << 20):.1f} MiB in use, file {size / (1 << 20):.1f} MiB")
