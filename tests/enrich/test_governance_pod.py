"""A real podman pod (``podman kube play``: an app and a sidecar whose labels and annotations name
the owner, escalation and review date) and a loner container governed by its policy's metadata,
under a real ``runwatch watch``: events and alerts carry the owner, and ``runwatch workloads``
lists the three with their identity, role, policy, alerts and review status."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runwatch.testing.podman import PODMAN, PlayedPod, build_image, container, kube_play, podman

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(PODMAN is None or os.geteuid() != 0, reason="needs root and podman")]
RUNWATCH = str(Path(sys.executable).with_name("runwatch"))
IMAGE = "localhost/runwatch-gov-busybox:1"

MANIFEST = """\
apiVersion: v1
kind: Pod
metadata:
  name: {pod}
  labels:
    app: shop
    runwatch.io/owner: team-shop
  annotations:
    runwatch.io/role: model-server
    runwatch.io/escalation: oncall-shop@example.com
    runwatch.io/review-by: "2020-01-31"
spec:
  containers:
  - name: app
    image: {image}
    imagePullPolicy: Never
    command: ["/bin/sleep", "600"]
  - name: proxy
    image: {image}
    imagePullPolicy: Never
    command: ["/bin/sleep", "601"]
"""

POLICY = """\
policies:
  - id: platform
    selector: {{container: ["{loner}"]}}
    role: tool-sandbox
    owner: team-platform
    escalation: pager-platform
    review_by: 2099-12-31
"""

RULES = """\
- rule: gov_high
  desc: probe
  condition: kind = process.exec and container.id exists and proc.cmdline contains gov-probe-high
  output: "high probe in %container.name of %workload.owner"
  severity: high
- rule: gov_low
  desc: probe
  condition: kind = process.exec and container.id exists and proc.cmdline contains gov-probe-low
  output: "low probe in %container.name of %workload.owner"
  severity: low
- rule: gov_info
  desc: probe
  condition: kind = process.exec and container.id exists and proc.cmdline contains gov-probe-low
  output: "info probe in %container.name"
  severity: info
"""


@pytest.fixture(scope="module")
def pod() -> Iterator[PlayedPod]:
    build_image(IMAGE)
    name = f"gov-{uuid.uuid4().hex[:8]}"
    with kube_play(MANIFEST.format(pod=name, image=IMAGE), name) as played:
        yield played


def seen(events_out: Path, cid: str, marker: str) -> bool:
    if not events_out.exists():
        return False
    for line in events_out.read_text().splitlines():
        e = json.loads(line)
        if e["kind"] == "process.exec" and (e.get("container") or {}).get("id") == cid and marker in e.get(
                "cmdline", ""):
            return True
    return False


def exec_until_seen(cid: str, events_out: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        podman("exec", cid, "/bin/cat", "/etc/hostname")
        time.sleep(0.3)
        if seen(events_out, cid, "/etc/hostname"):
            return
    raise AssertionError(f"no exec of {cid[:12]} recorded")


def test_owner_on_events_alerts_and_the_workloads_list(pod: PlayedPod, tmp_path: Path) -> None:
    loner_name = f"loner-{uuid.uuid4().hex[:8]}"
    with container(IMAGE, loner_name) as loner:
        app, proxy = pod.containers["app"], pod.containers["proxy"]
        policy, rules = tmp_path / "p.yaml", tmp_path / "r.yaml"
        policy.write_text(POLICY.format(loner=loner_name))
        rules.write_text(RULES)
        events_out, alerts_out, db = tmp_path / "events.jsonl", tmp_path / "alerts.jsonl", tmp_path / "w.db"
        proc = subprocess.Popen(
            [RUNWATCH, "watch", "--db", str(db), "--no-sdk", "--rules", str(rules), "--duration", "120",
             "--policy", str(policy), "--events-out", str(events_out), "--alerts-out", str(alerts_out),
             "--container", app, "--container", proxy, "--container", loner],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            for cid in (app, proxy, loner):
                exec_until_seen(cid, events_out, deadline)
            podman("exec", app, "/bin/echo", "gov-probe-high")
            podman("exec", app, "/bin/echo", "gov-probe-low")
            podman("exec", loner, "/bin/echo", "gov-probe-high")
            while time.monotonic() < deadline and not (
                    seen(events_out, app, "gov-probe-low") and seen(events_out, loner, "gov-probe-high")):
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err

    events = [json.loads(line) for line in events_out.read_text().splitlines()]
    by_id = {e["container"]["id"]: e["container"] for e in events if e.get("container")}
    gov = {cid: (by_id[cid]["name"], by_id[cid].get("role"), by_id[cid].get("owner"), by_id[cid].get("escalation"),
                 by_id[cid].get("review_by")) for cid in (app, proxy, loner)}
    assert gov == {app: ("app", "model-server", "team-shop", "oncall-shop@example.com", "2020-01-31"),
                   proxy: ("proxy", "model-server", "team-shop", "oncall-shop@example.com", "2020-01-31"),
                   loner: (loner_name, "tool-sandbox", "team-platform", "pager-platform", "2099-12-31")}

    alerts = [json.loads(line) for line in alerts_out.read_text().splitlines()]
    got = sorted((a["rule"], a["workload"]["name"], a["workload"]["owner"], a["workload"]["escalation"], a["output"])
                 for a in alerts)
    assert got == sorted([
        ("gov_high", "app", "team-shop", "oncall-shop@example.com", "high probe in app of team-shop"),
        ("gov_low", "app", "team-shop", "oncall-shop@example.com", "low probe in app of team-shop"),
        ("gov_info", "app", "team-shop", "oncall-shop@example.com", "info probe in app"),
        ("gov_high", loner_name, "team-platform", "pager-platform", f"high probe in {loner_name} of team-platform")])

    res = subprocess.run([RUNWATCH, "workloads", "--db", str(db), "--format", "json", "--policy", str(policy)],
                         capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    for r in rows:
        assert r.pop("events") >= 1
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r.pop("last_seen"))
    none = {"critical": 0, "high": 0, "medium": 0, "low": 0, "info": 0}
    shop = dict(runtime="podman", pod=pod.name, namespace=None, spiffe_id=None, spiffe_source=None,
                role="model-server", owner="team-shop", escalation="oncall-shop@example.com",
                review_by="2020-01-31", review="overdue", policy=None)
    assert rows == [
        {"id": loner, "name": loner_name, "runtime": "podman", "pod": None, "namespace": None, "siblings": [],
         "spiffe_id": None, "spiffe_source": None, "role": "tool-sandbox", "owner": "team-platform",
         "escalation": "pager-platform", "review_by": "2099-12-31", "review": "ok", "policy": "platform",
         "alerts": {**none, "high": 1}},
        {"id": app, "name": "app", **shop, "siblings": ["proxy"], "alerts": {**none, "high": 1, "low": 1, "info": 1}},
        {"id": proxy, "name": "proxy", **shop, "siblings": ["app"], "alerts": none}]
    # key order as documented
    assert list(json.loads(res.stdout.splitlines()[0])) == [
        "id", "name", "runtime", "pod", "namespace", "siblings", "spiffe_id", "spiffe_source", "role", "owner",
        "escalation", "review_by", "review", "policy", "alerts", "events", "last_seen"]

    overdue = subprocess.run([RUNWATCH, "workloads", "--db", str(db), "--overdue"],
                             capture_output=True, text=True, check=True).stdout.splitlines()
    assert overdue[0].split() [:4] == ["WORKLOAD", "ID", "IDENTITY", "ROLE"]
    assert [line.split()[0] for line in overdue[1:]] == [f"{pod.name}/app", f"{pod.name}/proxy"]
    assert all(line.endswith("overdue 2020-01-31") for line in overdue[1:])
    assert " team-shop " in overdue[1] and " 0/1/0/1/1 " in overdue[1]
