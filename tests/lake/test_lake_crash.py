"""A writer killed with SIGKILL mid-write leaves no half file that a query would read."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
from lakemix import T1, parquet_files

from runwatch.lake.query import run_sql
from runwatch.lake.writer import LakeWriter

HERE = Path(__file__).resolve().parent

PRELUDE = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, HERE)
    import pyarrow.parquet as pq
    from lakemix import T1, exec_event
    from runwatch.lake.writer import LakeWriter
    from runwatch.outputs.ocsf import to_ocsf
    def records(first, n):
        return [to_ocsf(exec_event(T1, i), hostname="h") for i in range(first, first + n)]
    w = LakeWriter(sys.argv[1], row_group_rows=5)
    w.open()
""")

MID_WRITE = PRELUDE + textwrap.dedent("""
    w.add(records(0, 13))
    w.flush()
    print("durable 13", flush=True)
    real, calls = pq.ParquetWriter.write_table, []
    def stall(self, table, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the file's first row group is out, its footer is not
            print("mid-write", flush=True)
            time.sleep(600)
        return real(self, table, *args, **kwargs)
    pq.ParquetWriter.write_table = stall
    w.add(records(13, 17))
    w.flush()
""")

LOOP = PRELUDE + textwrap.dedent("""
    for k in range(400):
        w.add(records(7 * k, 7))
        w.flush()
        print(f"durable {7 * (k + 1)}", flush=True)
""")


def start(script: str, lake: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", f"HERE = {str(HERE)!r}\n" + script, str(lake)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_until(proc: subprocess.Popen[str], wanted: str) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"writer ended before {wanted!r}: {proc.stderr.read() if proc.stderr else ''}")
        lines.append(line.strip())
        if line.strip() == wanted:
            return lines
    raise AssertionError(f"no {wanted!r} within 60 s")


def kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def count(lake: Path) -> int:
    _, rows = run_sql(lake, "SELECT count(*) FROM process_activity")
    return int(rows[0][0])


def test_a_kill_mid_file_leaves_only_a_hidden_temporary_file(lake: Path) -> None:
    proc = start(MID_WRITE, lake)
    assert read_until(proc, "mid-write") == ["durable 13", "mid-write"]
    kill(proc)
    hidden = sorted(p.name for p in lake.rglob(".part-*.tmp"))
    assert len(hidden) == 1  # the half file is there, under its temporary name
    assert len(parquet_files(lake)) == 1
    assert count(lake) == 13
    assert ds.dataset(lake, format="parquet", partitioning="hive").count_rows() == 13
    # a new writer goes on beside it; a temporary file an hour old is removed when a writer opens
    w = LakeWriter(lake)
    w.open()
    assert sorted(p.name for p in lake.rglob(".part-*.tmp")) == hidden
    from lakemix import exec_event

    from runwatch.outputs.ocsf import to_ocsf

    assert w.add(to_ocsf(exec_event(T1, i), hostname="h") for i in range(9, 30)) == 17  # 0-12 are there
    w.close()
    assert count(lake) == 30
    tmp = next(lake.rglob(".part-*.tmp"))
    old = time.time() - 3601
    os.utime(tmp, (old, old))
    LakeWriter(lake).open()
    assert list(lake.rglob(".part-*.tmp")) == []


def test_a_kill_at_any_moment_keeps_every_flushed_record_and_no_torn_file(lake: Path) -> None:
    proc = start(LOOP, lake)
    seen = read_until(proc, "durable 91")
    kill(proc)
    n = count(lake)
    assert n % 7 == 0 and n >= 91, (n, seen)
    for f in parquet_files(lake):  # every visible file is whole
        assert pq.read_metadata(lake / f).num_rows == 7
    _, rows = run_sql(lake, "SELECT count(DISTINCT record_id) FROM process_activity")
    assert rows == [(n,)]
