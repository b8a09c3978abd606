"""The lake writer: OCSF records into Hive-partitioned Parquet files, atomically and durably.

Records are buffered per partition (class, day and hour of their ``time``) and written as one
new file per partition and flush: ``class_uid=1007/day=2026-12-04/hour=20/part-<uuid>.parquet``.
A file is written under a hidden temporary name in its partition directory (``.part-<uuid>.tmp``,
which no engine reads: DuckDB's glob wants ``*.parquet``, Spark, Hive and Trino skip names that
start with a dot), fsynced, renamed to its final name and the directory fsynced, so a reader sees
a whole file or none, and a crash at any point leaves at most a hidden temporary file
(:meth:`LakeWriter.open` removes those older than an hour). Like every file runwatch writes, the
files are their owner's only (0600, directories it creates 0700): records hold command lines.

Buffering is bounded: the buffered records are written when they reach ``max_rows`` or when the
oldest is ``max_seconds`` old (checked at each :meth:`~LakeWriter.add`); while writes fail, at
most ``max_buffered`` (default four times ``max_rows``) wait, and further records are refused. :meth:`~LakeWriter.flush`
writes everything accepted so far and returns only once it is durable, so a consumer may
acknowledge its input after it returns. A partition whose write fails stays buffered (retried by
the next flush); the error is raised as a :class:`~runwatch.lake.schema.LakeError`.

Records are de-duplicated by ``metadata.uid`` within their partition: the first record for a
partition loads the ids of that partition's files (one column), and an id already there or
already accepted is skipped (counted as ``duplicates``); so a record redelivered after a restart
or a crash is not written twice, whatever its time. The ids kept are bounded (``max_ids``: the
least recently used partitions are forgotten first and reloaded when needed). Writers sharing a
lake directory never overwrite each other (uuid names); each sees the others' files as of when
it loads a partition, so a writer that may be given a record another writer has written since
(a redelivered message, a partition taken over from another worker) calls :meth:`~LakeWriter.forget`
first: the ids are then loaded again from the files. One thread drives a writer.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from runwatch.lake.schema import LakeError, lake_class, partition_dir, partition_of, record_id, to_row
from runwatch.privatefile import MODE

Partition = tuple[int, str, str]
_STALE_TMP_S = 3600.0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(root: Path, rel: str) -> Path:
    """Create ``root/rel`` and fsync each parent of a directory made, so the new directory entries
    are durable too."""
    path = root
    for part in rel.split("/"):
        child = path / part
        if not child.is_dir():
            child.mkdir(mode=0o700, exist_ok=True)
            _fsync_dir(path)
        path = child
    return path


class LakeWriter:
    """OCSF records into the lake at ``root`` (created if missing). See the module docstring."""

    def __init__(self, root: str | os.PathLike[str], *, max_rows: int = 50_000, max_seconds: float = 60.0,
                 max_buffered: int | None = None, row_group_rows: int = 10_000, dedupe: bool = True,
                 max_ids: int = 500_000, compression: str = "zstd",
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_rows < 1 or max_seconds <= 0 or row_group_rows < 1:
            raise ValueError("max_rows and row_group_rows must be at least 1 and max_seconds positive")
        self.root = Path(root)
        self.max_rows = max_rows
        self.max_seconds = max_seconds
        self.max_buffered = max(max_buffered if max_buffered is not None else 4 * max_rows, max_rows)
        self.row_group_rows = row_group_rows
        self.dedupe = dedupe
        self.max_ids = max_ids
        self.compression = compression
        self._clock = clock
        self._buffers: dict[Partition, list[dict[str, Any]]] = {}
        self._buffered = 0
        self._oldest: float | None = None
        self._retry_at = float("-inf")  # when a failed bounded write may be tried again
        self._known: dict[Partition, set[str]] = {}  # ids per partition, least recently used first
        self._known_ids = 0
        self._opened = False
        self._closed = False
        self.records = 0  # records made durable
        self.files = 0  # files written
        self.duplicates = 0  # records skipped as already accepted
        self.folded = 0  # attributes kept under unmapped for want of a column
        self.rejected = 0  # records refused (no table, time or id)
        self.refused = 0  # records refused because max_buffered were waiting
        self.write_errors = 0  # failed writes a bound started (their records stayed buffered)
        self.last_error: str | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def open(self) -> None:
        """Create the lake directory and remove stale temporary files."""
        if self._closed:
            raise LakeError(f"{self.root}: lake writer is closed")
        if self._opened:
            return
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._remove_stale()
        except OSError as exc:
            raise LakeError(f"cannot open lake {self.root}: {exc.strerror or exc}") from None
        self._opened = True

    def _remove_stale(self) -> None:
        cutoff = time.time() - _STALE_TMP_S
        for tmp in self.root.glob("class_uid=*/day=*/hour=*/.part-*.tmp"):
            with contextlib.suppress(OSError):
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()

    def _ids(self, part: Partition) -> set[str]:
        """The ids of ``part``: its files' and those accepted since (loaded on first use)."""
        ids = self._known.pop(part, None)
        if ids is None:
            ids = {row["record_id"] for row in self._buffers.get(part, ())}
            directory = self.root / partition_dir(*part)
            for path in sorted(directory.glob("*.parquet")):
                try:
                    ids.update(pq.read_table(path, columns=["record_id"]).column(0).to_pylist())
                except (OSError, pa.ArrowException) as exc:
                    raise LakeError(f"cannot read {path}: {exc}") from None
            self._known_ids += len(ids)
        self._known[part] = ids  # now the most recently used
        while self._known_ids > self.max_ids and len(self._known) > 1:
            oldest = next(iter(self._known))
            self._known_ids -= len(self._known.pop(oldest))
        return ids

    def forget(self) -> None:
        """Drop the ids kept for every partition: each is loaded again from the files (and the
        records still buffered) when a record next comes for it, so records other writers made
        durable since are seen."""
        self._known.clear()
        self._known_ids = 0

    def close(self) -> None:
        """Flush and stop accepting records. Idempotent."""
        if self._closed:
            return
        try:
            if self._opened:
                self.flush()
        finally:
            self._closed = True

    # -- writing --------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Records accepted and not yet durable."""
        return self._buffered

    def add(self, records: Iterable[dict[str, Any]]) -> int:
        """Accept OCSF records; returns how many were new. Writes the buffers when a bound is
        reached. A record without a lake table, a millisecond ``time`` or a ``metadata.uid`` is
        counted as ``rejected``, and a record that finds ``max_buffered`` records already waiting
        (the writes keep failing) as ``refused``; both are named in a LakeError raised after the
        batch's other records are accepted. A write that a bound started and that fails is not
        raised here (its records stay buffered; ``write_errors`` and ``last_error`` say so) and is
        tried again a second later; :meth:`flush` raises it."""
        if not self._opened:
            self.open()
        accepted = refused = 0
        rejected: list[str] = []
        for record in records:
            if self._buffered >= self.max_buffered:
                self._bounded_flush()
                if self._buffered >= self.max_buffered:
                    refused += 1
                    continue
            try:
                rid = record_id(record)
                part = partition_of(record)
                ids = self._ids(part) if self.dedupe else None
                if ids is not None and rid in ids:
                    self.duplicates += 1
                    continue
                row, folded = to_row(record)
            except LakeError as exc:
                rejected.append(str(exc))
                continue
            self.folded += folded
            self._buffers.setdefault(part, []).append(row)
            if ids is not None:
                ids.add(rid)
                self._known_ids += 1
            self._buffered += 1
            accepted += 1
            if self._oldest is None:
                self._oldest = self._clock()
            if self._buffered >= self.max_rows:
                self._bounded_flush()
        if self._oldest is not None and self._clock() - self._oldest >= self.max_seconds:
            self._bounded_flush()
        self.rejected += len(rejected)
        self.refused += refused
        problems = []
        if rejected:
            problems.append(rejected[0] + (f" (and {len(rejected) - 1} more)" if len(rejected) > 1 else ""))
        if refused:
            problems.append(f"{refused} record(s) refused: {self._buffered} are waiting to be written "
                            f"(last error: {self.last_error})")
        if problems:
            raise LakeError("; ".join(problems) + "; the batch's other records were accepted")
        return accepted

    def _bounded_flush(self) -> None:
        """A flush a bound asked for: a failure is kept (not raised) and the next try waits a second."""
        if self._clock() < self._retry_at:
            return
        try:
            self.flush()
        except LakeError as exc:
            self.write_errors += 1
            self.last_error = str(exc)
            self._retry_at = self._clock() + 1.0

    def flush(self) -> int:
        """Write every buffered record and make it durable; returns how many were written. A
        partition that cannot be written stays buffered while the others are written; then the
        first failure is raised (a LakeError naming the file)."""
        written = 0
        errors: list[str] = []
        for part in sorted(self._buffers):
            rows = self._buffers[part]
            try:
                self._write_file(part, rows)
            except LakeError as exc:
                errors.append(str(exc))
                continue
            del self._buffers[part]
            self._buffered -= len(rows)
            written += len(rows)
        if not self._buffers:
            self._oldest = None
        self.records += written
        if errors:
            more = f" (and {len(errors) - 1} more partition(s))" if len(errors) > 1 else ""
            raise LakeError(f"{errors[0]}{more}; {self._buffered} record(s) stay buffered")
        return written

    def _write_file(self, part: Partition, rows: list[dict[str, Any]]) -> None:
        cls = lake_class(part[0])
        name = uuid.uuid4().hex
        try:
            directory = _make_dirs(self.root, partition_dir(*part))
        except OSError as exc:
            raise LakeError(f"cannot create {self.root / partition_dir(*part)}: {exc.strerror or exc}") from None
        tmp, final = directory / f".part-{name}.tmp", directory / f"part-{name}.parquet"
        try:
            table = pa.Table.from_pylist(rows, schema=cls.arrow_schema)
        except pa.ArrowException as exc:
            raise LakeError(f"{cls.view}: records do not fit the table: {exc}") from None
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, MODE)
            with os.fdopen(fd, "wb") as fh:
                with pq.ParquetWriter(fh, cls.arrow_schema, compression=self.compression) as writer:
                    for offset in range(0, table.num_rows, self.row_group_rows):
                        writer.write_table(table.slice(offset, self.row_group_rows))
                fh.flush()
                os.fsync(fh.fileno())
            os.rename(tmp, final)
            _fsync_dir(directory)
        except (OSError, pa.ArrowException) as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            message = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise LakeError(f"cannot write {final}: {message}") from None
        self.files += 1

    def stats(self) -> dict[str, int]:
        """Counters: records made durable, files, records buffered, duplicates skipped, folded
        attributes, rejected and refused records, failed bounded writes."""
        return {"records": self.records, "files": self.files, "buffered": self._buffered,
                "duplicates": self.duplicates, "folded": self.folded, "rejected": self.rejected,
                "refused": self.refused, "write_errors": self.write_errors}
