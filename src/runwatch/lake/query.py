"""Reading the lake: DuckDB views per OCSF class, SQL results, and records back as OCSF objects.

:func:`connect` opens an in-memory DuckDB database with one view per class, named after the
class (``process_activity``, ``file_activity``, ``network_activity``, ``dns_activity``,
``detection_finding``, ...; :data:`runwatch.lake.schema.CLASSES`), each over
``read_parquet('<lake>/class_uid=<uid>/*/*/*.parquet', hive_partitioning = true)``, plus
``records`` over every class (``union_by_name``). A class without files yet is an empty view
with the same columns, so a count is 0 rather than an error. The partition columns come last:
``class_uid`` (BIGINT), ``day`` (DATE) and ``hour`` (BIGINT).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb

from runwatch.lake.schema import CLASSES, LakeClass, LakeError, from_row

_PARTITION_TYPES = (("class_uid", "BIGINT"), ("day", "DATE"), ("hour", "BIGINT"))
_HIVE_TYPES = "{" + ", ".join(f"'{n}': {t}" for n, t in _PARTITION_TYPES) + "}"
_SQL_TYPE = {"int": "BIGINT", "str": "VARCHAR", "bool": "BOOLEAN", "float": "DOUBLE", "json": "VARCHAR"}


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _glob(root: Path, cls: LakeClass | None) -> str:
    return str(root / (f"class_uid={cls.uid}" if cls is not None else "class_uid=*") / "*" / "*" / "*.parquet")


def _has_files(root: Path, cls: LakeClass) -> bool:
    return any((root / f"class_uid={cls.uid}").glob("day=*/hour=*/*.parquet"))


def _empty(cls: LakeClass) -> str:
    """A query with the class's columns (and the partition columns) and no rows."""
    columns = [*((n, _SQL_TYPE[k]) for n, k in cls.columns), *_PARTITION_TYPES]
    return "SELECT " + ", ".join(f"CAST(NULL AS {t}) AS {n}" for n, t in columns) + " WHERE false"


def connect(root: str | Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the lake's views (see the module docstring); a missing
    lake directory is a LakeError."""
    path = Path(root)
    if not path.is_dir():
        raise LakeError(f"no lake at {path} (write one with `runwatch run --lake {path}` or `runwatch watch --lake`)")
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET enable_progress_bar = false")
        present = [cls for cls in CLASSES.values() if _has_files(path, cls)]
        for cls in CLASSES.values():
            source = _read(_glob(path, cls)) if cls in present else _empty(cls)
            con.execute(f"CREATE TEMP VIEW {cls.view} AS {source}")
        # every class together: the union of their columns (a class's missing ones are null)
        con.execute(f"CREATE TEMP VIEW records AS {_read(_glob(path, None)) if present else _empty(CLASSES[0])}")
    except duckdb.Error as exc:
        con.close()
        raise LakeError(f"cannot read the lake {path}: {_first_line(exc)}") from None
    return con


def _read(glob: str) -> str:
    return (f"SELECT * FROM read_parquet({_sql_string(glob)}, hive_partitioning = true, union_by_name = true, "
            f"hive_types = {_HIVE_TYPES})")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_sql(root: str | Path, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``sql`` over the lake: (column names, rows). A SQL error is a LakeError of one line."""
    con = connect(root)
    try:
        try:
            cur = con.execute(sql)
        except duckdb.Error as exc:
            raise LakeError(f"SQL: {_first_line(exc)}") from None
        description = getattr(cur, "description", None)  # None: a statement without a result
        if description is None:
            return [], []
        columns = [d[0] for d in description]
        return columns, cur.fetchall()
    finally:
        con.close()


def iter_records(root: str | Path, view: str = "records", where: str | None = None,
                 params: Sequence[object] = (), order: str = "time, record_id",
                 limit: int | None = None) -> Iterator[dict[str, Any]]:
    """The lake's records as OCSF objects (the JSON columns decoded, the lake's own columns left
    out), from ``view`` (a class's view name, or ``records`` for all), filtered by ``where`` (SQL,
    with ``?`` placeholders for ``params``), in ``order``, at most ``limit``."""
    con = connect(root)
    try:
        sql = f"SELECT * FROM {view}" + (f" WHERE {where}" if where else "") + f" ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        try:
            cur = con.execute(sql, list(params))
        except duckdb.Error as exc:
            raise LakeError(f"SQL: {_first_line(exc)}") from None
        names = [d[0] for d in cur.description or ()]
        while batch := cur.fetchmany(1000):
            for values in batch:
                yield from_row(dict(zip(names, values, strict=True)))
    finally:
        con.close()
