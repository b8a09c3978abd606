"""The OCSF lake: events and alerts as OCSF records in Hive-partitioned Parquet, read with DuckDB.

:mod:`~runwatch.lake.schema` (the table of each class), :mod:`~runwatch.lake.writer` (atomic,
durable, bounded writes), :mod:`~runwatch.lake.output` (the ``lake`` output behind ``--lake``)
and :mod:`~runwatch.lake.query` (DuckDB views per class, ``runwatch query``).
"""
