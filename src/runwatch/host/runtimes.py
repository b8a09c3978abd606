"""Container runtimes' records on this host: runc's ``state.json`` (under runc's own root and
those of containerd and Docker), the bundle's ``config.json``, Docker's ``config.v2.json`` and
containers/storage's ``containers.json``.

Every reader returns None (or an empty result) when a file is missing, unreadable, larger
than :data:`MAX_FILE` or malformed; none raises. runc creates a container's state directory
before it writes ``state.json``, so a directory can exist whose state cannot be read yet.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

#: runc state roots and the runtime reported for a container found only through that root.
#: A root ending in ``/*`` holds one level of namespace dirs (``<root>/<namespace>/<id>``).
DEFAULT_RUNC_ROOTS: tuple[tuple[str, str], ...] = (
    ("/run/runc", "runc"),
    ("/run/containerd/runc/*", "containerd"),
    ("/run/docker/runtime-runc/*", "docker"),
)
DEFAULT_DOCKER_ROOT = "/var/lib/docker"
DEFAULT_STORAGE_ROOT = "/var/lib/containers/storage"
MAX_FILE = 4 << 20  # bytes; larger records are treated as malformed
Roots = Sequence[tuple[str, str]]


def read_json(path: str) -> Any:
    """Parsed JSON of a small file, or ``None`` when missing, unreadable, too big or malformed."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE + 1)
        if len(data) > MAX_FILE:
            return None
        return json.loads(data)
    except (OSError, ValueError):
        return None


def str_dict(value: Any) -> dict[str, str]:
    """The string-to-string entries of ``value`` ({} when it is not a mapping)."""
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def bundle_annotations(bundle: str) -> dict[str, str]:
    """The OCI annotations of the bundle at ``bundle`` (its ``config.json``)."""
    spec = read_json(os.path.join(bundle, "config.json"))
    return str_dict(spec.get("annotations")) if isinstance(spec, dict) else {}


@dataclass(frozen=True, slots=True)
class RuncState:
    """What runc's ``state.json`` records of one container.

    ``labels`` are runc's ``key=value`` labels (``bundle=...`` among them); ``cgroup_dir`` the
    v2 directory runc recorded (``cgroup_paths[""]``), ``config_cgroup`` the cgroupsPath it
    was given; ``init_pid`` is None until the init process exists.
    """

    id: str
    runtime: str
    init_pid: int | None
    labels: dict[str, str]
    cgroup_dir: str | None
    config_cgroup: str | None

    @property
    def bundle(self) -> str | None:
        """The bundle directory, from runc's ``bundle`` label."""
        return self.labels.get("bundle") or None


def subdirs(path: str) -> list[str]:
    """The directories directly in ``path`` (not following links); empty when it cannot be read."""
    try:
        with os.scandir(path) as it:
            return [e.path for e in it if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def parents_of(root: str) -> list[str]:
    """The directories a state root stands for: itself, or each namespace under a ``/*`` root."""
    if not root.endswith("/*"):
        return [root]
    return subdirs(root[:-2])


def state_dir(cid: str, roots: Roots = DEFAULT_RUNC_ROOTS) -> tuple[str, str] | None:
    """``(state dir, runtime)`` of runc container ``cid`` under the first root that has it."""
    for root, runtime in roots:
        for parent in parents_of(root):
            path = os.path.join(parent, cid)
            if os.path.isdir(path):
                return path, runtime
    return None


def read_state(path: str, runtime: str) -> RuncState | None:
    """The state in directory ``path`` (``<root>[/<ns>]/<id>``), or None until it is written."""
    state = read_json(os.path.join(path, "state.json"))
    if not isinstance(state, dict):
        return None
    raw = state.get("config")
    config: dict[str, Any] = raw if isinstance(raw, dict) else {}
    labels: dict[str, str] = {}
    items = config.get("labels")
    for item in items if isinstance(items, list) else []:
        if isinstance(item, str) and "=" in item:
            k, v = item.split("=", 1)
            labels[k] = v
    pid = state.get("init_process_pid")
    paths = state.get("cgroup_paths")
    unified = paths.get("") if isinstance(paths, dict) else None
    cg = config.get("cgroups")
    given = cg.get("path") if isinstance(cg, dict) else None
    return RuncState(os.path.basename(path), runtime, pid if isinstance(pid, int) and pid > 0 else None, labels,
                     unified if isinstance(unified, str) else None, given if isinstance(given, str) else None)


def runc_state(cid: str, roots: Roots = DEFAULT_RUNC_ROOTS) -> RuncState | None:
    """The state of runc container ``cid``, or None when there is none (yet)."""
    found = state_dir(cid, roots)
    return read_state(*found) if found is not None else None


def runc_states(roots: Roots = DEFAULT_RUNC_ROOTS) -> Iterator[RuncState]:
    """The readable state of every runc container under ``roots``."""
    for root, runtime in roots:
        for parent in parents_of(root):
            for path in subdirs(parent):
                state = read_state(path, runtime)
                if state is not None:
                    yield state


def docker_name(cid: str, docker_root: str = DEFAULT_DOCKER_ROOT) -> str | None:
    """The name Docker gave container ``cid`` (``config.v2.json``), without its leading ``/``."""
    cfg = read_json(os.path.join(docker_root, "containers", cid, "config.v2.json"))
    name = cfg.get("Name") if isinstance(cfg, dict) else None
    return (name.lstrip("/") or None) if isinstance(name, str) else None


#: Annotations that name a container's image (containerd's CRI plugin, CRI-O, the OCI image
#: spec's base-image keys), the reference first, then a digest, in the order tried.
IMAGE_NAME_KEYS: tuple[str, ...] = ("io.kubernetes.cri.image-name", "io.kubernetes.cri-o.ImageName",
                                    "org.opencontainers.image.base.name")
IMAGE_DIGEST_KEYS: tuple[str, ...] = ("io.kubernetes.cri-o.ImageRef", "org.opencontainers.image.base.digest")
#: podman's annotation of a container run with --privileged.
PODMAN_PRIVILEGED = "io.podman.annotations.privileged"


def docker_image(cid: str, docker_root: str = DEFAULT_DOCKER_ROOT) -> tuple[str | None, str | None]:
    """The image reference Docker ran container ``cid`` from and the image id (``sha256:...``)."""
    cfg = read_json(os.path.join(docker_root, "containers", cid, "config.v2.json"))
    if not isinstance(cfg, dict):
        return None, None
    conf = cfg.get("Config")
    ref = conf.get("Image") if isinstance(conf, dict) else None
    digest = cfg.get("Image")
    return (ref if isinstance(ref, str) and ref else None,
            digest if isinstance(digest, str) and digest.startswith("sha256:") else None)


def docker_privileged(cid: str, docker_root: str = DEFAULT_DOCKER_ROOT) -> bool | None:
    """Docker's ``HostConfig.Privileged`` of container ``cid`` (``hostconfig.json``)."""
    cfg = read_json(os.path.join(docker_root, "containers", cid, "hostconfig.json"))
    value = cfg.get("Privileged") if isinstance(cfg, dict) else None
    return value if isinstance(value, bool) else None


def spec_privileged(spec: Any) -> bool | None:
    """Whether an OCI runtime config is what a privileged run gives (Docker, containerd, CRI-O and
    podman alike): a device rule that allows every device and no masked paths. ``None`` when
    ``spec`` is no runtime config."""
    if not isinstance(spec, dict) or not isinstance(spec.get("linux"), dict):
        return None
    linux = spec["linux"]
    annotations = str_dict(spec.get("annotations"))
    if PODMAN_PRIVILEGED in annotations:
        return annotations[PODMAN_PRIVILEGED].lower() == "true"
    resources = linux.get("resources")
    devices = resources.get("devices") if isinstance(resources, dict) else None
    all_devices = isinstance(devices, list) and any(
        isinstance(d, dict) and d.get("allow") is True and d.get("type", "a") == "a" and d.get("major") is None
        and d.get("minor") is None and set(str(d.get("access", "rwm"))) >= set("rwm")
        for d in devices)
    return bool(all_devices and not linux.get("maskedPaths"))


def spec_devices(spec: Any) -> tuple[str, ...]:
    """The device nodes an OCI runtime config creates in the container (``linux.devices``: paths
    as the container sees them, character and block devices), sorted."""
    linux = spec.get("linux") if isinstance(spec, dict) else None
    devices = linux.get("devices") if isinstance(linux, dict) else None
    return tuple(sorted({d["path"] for d in devices if isinstance(d, dict) and isinstance(d.get("path"), str)
                         and d.get("type") in ("c", "b", "u")})) if isinstance(devices, list) else ()


def bundle_devices(bundle: str) -> tuple[str, ...]:
    """:func:`spec_devices` of the bundle's ``config.json`` (empty when unreadable)."""
    return spec_devices(read_json(os.path.join(bundle, "config.json")))


def bundle_privileged(bundle: str) -> bool | None:
    """:func:`spec_privileged` of the bundle's ``config.json``; ``None`` when unreadable."""
    return spec_privileged(read_json(os.path.join(bundle, "config.json")))


def split_image(ref: str) -> tuple[str, str | None, str | None]:
    """``[registry/]repository[:tag][@digest]`` as (repository, tag, digest)."""
    name, _, digest = ref.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    else:
        tag = ""
    return name, tag or None, digest or None


def storage_image(cid: str, storage_root: str = DEFAULT_STORAGE_ROOT) -> tuple[str | None, str | None]:
    """The image reference containers/storage (podman, CRI-O) records for container ``cid``
    (its ``metadata`` ``image-name``) and the image id (``sha256:...``)."""
    for driver in ("overlay", "vfs", "btrfs"):
        listing = read_json(os.path.join(storage_root, f"{driver}-containers", "containers.json"))
        for item in listing if isinstance(listing, list) else []:
            if not isinstance(item, dict) or item.get("id") != cid:
                continue
            try:
                meta = json.loads(item.get("metadata") or "{}")
            except (TypeError, ValueError):
                meta = {}
            ref = meta.get("image-name") if isinstance(meta, dict) else None
            image_id = item.get("image")
            return (ref if isinstance(ref, str) and ref else None,
                    f"sha256:{image_id}" if isinstance(image_id, str) and image_id else None)
    return None, None


def storage_name(cid: str, storage_root: str = DEFAULT_STORAGE_ROOT) -> str | None:
    """The first name containers/storage (podman, CRI-O) records for container ``cid``."""
    for driver in ("overlay", "vfs", "btrfs"):
        listing = read_json(os.path.join(storage_root, f"{driver}-containers", "containers.json"))
        for item in listing if isinstance(listing, list) else []:
            if isinstance(item, dict) and item.get("id") == cid:
                names = item.get("names")
                if isinstance(names, list) and names and isinstance(names[0], str):
                    return names[0]
    return None
