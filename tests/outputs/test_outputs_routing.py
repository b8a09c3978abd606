"""Routes: a severity floor, rule tags and workload owners decide which alerts an output receives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runwatch.alerts.model import Alert
from runwatch.events import Container, Event
from runwatch.outputs.config import load_outputs
from runwatch.outputs.group import OutputGroup
from runwatch.outputs.routing import Route, routed
from runwatch.testing.receivers import HttpReceiver


def test_route_conditions(alerts: list[Alert]) -> None:
    # alert i: severity (info, low, medium, high, critical)[i % 5]; tag exfil when i % 3 == 0; owner
    # team-pay when i % 4 == 0
    def passing(route: Route) -> list[int]:
        return [i for i, a in enumerate(alerts) if route.alert(a)]

    assert passing(Route("high")) == [3, 4, 8, 9, 13, 14, 18, 19]
    assert passing(Route(tags=("exfil",))) == [0, 3, 6, 9, 12, 15, 18, 21]
    assert passing(Route(owners=("team-p*",))) == [0, 4, 8, 12, 16, 20]
    assert passing(Route("medium", ("exfil",), ("team-pay",))) == [12]
    assert len(passing(Route())) == 23
    with pytest.raises(ValueError, match="unknown severity 'urgent'"):
        Route("urgent")


def test_three_routed_webhooks_get_exactly_their_alerts(tmp_path: Path, alerts: list[Alert]) -> None:
    with HttpReceiver() as high, HttpReceiver() as exfil, HttpReceiver() as pay:
        cfg = tmp_path / "outputs.yaml"
        cfg.write_text(f"""\
outputs:
  - name: high
    type: webhook
    url: {high.url}
    route: {{min_severity: high}}
  - name: exfil
    type: webhook
    url: {exfil.url}
    route: {{tags: [exfil]}}
  - name: pay
    type: webhook
    url: {pay.url}
    route: {{owners: [team-pay], min_severity: low}}
""")
        specs = load_outputs(str(cfg), str(tmp_path / "spool"))
        group = OutputGroup([spec.build() for spec in specs])
        group.open()
        group.write_alerts(alerts[:13])
        group.write_alerts(alerts[13:])
        for m in group.members:
            assert m.inner.flush(10)  # type: ignore[union-attr]
        group.close()
        got = {name: [json.loads(b)["id"] for b in rx.bodies()] for name, rx in
               (("high", high), ("exfil", exfil), ("pay", pay))}
    assert got == {
        "high": [f"al-{i:02d}" for i in (3, 4, 8, 9, 13, 14, 18, 19)],
        "exfil": [f"al-{i:02d}" for i in (0, 3, 6, 9, 12, 15, 18, 21)],
        "pay": [f"al-{i:02d}" for i in (4, 8, 12, 16)],  # 0 and 20 are info
    }
    stats = {m.name: m.output_stats() for m in group.members}  # type: ignore[union-attr]
    assert {n: (s["sent"], s["filtered"]) for n, s in stats.items()} == {
        "high": (8, 15), "exfil": (8, 15), "pay": (4, 19)}


def test_owner_routes_apply_to_events_too(tmp_path: Path) -> None:
    from runwatch.outputs.ocsf import OcsfOutput

    path = tmp_path / "ocsf.jsonl"
    out = routed(OcsfOutput(path), Route(owners=("team-pay",)))
    events = [Event(id=f"e{i}", time=i, kind="process.exec", pid=i,
                    container=Container(id=f"c{i}", runtime="runc", owner="team-pay" if i % 3 == 0 else "team-ml"))
              for i in range(11)]
    out.open()
    out.write(events)  # type: ignore[union-attr]
    out.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["metadata"]["uid"] for line in lines] == ["e0", "e3", "e6", "e9"]
    assert out.output_stats()["filtered"] == 7  # type: ignore[union-attr]
