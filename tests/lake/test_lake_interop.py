"""Other engines' view of the lake: pyarrow.dataset with Hive partitioning reads the same files."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from lakemix import mix

from runwatch.lake.output import LakeOutput


def test_pyarrow_dataset_reads_the_lake_with_hive_partitioning(lake: Path) -> None:
    events, alerts = mix()
    out = LakeOutput(lake, hostname="node-a")
    out.open()
    out.write(events)
    out.write_alerts(alerts)
    out.close()
    partitioning = ds.partitioning(pa.schema([("class_uid", pa.int32()), ("day", pa.string()),
                                              ("hour", pa.int32())]), flavor="hive")
    whole = ds.dataset(lake, format="parquet", partitioning=partitioning)
    assert whole.count_rows() == 44
    counts = whole.to_table(columns=["class_uid"]).group_by("class_uid").aggregate([("class_uid", "count")])
    assert sorted(zip(counts["class_uid"].to_pylist(), counts["class_uid_count"].to_pylist(), strict=True)) == [
        (1001, 7), (1007, 23), (2004, 3), (4001, 11)]
    process = ds.dataset(lake / "class_uid=1007", format="parquet", partitioning="hive")
    late = process.to_table(filter=(pc.field("day") == "2026-12-05") & (pc.field("hour") == 3))
    assert late.num_rows == 8
    assert {json.loads(p)["file"]["path"] for p in late["process"].to_pylist()} == {"/usr/bin/true"}
    # plain types only: strings, 64-bit integers and booleans, no extension or nested types
    kinds = {str(f.type) for f in process.schema}
    assert kinds <= {"string", "int64", "bool", "double", "int32"}, kinds
    findings = ds.dataset(lake / "class_uid=2004", format="parquet", partitioning="hive").to_table()
    assert sorted(findings["severity"].to_pylist()) == ["High"] * 3
    assert findings["is_alert"].to_pylist() == [True] * 3
