"""Kubernetes pod facts of this node, from the API server (list + watch), keyed by container id.

:class:`PodWatcher` lists the pods whose ``spec.nodeName`` is this node with the official
``kubernetes`` client, then watches from the list's ``resourceVersion`` with
``allowWatchBookmarks``: every event moves the version on (a ``BOOKMARK`` only that), a
closed stream or a network error resumes the watch from the last version seen, and an
``ERROR`` 410 Gone (the version is too old) or a list that fails means a fresh list, which
replaces the whole index (pods deleted while nobody watched disappear). Each pod is turned
into :class:`PodFacts` by :func:`pod_facts` and stored in a :class:`PodIndex` under each of its
containers' ids (``status.containerStatuses[].containerID`` without its ``cri-o://``,
``containerd://`` or ``docker://`` prefix), so enrichment joins a kernel event's container to
its pod with one dictionary look-up.

Thread safety: :class:`PodIndex` takes a lock on every call; :class:`PodWatcher` runs one
daemon thread that is the index's only writer.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

GPU_RESOURCES: tuple[str, ...] = ("nvidia.com/gpu", "amd.com/gpu")
"""Extended resources counted as GPUs in a container's ``resources.limits``."""

_SKIPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})


@dataclass(frozen=True, slots=True)
class ContainerFacts:
    """What the pod spec and status say of one container."""

    name: str
    id: str | None = None
    image: str | None = None
    image_digest: str | None = None
    privileged: bool | None = None
    cap_add: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()  # host device paths given to the container (hostPath volumes under /dev)
    gpu: int | None = None  # GPUs requested through resources.limits (nvidia.com/gpu, ...)


@dataclass(frozen=True, slots=True)
class PodFacts:
    """One pod's identity and metadata; ``containers`` in spec order (init containers first)."""

    name: str
    namespace: str
    uid: str
    resource_version: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    service_account: str | None = None
    node: str | None = None
    owner_kind: str | None = None
    owner_name: str | None = None
    containers: tuple[ContainerFacts, ...] = ()

    def container(self, name: str) -> ContainerFacts | None:
        """The container called ``name`` (its Kubernetes name), or None."""
        return next((c for c in self.containers if c.name == name), None)


def bare_container_id(value: str) -> str:
    """``cri-o://abc`` -> ``abc`` (the runtime prefix of a container status id removed)."""
    return value.partition("://")[2] if "://" in value else value


def json_object(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def json_array(value: Any) -> list[Any]:
    """``value`` when it is a JSON array, else an empty one."""
    return value if isinstance(value, list) else []


def _strs(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _digest(image_id: str) -> str | None:
    """The ``sha256:...`` digest in a status ``imageID`` (``repo@sha256:...`` or ``docker-pullable://...``)."""
    if "sha256:" not in image_id:
        return None
    return "sha256:" + image_id.rpartition("sha256:")[2]


def _gpu(resources: Any) -> int | None:
    limits = resources.get("limits") if isinstance(resources, dict) else None
    if not isinstance(limits, dict):
        return None
    total = 0
    for key in GPU_RESOURCES:
        try:
            total += int(str(limits.get(key, 0)))
        except ValueError:
            continue
    return total or None


def _spec_container(spec: dict[str, Any], dev_volumes: Mapping[str, str], status: Mapping[str, Any]) -> ContainerFacts:
    name = str(spec.get("name") or "")
    sc = json_object(spec.get("securityContext"))
    caps = json_object(sc.get("capabilities"))
    added = json_array(caps.get("add"))
    devices = [dev_volumes[m["name"]] for m in json_array(spec.get("volumeMounts"))
               if isinstance(m, dict) and m.get("name") in dev_volumes]
    st = json_object(status.get(name))
    cid = bare_container_id(str(st.get("containerID") or "")) or None
    privileged = sc.get("privileged")
    return ContainerFacts(
        name=name, id=cid, image=str(spec.get("image") or "") or None,
        image_digest=_digest(str(st.get("imageID") or "")),
        privileged=privileged if isinstance(privileged, bool) else None,
        cap_add=tuple(str(c) for c in added), devices=tuple(sorted(set(devices))),
        gpu=_gpu(spec.get("resources")))


def pod_facts(obj: Mapping[str, Any]) -> PodFacts | None:
    """The facts of one pod as the API serves it (the JSON object), or None when it has no identity."""
    meta = json_object(obj.get("metadata"))
    spec = json_object(obj.get("spec"))
    status = json_object(obj.get("status"))
    name, namespace, uid = meta.get("name"), meta.get("namespace"), meta.get("uid")
    if not (isinstance(name, str) and isinstance(namespace, str) and isinstance(uid, str)):
        return None
    owners = [o for o in json_array(meta.get("ownerReferences")) if isinstance(o, dict)]
    owner = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
    dev_volumes = {
        v["name"]: v["hostPath"]["path"] for v in json_array(spec.get("volumes"))
        if isinstance(v, dict) and isinstance(v.get("hostPath"), dict)
        and str(v["hostPath"].get("path", "")).startswith("/dev/")}
    statuses: dict[str, Any] = {}
    for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
        for st in json_array(status.get(key)):
            if isinstance(st, dict) and isinstance(st.get("name"), str):
                statuses[st["name"]] = st
    containers = tuple(
        _spec_container(c, dev_volumes, statuses)
        for key in ("initContainers", "containers", "ephemeralContainers")
        for c in json_array(spec.get(key)) if isinstance(c, dict))
    annotations = {k: v for k, v in _strs(meta.get("annotations")).items() if k not in _SKIPPED_ANNOTATIONS}
    sa = spec.get("serviceAccountName") or spec.get("serviceAccount")
    return PodFacts(
        name=name, namespace=namespace, uid=uid, resource_version=meta.get("resourceVersion"),
        labels=_strs(meta.get("labels")), annotations=annotations,
        service_account=sa if isinstance(sa, str) else None,
        node=spec.get("nodeName") if isinstance(spec.get("nodeName"), str) else None,
        owner_kind=str(owner["kind"]) if owner and owner.get("kind") else None,
        owner_name=str(owner["name"]) if owner and owner.get("name") else None,
        containers=containers)


class PodIndex:
    """The pods of this node by uid, and each container id's pod. Thread safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pods: dict[str, PodFacts] = {}
        self._by_container: dict[str, str] = {}  # container id -> pod uid
        self._by_name: dict[tuple[str, str], str] = {}  # (namespace, name) -> pod uid
        self.generation = 0
        """Bumped on every change, so callers can tell when a cached join may be stale."""

    def put(self, pod: PodFacts) -> None:
        with self._lock:
            self._drop(pod.uid)
            self._pods[pod.uid] = pod
            self._by_name[(pod.namespace, pod.name)] = pod.uid
            for c in pod.containers:
                if c.id:
                    self._by_container[c.id] = pod.uid
            self.generation += 1

    def remove(self, uid: str) -> None:
        with self._lock:
            self._drop(uid)
            self.generation += 1

    def replace(self, pods: Iterable[PodFacts]) -> None:
        """Make the index exactly ``pods`` (after a list)."""
        with self._lock:
            self._pods.clear()
            self._by_container.clear()
            self._by_name.clear()
        for pod in pods:
            self.put(pod)
        with self._lock:
            self.generation += 1

    def _drop(self, uid: str) -> None:
        old = self._pods.pop(uid, None)
        if old is None:
            return
        self._by_name.pop((old.namespace, old.name), None)
        for c in old.containers:
            if c.id and self._by_container.get(c.id) == uid:
                del self._by_container[c.id]

    def by_container(self, cid: str) -> tuple[PodFacts, ContainerFacts] | None:
        """The pod and container facts of container id ``cid``."""
        with self._lock:
            uid = self._by_container.get(cid)
            pod = self._pods.get(uid) if uid is not None else None
        if pod is None:
            return None
        facts = next((c for c in pod.containers if c.id == cid), None)
        return (pod, facts) if facts is not None else None

    def by_name(self, namespace: str, name: str) -> PodFacts | None:
        with self._lock:
            uid = self._by_name.get((namespace, name))
            return self._pods.get(uid) if uid is not None else None

    def pods(self) -> list[PodFacts]:
        with self._lock:
            return list(self._pods.values())


class Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410): list again."""


@dataclass(slots=True)
class WatchStats:
    lists: int = 0
    watches: int = 0
    events: int = 0
    bookmarks: int = 0
    gone: int = 0
    errors: int = 0
    last_error: str | None = None


ApiFactory = Callable[[], Any]


class PodWatcher:
    """Keeps a :class:`PodIndex` in step with the pods of ``node`` (list, then watch; see the module).

    Args:
        api_client: a ``kubernetes.client.ApiClient`` (from a kubeconfig, in-cluster config or a URL).
        node: the node name (``spec.nodeName``) whose pods are wanted.
        index: where the facts go (a new one when None).
        watch_timeout: seconds the server keeps one watch open (``timeoutSeconds``) before it is resumed.
        retry: seconds to wait after an error before trying again.
    """

    def __init__(self, api_client: Any, node: str, index: PodIndex | None = None,
                 watch_timeout: int = 300, retry: float = 1.0) -> None:
        client: Any = importlib.import_module("kubernetes.client")
        self.api: Any = client.CoreV1Api(api_client)
        self.node = node
        self.index = index if index is not None else PodIndex()
        self.watch_timeout = watch_timeout
        self.retry = retry
        self.resource_version: str | None = None
        self.stats = WatchStats()
        self.synced = threading.Event()
        """Set once the first list has filled the index."""
        self._stop = threading.Event()
        self._watch: Any = None
        self._thread: threading.Thread | None = None

    @property
    def selector(self) -> str:
        return f"spec.nodeName={self.node}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="runwatch-k8s-pods", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        w = self._watch
        if w is not None:
            w.stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """List and watch until :meth:`stop`; every failure is counted, logged and retried."""
        while not self._stop.is_set():
            try:
                if self.resource_version is None:
                    self.relist()
                self.watch_once()
            except Gone:
                self.stats.gone += 1
                self.resource_version = None  # relist at once
            except Exception as exc:  # network, HTTP or decoding: count it and try again
                self.stats.errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.debug("kubernetes pod watch: %s", self.stats.last_error)
                self._stop.wait(self.retry)

    def relist(self) -> None:
        """List the node's pods (following ``continue``) and make the index exactly them."""
        pods: list[PodFacts] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"field_selector": self.selector, "limit": 500, "_preload_content": False}
            if token:
                kwargs["_continue"] = token
            resp = self.api.list_pod_for_all_namespaces(**kwargs)
            body = json_object(json.loads(resp.data))
            for item in json_array(body.get("items")):
                facts = pod_facts(item)
                if facts is not None:
                    pods.append(facts)
            meta = json_object(body.get("metadata"))
            token = meta.get("continue") or None
            if not token:
                break
        self.index.replace(pods)
        self.resource_version = str(meta.get("resourceVersion") or "") or None
        self.stats.lists += 1
        self.synced.set()

    def watch_once(self) -> None:
        """One watch from :attr:`resource_version` until the server ends it (or :meth:`stop`)."""
        watch: Any = importlib.import_module("kubernetes.watch")
        api_exception: Any = importlib.import_module("kubernetes.client.exceptions").ApiException

        # "object": events stay plain JSON (no model validation that one odd pod could fail)
        self._watch = w = watch.Watch(return_type="object")
        self.stats.watches += 1
        try:
            for ev in w.stream(self.api.list_pod_for_all_namespaces, field_selector=self.selector,
                               resource_version=self.resource_version, allow_watch_bookmarks=True,
                               timeout_seconds=self.watch_timeout):
                self.apply(str(ev.get("type")), json_object(ev.get("raw_object")))
                if self._stop.is_set():
                    break
        except api_exception as exc:
            if exc.status == 410:
                raise Gone(str(exc)) from exc
            raise
        finally:
            self._watch = None

    def apply(self, kind: str, obj: Mapping[str, Any]) -> None:
        """Apply one watch event (``ADDED``, ``MODIFIED``, ``DELETED``, ``BOOKMARK``) to the index."""
        meta = json_object(obj.get("metadata"))
        rv = meta.get("resourceVersion")
        if kind == "BOOKMARK":
            self.stats.bookmarks += 1
        elif kind in ("ADDED", "MODIFIED"):
            facts = pod_facts(obj)
            if facts is not None:
                self.index.put(facts)
            self.stats.events += 1
        elif kind == "DELETED":
            if isinstance(meta.get("uid"), str):
                self.index.remove(meta["uid"])
            self.stats.events += 1
        if isinstance(rv, str) and rv:
            self.resource_version = rv


def api_client(url: str | None = None, kubeconfig: str | None = None, in_cluster: bool = False,
               token_file: str | None = None) -> Any:
    """A ``kubernetes.client.ApiClient``: in-cluster config, a kubeconfig file, or a plain ``url``
    (with an optional bearer token read from ``token_file``)."""
    client: Any = importlib.import_module("kubernetes.client")
    config: Any = importlib.import_module("kubernetes.config")

    if in_cluster:
        cfg = client.Configuration()
        config.load_incluster_config(client_configuration=cfg)
        return client.ApiClient(cfg)
    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    if not url:
        raise ValueError("a Kubernetes API needs --kube-api URL, --kubeconfig FILE or --in-cluster")
    cfg = client.Configuration()
    cfg.host = url.rstrip("/")
    if token_file:
        with open(token_file, encoding="utf-8") as f:
            cfg.api_key = {"authorization": "Bearer " + f.read().strip()}
    return client.ApiClient(cfg)


def wait_synced(watcher: PodWatcher, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the first list; whether it came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if watcher.synced.wait(0.05):
            return True
    return watcher.synced.is_set()
