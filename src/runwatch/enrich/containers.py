"""Container attribution: cgroup v2 id -> cgroup path -> :class:`~runwatch.events.Container`.

Kernel events carry ``bpf_get_current_cgroup_id()``, the kernfs id of the task's cgroup in
the v2 hierarchy, which equals the inode number of that cgroup's directory under the v2
mount (``/sys/fs/cgroup`` on pure-v2 hosts, ``/sys/fs/cgroup/unified`` on hybrid ones), as
detected by :func:`runwatch.host.cgroup_v2`.

Resolution order for an id not yet cached:

1. the path index built by the last tree walk;
2. a direct lookup by file handle (``open_by_handle_at`` with the kernfs handle type), one
   syscall, exact and immune to walk races; used when the kernel allows it;
3. a rate-limited walk of the whole tree (:meth:`ContainerResolver.rescan`), which also
   evicts ids whose directories are gone.

A cgroup path is classified by :func:`parse_cgroup_path` (docker, podman, containerd CRI,
CRI-O, Kubernetes, our own ``/runwatch/<id>``) and, when that finds nothing, by asking
whether its last component names a container in one of runc's state roots. Names come from
runc's ``state.json`` labels and the bundle's ``config.json`` annotations, Docker's
``config.v2.json`` and containers/storage's ``containers.json`` (all read through
:mod:`runwatch.host.runtimes`); the image from the CRI annotations (containerd's
``io.kubernetes.cri.image-name``, CRI-O's ``io.kubernetes.cri-o.ImageName``) and podman's
privileged flag (``io.podman.annotations.privileged``). The rest of a workload's metadata is
added after resolution by :mod:`runwatch.enrich.workload`. Unreadable or malformed files count
as unknown; they never raise.
With :meth:`ContainerResolver.watch_states`, runc's state is also read as it is written and kept,
so a container that is gone before its events are enriched still has its name.

Thread safety: every public method takes one internal lock, so an instance may be shared
between threads; the intended use is single-threaded from the pipeline, where the lock is
uncontended.
"""

from __future__ import annotations

import errno
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import msgspec

from runwatch.enrich import governance
from runwatch.enrich.roles import ROLE_LABEL
from runwatch.events import Container
from runwatch.host import cgroup_v2_if_any, handles, procfs, runtimes
from runwatch.host.runtimes import DEFAULT_DOCKER_ROOT, DEFAULT_RUNC_ROOTS, DEFAULT_STORAGE_ROOT
from runwatch.host.statewatch import RuntimeStates

RoleOf = Callable[[Container, Mapping[str, str]], "str | None"]
"""The role of a container that declares none, from what else is known (its selecting policy)."""

_HEX_ID = r"[0-9a-f]{64}"
_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
# One container component -> runtime. Tried on each component from the innermost outward.
_SCOPE_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(rf"^docker-({_HEX_ID})\.scope$"), "docker"),
    (re.compile(rf"^libpod-({_HEX_ID})(?:\.scope)?$"), "podman"),
    (re.compile(rf"^cri-containerd-({_HEX_ID})(?:\.scope)?$"), "containerd"),
    (re.compile(rf"^crio-({_HEX_ID})(?:\.scope)?$"), "cri-o"),
)
# Monitor processes that sit next to a container but are not in it.
_MONITOR = re.compile(r"^(?:libpod-conmon-|crio-conmon-)")
_BARE_ID = re.compile(rf"^{_HEX_ID}$")
_POD_CGROUPFS = re.compile(rf"^pod({_UID})$")
_POD_SYSTEMD = re.compile(rf"^kubepods(?:-[a-z]+)?-pod({_UID})\.slice$")
_RUNC_ID = re.compile(r"^[\w+\-.]{1,1024}$")

_WALK_MAX_DEPTH = 64
_WALK_MAX_DIRS = 500_000


def parse_cgroup_path(path: str) -> tuple[str, str, str | None] | None:
    """Classify a cgroup v2 path as ``(runtime, container_id, pod_uid)``, or ``None`` for host.

    Pure: looks only at the path. Recognises ``/runwatch/<id>`` (runc, ours), ``/docker/<id>``
    and ``docker-<id>.scope`` (docker), ``libpod-<id>[.scope]`` (podman; ``libpod-conmon-``
    is the monitor, not the container), ``cri-containerd-<id>.scope`` (containerd),
    ``crio-<id>[.scope]`` (cri-o), and a bare ``<id>`` directly under a Kubernetes pod
    cgroup (``kubernetes``). The pod uid is taken from ``pod<uid>`` (cgroupfs driver) or
    ``kubepods-<qos>-pod<uid>.slice`` (systemd driver, ``_`` turned back into ``-``).
    The innermost container component wins (nested containers report the inner one).
    """
    parts = [p for p in path.strip().split("/") if p]
    pod_uid: str | None = None
    for part in parts:
        m = _POD_CGROUPFS.match(part) or _POD_SYSTEMD.match(part)
        if m:
            pod_uid = m.group(1).replace("_", "-")
    for i in range(len(parts) - 1, -1, -1):
        part = parts[i]
        if _MONITOR.match(part):
            return None
        for pattern, runtime in _SCOPE_RULES:
            m = pattern.match(part)
            if m:
                return runtime, m.group(1), pod_uid
        parent = parts[i - 1] if i > 0 else ""
        if parent == "runwatch" and i == 1 and _RUNC_ID.match(part):
            return "runc", part, None
        if _BARE_ID.match(part):
            if parent == "docker":
                return "docker", part, pod_uid
            if _POD_CGROUPFS.match(parent) or _POD_SYSTEMD.match(parent):
                return "kubernetes", part, pod_uid
    return None


@dataclass(slots=True)
class _Entry:
    """A cached resolution. ``retry_until``/``next_try`` are monotonic seconds."""

    path: str
    container: Container | None
    complete: bool
    retry_until: float
    next_try: float


@dataclass(slots=True, frozen=True)
class _Meta:
    """What the runtime's files say about one container."""

    runtime: str | None  # runtime implied by the state root it was found under
    labels: dict[str, str]
    name: str | None  # from Docker's or containers/storage's own records
    cgroup_path: str | None  # as recorded by runc, relative to the v2 root
    complete: bool  # state.json was read (names will not improve by retrying)
    image: tuple[str | None, str | None] = (None, None)  # reference, digest (Docker's own records)
    privileged: bool | None = None
    devices: tuple[str, ...] = ()  # device nodes the runtime config creates (container paths)


class ContainerResolver:
    """Maps cgroup v2 ids (and pids) to :class:`Container`; ``None`` means a host process.

    Args:
        cgroup_root: v2 mount point; the host's (:func:`runwatch.host.cgroup_v2`) when ``None``.
        runc_roots: ``(state root, runtime)`` pairs searched for ``<root>[/<ns>]/<id>``.
        docker_root / storage_root: Docker and containers/storage data roots (names).
        proc_root: procfs mount (for :meth:`resolve_pid`).
        max_entries: bound on cached resolutions (LRU) and on remembered unknown ids.
        rescan_interval: minimum seconds between miss-triggered tree walks.
        meta_retry: seconds during which a container whose runtime state was not yet
            written (runc writes ``state.json`` after creating the cgroup) is re-read.
        use_handles: look ids up by file handle before walking the tree.
    """

    def __init__(
        self,
        cgroup_root: str | None = None,
        runc_roots: Sequence[tuple[str, str]] = DEFAULT_RUNC_ROOTS,
        docker_root: str = DEFAULT_DOCKER_ROOT,
        storage_root: str = DEFAULT_STORAGE_ROOT,
        proc_root: str = "/proc",
        max_entries: int = 16384,
        rescan_interval: float = 0.25,
        meta_retry: float = 10.0,
        use_handles: bool = True,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        if cgroup_root is None:
            found = cgroup_v2_if_any()
            root = str(found.root) if found is not None else None
        else:
            root = cgroup_root
        self.cgroup_root: str | None = (root.rstrip("/") or "/") if root else None
        self.runc_roots = tuple(runc_roots)
        self.docker_root = docker_root
        self.storage_root = storage_root
        self.proc_root = proc_root
        self.max_entries = max_entries
        self.rescan_interval = rescan_interval
        self.meta_retry = meta_retry
        self._use_handles = use_handles
        self.role_of: RoleOf | None = None
        """Asked for the role of a container whose labels declare none (set before events flow)."""
        self._states: RuntimeStates | None = None  # see watch_states
        self._lock = threading.RLock()
        self._index: dict[int, str] = {}  # id -> path, from the last walk only
        self._learned: OrderedDict[int, str] = OrderedDict()  # id -> path, from cgroup creations
        self._cache: OrderedDict[int, _Entry] = OrderedDict()  # LRU of resolutions
        self._unknown: OrderedDict[int, None] = OrderedDict()  # ids proven absent
        self._last_scan = -float("inf")
        self._stats = dict.fromkeys(
            ("hits", "misses", "handle_lookups", "rescans", "rescans_skipped", "evicted",
             "unknown_ids", "meta_reads", "containers"), 0)

    # -- public API ---------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """Whether a cgroup v2 hierarchy was found (without one, everything resolves to host)."""
        return self.cgroup_root is not None

    def resolve(self, cgroup_id: int) -> Container | None:
        """The container of cgroup ``cgroup_id``, or ``None`` (host, or the cgroup is gone)."""
        with self._lock:
            entry = self._entry(cgroup_id)
            return entry.container if entry is not None else None

    def resolve_pid(self, pid: int) -> Container | None:
        """The container of a live process, from ``/proc/<pid>/cgroup``; ``None`` for host/gone."""
        path = procfs.cgroup_path(pid, self.proc_root)
        if path is None or self.cgroup_root is None:
            return None
        with self._lock:
            try:
                ino = os.stat(self._abs(path)).st_ino
            except OSError:
                container, _ = self._classify(path)
                return container
            cached = self._cache.get(ino)
            if cached is not None and cached.path != path:
                del self._cache[ino]  # renamed since it was cached
            self._unknown.pop(ino, None)
            entry = self._entry(ino, known_path=path)
            return entry.container if entry is not None else None

    def path_of(self, cgroup_id: int) -> str | None:
        """The cgroup path (relative to the v2 root, e.g. ``/runwatch/abc``) of an id, or ``None``."""
        with self._lock:
            cached = self._cache.get(cgroup_id)
            if cached is not None:
                return cached.path
            return self._path(cgroup_id)

    def learn(self, cgroup_id: int, path: str) -> None:
        """Remember the path of a cgroup seen being created (the kernel's cgroup_mkdir).

        Events of a container that is gone before they are enriched still resolve (id and
        runtime from the path; names only while the runtime's state could be read).
        """
        with self._lock:
            self._learned[cgroup_id] = path if path.startswith("/") else "/" + path
            self._learned.move_to_end(cgroup_id)
            self._unknown.pop(cgroup_id, None)
            while len(self._learned) > self.max_entries:
                self._learned.popitem(last=False)

    def watch_states(self) -> bool:
        """Read each container's runtime state as it is written and keep it after the container is
        gone, so the events of short-lived containers keep their names (see
        :mod:`runwatch.host.statewatch`). False where inotify is unavailable."""
        with self._lock:
            if self._states is None:
                self._states = RuntimeStates(self.runc_roots, max_entries=self.max_entries)
            return self._states.start()

    def close(self) -> None:
        """Stop following runtime state (what was read still answers)."""
        with self._lock:
            states = self._states
        if states is not None:
            states.close()

    def rescan(self) -> int:
        """Walk the v2 tree now: refresh the path index, evict vanished ids. Returns dirs seen."""
        with self._lock:
            return self._rescan()

    def stats(self) -> dict[str, int]:
        """Counters: hits, misses, handle_lookups, rescans, rescans_skipped, evicted, ..."""
        with self._lock:
            out = dict(self._stats)
            out["cached"] = len(self._cache)
            out["indexed"] = len(self._index)
            return out

    # -- lookup -------------------------------------------------------------------------

    def _entry(self, cgroup_id: int, known_path: str | None = None) -> _Entry | None:
        entry = self._cache.get(cgroup_id)
        if entry is not None:
            self._stats["hits"] += 1
            self._cache.move_to_end(cgroup_id)
            if not entry.complete:
                self._retry_meta(entry)
            return entry
        self._stats["misses"] += 1
        path = known_path or self._path(cgroup_id)
        if path is None:
            return None
        container, complete = self._classify(path)
        now = time.monotonic()
        entry = _Entry(path, container, complete, now + self.meta_retry, now + self._retry_step())
        self._cache[cgroup_id] = entry
        if container is not None:
            self._stats["containers"] += 1
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
            self._stats["evicted"] += 1
        return entry

    def _path(self, cgroup_id: int) -> str | None:
        if self.cgroup_root is None or cgroup_id <= 0 or cgroup_id in self._unknown:
            return None
        path = self._index.get(cgroup_id) or self._learned.get(cgroup_id)
        if path is not None:
            return path
        definitive = False
        if self._use_handles:
            found, definitive = self._handle_lookup(cgroup_id)
            if found is not None:
                return found  # not indexed: only walks fill the index, so it stays bounded
        if not definitive:
            if time.monotonic() - self._last_scan < self.rescan_interval:
                self._stats["rescans_skipped"] += 1
                return None  # not proven absent: do not remember it
            self._rescan()
            path = self._index.get(cgroup_id)
            if path is not None:
                return path
        self._unknown[cgroup_id] = None
        self._stats["unknown_ids"] += 1
        while len(self._unknown) > self.max_entries:
            self._unknown.popitem(last=False)
        return None

    def _handle_lookup(self, cgroup_id: int) -> tuple[str | None, bool]:
        """Open the cgroup by its kernfs file handle. Returns (path, lookup was definitive)."""
        assert self.cgroup_root is not None
        self._stats["handle_lookups"] += 1
        try:
            mount_fd = handles.open_dir(self.cgroup_root)
        except OSError:
            return None, False
        try:
            target = handles.path_in(mount_fd, handles.kernfs_handle(cgroup_id))
        except OSError as exc:
            if exc.errno in (errno.ESTALE, errno.ENOENT, errno.ENOTDIR):
                return None, True
            if exc.errno in (errno.EPERM, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                self._use_handles = False  # this kernel or sandbox refuses: walk instead
            return None, False
        finally:
            os.close(mount_fd)
        if target.endswith(" (deleted)"):
            return None, True
        rel = self._rel(target)
        return rel, rel is not None

    def _rescan(self) -> int:
        self._last_scan = time.monotonic()
        self._stats["rescans"] += 1
        if self.cgroup_root is None:
            return 0
        index: dict[int, str] = {}
        try:
            index[os.stat(self.cgroup_root).st_ino] = "/"
        except OSError:
            return 0
        stack: list[tuple[str, str, int]] = [(self.cgroup_root, "", 0)]
        while stack and len(index) < _WALK_MAX_DIRS:
            absdir, rel, depth = stack.pop()
            try:
                with os.scandir(absdir) as it:
                    for de in it:
                        try:
                            if not de.is_dir(follow_symlinks=False):
                                continue
                            ino = de.inode()
                        except OSError:
                            continue
                        child = f"{rel}/{de.name}"
                        index[ino] = child
                        if depth + 1 < _WALK_MAX_DEPTH:
                            stack.append((de.path, child, depth + 1))
            except OSError:
                continue  # removed while walking
        for cid in [c for c, e in self._cache.items()
                    if index.get(c) != e.path and self._learned.get(c) != e.path]:
            del self._cache[cid]
            self._stats["evicted"] += 1
        self._index = index
        return len(index)

    def _abs(self, path: str) -> str:
        assert self.cgroup_root is not None
        return self.cgroup_root + path if self.cgroup_root != "/" else path

    def _rel(self, abspath: str) -> str | None:
        assert self.cgroup_root is not None
        if self.cgroup_root == "/":
            return procfs.clean_cgroup_path(abspath)
        if abspath == self.cgroup_root:
            return "/"
        if abspath.startswith(self.cgroup_root + "/"):
            return procfs.clean_cgroup_path(abspath[len(self.cgroup_root):])
        return None

    # -- classification and names -------------------------------------------------------

    def _retry_step(self) -> float:
        return min(0.02, max(self.meta_retry / 500, 0.0))  # a stat-and-read at most every 20 ms

    def _retry_meta(self, entry: _Entry) -> None:
        now = time.monotonic()
        if now < entry.next_try:  # rate-limited, unless the state has been read since
            cid = entry.container.id if entry.container is not None else None
            if cid is None or self._states is None or self._states.get(cid) is None:
                return
        if now > entry.retry_until:
            entry.complete = True
            return
        entry.next_try = now + self._retry_step()
        container, complete = self._classify(entry.path)
        if container is not None and entry.container is None:
            self._stats["containers"] += 1
        entry.container, entry.complete = container, complete

    def _classify(self, path: str) -> tuple[Container | None, bool]:
        """(container or None, whether its metadata is final)."""
        parsed = parse_cgroup_path(path)
        if parsed is not None:
            runtime, cid, pod_uid = parsed
            meta = self._meta(cid)
            if runtime == "kubernetes" and meta.runtime is not None:
                runtime = meta.runtime  # the bare-id form names no runtime; its state root does
            return self._build(runtime, cid, pod_uid, path, meta), meta.complete
        if path == "/":
            return None, True
        last = path.rsplit("/", 1)[-1]
        candidates = [last]
        if last.endswith(".scope"):  # runc's systemd driver: <prefix>-<id>.scope
            stem = last[: -len(".scope")]
            candidates += [stem, stem.split("-", 1)[-1]]
        for cid in candidates:
            if not _RUNC_ID.match(cid) or cid in (".", ".."):
                continue
            found = runtimes.state_dir(cid, self.runc_roots)
            kept = self._states.get(cid) if self._states is not None else None
            if found is None and kept is None:
                continue
            meta = self._meta(cid)
            if meta.cgroup_path is not None and meta.cgroup_path != path:
                continue  # a container of that name lives elsewhere: coincidence
            runtime = found[1] if found is not None else meta.runtime or "runc"
            return self._build(runtime, cid, None, path, meta), meta.complete
        return None, False

    def _build(self, runtime: str, cid: str, pod_uid: str | None, path: str, meta: _Meta) -> Container:
        a = meta.labels
        name = (a.get("runwatch.container.name") or a.get("io.kubernetes.container.name")
                or a.get("io.kubernetes.cri.container-name") or a.get("nerdctl/name")
                or meta.name)
        pod = a.get("io.kubernetes.pod.name") or a.get("io.kubernetes.cri.sandbox-name")
        namespace = a.get("io.kubernetes.pod.namespace") or a.get("io.kubernetes.cri.sandbox-namespace")
        uid = pod_uid or a.get("io.kubernetes.pod.uid") or a.get("io.kubernetes.cri.sandbox-uid")
        ref = next((a[k] for k in runtimes.IMAGE_NAME_KEYS if a.get(k)), None) or meta.image[0]
        digest = next((a[k] for k in runtimes.IMAGE_DIGEST_KEYS if a.get(k)), None) or meta.image[1]
        repo, tag, ref_digest = runtimes.split_image(ref) if ref else (None, None, None)
        c = Container(id=cid, runtime=runtime, name=name, pod=pod, pod_uid=uid,
                      namespace=namespace, cgroup=path, role=a.get(ROLE_LABEL) or None,
                      image=ref, image_repository=repo or None, image_tag=tag,
                      image_digest=ref_digest or digest, privileged=meta.privileged,
                      # a privileged container gets every host device: privileged says it
                      devices=list(meta.devices) if meta.devices and not meta.privileged else None,
                      **{k: v for k, v in governance.from_labels(a)._asdict().items() if v is not None})
        if c.role is None and self.role_of is not None:
            role = self.role_of(c, a)
            if role:
                c = msgspec.structs.replace(c, role=role)
        return c

    def _meta(self, cid: str) -> _Meta:
        self._stats["meta_reads"] += 1
        labels: dict[str, str] = {}
        cgroup_path: str | None = None
        found = runtimes.state_dir(cid, self.runc_roots)  # exists from creation on
        state = runtimes.read_state(*found) if found is not None else None  # written a little later
        annotations = runtimes.bundle_annotations(state.bundle) if state is not None and state.bundle else {}
        privileged = runtimes.bundle_privileged(state.bundle) if state is not None and state.bundle else None
        devices = runtimes.bundle_devices(state.bundle) if state is not None and state.bundle else ()
        if state is None:  # not written yet, or the container is gone: what was read when it was
            record = self._states.get(cid) if self._states is not None else None
            if record is not None:
                state, annotations = record.state, record.annotations
        runtime = found[1] if found is not None else state.runtime if state is not None else None
        complete = state is not None
        if state is not None:
            labels.update(annotations)
            labels.update(state.labels)
            cgroup_path = self._state_cgroup(state)
        name = None
        image: tuple[str | None, str | None] = (None, None)
        if _BARE_ID.match(cid):
            name = runtimes.docker_name(cid, self.docker_root) or runtimes.storage_name(cid, self.storage_root)
            image = runtimes.docker_image(cid, self.docker_root)
            if image == (None, None):
                image = runtimes.storage_image(cid, self.storage_root)
            docker_priv = runtimes.docker_privileged(cid, self.docker_root)
            privileged = docker_priv if docker_priv is not None else privileged
        return _Meta(runtime, labels, name, cgroup_path, complete, image, privileged, devices)

    def _state_cgroup(self, state: runtimes.RuncState) -> str | None:
        if state.cgroup_dir is not None:
            return self._rel(state.cgroup_dir)
        if state.config_cgroup is not None and state.config_cgroup.startswith("/"):
            return procfs.clean_cgroup_path(state.config_cgroup)
        return None

