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
