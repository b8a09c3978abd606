"""The lake as a worker sink, without a NATS server: durable before the ack, one copy per id
across workers sharing a lake directory and across redeliveries."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fleet_helpers import lake_ids

from runwatch.events import Event, to_json
from runwatch.lake.sink import LakeSink
from runwatch.testing.fleet import node_events
from runwatch.transport.sink import SINKS, SinkError
from runwatch.transport.subjects import Subjects, workload_key
from runwatch.transport.worker import Worker, WorkerOptions


@dataclass
class Meta:
    num_delivered: int


@dataclass
class Msg:
    """A JetStream message as the worker sees it."""

    subject: str
    data: bytes
    headers: dict[str, str]
    metadata: Meta
    acked: list[str] = field(default_factory=list)

    async def ack(self) -> None:
        self.acked.append("ack")

    async def term(self) -> None:
        self.acked.append("term")


def msgs(node: str, events: list[Event], delivered: int = 1) -> list[Msg]:
    s = Subjects("test", node)
    return [Msg(s.subject("event", workload_key(e, node)), to_json(e), {"Nats-Msg-Id": s.msg_id(e.id)},
                Meta(delivered)) for e in events]


def worker(lake: Path, name: str) -> tuple[Worker, LakeSink]:
    sink = SINKS.get("lake")(str(lake))
    assert isinstance(sink, LakeSink)
    sink.open()
    return Worker(WorkerOptions(url="nats://unused", worker_id=name), sink), sink


def test_a_redelivered_batch_another_worker_wrote_is_kept_once(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    events = node_events("a", 23)
    w1, s1 = worker(lake, "w1")
    w2, s2 = worker(lake, "w2")
    # w2 has loaded the partition's ids (its first batch) before w1 writes the rest
    asyncio.run(w2.handle(msgs("a", events[:5])))
    batch = msgs("a", events[5:])
    asyncio.run(w1.handle(batch))  # written and made durable; say the ack never reached NATS
    assert all(m.acked == ["ack"] for m in batch)
    assert len(lake_ids(lake)) == 23
    # the same messages come again, to w2: it reads the ids from the files first
    again = msgs("a", events[5:], delivered=2)
    asyncio.run(w2.handle(again))
    assert all(m.acked == ["ack"] for m in again)
    assert sorted(lake_ids(lake)) == sorted(e.id for e in events)
    assert (w2.redelivered, s2.stats()["duplicates"], s2.stats()["refreshes"]) == (18, 18, 1)
    assert s1.stats()["records"] + s2.stats()["records"] == 23
    s1.close()
    s2.close()


def test_without_the_refresh_the_copy_would_be_written_twice(tmp_path: Path) -> None:
    """What the refresh prevents: a writer's ids are those of the files when it loaded them."""
    lake = tmp_path / "lake"
    events = node_events("a", 21)[::3]  # 7 execs: one lake partition
    assert {e.kind for e in events} == {"process.exec"}
    _, s1 = worker(lake, "w1")
    _, s2 = worker(lake, "w2")
    s2.write(events[:1], [])
    s2.flush()
    s1.write(events, [])
    s1.flush()  # 6 new
    s2.write(events[1:], [])
    s2.flush()
    assert len(lake_ids(lake)) == 13  # 6 twice: hence the worker's refresh before redeliveries
    s1.close()
    s2.close()


def test_taking_partitions_over_refreshes_before_the_first_batch(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    events = node_events("b", 11)
    w1, _ = worker(lake, "w1")
    w2, s2 = worker(lake, "w2")
    asyncio.run(w2.handle(msgs("b", events[:1])))
    asyncio.run(w1.handle(msgs("b", events[1:])))
    w2._stale_ids = True  # what binding a partition taken over sets
    asyncio.run(w2.handle(msgs("b", events[1:])))  # first deliveries to w2 (w1 never fetched them, say)
    assert sorted(lake_ids(lake)) == sorted(e.id for e in events)
    assert (s2.stats()["duplicates"], s2.stats()["refreshes"], w2._stale_ids) == (10, 1, False)


def test_a_batch_the_lake_cannot_make_durable_is_not_acknowledged(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    w, sink = worker(lake, "w1")
    lake.chmod(0o500)
    try:
        import os

        if os.geteuid() == 0:  # root writes anyway: make the partition's parent a file instead
            lake.chmod(0o700)
            (lake / "class_uid=1007").write_text("")
        batch = msgs("a", node_events("a", 3))
        asyncio.run(w.handle(batch))
    finally:
        lake.chmod(0o700)
    assert [m.acked for m in batch] == [[], [], []]
    assert (w.sink_errors, w.consumed) == (1, 0)
    assert w.first_error is not None and "class_uid=1007" in w.first_error
    with pytest.raises(SinkError):
        sink.close()
