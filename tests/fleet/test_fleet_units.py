"""Subjects, partitions, the disk spool and cross-node sequences, without a NATS server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runwatch.events import Container
from runwatch.rules import Engine, load_rules
from runwatch.rules.diagnostics import RuleLoadError
from runwatch.rules.fleet import fleet_rule_paths
from runwatch.store.spool import SpoolLimits
from runwatch.testing.fleet import egress, event, secret_read, workload
from runwatch.transport.spool import MessageSpool
from runwatch.transport.subjects import Subjects, parse_subject, partition_filter, partition_of, token, workload_key

RULE = "fleet_secret_read_then_egress_elsewhere"


def test_subject_tokens_and_partitions() -> None:
    s = Subjects("prod-eu", "node-7", partitions=13)
    c = workload("shop", "node-7")
    key = workload_key(event("node-7", 1, "process.exec", c, 5), "node-7")
    assert key == "spiffe://cluster.local/ns/ai/sa/shop"
    subj = s.subject("event", key)
    assert subj == f"runwatch.prod-eu.node-7.event.p{partition_of(key, 13)}.spiffe_cluster_local_ns_ai_sa_shop"
    parsed = parse_subject(subj)
    assert parsed is not None and (parsed.cluster, parsed.node, parsed.cls) == ("prod-eu", "node-7", "event")
    assert parsed.partition == partition_of(key, 13) < 13
    # the same identity lands in the same partition from every node
    assert Subjects("prod-eu", "node-8", 13).subject("alert", key).split(".")[4] == subj.split(".")[4]
    assert token("a.b*c >d") == "a_b_c_d" and token("...") == "_"
    assert s.msg_id("ev-1") == "node-7:ev-1"
    assert partition_filter(3) == "runwatch.*.*.*.p3.*"
    for bad in ("runwatch.c.n.bogus.p1.w", "runwatch.c.n.event.x1.w", "other.c.n.event.p1.w", "runwatch.c.n.event.p1"):
        assert parse_subject(bad) is None
    with pytest.raises(ValueError, match="node"):
        Subjects("c", "bad.node")


def test_workload_key_falls_back_to_pod_then_container_then_host() -> None:
    no_spiffe = Container(id="cid", runtime="runc", pod_uid="uid-1")
    assert workload_key(event("n", 1, "process.exec", no_spiffe, 1), "n") == "uid-1"
    assert workload_key(event("n", 1, "process.exec", Container(id="cid", runtime="runc"), 1), "n") == "cid"
    assert workload_key(event("n", 1, "process.exec", None, 1), "n") == "host:n"


def test_disk_spool_is_ordered_bounded_and_kept_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    spool = MessageSpool(path, SpoolLimits(events=7, bytes=1 << 20))
    msgs = [(f"s.{i}", f"n:{i}", b"x" * (i + 1)) for i in range(11)]
    assert spool.add(msgs[:3]) == 0 and spool.add(msgs[3:]) == 4  # 7 fit, 4 counted as lost
    assert spool.stats() == {"held": 7, "held_bytes": 28, "peak": 7, "spooled": 7, "sent": 0, "lost": 4}
    head = spool.head()
    assert head is not None and [m[1] for m in head[1]] == ["n:0", "n:1", "n:2"]
    spool.remove(head[0])
    spool.close()
    again = MessageSpool(path, SpoolLimits(events=7, bytes=1 << 20))
    assert len(again) == 4 and again.bytes == 22  # kept for the next start
    nxt = again.head()
    assert nxt is not None and [m[1] for m in nxt[1]] == ["n:3", "n:4", "n:5", "n:6"]
    again.close()


def _engine() -> Engine:
    return Engine(load_rules([str(p) for p in fleet_rule_paths()]))


def test_cross_node_sequence_fires_only_across_nodes() -> None:
    x, y, z = (workload(n, "any") for n in ("x", "y", "z"))

    def on(node: str, c: Container) -> Container:
        import msgspec

        return msgspec.structs.replace(c, node=node)

    events = [
        secret_read("a", 1, on("a", x), 10),  # x: secret on a ...
        secret_read("c", 2, on("c", y), 11),  # y: secret and egress on c: same node, no alert
        egress("c", 3, on("c", y), 12),
        egress("a", 4, on("a", z), 13),  # z: egress before the secret: no alert
        secret_read("b", 5, on("b", z), 14),
        egress("b", 6, on("b", x), 15),  # ... egress on b: alert
        egress("b", 7, on("b", y), 16, ip="10.0.0.9"),  # y on b, but an internal address: no alert
        egress("c", 8, on("c", x), 17),  # x again from c: the partial was used up, no second alert
    ]
    alerts = [a for a in _engine().process_batch(events) if a.rule == RULE]
    assert [(a.workload.spiffe_id, a.evidence) for a in alerts] == [
        ("spiffe://cluster.local/ns/ai/sa/x", [events[0].id, events[5].id])]
    assert alerts[0].workload.node == "b"
    assert alerts[0].output == ("spiffe://cluster.local/ns/ai/sa/x read a secret, then connected to 93.184.215.14:443 "
                                "from node b")


def test_across_keeps_one_partial_per_node() -> None:
    """Secrets read on a and then b: egress on b still completes the one started on a."""
    import msgspec

    x = workload("x", "any")
    ev = [secret_read("a", 1, msgspec.structs.replace(x, node="a"), 10),
          secret_read("b", 2, msgspec.structs.replace(x, node="b"), 11),
          egress("b", 3, msgspec.structs.replace(x, node="b"), 12)]
    engine = _engine()
    alerts = [a for a in engine.process_batch(ev) if a.rule == RULE]
    assert [a.evidence for a in alerts] == [[ev[0].id, ev[2].id]]
    assert engine.stats()["sequence_state"][RULE]["partials"] == 1  # b's read still waits


def test_across_must_name_a_usable_field(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("- sequence: s\n  by: [workload.spiffe_id]\n  across: no.such.field\n  within: 1m\n"
                 "  steps:\n    - kind = file.open\n    - kind = net.connect\n")
    with pytest.raises(RuleLoadError) as info:
        load_rules([str(f)])
    assert [str(e).split(": ", 1)[1] for e in info.value.errors] == [
        "sequence 's': unknown or unusable across field 'no.such.field'"]


def test_publisher_spools_while_nats_is_unreachable_and_catches_up(tmp_path: Path) -> None:
    """NATS is not there at the start: the queue goes to the bounded disk spool (the rest is
    counted), and once a server answers on the URL the spool is published, in order."""
    import shutil

    from runwatch.testing.fleet import node_events
    from runwatch.testing.natsserver import NatsServer, free_port
    from runwatch.transport.nats import NatsOutput

    port = free_port()
    out = NatsOutput(f"nats://127.0.0.1:{port}", cluster="t", node="a", spool_path=str(tmp_path / "spool"),
                     spool=SpoolLimits(events=7, bytes=1 << 20), queue_max=13)
    out.open()
    events = node_events("a", 17)
    try:
        t0 = time.monotonic()
        out.write(events)  # 13 queued, 4 refused at once; of the 13, 7 fit the spool
        assert time.monotonic() - t0 < 0.5  # never waits for NATS
        deadline = time.monotonic() + 10
        while out.stats()["lost"] < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        st = out.stats()
        assert (st["lost_by_reason"], st["pending"], st["published"]) == ({"queue_full": 4, "spool_full": 6}, 7, 0)
        assert st["outages"] == 1 and st["connected"] is False and st["spool"]["held"] == 7
        if shutil.which("nats-server") is None:
            return
        with NatsServer(tmp_path / "nats", port=port) as srv:
            assert out.drain(20)
            st = out.stats()
            assert (st["published"], st["pending"], st["spool"]["sent"]) == (7, 0, 7)

            async def read_back() -> list[str]:
                import nats

                nc = await nats.connect(srv.url)
                sub = await nc.jetstream().pull_subscribe("runwatch.>", durable="check")
                msgs = await sub.fetch(7, timeout=5)
                await nc.close()
                return [m.headers["Nats-Msg-Id"] for m in msgs]

            import asyncio

            assert asyncio.run(read_back()) == [f"a:{e.id}" for e in events[:7]]  # the spool, oldest first
    finally:
        out.close_timeout = 0.1
        out.close()
