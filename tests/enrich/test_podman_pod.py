"""A real podman pod (``podman kube play`` of a Kubernetes Pod manifest: an app and a sidecar, from a
locally imported image) under a real ``runwatch watch``: its events and alerts carry the pod, labels,
image and digest, privileged and capability facts, the sidecar grouped with the app, and, with the
Kubernetes API at the network edge, namespace, service account, owner and the derived SPIFFE id."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runwatch.enrich.containers import ContainerResolver
from runwatch.enrich.workload import PodmanFacts, WorkloadJoin
from runwatch.testing.kubeapi import FakeKubeApi, pod_json
from runwatch.testing.podman import PODMAN, build_image, kube_play, pid_of, podman

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(PODMAN is None or os.geteuid() != 0, reason="needs root and podman")]
RUNWATCH = str(Path(sys.executable).with_name("runwatch"))
IMAGE = "localhost/runwatch-test-busybox:1"
NODE = "node-podman"

MANIFEST = """\
apiVersion: v1
kind: Pod
metadata:
  name: {pod}
  labels:
    app: shop
    tier: front
  annotations:
    runwatch.io/role: model-server
spec:
  serviceAccountName: shop-sa
  containers:
  - name: app
    image: {image}
    imagePullPolicy: Never
    command: ["/bin/sleep", "600"]
    securityContext:
      capabilities:
        add: ["NET_ADMIN"]
    volumeMounts:
    - name: tun
      mountPath: /dev/net/tun
  - name: proxy
    image: {image}
    imagePullPolicy: Never
    command: ["/bin/sleep", "601"]
    securityContext:
      privileged: true
  volumes:
  - name: tun
    hostPath:
      path: /dev/net/tun
      type: CharDevice
"""

RULE = """\
- rule: pod_app_ran_cat
  desc: cat ran in the app container of a pod (probe of the workload metadata on alerts).
  condition: >-
    kind = process.exec and k8s.pod.name exists and container.name = app
    and proc.cmdline contains /etc/hostname
  output: "cat in %container.name of %k8s.pod.name"
  severity: low
"""


@dataclass
class Pod:
    name: str
    pod_id: str
    app: str
    proxy: str
    digest: str


@pytest.fixture(scope="module")
def pod() -> Iterator[Pod]:
    digest = build_image(IMAGE)
    name = f"shop-{uuid.uuid4().hex[:8]}"
    with kube_play(MANIFEST.format(pod=name, image=IMAGE), name) as played:
        yield Pod(name, played.pod_id, played.containers["app"], played.containers["proxy"], digest)


def test_the_runtime_says_pod_labels_image_privilege_and_siblings(pod: Pod) -> None:
    resolver = ContainerResolver()
    join = WorkloadJoin(podman=PodmanFacts())
    app = resolver.resolve_pid(pid_of(pod.app))
    assert app is not None
    app = join(app)
    assert (app.id, app.runtime, app.name, app.pod, app.pod_uid) == (pod.app, "podman", "app", pod.name, pod.pod_id)
    assert app.labels == {"app": "shop", "tier": "front"}
    assert (app.image, app.image_digest, app.privileged, app.cap_add) == (IMAGE, pod.digest, False, ["NET_ADMIN"])
    assert (app.siblings, app.role, app.devices, app.gpu) == (["proxy"], "model-server", ["/dev/net/tun"], None)
    assert (app.namespace, app.service_account, app.spiffe_id) == (None, None, None)  # podman knows no namespace
    proxy = resolver.resolve_pid(pid_of(pod.proxy))
    assert proxy is not None
    proxy = join(proxy)
    assert (proxy.name, proxy.pod, proxy.pod_uid, proxy.privileged, proxy.siblings) == (
        "proxy", pod.name, pod.pod_id, True, ["app"])
    assert proxy.devices is None  # privileged: every host device, which privileged already says


def api_pod(pod: Pod) -> dict[str, Any]:
    """The pod as the Kubernetes API of this node would serve it (containers by their podman ids)."""
    return pod_json(pod.name, "shop", "7d0c8c0e-1b7a-4c1e-9a55-00000000a001", NODE,
                    labels={"app": "shop", "tier": "front"}, service_account="shop-sa",
                    owner=("ReplicaSet", "shop-7d9f"), containers=[
                        {"name": "app", "image": IMAGE, "id": f"cri-o://{pod.app}", "imageID": f"{IMAGE}@{pod.digest}",
                         "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}},
                        {"name": "proxy", "image": IMAGE, "id": f"cri-o://{pod.proxy}",
                         "securityContext": {"privileged": True}}])


def exec_until_seen(cid: str, events_out: Path, deadline: float) -> None:
    """``podman exec`` cat in ``cid`` until runwatch has recorded it (it may still be starting)."""
    while time.monotonic() < deadline:
        podman("exec", cid, "/bin/cat", "/etc/hostname")
        time.sleep(0.3)
        if events_out.exists():
            for line in events_out.read_text().splitlines():
                e = json.loads(line)
                c = e.get("container") or {}
                if e["kind"] == "process.exec" and c.get("id") == cid and "/etc/hostname" in e.get("cmdline", ""):
                    return
    raise AssertionError(f"no exec of {cid[:12]} recorded")


def test_events_and_alerts_of_the_pod_carry_kubernetes_facts_and_the_spiffe_id(pod: Pod, tmp_path: Path) -> None:
    rule = tmp_path / "probe.yaml"
    rule.write_text(RULE)
    events_out, alerts_out, db = tmp_path / "events.jsonl", tmp_path / "alerts.jsonl", tmp_path / "w.db"
    with FakeKubeApi() as api:
        api.add(api_pod(pod))
        api.add(pod_json("other", "shop", "7d0c8c0e-1b7a-4c1e-9a55-00000000a002", "node-other",
                         containers=[{"name": "x", "image": "x", "id": "cri-o://" + "0" * 64}]))
        proc = subprocess.Popen(
            [RUNWATCH, "watch", "--db", str(db), "--no-sdk", "--rules", str(rule), "--duration", "120",
             "--events-out", str(events_out), "--alerts-out", str(alerts_out), "--container", pod.app,
             "--container", pod.proxy, "--kube-api", api.url, "--node", NODE, "--trust-domain", "prod.example"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            exec_until_seen(pod.app, events_out, deadline)
            exec_until_seen(pod.proxy, events_out, deadline)
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert f"kubernetes: 1 pod(s) on node {NODE}, watching" in err
        assert api.requests[0] == ("list", {"fieldSelector": f"spec.nodeName={NODE}", "limit": "500"})

    events = [json.loads(line) for line in events_out.read_text().splitlines()]
    cats = {e["container"]["name"]: e["container"] for e in events
            if e["kind"] == "process.exec" and "/etc/hostname" in e.get("cmdline", "")}
    assert cats["app"] == {
        "id": pod.app, "runtime": "podman", "name": "app", "pod": pod.name,
        "pod_uid": "7d0c8c0e-1b7a-4c1e-9a55-00000000a001", "namespace": "shop", "cgroup": cats["app"]["cgroup"],
        "spiffe_id": "spiffe://prod.example/ns/shop/sa/shop-sa", "role": "model-server",
        "labels": {"app": "shop", "tier": "front"}, "service_account": "shop-sa", "node": NODE,
        "owner_kind": "ReplicaSet", "owner_name": "shop-7d9f", "image": IMAGE, "image_digest": pod.digest,
        "privileged": False, "cap_add": ["NET_ADMIN"], "devices": ["/dev/net/tun"], "siblings": ["proxy"],
        "spiffe_source": "derived", "image_repository": "localhost/runwatch-test-busybox", "image_tag": "1"}
    assert cats["app"]["cgroup"].endswith(f"/libpod-{pod.app}")
    side = cats["proxy"]
    assert (side["pod"], side["pod_uid"], side["privileged"], side["siblings"], side["spiffe_id"]) == (
        pod.name, "7d0c8c0e-1b7a-4c1e-9a55-00000000a001", True, ["app"], "spiffe://prod.example/ns/shop/sa/shop-sa")

    alerts = [json.loads(line) for line in alerts_out.read_text().splitlines()]
    assert {a["rule"] for a in alerts} == {"pod_app_ran_cat"}
    w = alerts[0]["workload"]
    assert {k: w[k] for k in ("id", "name", "pod", "namespace", "spiffe_id", "attested", "service_account", "labels",
                              "image", "image_digest", "node", "controller", "siblings")} == {
        "id": pod.app, "name": "app", "pod": pod.name, "namespace": "shop",
        "spiffe_id": "spiffe://prod.example/ns/shop/sa/shop-sa", "attested": False, "service_account": "shop-sa",
        "labels": {"app": "shop", "tier": "front"}, "image": IMAGE, "image_digest": pod.digest, "node": NODE,
        "controller": "ReplicaSet/shop-7d9f", "siblings": ["proxy"]}
    ocsf = [json.loads(line) for line in subprocess.run(
        [RUNWATCH, "events", "--db", str(db), "--format", "ocsf", "--kind", "process.exec", "--container", pod.app],
        capture_output=True, text=True, check=True).stdout.splitlines()]
    probe = next(o for o in ocsf if "/etc/hostname" in json.dumps(o))
    container = probe["container"]
    assert container["image"] == {"name": IMAGE, "uid": pod.digest}
    assert container["labels"] == ["app=shop", "tier=front"]
    assert probe["unmapped"]["container"]["spiffe_id"] == "spiffe://prod.example/ns/shop/sa/shop-sa"


POLICY = """\
policies:
  - id: shop-front
    selector:
      identity: [spiffe://prod.example/ns/shop/sa/shop-sa]
    exec: {deny: [/bin/true]}
"""


def test_a_policy_selects_the_pods_containers_by_their_derived_identity_and_no_other(pod: Pod, tmp_path: Path) -> None:
    loner = podman("run", "-d", "--rm", "--name", f"loner-{uuid.uuid4().hex[:8]}", IMAGE, "/bin/sleep", "120").strip()
    try:
        policy = tmp_path / "p.yaml"
        policy.write_text(POLICY)
        with FakeKubeApi() as api:
            api.add(api_pod(pod))
            res = subprocess.run(
                [RUNWATCH, "watch", "--db", str(tmp_path / "w.db"), "--no-sdk", "--no-rules", "--duration", "2",
                 "--policy", str(policy), "--kube-api", api.url, "--node", NODE, "--trust-domain", "prod.example",
                 "--container", pod.app],
                capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        applied = sorted(line for line in res.stderr.splitlines()
                         if line.startswith("runwatch: policy ") and "applied to container" in line)
        assert applied == sorted([f"runwatch: policy shop-front (monitor) applied to container app ({pod.app})",
                                  f"runwatch: policy shop-front (monitor) applied to container proxy ({pod.proxy})"])
        assert loner not in res.stderr
    finally:
        podman("rm", "-f", "-t", "0", loner, check=False)
