"""identity.reused_by: one SPIFFE identity active in two workloads at once (engine state, bounded)."""

from __future__ import annotations

from pathlib import Path

import runwatch.rules
from runwatch.events import Container, Event
from runwatch.rules import Engine, load_rules
from runwatch.rules.reuse import IdentityReuse, workload_key

SID = "spiffe://prod.example/agent"
S = 1_000_000_000


def workload(name: str, owner: str | None, n: int = 1, sid: str = SID) -> Container:
    return Container(id=f"{name}-{n}", runtime="cri-o", name=name, pod=f"{owner or name}-{n}", namespace="ml",
                     owner_kind="ReplicaSet" if owner else None, owner_name=owner, spiffe_id=sid)


def ev(t_s: float, c: Container, kind: str = "process.exec") -> Event:
    return Event(id=f"e{t_s}-{c.id}", time=int(t_s * S), kind=kind, exe="/usr/bin/python3", container=c)


def engine() -> Engine:
    return Engine(load_rules([Path(runwatch.rules.__file__).parent / "default"]))


def reuse_alerts(events: list[Event]) -> list[tuple[str | None, str]]:
    return [(a.workload.id, a.output) for a in engine().process_batch(events) if a.rule == "spiffe_identity_reused"]


def test_three_unrelated_workloads_sharing_an_identity_alert_once_per_pair() -> None:
    a, b, c = workload("planner", "planner-7d"), workload("etl", "etl-5c"), workload("scraper", None)
    got = reuse_alerts([ev(0, a), ev(1, b), ev(2, c), ev(3, c), ev(4, a), ev(5, b), ev(6, a), ev(7, c)])
    assert got == [
        ("etl-1", f"{SID} is active in etl and in planner at once"),
        ("scraper-1", f"{SID} is active in scraper and in planner at once"),
        ("scraper-1", f"{SID} is active in scraper and in etl at once"),
    ]


def test_replicas_of_one_controller_and_distinct_identities_stay_quiet() -> None:
    replicas = [workload("planner", "planner-7d", n) for n in range(1, 6)]
    other = workload("etl", "etl-5c", sid="spiffe://prod.example/etl")
    assert reuse_alerts([ev(i, r) for i, r in enumerate(replicas)] + [ev(9, other)]) == []
    assert len({workload_key(r) for r in replicas}) == 1


def test_a_pair_alerts_again_only_after_one_side_went_quiet_for_the_window() -> None:
    a, b = workload("planner", "planner-7d"), workload("etl", "etl-5c")
    got = reuse_alerts([ev(0, a), ev(1, b), ev(30, a), ev(59, b), ev(130, a), ev(131, b), ev(132, a)])
    assert [w for w, _ in got] == ["etl-1", "etl-1"]
    assert reuse_alerts([ev(0, a), ev(1, b, "process.exit"), ev(2, b, "file.chmod")]) == []  # not activity kinds


def test_state_is_bounded() -> None:
    r = IdentityReuse(max_ids=3, max_workloads=2)
    for i in range(7):
        assert r.observe(ev(i, workload("w", None, i, sid=f"spiffe://td/w{i}"))) is None
    assert (r.evicted, len(r._active)) == (4, 3)
    seen = [r.observe(ev(10 + i, workload(f"x{i}", None))) for i in range(5)]
    assert seen == [None, "x0", "x0", "x1", "x2"]  # the oldest of 2 active workloads is forgotten first
    # x4 reported the pair with x2, which was then forgotten, and its pair with it
    assert list(r._active[SID]) == [workload_key(workload("x3", None)), workload_key(workload("x4", None))]
    assert r._reported[SID] == set()
