"""The pod watcher against a Kubernetes API server at the network edge (real list/watch JSON over HTTP):
list by node, ADDED/MODIFIED/DELETED, bookmarks, 410 Gone -> relist, paging; and the SPIFFE id
derived from the facts, which a policy's ``identity:`` selects."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runwatch.enrich.k8s import ContainerFacts, PodFacts, PodWatcher, api_client, pod_facts
from runwatch.enrich.workload import PodmanFacts, SpiffeTemplate, WorkloadJoin
from runwatch.events import Container
from runwatch.policy.loader import load_policies
from runwatch.testing.kubeapi import FakeKubeApi, pod_json

NODE = "node-7"
ID_APP = "a1" * 32
ID_SIDE = "b2" * 32
ID_JOB = "c3" * 32
DIGEST = "sha256:" + "d4" * 32


def shop_pod(**over: Any) -> dict[str, Any]:
    kw: dict[str, Any] = dict(
        labels={"app": "shop", "tier": "front"}, annotations={"runwatch.io/role": "model-server"},
        service_account="shop-sa", owner=("ReplicaSet", "shop-7d9f"),
        volumes=[{"name": "gpu0", "hostPath": {"path": "/dev/nvidia0"}}, {"name": "data", "emptyDir": {}}],
        containers=[
            {"name": "app", "image": "registry.local/shop:1.4", "id": f"cri-o://{ID_APP}",
             "imageID": f"registry.local/shop@{DIGEST}",
             "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}},
             "resources": {"limits": {"nvidia.com/gpu": "1", "cpu": "2"}},
             "volumeMounts": [{"name": "gpu0", "mountPath": "/dev/nvidia0"}, {"name": "data", "mountPath": "/d"}]},
            {"name": "proxy", "image": "registry.local/envoy:2", "id": f"cri-o://{ID_SIDE}",
             "securityContext": {"privileged": True}},
        ])
    kw.update(over)
    return pod_json("shop-7d9f-x2x", "shop", "5f1c2c1e-0d4f-4bb2-9a55-6f3f1b8e0001", NODE, **kw)


def job_pod(node: str = NODE) -> dict[str, Any]:
    return pod_json("etl-29ab", "batch", "5f1c2c1e-0d4f-4bb2-9a55-6f3f1b8e0002", node, service_account="etl",
                    owner=("Job", "etl"), containers=[{"name": "etl", "image": "etl:3", "id": f"containerd://{ID_JOB}"}])


def until(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


@pytest.fixture
def api() -> Iterator[FakeKubeApi]:
    with FakeKubeApi() as server:
        yield server


@pytest.fixture
def watcher(api: FakeKubeApi) -> Iterator[PodWatcher]:
    w = PodWatcher(api_client(api.url), NODE, retry=0.05)
    yield w
    w.stop()


def test_pod_facts_from_the_api_json() -> None:
    facts = pod_facts(shop_pod())
    assert facts == PodFacts(
        name="shop-7d9f-x2x", namespace="shop", uid="5f1c2c1e-0d4f-4bb2-9a55-6f3f1b8e0001", resource_version=None,
        labels={"app": "shop", "tier": "front"}, annotations={"runwatch.io/role": "model-server"},
        service_account="shop-sa", node=NODE, owner_kind="ReplicaSet", owner_name="shop-7d9f",
        containers=(
            ContainerFacts(name="app", id=ID_APP, image="registry.local/shop:1.4", image_digest=DIGEST,
                           privileged=None, cap_add=("NET_ADMIN",), devices=("/dev/nvidia0",), gpu=1),
            ContainerFacts(name="proxy", id=ID_SIDE, image="registry.local/envoy:2", privileged=True)))


def test_list_takes_only_this_nodes_pods_and_the_watch_applies_added_modified_deleted(
        api: FakeKubeApi, watcher: PodWatcher) -> None:
    api.add(shop_pod())
    api.add(job_pod(node="node-8"))
    watcher.start()
    assert watcher.synced.wait(10)
    assert api.requests[0] == ("list", {"fieldSelector": f"spec.nodeName={NODE}", "limit": "500"})
    assert [p.name for p in watcher.index.pods()] == ["shop-7d9f-x2x"]
    assert watcher.index.by_container(ID_JOB) is None
    assert api.wait_for("watch", 1)
    q = api.requests[1][1]
    assert (q["watch"], q["resourceVersion"], q["allowWatchBookmarks"], q["fieldSelector"]) == (
        "true", "102", "true", f"spec.nodeName={NODE}")

    rv = api.add(job_pod())
    assert until(lambda: watcher.index.by_container(ID_JOB) is not None)
    pod, c = watcher.index.by_container(ID_JOB)  # type: ignore[misc]
    assert (pod.namespace, pod.service_account, pod.owner_kind, pod.owner_name, c.name, c.image) == (
        "batch", "etl", "Job", "etl", "etl", "etl:3")
    assert watcher.resource_version == str(rv) == "103"

    api.add(shop_pod(labels={"app": "shop", "tier": "back"}))  # MODIFIED
    assert until(lambda: watcher.index.by_name("shop", "shop-7d9f-x2x").labels["tier"] == "back")  # type: ignore[union-attr]

    rv = api.delete("5f1c2c1e-0d4f-4bb2-9a55-6f3f1b8e0002")
    assert until(lambda: watcher.index.by_container(ID_JOB) is None)
    assert until(lambda: watcher.resource_version == str(rv))
    assert [p.name for p in watcher.index.pods()] == ["shop-7d9f-x2x"]
    assert (watcher.stats.lists, watcher.stats.events, watcher.stats.gone) == (1, 3, 0)


def test_a_bookmark_moves_the_version_and_the_next_watch_resumes_from_it(api: FakeKubeApi, watcher: PodWatcher) -> None:
    api.add(shop_pod())
    api.add(job_pod(node="node-8"))  # another node's change: never streamed to us
    watcher.start()
    assert api.wait_for("watch", 1)
    api.add(job_pod(node="node-9"))  # rv 103, filtered out by the field selector
    gen = watcher.index.generation
    rv = api.bookmark()
    assert until(lambda: watcher.stats.bookmarks == 1)
    assert watcher.resource_version == str(rv) == "103"
    assert watcher.index.generation == gen  # a bookmark changes no pod
    api.drop_watches()
    assert api.wait_for("watch", 2)
    assert api.requests[-1][0] == "watch" and api.requests[-1][1]["resourceVersion"] == "103"
    assert watcher.stats.lists == 1  # resumed, not relisted


def test_410_gone_relists_and_drops_what_was_deleted_meanwhile(api: FakeKubeApi, watcher: PodWatcher) -> None:
    api.add(shop_pod())
    api.add(job_pod())
    watcher.start()
    assert api.wait_for("watch", 1)
    assert watcher.index.by_container(ID_JOB) is not None
    # while the watch is down: the job goes, the shop pod changes, and the history is compacted
    rv = api.expire(add=[shop_pod(service_account="shop-v2")], delete=["5f1c2c1e-0d4f-4bb2-9a55-6f3f1b8e0002"])
    assert until(lambda: watcher.stats.lists == 2)
    kinds = [k for k, _ in api.requests]
    assert kinds[:4] == ["list", "watch", "watch", "list"]  # resume -> ERROR 410 -> list again
    assert api.requests[2][1]["resourceVersion"] == "102"
    assert until(lambda: watcher.resource_version == str(rv))
    assert watcher.stats.gone == 1
    assert watcher.index.by_container(ID_JOB) is None
    pod, _ = watcher.index.by_container(ID_APP)  # type: ignore[misc]
    assert pod.service_account == "shop-v2"
    assert api.wait_for("watch", 3)
    assert api.requests[-1][1]["resourceVersion"] == str(rv)


def test_the_list_follows_continue_pages(api: FakeKubeApi) -> None:
    for i in range(7):
        api.add(pod_json(f"p{i}", "ns", f"uid-{i}", NODE, containers=[{"name": "c", "image": "i",
                                                                      "id": f"cri-o://{i:064x}"}]))
    w = PodWatcher(api_client(api.url), NODE)
    orig = w.api.list_pod_for_all_namespaces

    def small_pages(**kw: Any) -> Any:
        kw["limit"] = 3
        return orig(**kw)

    w.api.list_pod_for_all_namespaces = small_pages
    w.relist()
    assert sorted(p.name for p in w.index.pods()) == [f"p{i}" for i in range(7)]
    assert [q.get("continue") for _, q in api.requests] == [None, "3", "6"]
    assert w.resource_version == "107"


def test_an_unreachable_api_is_counted_and_retried() -> None:
    w = PodWatcher(api_client("http://127.0.0.1:9"), NODE, retry=0.02)
    w.start()
    try:
        assert until(lambda: w.stats.errors >= 2)
        assert not w.synced.is_set()
    finally:
        w.stop()


def joined(api: FakeKubeApi, watcher: PodWatcher, trust_domain: str = "prod.example") -> WorkloadJoin:
    api.add(shop_pod())
    api.add(job_pod())
    watcher.start()
    assert watcher.synced.wait(10)
    return WorkloadJoin(pods=watcher.index, podman=PodmanFacts(podman="/nonexistent"),
                        spiffe=SpiffeTemplate(trust_domain))


def test_containers_get_pod_facts_siblings_and_a_derived_spiffe_id(api: FakeKubeApi, watcher: PodWatcher) -> None:
    join = joined(api, watcher)
    app = join(Container(id=ID_APP, runtime="cri-o", cgroup=f"/kubepods/crio-{ID_APP}"))
    assert app == Container(
        id=ID_APP, runtime="cri-o", name="app", pod="shop-7d9f-x2x", pod_uid="5f1c2c1e-0d4f-4bb2-9a55-6f3f1b8e0001",
        namespace="shop", cgroup=f"/kubepods/crio-{ID_APP}", spiffe_id="spiffe://prod.example/ns/shop/sa/shop-sa",
        labels={"app": "shop", "tier": "front"}, annotations={"runwatch.io/role": "model-server"},
        service_account="shop-sa", node=NODE, owner_kind="ReplicaSet", owner_name="shop-7d9f",
        image="registry.local/shop:1.4", image_digest=DIGEST, cap_add=["NET_ADMIN"], devices=["/dev/nvidia0"],
        gpu=1, siblings=["proxy"], spiffe_source="derived")
    side = join(Container(id=ID_SIDE, runtime="cri-o"))
    assert (side.name, side.privileged, side.siblings, side.spiffe_id) == (
        "proxy", True, ["app"], "spiffe://prod.example/ns/shop/sa/shop-sa")
    assert join(Container(id="e5" * 32, runtime="cri-o")) == Container(id="e5" * 32, runtime="cri-o")
    # the API's later word reaches the next event of the same container
    api.add(shop_pod(service_account="shop-v2"))
    assert until(lambda: join(Container(id=ID_APP, runtime="cri-o")).service_account == "shop-v2")
    assert join(Container(id=ID_APP, runtime="cri-o")).spiffe_id == "spiffe://prod.example/ns/shop/sa/shop-v2"


def test_the_spiffe_template_is_configurable_and_checked() -> None:
    c = Container(id="x", runtime="runc", namespace="ml", service_account="trainer", pod="p", owner_name="train")
    assert SpiffeTemplate().derive(c) == "spiffe://cluster.local/ns/ml/sa/trainer"
    assert SpiffeTemplate("corp", "spiffe://{trust_domain}/k8s/{namespace}/{owner_name}").derive(c) == (
        "spiffe://corp/k8s/ml/train")
    assert SpiffeTemplate().derive(Container(id="x", runtime="runc", namespace="ml")) is None
    with pytest.raises(ValueError, match="unknown field"):
        SpiffeTemplate("corp", "spiffe://{trust_domain}/{image}")
    with pytest.raises(ValueError, match="trust domain"):
        SpiffeTemplate("Corp/x")


def test_a_policy_selects_by_identity_the_pods_container_and_not_another(
        api: FakeKubeApi, watcher: PodWatcher, tmp_path: Path) -> None:
    join = joined(api, watcher, trust_domain="cluster.local")
    path = tmp_path / "p.yaml"
    path.write_text("policies:\n"
                    "  - id: shop-front\n"
                    "    selector:\n"
                    "      identity: [spiffe://cluster.local/ns/shop/sa/shop-sa]\n"
                    "    tools: {deny: [run_shell]}\n")
    policies = load_policies(str(path))
    app = join(Container(id=ID_APP, runtime="cri-o"))
    etl = join(Container(id=ID_JOB, runtime="containerd"))
    assert etl.spiffe_id == "spiffe://cluster.local/ns/batch/sa/etl"
    chosen = policies.for_container(app)
    assert chosen is not None and chosen.id == "shop-front"
    assert policies.for_container(etl) is None
    assert policies.for_container(Container(id=ID_APP, runtime="cri-o")) is None  # no facts, no identity


def test_a_policy_selects_by_the_pod_labels_from_the_api(api: FakeKubeApi, watcher: PodWatcher, tmp_path: Path) -> None:
    join = joined(api, watcher)
    path = tmp_path / "p.yaml"
    path.write_text("- id: front\n  selector: {labels: {tier: front}, namespace: [shop]}\n")
    policies = load_policies(str(path))
    chosen = policies.for_container(join(Container(id=ID_SIDE, runtime="cri-o")))
    assert chosen is not None and chosen.id == "front"
    assert policies.for_container(join(Container(id=ID_JOB, runtime="containerd"))) is None


def test_gpus_count_from_nvidia_devices_when_no_limit_says(api: FakeKubeApi, watcher: PodWatcher) -> None:
    api.add(pod_json("infer-0", "ml", "5f1c2c1e-0d4f-4bb2-9a55-6f3f1b8e0003", NODE, service_account="infer",
                     volumes=[{"name": f"gpu{i}", "hostPath": {"path": f"/dev/nvidia{i}"}} for i in (0, 1)]
                     + [{"name": "ctl", "hostPath": {"path": "/dev/nvidiactl"}}],
                     containers=[{"name": "vllm", "image": "vllm:0.9", "id": f"containerd://{ID_JOB}",
                                  "volumeMounts": [{"name": n, "mountPath": f"/dev/{n}"}
                                                   for n in ("gpu0", "gpu1", "ctl")]}]))
    watcher.start()
    assert watcher.synced.wait(10)
    c = WorkloadJoin(pods=watcher.index, podman=PodmanFacts(podman="/nonexistent"))(
        Container(id=ID_JOB, runtime="containerd"))
    assert (c.devices, c.gpu, c.spiffe_id) == (["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl"], 2,
                                               "spiffe://cluster.local/ns/ml/sa/infer")
