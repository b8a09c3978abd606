"""Reading a store's run records while another process may still be creating the file."""

from __future__ import annotations

from pathlib import Path

from runwatch.store.sqlite import RunRecord, StoreError, query_runs


def runs_so_far(db: Path) -> list[RunRecord]:
    """The runs of ``db`` so far; none while the writer is still creating the file."""
    try:
        return query_runs(db)
    except StoreError:
        return []
