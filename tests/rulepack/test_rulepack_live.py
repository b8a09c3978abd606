"""Every default rule against real workloads under the live sensor, and the same replayed from JSONL."""

from __future__ import annotations

from pathlib import Path

import pytest

from runwatch.alerts.model import Alert
from runwatch.events import Event, from_json
from runwatch.rules import Engine, RuleSet, load_rules
from runwatch.rules.default import default_rule_paths

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def pack() -> RuleSet:
    return load_rules(default_rule_paths())


def _alerts(pack: RuleSet, events: list[Event]) -> list[Alert]:
    return Engine(pack).process_batch(events)


def _read_jsonl(path: Path) -> list[Event]:
    return [from_json(line) for line in path.read_bytes().splitlines() if line]


def test_live_case(live_case, rulepack_live, pack: RuleSet) -> None:  # type: ignore[no-untyped-def]
    result = rulepack_live[live_case.name]
    assert result.events, f"{live_case.name}: no events were captured"
    alerts = _alerts(pack, result.events)
    fired = [a.rule for a in alerts]
    if live_case.exact is not None:
        assert sorted(fired) == sorted(live_case.exact), f"{live_case.name}: raised {fired}"
    if live_case.rule is None:
        assert fired == [], f"benign workload {live_case.name} raised {fired}"
    elif live_case.positive:
        assert live_case.rule in fired, f"{live_case.rule} did not fire; fired: {fired}"
        mine = [a for a in alerts if a.rule == live_case.rule]
        if not live_case.host:
            assert {a.workload.id for a in mine} == {result.container}
    else:
        assert live_case.rule not in fired, f"{live_case.rule} fired on the near-miss {live_case.name}"


def test_replayed_jsonl_gives_the_same_alerts(live_case, rulepack_live, pack: RuleSet) -> None:  # type: ignore[no-untyped-def]
    result = rulepack_live[live_case.name]
    replayed = _read_jsonl(result.jsonl)
    assert len(replayed) == len(result.events)
    assert [e.id for e in replayed] == [e.id for e in result.events]
    live = [(a.rule, tuple(a.evidence)) for a in _alerts(pack, result.events)]
    again = [(a.rule, tuple(a.evidence)) for a in _alerts(pack, replayed)]
    assert again == live


def _svid_status(events: list[Event]) -> list[object]:
    return [e.attrs.get("svid") for e in events if e.kind == "sensor.notice" and e.attrs is not None
            and e.attrs.get("notice") == "identity.svid"]


def test_identity_cases_attest_reject_and_reuse_as_reported(rulepack_live, pack: RuleSet) -> None:  # type: ignore[no-untyped-def]
    forged = rulepack_live["svid-forged-pos"].events
    assert _svid_status(forged) == ["rejected"]
    assert all(e.container is not None and e.container.spiffe_id is None for e in forged)
    secret = rulepack_live["static-secret-pos"]
    assert _svid_status(secret.events) == ["attested"]
    reads = [e for e in secret.events if e.kind == "file.open" and e.file is not None
             and e.file.path == "/run/secrets/api_key"]
    assert len(reads) == 1 and reads[0].container is not None
    assert (reads[0].container.spiffe_id, reads[0].container.spiffe_source) == (
        "spiffe://cluster.local/ns/shop/sa/planner", "attested")
    mismatch = [e for e in rulepack_live["svid-mismatch-pos"].events if e.attrs and e.attrs.get("svid_mismatch")]
    assert [e.attrs["derived_spiffe_id"] for e in mismatch if e.attrs] == ["spiffe://cluster.local/ns/batch/sa/etl"]
    for name, twins in (("svid-reused-pos", 1), ("svid-reused-neg", 0)):
        result = rulepack_live[name]
        assert _svid_status(result.events) == ["attested", "attested"]
        assert len({e.container.id for e in result.events if e.container is not None}) == 2
        reused = [a for a in _alerts(pack, result.events) if a.rule == "spiffe_identity_reused"]
        assert len(reused) == twins
        assert {a.workload.id for a in reused} == ({result.container} if twins else set())
