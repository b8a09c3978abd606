"""Workload governance: owner, escalation and review date from labels and annotations (the runtime's,
the Kubernetes API's) or the selecting policy's metadata; alerts carry the owner; ``runwatch
workloads`` lists what the store has seen with its review status."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runwatch.alerts.model import workload_of
from runwatch.alerts.render import render_text, to_ocsf
from runwatch.enrich import governance
from runwatch.enrich.governance import Governance, from_labels, parse_review_by, review_status
from runwatch.enrich.k8s import PodWatcher, api_client
from runwatch.enrich.workload import PodmanFacts, WorkloadJoin
from runwatch.events import Container, Event
from runwatch.policy.loader import PolicyLoadError, load_policies
from runwatch.rules.engine import Engine
from runwatch.rules.loader import load_texts
from runwatch.testing.kubeapi import FakeKubeApi, pod_json

NODE = "node-gov"
ID_APP = "a7" * 32
ID_SIDE = "b7" * 32
ID_LONE = "c7" * 32
TODAY = datetime.date(2026, 12, 4)
RUNWATCH = str(Path(sys.executable).with_name("runwatch"))

POLICY = """\
policies:
  - id: shop
    selector: {namespace: [shop]}
    owner: team-fallback
    escalation: pager-shop
    review_by: 2027-03-31
  - id: platform
    selector: {container: ["loner-*"]}
    owner: team-platform
    review_by: 2099-12-31
"""


def test_labels_then_annotations_declare_governance_and_a_bad_review_date_is_ignored() -> None:
    labels = {"runwatch.io/owner": "team-shop", "runwatch.io/review-by": "31/01/2027"}
    annotations = {"runwatch.io/owner": "team-other", "runwatch.io/escalation": "oncall@example.com",
                   "runwatch.io/review-by": "2027-01-31"}
    assert from_labels(labels, annotations) == Governance("team-shop", "oncall@example.com", "2027-01-31")
    assert from_labels({"runwatch.io/review-by": "2027-02-30"}) == Governance()
    assert from_labels(None, {}) == Governance()
    assert parse_review_by(datetime.date(2027, 5, 1)) == "2027-05-01"
    for bad in ("2027-5-1", 20270501, "tomorrow", datetime.datetime(2027, 5, 1, 9)):
        with pytest.raises(ValueError, match="review_by must be a date"):
            parse_review_by(bad)
    assert [review_status(d, TODAY) for d in ("2026-12-03", "2026-12-04", None, "soon")] == [
        "overdue", "ok", "missing", "missing"]


def test_policy_metadata_is_checked_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("- id: a\n  selector: {pod: [x]}\n  review_by: 2027-13-01\n  owner: ''\n"
                    "- id: b\n  selector: {pod: [y]}\n  escalation: [pager]\n  review_by: 2027-01-31T10:00:00\n"
                    "- id: c\n  selector: {pod: [z]}\n  owner: team-c\n  review_by: '2027-01-31'\n")
    with pytest.raises(PolicyLoadError) as caught:
        load_policies(str(path))
    assert [e.located() for e in caught.value.errors] == [
        f"{path}:3:14: policy 'a': review_by must be a date (YYYY-MM-DD), not '2027-13-01'",
        f"{path}:4:10: policy 'a': owner must be a one-line name or address, not ''",
        f"{path}:7:15: policy 'b': escalation must be a one-line name or address, not ['pager']",
        f"{path}:8:14: policy 'b': review_by must be a date (YYYY-MM-DD), not a time '2027-01-31T10:00:00'"]
    path.write_text(POLICY)
    policies = load_policies(str(path))
    shop = policies.get("shop")
    assert shop is not None and (shop.owner, shop.escalation, shop.review_by) == (
        "team-fallback", "pager-shop", "2027-03-31")


@pytest.fixture
def api() -> Iterator[FakeKubeApi]:
    with FakeKubeApi() as server:
        yield server


def test_api_pod_labels_declare_the_owner_and_the_policy_fills_what_they_do_not(
        api: FakeKubeApi, tmp_path: Path) -> None:
    api.add(pod_json("shop-1", "shop", "5f1c2c1e-0d4f-4bb2-9a55-6f3f1b8e0a01", NODE, service_account="shop-sa",
                     labels={"app": "shop", "runwatch.io/owner": "team-shop"},
                     annotations={"runwatch.io/review-by": "2020-01-31"},
                     containers=[{"name": "app", "image": "shop:1", "id": f"cri-o://{ID_APP}"},
                                 {"name": "proxy", "image": "envoy:2", "id": f"cri-o://{ID_SIDE}"}]))
    watcher = PodWatcher(api_client(api.url), NODE, retry=0.05)
    watcher.start()
    try:
        assert watcher.synced.wait(10)
        path = tmp_path / "p.yaml"
        path.write_text(POLICY)
        join = WorkloadJoin(pods=watcher.index, podman=PodmanFacts(podman="/nonexistent"))
        join.governance_of = load_policies(str(path)).governance_of
        app = join(Container(id=ID_APP, runtime="cri-o"))
        side = join(Container(id=ID_SIDE, runtime="cri-o"))
        lone = join(Container(id=ID_LONE, runtime="runc", name="loner-1"))
        host = join(Container(id="d7" * 32, runtime="runc", name="other"))
    finally:
        watcher.stop()
    # the pod's label and annotation win; the escalation only the policy says
    assert (app.owner, app.escalation, app.review_by) == ("team-shop", "pager-shop", "2020-01-31")
    assert (side.name, side.owner, side.escalation, side.review_by) == ("proxy", "team-shop", "pager-shop",
                                                                        "2020-01-31")
    assert (lone.owner, lone.escalation, lone.review_by) == ("team-platform", None, "2099-12-31")
    assert (host.owner, host.escalation, host.review_by) == (None, None, None)
    # without the policy, the labels alone
    bare = governance.apply(Container(id=ID_APP, runtime="cri-o", labels={"runwatch.io/owner": "team-x"}))
    assert (bare.owner, bare.escalation, bare.review_by) == ("team-x", None, None)


RULE = """\
- rule: gov_probe
  desc: probe of the owner on alerts
  condition: kind = process.exec and proc.cmdline contains gov-probe
  output: "probe in %container.name owned by %workload.owner"
  severity: high
"""


def test_alerts_carry_the_owner_in_json_text_and_ocsf() -> None:
    c = Container(id="e7" * 32, runtime="podman", name="app", pod="shop-1", owner="team-shop",
                  escalation="pager-shop", review_by="2027-01-31", owner_kind="ReplicaSet", owner_name="shop-7d")
    e = Event(id="ev1", time=1_700_000_000_000_000_000, kind="process.exec", pid=41, exe="/bin/cat",
              cmdline="cat gov-probe", container=c)
    [alert] = Engine(load_texts([(RULE, "r.yaml")])).process_batch([e])
    assert (alert.workload.owner, alert.workload.escalation, alert.workload.controller) == (
        "team-shop", "pager-shop", "ReplicaSet/shop-7d")
    assert alert.output == "probe in app owned by team-shop"
    assert "[app owner=team-shop]" in render_text(alert)
    assert to_ocsf(alert)["unmapped"]["workload"] == {"pod": "shop-1", "owner": "team-shop",
                                                       "escalation": "pager-shop"}
    assert workload_of(Event(id="h", time=1, kind="process.exec", pid=1)).owner is None


def test_workloads_refuses_a_missing_store_in_one_line(tmp_path: Path) -> None:
    res = subprocess.run([RUNWATCH, "workloads", "--db", str(tmp_path / "none.db")], capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [f"runwatch: error: event store not found: {tmp_path / 'none.db'}"]


def _stored(tmp_path: Path) -> Path:
    """A store with three workloads: a pod's app and sidecar (labels) and a loner (policy)."""
    from runwatch.events import DecisionInfo
    from runwatch.store.sqlite import SqliteStore

    shop = dict(runtime="podman", pod="shop-1", namespace="shop", spiffe_id="spiffe://td/ns/shop/sa/shop",
                spiffe_source="derived", role="model-server", owner="team-shop", escalation="pager-shop",
                review_by="2020-01-31")
    app = Container(id=ID_APP, name="app", siblings=["proxy"], **shop)  # type: ignore[arg-type]
    side = Container(id=ID_SIDE, name="proxy", siblings=["app"], **shop)  # type: ignore[arg-type]
    lone = Container(id=ID_LONE, runtime="runc", name="loner-1", owner="team-platform", review_by="2099-12-31")
    t0 = 1_780_000_000_000_000_000  # 2026-05-28T20:26:40Z
    events = [Event(id=f"e{n}", time=t0 + n * 1_000_000_000, kind="process.exec", pid=100 + n, container=c)
              for n, c in enumerate([app, side, app, lone, app])]
    events.append(Event(id="d1", time=t0 + 7_000_000_000, kind="policy.decision", pid=200, container=lone,
                        decision=DecisionInfo(policy="platform", verdict="would_deny")))
    store = SqliteStore(tmp_path / "w.db")
    try:
        store.write(events)
        engine = Engine(load_texts([(RULE, "r.yaml")]))
        probes = [Event(id=f"p{n}", time=t0 + (10 + n) * 1_000_000_000, kind="process.exec", pid=300 + n,
                        exe=f"/bin/x{n}", cmdline="x gov-probe", container=c) for n, c in enumerate([app, app, app])]
        store.write_alerts(engine.process_batch(probes))
        store.flush(timeout=10)
    finally:
        store.close()
    return tmp_path / "w.db"


def test_workloads_json_is_exact_and_overdue_keeps_the_overdue(tmp_path: Path) -> None:
    db = _stored(tmp_path)
    res = subprocess.run([RUNWATCH, "workloads", "--db", str(db), "--format", "json"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    none = {"critical": 0, "high": 0, "medium": 0, "low": 0, "info": 0}
    shop = {"runtime": "podman", "pod": "shop-1", "namespace": "shop", "spiffe_id": "spiffe://td/ns/shop/sa/shop",
            "spiffe_source": "derived", "role": "model-server", "owner": "team-shop", "escalation": "pager-shop",
            "review_by": "2020-01-31", "review": "overdue", "policy": None}
    assert [json.loads(line) for line in res.stdout.splitlines()] == [
        {"id": ID_LONE, "name": "loner-1", "runtime": "runc", "pod": None, "namespace": None, "siblings": [],
         "spiffe_id": None, "spiffe_source": None, "role": None, "owner": "team-platform", "escalation": None,
         "review_by": "2099-12-31", "review": "ok", "policy": "platform", "alerts": none, "events": 2,
         "last_seen": "2026-05-28T20:26:47.000Z"},
        {"id": ID_APP, "name": "app", **shop, "siblings": ["proxy"], "alerts": {**none, "high": 3}, "events": 3,
         "last_seen": "2026-05-28T20:26:44.000Z"},
        {"id": ID_SIDE, "name": "proxy", **shop, "siblings": ["app"], "alerts": none, "events": 1,
         "last_seen": "2026-05-28T20:26:41.000Z"}]
    text = subprocess.run([RUNWATCH, "workloads", "--db", str(db), "--overdue"], capture_output=True, text=True)
    lines = text.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["WORKLOAD", "shop/shop-1/app", "shop/shop-1/proxy"]
    assert lines[1].startswith("shop/shop-1/app (+proxy)  ")
    assert lines[1].split()[-8:] == ["team-shop", "pager-shop", "-", "0/3/0/0/0", "3", "2026-05-28T20:26:44.000Z",
                                     "overdue", "2020-01-31"]
