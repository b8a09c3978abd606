"""Three node agents and two workers against a real nats-server (JetStream)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from fleet_helpers import Procs, lake_ids, stored_ids, wait_for, wait_workers

from runwatch.events import to_json
from runwatch.sensors.replay import write_recording
from runwatch.store.sqlite_read import query_alerts, query_events
from runwatch.testing.fleet import egress, node_events, secret_read, workload
from runwatch.testing.natsserver import NatsServer
from runwatch.transport.subjects import partition_of, workload_key

RULE = "fleet_secret_read_then_egress_elsewhere"
OUTAGE_S = float(os.environ.get("RUNWATCH_FLEET_OUTAGE_S", "30"))
"""How long NATS is away in the outage test (the issue asks for 30 s)."""


def test_secret_on_one_node_then_egress_on_another_raises_the_cross_node_alert(
        nats_server: NatsServer, procs: Procs, tmp_path: Path) -> None:
    db = tmp_path / "sink.db"
    procs.worker(nats_server.url, "w1", db)
    procs.worker(nats_server.url, "w2", db)
    wait_workers(procs, ("w1", "w2"))
    x, y, z, v, u, w = (workload(n, "any") for n in ("x", "y", "z", "v", "u", "w"))
    t = time.time_ns()
    # Phase 1: reads on a and c, a same-node pair on c, z's egress before its read.
    first = {
        "a": [*node_events("a", 101, start_ns=t), secret_read("a", 9001, x, t + 1), secret_read("a", 9002, v, t + 2),
              egress("a", 9003, z, t + 3), secret_read("a", 9004, u, t + 4)],
        "c": [*node_events("c", 101, start_ns=t), secret_read("c", 9001, y, t + 5), egress("c", 9002, y, t + 6),
              secret_read("c", 9003, w, t + 7)],
    }
    # Phase 2 on b: egress of x and v (read on a) and w (read on c): alerts; z's read (after its
    # egress: none), u to an internal address (none); then c: egress of v again (used up: none).
    second = {
        "b": [*node_events("b", 101, start_ns=t), egress("b", 9001, x, t + 10), egress("b", 9002, v, t + 11),
              secret_read("b", 9003, z, t + 12), egress("b", 9004, u, t + 13, ip="10.0.0.5"),
              egress("b", 9005, w, t + 14)],
    }
    third = {"c": [egress("c", 9101, v, t + 20)]}
    sent: list[str] = []
    for phase in (first, second, third):
        started = []
        for node, events in phase.items():
            rec = tmp_path / f"{node}-{len(sent)}.jsonl"
            write_recording(rec, events)
            sent += [e.id for e in events]
            started.append(procs.agent(nats_server.url, node, rec))
        assert [p.wait(timeout=60) for p in started] == [0] * len(started)
    wait_for(lambda: len(stored_ids(db)) == len(sent), 60, f"{len(sent)} events in the sink")
    assert sorted(stored_ids(db)) == sorted(sent)
    wait_for(lambda: len(stored_ids(db, "alerts", f"WHERE rule = '{RULE}'")) >= 3, 30, "the cross-node alerts")
    time.sleep(1.0)  # nothing more may come
    rows = query_alerts(db, rule=RULE)
    assert [(r.workload.spiffe_id, r.workload.node) for r in rows] == [
        ("spiffe://cluster.local/ns/ai/sa/x", "b"), ("spiffe://cluster.local/ns/ai/sa/v", "b"),
        ("spiffe://cluster.local/ns/ai/sa/w", "b")]
    assert [r.evidence for r in rows] == [[first["a"][101].id, second["b"][101].id],
                                          [first["a"][102].id, second["b"][102].id],
                                          [first["c"][103].id, second["b"][105].id]]
    # each event carries the node it was published from
    assert {e.container.node for e in query_events(db) if e.container is not None} == {"a", "b", "c"}


@pytest.mark.parametrize("sink", ["sqlite", "lake"])
def test_kill_a_worker_and_stop_nats_loses_and_duplicates_nothing(
        nats_server: NatsServer, procs: Procs, tmp_path: Path, sink: str) -> None:
    n = 1501
    db = tmp_path / "sink.db"
    lake = tmp_path / "lake"
    to = ("--sink", "lake", "--out", str(lake)) if sink == "lake" else ()

    def ids() -> list[str]:
        return lake_ids(lake) if sink == "lake" else stored_ids(db)

    # w1 waits 30 s between its durable write and the ack: the kill lands there, so what it wrote comes again
    w1 = procs.worker(nats_server.url, "w1", db, *to, "--ack-delay-s", "30")
    procs.worker(nats_server.url, "w2", db, *to)
    wait_workers(procs, ("w1", "w2"))
    sent: list[str] = []
    agents = []
    t = time.time_ns()
    part: dict[str, int] = {}
    for node in ("a", "b", "c"):
        events = node_events(node, n, start_ns=t)
        rec = tmp_path / f"{node}.jsonl"
        write_recording(rec, events)
        sent += [e.id for e in events]
        part.update((e.id, partition_of(workload_key(e, node), 16)) for e in events)
        agents.append(procs.agent(nats_server.url, node, rec, rate=150.0))
    mine = set(procs.stats("worker-w1")["partitions"])
    wait_for(lambda: any(part[i] in mine for i in ids()), 60, "w1's first batch in the sink")
    os.kill(w1.pid, signal.SIGKILL)  # mid-stream: fetched, maybe written, not all acknowledged
    w1.wait()
    time.sleep(1.0)
    nats_server.stop()
    time.sleep(OUTAGE_S)
    nats_server.start()
    assert [p.wait(timeout=120 + OUTAGE_S) for p in agents] == [0, 0, 0]
    wait_for(lambda: len(ids()) >= len(sent), 120, f"{len(sent)} events in the sink")
    time.sleep(1.0)
    got = ids()
    assert len(got) == len(sent) == 3 * n
    assert sorted(got) == sorted(sent)
    for node in ("a", "b", "c"):
        st = procs.stats(f"agent-{node}")
        assert (st["events"], st["lost"], st["pending"]) == (n, 0, 0)
        assert st["outages"] >= 1 and st["spool"]["sent"] == st["spool"]["spooled"] > 0
    w2 = procs.stats("worker-w2")
    assert w2["partitions"] == list(range(16))  # it took over the killed worker's partitions
    assert w2["redelivered"] > 0 and w2["malformed"] == 0  # what w1 stored and did not ack came again ...
    assert w2["sink"]["duplicates"] > 0  # ... and was kept once (as were copies re-published across the outage)
    if sink == "lake":
        assert w2["sink"]["refreshes"] > 0  # the ids w1 wrote were read again before the redeliveries
        assert not list(lake.glob("**/.part-*.tmp"))


def test_forged_messages_are_counted_and_dropped(nats_server: NatsServer, procs: Procs, tmp_path: Path) -> None:
    db = tmp_path / "sink.db"
    w = procs.worker(nats_server.url, "w1", db)
    wait_workers(procs, ("w1",))
    good = node_events("a", 5)
    bad = node_events("f", 5)  # the forged ones' own ids (JetStream would drop a good one with a forged one's id)

    async def publish() -> None:
        import nats

        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        forged = [
            ("runwatch.c.a.bogus.p1.w", b"{}", {"Nats-Msg-Id": "a:1"}),  # subject: no such class
            ("runwatch.c.a.event.p1.w", to_json(bad[0]), None),  # no message id
            ("runwatch.c.a.event.p2.w", b"\xff not json", {"Nats-Msg-Id": "a:2"}),  # payload
            ("runwatch.c.a.event.p3.w", b'{"id": "x", "kind": 5}', {"Nats-Msg-Id": "a:x"}),  # payload: types
            ("runwatch.c.a.event.p4.w", to_json(bad[1]), {"Nats-Msg-Id": "b:" + bad[1].id}),  # id of another node
            ("runwatch.c.a.decision.p5.w", to_json(bad[2]), {"Nats-Msg-Id": "a:" + bad[2].id}),  # not a decision
            ("runwatch.c.a.alert.p6.w", to_json(bad[3]), {"Nats-Msg-Id": "a:" + bad[3].id}),  # not an alert
        ]
        for subject, payload, headers in forged:
            await js.publish(subject, payload, headers=headers)
        for e in good:
            await js.publish(f"runwatch.c.a.event.p{int(e.id[-1], 16) % 16}.w", to_json(e),
                             headers={"Nats-Msg-Id": f"a:{e.id}"})
        await nc.close()

    asyncio.run(publish())
    wait_for(lambda: procs.stats("worker-w1").get("consumed") == 5
             and procs.stats("worker-w1").get("malformed") == 7, 30, "5 stored and 7 dropped")
    st = procs.stats("worker-w1")
    assert st["malformed_by_reason"] == {"subject": 1, "no_msg_id": 1, "payload": 3, "msg_id_mismatch": 1,
                                         "class_mismatch": 1}
    assert sorted(stored_ids(db)) == sorted(e.id for e in good)
    assert w.poll() is None  # still running
    w.send_signal(signal.SIGTERM)
    assert w.wait(timeout=15) == 0
    assert "7 malformed message(s) dropped" in (tmp_path / "worker-w1.log").read_text()


@pytest.mark.parametrize("warm_up", [True, False])
def test_a_worker_taking_over_keeps_the_sequence_state(nats_server: NatsServer, procs: Procs, tmp_path: Path,
                                                       warm_up: bool) -> None:
    """x reads a secret on a (w1 stores and acks it), w1 is killed, w2 takes over, x connects out
    from b: w2 raises the alert because it replayed the partition's history (not without)."""
    db = tmp_path / "sink.db"
    w1 = procs.worker(nats_server.url, "w1", db)
    wait_workers(procs, ("w1",))
    x = workload("x", "any")
    t = time.time_ns()
    read, out = secret_read("a", 1, x, t), egress("b", 1, x, t + 1)
    write_recording(tmp_path / "a.jsonl", [*node_events("a", 5, start_ns=t - 10), read])
    assert procs.agent(nats_server.url, "a", tmp_path / "a.jsonl").wait(timeout=60) == 0
    wait_for(lambda: procs.stats("worker-w1").get("consumed") == 6, 30, "w1 to store and ack the read")
    os.kill(w1.pid, signal.SIGKILL)
    w1.wait()
    procs.worker(nats_server.url, "w2", db, *([] if warm_up else ["--no-warm-up"]))
    wait_for(lambda: procs.stats("worker-w2").get("partitions") == list(range(16)), 30, "w2 to take over")
    write_recording(tmp_path / "b.jsonl", [out])
    assert procs.agent(nats_server.url, "b", tmp_path / "b.jsonl").wait(timeout=60) == 0
    wait_for(lambda: out.id in stored_ids(db), 30, "the egress in the sink")
    time.sleep(1.5)  # the alert, if any, is stored with the egress; the stats file catches up
    alerts = query_alerts(db, rule=RULE)
    assert [a.evidence for a in alerts] == ([[read.id, out.id]] if warm_up else [])
    assert procs.stats("worker-w2")["warmed"] == (6 if warm_up else 0)
