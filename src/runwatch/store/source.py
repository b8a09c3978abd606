"""Where ``report`` and the console read from: the SQLite store or the OCSF lake.

A source is a store path (a string or path) or a :class:`LakeDir`; the functions here take
either and call :mod:`runwatch.store.sqlite_read` / :mod:`runwatch.store.workloads` for a store
and :mod:`runwatch.lake.read` for a lake, with the same arguments and results. This is the one
place that decides; the command line makes a :class:`LakeDir` for ``--lake DIR``. A lake that
cannot be read is a :class:`~runwatch.store.sqlite_layout.StoreError` here too (one line).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from runwatch.alerts.model import Alert
from runwatch.events import Container, Event
from runwatch.store import sqlite_read, workloads
from runwatch.store.runs import RunRecord
from runwatch.store.sqlite_layout import StoreError
from runwatch.store.workloads import WorkloadRow

T = TypeVar("T")


@dataclass(frozen=True)
class LakeDir:
    """The OCSF lake at ``path`` as a source (its records' ``raw_data`` decoded)."""

    path: str

    def __str__(self) -> str:
        return self.path


Source = str | os.PathLike[str] | LakeDir


def _lake(call: Callable[..., T], src: LakeDir, *args: Any, **kwargs: Any) -> T:
    from runwatch.lake.schema import LakeError

    try:
        return call(src.path, *args, **kwargs)
    except LakeError as exc:
        raise StoreError(str(exc)) from None


def query_events(src: Source, **filters: Any) -> list[Event]:
    """Events passing the filters of :func:`runwatch.store.sqlite_read.query_events`."""
    if isinstance(src, LakeDir):
        from runwatch.lake import read

        return _lake(read.query_events, src, **filters)
    return sqlite_read.query_events(src, **filters)


def query_alerts(src: Source, **filters: Any) -> list[Alert]:
    """Alerts passing the filters of :func:`runwatch.store.sqlite_read.query_alerts`."""
    if isinstance(src, LakeDir):
        from runwatch.lake import read

        return _lake(read.query_alerts, src, **filters)
    return sqlite_read.query_alerts(src, **filters)


def query_containers(src: Source) -> list[Container]:
    """Every container, as :func:`runwatch.store.sqlite_read.query_containers` gives them."""
    if isinstance(src, LakeDir):
        from runwatch.lake import read

        return _lake(read.query_containers, src)
    return sqlite_read.query_containers(src)


def query_workloads(src: Source, today: datetime.date) -> list[WorkloadRow]:
    """Every workload row, as :func:`runwatch.store.workloads.query_workloads` gives them."""
    if isinstance(src, LakeDir):
        from runwatch.lake import read

        return _lake(read.query_workloads, src, today)
    return workloads.query_workloads(src, today)


def query_runs(src: Source) -> list[RunRecord]:
    """The recorded runs (a lake keeps none: empty; a missing lake directory is a StoreError)."""
    if isinstance(src, LakeDir):
        if not os.path.isdir(src.path):
            raise StoreError(f"{src.path}: no such lake directory")
        return []
    return sqlite_read.query_runs(src)
