"""Workload metadata on a resolved :class:`~runwatch.events.Container`: what podman records of it,
what the Kubernetes API says of its pod, and the SPIFFE id derived from those facts.

:class:`WorkloadJoin` is applied by the enrichment stage after the cgroup resolution. It keeps
one result per container id and recomputes it when the pod index changed (its generation), so
a pod the API reports after the first event of its container still reaches the later events.
Sources, in order of authority for each field: the Kubernetes API (pod facts by container id),
then the runtime (podman's record of the container and its pod). The SPIFFE id is then
derived by :class:`SpiffeTemplate` and marked ``spiffe_source="derived"``: it is what the
workload would be issued under the SPIRE Kubernetes convention, not an attested SVID. An SVID
the container's agent reported and runwatch verified (:mod:`runwatch.svid.attest`) overrides it
(``spiffe_source="attested"``) until the SVID expires.
Last come the governance facts (owner, escalation, review date; see
:mod:`runwatch.enrich.governance`), from the labels and annotations joined, else the policy.

Thread safety: :class:`WorkloadJoin` takes one lock per call (the pipeline's consumer thread and
the policy stage's hold binder both ask); the pod index it reads has its own.
"""

from __future__ import annotations

import json
import re
import shutil
import string
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from runwatch.enrich import governance
from runwatch.enrich.k8s import PodIndex, json_array, json_object
from runwatch.events import Container
from runwatch.svid.attest import AttestedIds

DEFAULT_TRUST_DOMAIN = "cluster.local"
DEFAULT_SPIFFE_TEMPLATE = "spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"
"""The SPIRE Kubernetes workload registrar's convention."""

TEMPLATE_FIELDS: tuple[str, ...] = ("trust_domain", "namespace", "service_account", "pod", "pod_uid",
                                    "name", "node", "owner_kind", "owner_name")
_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]+$")
_GPU_DEVICE = re.compile(r"^/dev/nvidia\d+$")


class SpiffeTemplate:
    """Derives a SPIFFE id from a container's facts: ``{field}`` placeholders of :data:`TEMPLATE_FIELDS`.

    A placeholder whose fact is unknown makes the id unknown (None): a partial id would select
    the wrong workloads.
    """

    def __init__(self, trust_domain: str = DEFAULT_TRUST_DOMAIN, template: str = DEFAULT_SPIFFE_TEMPLATE) -> None:
        if not _TRUST_DOMAIN.match(trust_domain):
            raise ValueError(f"trust domain {trust_domain!r}: only lower-case letters, digits, '.', '-' and '_'")
        if not template.startswith("spiffe://"):
            raise ValueError(f"SPIFFE template {template!r} must start with spiffe://")
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        unknown = sorted({n for n in names if n not in TEMPLATE_FIELDS})
        if unknown:
            raise ValueError(f"SPIFFE template: unknown field(s) {', '.join(unknown)}; known: "
                             + ", ".join(TEMPLATE_FIELDS))
        self.trust_domain = trust_domain
        self.template = template
        self._names = tuple(dict.fromkeys(names))

    def derive(self, c: Container) -> str | None:
        values: dict[str, str] = {}
        for n in self._names:
            v = self.trust_domain if n == "trust_domain" else getattr(c, n)
            if not v or "/" in str(v):
                return None
            values[n] = str(v)
        return self.template.format_map(values)


@dataclass(frozen=True, slots=True)
class RuntimeFacts:
    """What the runtime records of a container beyond its cgroup and annotations."""

    name: str | None = None  # the container's own name (Kubernetes' name inside a pod)
    pod: str | None = None
    pod_id: str | None = None
    labels: Mapping[str, str] | None = None
    image: str | None = None
    image_digest: str | None = None
    privileged: bool | None = None
    cap_add: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    siblings: tuple[str, ...] = ()


def _caps(values: Any) -> tuple[str, ...]:
    if not isinstance(values, list):
        return ()
    return tuple(str(v).upper().removeprefix("CAP_") for v in values if isinstance(v, str))


class PodmanFacts:
    """Reads podman's record of a container (``podman container inspect``) and of its pod
    (``podman pod inspect``), once per id; a failed read is retried after ``retry`` seconds."""

    def __init__(self, podman: str | None = None, timeout: float = 5.0, max_entries: int = 4096,
                 retry: float = 2.0) -> None:
        self.podman = podman or shutil.which("podman")
        self.timeout = timeout
        self.max_entries = max_entries
        self.retry = retry
        self._cache: OrderedDict[str, RuntimeFacts | None] = OrderedDict()
        self._failed: dict[str, float] = {}  # container id -> monotonic time of the failed read

    def _inspect(self, what: str, ident: str) -> dict[str, Any] | None:
        if self.podman is None:
            return None
        try:
            out = subprocess.run([self.podman, what, "inspect", ident], capture_output=True, timeout=self.timeout,
                                 check=False)
            data = json.loads(out.stdout) if out.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired, ValueError):
            return None
        if isinstance(data, list):
            data = data[0] if data else None
        return data if isinstance(data, dict) else None

    def get(self, cid: str) -> RuntimeFacts | None:
        if cid in self._cache:
            self._cache.move_to_end(cid)
            return self._cache[cid]
        failed = self._failed.get(cid)
        if failed is not None and time.monotonic() - failed < self.retry:
            return None
        facts = self._read(cid)
        if facts is None:
            if len(self._failed) >= self.max_entries:
                self._failed.clear()
            self._failed[cid] = time.monotonic()
            return None
        self._failed.pop(cid, None)
        self._cache[cid] = facts
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return facts

    def _read(self, cid: str) -> RuntimeFacts | None:
        d = self._inspect("container", cid)
        if d is None:
            return None
        cfg = json_object(d.get("Config"))
        host = json_object(d.get("HostConfig"))
        name = d.get("Name") if isinstance(d.get("Name"), str) else None
        pod_id = d.get("Pod") if isinstance(d.get("Pod"), str) and d.get("Pod") else None
        pod_name: str | None = None
        siblings: tuple[str, ...] = ()
        if pod_id is not None:
            p = self._inspect("pod", pod_id) or {}
            pod_name = p.get("Name") if isinstance(p.get("Name"), str) else None
            infra = p.get("InfraContainerID")
            members = [m for m in json_array(p.get("Containers")) if isinstance(m, dict)]
            siblings = tuple(sorted(self._k8s_name(str(m.get("Name")), pod_name) for m in members
                                    if m.get("Id") not in (cid, infra) and m.get("Name")))
        devices = tuple(sorted({str(x.get("PathOnHost") or x.get("path") or "") for x in host.get("Devices") or []
                                if isinstance(x, dict)} - {""}))
        labels = {k: v for k, v in json_object(cfg.get("Labels")).items() if isinstance(k, str) and isinstance(v, str)}
        priv = host.get("Privileged")
        return RuntimeFacts(
            name=self._k8s_name(name, pod_name) if name else None, pod=pod_name, pod_id=pod_id, labels=labels or None,
            image=d.get("ImageName") if isinstance(d.get("ImageName"), str) else None,
            image_digest=d.get("ImageDigest") if isinstance(d.get("ImageDigest"), str) else None,
            privileged=priv if isinstance(priv, bool) else None,
            cap_add=_caps(host.get("CapAdd")), devices=devices, siblings=siblings)

    @staticmethod
    def _k8s_name(name: str, pod: str | None) -> str:
        """``podman kube play`` names a pod's container ``<pod>-<container>``; the Kubernetes name is the rest."""
        return name[len(pod) + 1:] if pod and name.startswith(pod + "-") and len(name) > len(pod) + 1 else name


class WorkloadJoin:
    """Adds runtime, Kubernetes and SPIFFE facts to resolved containers (see the module)."""

    def __init__(self, pods: PodIndex | None = None, podman: PodmanFacts | None = None,
                 spiffe: SpiffeTemplate | None = None, max_entries: int = 16384,
                 attested: AttestedIds | None = None) -> None:
        self.pods = pods
        self.attested = attested
        """Attested SPIFFE ids by container id (runwatch.svid.attest): they override derived ones."""
        self.podman = podman if podman is not None else PodmanFacts()
        self.spiffe = spiffe if spiffe is not None else SpiffeTemplate()
        self.max_entries = max_entries
        self.governance_of: governance.GovernanceOf | None = None
        """Asked for the policy's owner, escalation and review date of a container whose labels and
        annotations do not declare them (set before events flow)."""
        # keyed by what the resolver may still improve about a container (its names come late)
        self._cache: OrderedDict[tuple[str | None, ...], tuple[int, Container]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, c: Container) -> Container:
        """``c`` with its facts and its SPIFFE id: the attested one if any, else the derived one."""
        out = self.facts(c)
        return self.attested.apply(out) if self.attested is not None else out

    def facts(self, c: Container) -> Container:
        """``c`` with its facts and derived SPIFFE id only (cached)."""
        with self._lock:
            return self._call(c)

    def _call(self, c: Container) -> Container:
        gen = self.pods.generation if self.pods is not None else 0
        key = (c.id, c.cgroup, c.name, c.pod, c.pod_uid, c.namespace, c.role)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == gen:
            self._cache.move_to_end(key)
            return hit[1]
        out = self.join(c)
        self._cache[key] = (gen, out)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return out

    def join(self, c: Container) -> Container:
        """``c`` with every fact the sources know (uncached)."""
        f: dict[str, Any] = {}
        rt = self.podman.get(c.id) if c.runtime == "podman" else None
        if rt is not None:
            f.update(name=rt.name, pod=rt.pod, pod_uid=rt.pod_id, labels=dict(rt.labels) if rt.labels else None,
                     image=rt.image, image_digest=rt.image_digest, privileged=rt.privileged,
                     cap_add=list(rt.cap_add) or None, devices=list(rt.devices) or None,
                     siblings=list(rt.siblings) or None)
        found = self.pods.by_container(c.id) if self.pods is not None else None
        if found is not None:
            pod, cf = found
            api = dict(name=cf.name, pod=pod.name, namespace=pod.namespace, pod_uid=pod.uid,
                       labels=dict(pod.labels) or None, annotations=dict(pod.annotations) or None,
                       service_account=pod.service_account, node=pod.node, owner_kind=pod.owner_kind,
                       owner_name=pod.owner_name, image=cf.image, image_digest=cf.image_digest,
                       privileged=cf.privileged, cap_add=list(cf.cap_add) or None,
                       devices=list(cf.devices) or None, gpu=cf.gpu,
                       siblings=sorted(o.name for o in pod.containers if o.name != cf.name) or None)
            f.update({k: v for k, v in api.items() if v is not None})
        # The sources' word wins over what the cgroup path and runtime files suggested (a podman
        # pod's container is recorded as <pod>-<container>; Kubernetes calls it <container>).
        facts = {k: v for k, v in f.items() if v is not None and getattr(c, k) != v}
        devices = facts.get("devices") or c.devices or []
        if "gpu" not in facts and c.gpu is None:
            n = sum(1 for d in devices if _GPU_DEVICE.match(d))
            if n:
                facts["gpu"] = n
        out = msgspec.structs.replace(c, **facts) if facts else c
        if out.spiffe_id is None:
            sid = self.spiffe.derive(out)
            if sid is not None:
                out = msgspec.structs.replace(out, spiffe_id=sid, spiffe_source="derived")
        return governance.apply(out, self.governance_of)
