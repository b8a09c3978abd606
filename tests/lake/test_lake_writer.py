"""The lake writer: every kind fits its table, bounds, failures and de-duplication."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from lakemix import CONTAINER, T1, alert, exec_event, parquet_files

from runwatch import eventkinds
from runwatch.alerts.render import to_ocsf as alert_to_ocsf
from runwatch.events import DecisionInfo, DnsInfo, Event, FileInfo, NetInfo, PrivInfo, ToolCall
from runwatch.lake.query import iter_records, run_sql
from runwatch.lake.schema import CLASSES, LakeError, to_row
from runwatch.lake.writer import LakeWriter
from runwatch.outputs.ocsf import to_ocsf


def every_kind() -> list[dict[str, Any]]:
    """One record of every stored kind (with every payload), every decision layer and an alert."""
    payload: dict[str, Any] = {
        "file": FileInfo(path="/run/secrets/t", intent="read", new_path="/tmp/b"),
        "net": NetInfo(proto="tcp", family="ipv4", src_ip="127.0.0.1", src_port=4000, dst_ip="127.0.0.2",
                       dst_port=443, result=0),
        "dns": DnsInfo(name="example.test", qtype="A", server_ip="127.0.0.53", server_port=53),
        "priv": PrivInfo(op="mount", target="/mnt/x", source="tmpfs", target_pid=7),
        "container": CONTAINER, "child_pid": 9, "exit_code": 3, "exec_name": "/bin/sh",
        "attrs": {"answers": ["127.0.0.9"], "rcode": 0, "errno": 2},
        "tool_call": ToolCall(name="run_shell", agent="agent-23"),
    }
    kinds = [k.name for k in eventkinds.TABLE if k.stored and k.name != "policy.decision"]
    records = [to_ocsf(Event(id=f"k-{i}", time=T1, kind=kind, pid=11, ppid=10, exe="/bin/sh", **payload),
                       hostname="h") for i, kind in enumerate(kinds)]
    for i, layer in enumerate(("egress", "file", "exec", "tool")):
        d = DecisionInfo(policy="p", verdict="deny", layer=layer, target="/bin/sh")
        records.append(to_ocsf(Event(id=f"d-{i}", time=T1, kind="policy.decision", pid=11, decision=d, **payload),
                               hostname="h"))
    records.append(alert_to_ocsf(alert(T1, 1), hostname="h"))
    return records


def test_every_kind_decision_and_alert_fits_its_table_without_folding() -> None:
    records = every_kind()
    assert len(records) > 40
    assert {r["class_uid"] for r in records} == set(CLASSES)  # every table is used
    folded = {r["metadata"]["uid"]: n for r in records if (n := to_row(r)[1])}
    assert folded == {}


def test_every_kind_reads_back_unchanged(lake: Path) -> None:
    records = every_kind()
    w = LakeWriter(lake)
    assert w.add(records) == len(records)
    w.close()
    back = {r["metadata"]["uid"]: r for r in iter_records(lake)}
    assert back == {r["metadata"]["uid"]: r for r in records}


def test_an_attribute_without_a_column_or_of_another_type_is_kept_under_unmapped(lake: Path) -> None:
    record = to_ocsf(exec_event(T1, 1), hostname="h")
    record["fancy_new_attribute"] = {"x": 1}
    record["exit_code"] = "three"
    w = LakeWriter(lake)
    w.add([record])
    w.close()
    assert w.stats()["folded"] == 2
    _, rows = run_sql(lake, "SELECT exit_code, unmapped->>'$.exit_code', unmapped->'$.fancy_new_attribute' "
                            "FROM process_activity")
    assert rows == [(None, "three", '{"x":1}')]


def test_a_bad_record_is_one_line_and_the_others_are_kept(lake: Path) -> None:
    good = [to_ocsf(exec_event(T1, i), hostname="h") for i in range(5)]
    no_id = to_ocsf(exec_event(T1, 5), hostname="h")
    del no_id["metadata"]["uid"]
    unknown = {**good[0], "class_uid": 3002, "metadata": {"uid": "x-1"}}
    no_time = {**good[1], "time": "yesterday", "metadata": {"uid": "x-2"}}
    far = {**good[2], "time": 1 << 62, "metadata": {"uid": "x-3"}}
    w = LakeWriter(lake)
    with pytest.raises(LakeError) as err:
        w.add([good[0], no_id, good[1], unknown, good[2], no_time, far, *good[3:]])
    assert str(err.value) == ("OCSF record without metadata.uid (class 1007) (and 3 more); the batch's other "
                              "records were accepted")
    w.close()
    assert w.stats()["rejected"] == 4
    assert run_sql(lake, "SELECT count(*) FROM process_activity")[1] == [(5,)]


def test_rows_bound_writes_while_adding_and_flush_writes_the_rest(lake: Path) -> None:
    w = LakeWriter(lake, max_rows=10)
    w.add(to_ocsf(exec_event(T1, i), hostname="h") for i in range(29))
    assert (w.stats()["records"], w.stats()["files"], w.buffered) == (20, 2, 9)
    assert run_sql(lake, "SELECT count(*) FROM process_activity")[1] == [(20,)]
    assert w.flush() == 9
    assert run_sql(lake, "SELECT count(*) FROM process_activity")[1] == [(29,)]
    assert len(parquet_files(lake)) == 3


def test_seconds_bound_writes_when_the_oldest_record_is_old_enough(lake: Path) -> None:
    now = [100.0]
    w = LakeWriter(lake, max_seconds=5.0, clock=lambda: now[0])
    w.add([to_ocsf(exec_event(T1, 0), hostname="h")])
    now[0] = 104.9
    w.add([to_ocsf(exec_event(T1, 1), hostname="h")])
    assert (w.buffered, parquet_files(lake)) == (2, [])
    now[0] = 105.0
    w.add([to_ocsf(exec_event(T1, 2), hostname="h")])
    assert (w.buffered, w.stats()["records"], len(parquet_files(lake))) == (0, 3, 1)


def test_a_failed_write_keeps_the_records_buffered_until_a_flush_succeeds(lake: Path) -> None:
    w = LakeWriter(lake)
    w.open()
    blocker = lake / "class_uid=1007"
    blocker.write_text("not a directory")
    w.add(to_ocsf(exec_event(T1, i), hostname="h") for i in range(13))
    w.add([alert_to_ocsf(alert(T1, 0), hostname="h")])
    with pytest.raises(LakeError, match=r"^cannot create .*class_uid=1007/day=2026-12-04/hour=20: .*; 13 record"):
        w.flush()
    assert w.buffered == 13  # the finding's partition was written all the same
    assert run_sql(lake, "SELECT count(*) FROM detection_finding")[1] == [(1,)]
    blocker.unlink()
    assert w.flush() == 13
    w.close()
    assert run_sql(lake, "SELECT count(*) FROM records")[1] == [(14,)]


def test_while_writes_fail_the_buffer_is_bounded_and_nothing_accepted_is_lost(lake: Path) -> None:
    now = [0.0]
    w = LakeWriter(lake, max_rows=5, max_buffered=12, clock=lambda: now[0])
    w.open()
    blocker = lake / "class_uid=1007"
    blocker.write_text("not a directory")
    assert w.add(to_ocsf(exec_event(T1, i), hostname="h") for i in range(9)) == 9  # a failed write is not raised
    assert (w.buffered, w.stats()["write_errors"]) == (9, 1)
    assert w.last_error is not None and w.last_error.startswith("cannot create ")
    with pytest.raises(LakeError, match=r"^4 record\(s\) refused: 12 are waiting to be written \(last error: "):
        w.add(to_ocsf(exec_event(T1, i), hostname="h") for i in range(9, 16))
    assert (w.buffered, w.stats()["refused"], w.stats()["write_errors"]) == (12, 4, 1)  # retried after a second
    now[0] = 1.0
    blocker.unlink()
    assert w.add([to_ocsf(exec_event(T1, 20), hostname="h")]) == 1  # the retry writes the 12 first
    assert (w.buffered, w.stats()["records"]) == (1, 12)
    w.close()
    assert run_sql(lake, "SELECT count(*) FROM process_activity")[1] == [(13,)]


def test_de_duplication_survives_forgetting_a_partition(lake: Path) -> None:
    w = LakeWriter(lake, max_ids=10)
    w.add(to_ocsf(exec_event(T1, i), hostname="h") for i in range(7))
    w.flush()
    w.add(to_ocsf(exec_event(T1 + 3_600_000_000_000, i), hostname="h") for i in range(7))  # the next hour
    assert w.add(to_ocsf(exec_event(T1, i), hostname="h") for i in range(5, 9)) == 2  # reloaded from its file
    w.close()
    assert w.stats()["duplicates"] == 2
    _, rows = run_sql(lake, "SELECT hour, count(*), count(DISTINCT record_id) FROM process_activity GROUP BY 1 "
                            "ORDER BY 1")
    assert rows == [(20, 9, 9), (21, 7, 7)]


def test_records_keep_json_objects_as_text(lake: Path) -> None:
    w = LakeWriter(lake)
    w.add([to_ocsf(exec_event(T1, 3), hostname="h")])
    w.close()
    _, rows = run_sql(lake, "SELECT metadata, typeof(metadata) FROM process_activity")
    assert json.loads(rows[0][0])["uid"] == exec_event(T1, 3).id and rows[0][1] == "VARCHAR"


def test_the_tables_are_add_only() -> None:
    """A class's columns may grow at the end (readers union files by name) but never change or go:
    the snapshot is regenerated only for an added column."""
    from runwatch.lake.schema import describe

    snapshot = json.loads((Path(__file__).parent / "lake_schema.json").read_text())
    now = describe()
    for uid, table in snapshot.items():
        assert now[uid]["view"] == table["view"]
        assert now[uid]["columns"][:len(table["columns"])] == table["columns"], uid
    assert now == snapshot  # nothing added without the snapshot (and docs/lake.md) saying so
    assert {t["view"] for t in now.values()} >= {"process_activity", "file_activity", "network_activity",
                                                 "dns_activity", "detection_finding"}
