"""Policies applied to workloads as they appear: the watched command's own cgroup and every
container (started by it, or host-wide), plus the policy side of detection rule actions.

Pieces, wired for a session by :class:`runwatch.policy.wiring.SessionPolicy`:

* :class:`CommandCgroup` -- a cgroup v2 directory for the command ``runwatch run`` starts
  (``<v2 root>/runwatch-run/<runwatch pid>``). The child moves itself in between fork and
  exec (:meth:`CommandCgroup.preexec`), so its first instruction already runs under the
  policy applied to the directory; :meth:`CommandCgroup.remove` takes it away at the end.
* :class:`ContainerPolicyStage` -- a pipeline stage placed *before* enrichment (enrichment
  consumes the kernel's ``cgroup.mkdir`` events). On a container cgroup's mkdir it selects a
  policy from what is known at that instant (the bundle's annotations, read through the
  creating runtime's working directory) and applies the egress part at once, then applies
  the whole policy (files and exec need the container's root) as soon as the runtime has
  recorded the container's init process. It removes the policy when the init exits or the
  cgroup is gone. ``scope`` limits it to containers created by processes in one cgroup
  (``runwatch run``: those CMD starts).
* :class:`RuleActionSink` -- an alert sink: a rule whose action is ``kill`` kills the
  process (in enforce mode; monitor records ``would_deny``), a rule whose action is ``deny``
  is recorded as ``would_deny`` (detection sees events after they happened).

Thread safety: the stage runs on the pipeline thread; :meth:`ContainerPolicyStage.close`
may be called from another thread (one lock orders it with ``apply``). Notices go to
``say`` (called on the thread that produced them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from runwatch.alerts.model import Alert
from runwatch.enrich.containers import ContainerResolver, parse_cgroup_path
from runwatch.events import Container, Event
from runwatch.host import CgroupV2, procfs, runtimes
from runwatch.leftovers import RUN_CGROUPS, remove_dead_run_cgroups
from runwatch.policy.enforce import Enforcement, EnforcementError, Enforcers, decision_event
from runwatch.policy.enforce.kill import kill_pid
from runwatch.policy.model import Policy, PolicySet, is_glob
from runwatch.policy.source import record_decision

Say = Callable[[str], None]

PENDING_S = 10.0
"""How long a new container cgroup waits for its runtime to record the init process."""
LIVENESS_S = 1.0
"""How often applied targets are checked for a vanished cgroup (seconds)."""
CMD_PARENT = RUN_CGROUPS
"""Parent directory (under the v2 root) of the watched commands' cgroups."""

_NAME_KEYS = ("runwatch.container.name", "io.kubernetes.container.name", "io.kubernetes.cri.container-name",
              "nerdctl/name")


@dataclass(frozen=True)
class CgroupTarget:
    """What :class:`~runwatch.policy.enforce.Enforcers` acts on (fits its ``Target`` protocol)."""

    id: str
    cgroup_dir: Path
    cgroup_id: int
    init_pid: int


def _name_of(labels: dict[str, str]) -> str | None:
    return next((labels[k] for k in _NAME_KEYS if labels.get(k)), None)


def runtime_state(cid: str) -> tuple[int, dict[str, str]] | None:
    """``(init pid, labels and annotations)`` from the runtime's ``state.json``, once written."""
    state = runtimes.runc_state(cid)
    if state is None or state.init_pid is None:
        return None
    return state.init_pid, {**(runtimes.bundle_annotations(state.bundle) if state.bundle else {}), **state.labels}


def resolve_in_namespaces(pid: int, name: str, timeout_s: float = 2.0) -> set[str]:
    """Addresses of ``name`` resolved inside the network and mount namespaces of ``pid``
    (``nsenter`` + ``getent ahosts``: the container's resolver and files). Empty on failure."""
    try:
        res = subprocess.run(["nsenter", "-t", str(pid), "-n", "-m", "--", "getent", "ahosts", name],
                             capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    out = set()
    for line in res.stdout.splitlines():
        with contextlib.suppress(ValueError, IndexError):
            out.add(str(ipaddress.ip_address(line.split()[0])))
    return out


class CommandCgroup:
    """The watched command's own v2 cgroup (see the module docstring). Not thread safe."""

    def __init__(self, cgroups: CgroupV2, name: str | None = None) -> None:
        self.cgroups = cgroups
        self.rel = f"/{CMD_PARENT}/{name or os.getpid()}"
        self.dir = cgroups.dir_of(self.rel)
        self._fd: int | None = None

    def create(self) -> CommandCgroup:
        """Make the directory (sweeping dirs of runwatch processes that are gone) and open
        ``cgroup.procs`` for :meth:`preexec`."""
        parent = self.dir.parent
        parent.mkdir(exist_ok=True)
        remove_dead_run_cgroups(parent)  # the session has said what it removed; a race is harmless
        self.dir.mkdir(exist_ok=True)
        self._fd = os.open(self.dir / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        return self

    def preexec(self) -> None:
        """Run in the forked child before exec: move the calling process into the cgroup.

        Only one ``write`` (no allocation, no locks), as code between fork and exec must be."""
        if self._fd is not None:
            os.write(self._fd, b"0")

    def target(self) -> CgroupTarget:
        """The enforcement target for this cgroup (paths resolve in runwatch's own root)."""
        return CgroupTarget(id=f"cmd:{self.dir.name}", cgroup_dir=self.dir, cgroup_id=os.stat(self.dir).st_ino,
                            init_pid=os.getpid())

    def remove(self) -> list[str]:
        """Move any process still inside back to runwatch's cgroup, then remove the dir. Returns
        problems (one line each)."""
        problems: list[str] = []
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not self.dir.exists():
            return problems
        own = procfs.cgroup_path(os.getpid()) or "/"
        dest = self.cgroups.dir_of(own) / "cgroup.procs"
        for _ in range(3):
            try:
                pids = [p for p in (self.dir / "cgroup.procs").read_text().split() if p]
            except OSError:
                pids = []
            for pid in pids:
                with contextlib.suppress(OSError):
                    dest.write_text(pid)
            try:
                self.dir.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if _ == 2:
                    problems.append(f"cannot remove {self.dir}: {exc.strerror}")
                time.sleep(0.05)
        with contextlib.suppress(OSError):
            self.dir.parent.rmdir()  # only when no other runwatch run uses it
        return problems


@dataclass
class _Pending:
    cid: str
    runtime: str
    path: str
    cgroup_dir: Path
    cgroup_id: int
    since: float
    early_policy: str | None = None


@dataclass
class _Applied:
    target: CgroupTarget
    policy: Policy
    container: Container


@dataclass(frozen=True)
class Bound:
    """A container's policy as bound (see :meth:`ContainerPolicyStage.bind_held`)."""

    target: CgroupTarget
    policy: Policy
    container: Container


class ContainerPolicyStage:
    """Applies the selected policy to each container as it appears; see the module docstring.

    ``scope``: a v2 cgroup path; only containers whose cgroup was created by a process in it
    (or below) are governed (None: every container on the host). ``resolver``: for names
    (shared with enrichment); ``cgroups``: the host's cgroup v2 hierarchy.
    """

    def __init__(self, policies: PolicySet, enforcers: Enforcers, *, cgroups: CgroupV2, scope: str | None = None,
                 resolver: ContainerResolver | None = None, say: Say | None = None,
                 workload: Callable[[Container], Container] | None = None) -> None:
        self.policies = policies
        self.workload: Callable[[Container], Container] = workload or (lambda c: c)
        """Adds the workload facts (Kubernetes, podman, SPIFFE id) a selector may key on."""
        self.enforcers = enforcers
        self.cgroups = cgroups
        self.scope = scope
        self.resolver = resolver
        self.say: Say = say or (lambda _line: None)
        self._pending: dict[int, _Pending] = {}
        self._applied: dict[int, _Applied] = {}  # cgroup id -> what is applied
        self._known: dict[str, tuple[Container, int]] = {}  # container id -> (container, cgroup id), bounded
        self._lock = threading.Lock()
        self._binding: set[int] = set()  # cgroup ids being applied now (by either thread), under _bind_lock
        self._bind_lock = threading.Lock()
        self._closed = False
        self._last_check = time.monotonic()
        self.counts = {"seen": 0, "applied": 0, "early": 0, "removed": 0, "failed": 0, "unselected": 0}

    # -- the stage ------------------------------------------------------------------------

    def __call__(self, batch: list[Event]) -> list[Event]:
        for e in batch:
            if e.kind == "cgroup.mkdir" and e.attrs:
                self._on_mkdir(e)
            elif e.kind == "policy.decision" and e.container is None and e.attrs:
                # Enforcer decisions name the container by id (file decisions carry no cgroup id).
                known = self._known.get(str(e.attrs.get("container_id", "")))
                if known is not None:
                    e.container, e.cgroup_id = known
            elif e.kind == "process.exit" and self._applied:
                for cgid, a in list(self._applied.items()):
                    if a.target.init_pid == e.pid:
                        self._remove(cgid, "its init exited")
        if self._pending:
            self._advance()
        now = time.monotonic()
        if self._applied and now - self._last_check >= LIVENESS_S:
            self._last_check = now
            for cgid, a in list(self._applied.items()):
                if not a.target.cgroup_dir.exists():
                    self._remove(cgid, "its cgroup is gone")
        return batch

    def flush(self) -> list[Event]:
        """Nothing is held back (the pipeline calls this at drain)."""
        return []

    def scan_existing(self) -> int:
        """Apply policies to containers already running (``runwatch watch``). Returns how many."""
        n = 0
        for state in runtimes.runc_states():
            if state.cgroup_dir is None:
                continue
            try:
                rel = self.cgroups.rel(state.cgroup_dir)
            except ValueError:
                continue  # recorded under another hierarchy than this host's
            cgid = self.cgroups.id_of(rel)
            if cgid is None:
                continue
            self._pending[cgid] = _Pending(state.id, state.runtime, rel, Path(state.cgroup_dir), cgid, time.monotonic())
            n += 1
        self._advance()
        return n

    def close(self) -> None:
        """Stop applying (after this, new containers are left alone). Idempotent."""
        with self._lock:
            self._closed = True
            self._pending.clear()

    def applied(self) -> dict[str, str]:
        """container id -> policy id for every container currently under a policy."""
        return {a.container.id: a.policy.id for a in self._applied.values()}

    # -- internals ------------------------------------------------------------------------

    def _on_mkdir(self, e: Event) -> None:
        assert e.attrs is not None
        path = "/" + str(e.attrs.get("path", "")).strip("/")
        parsed = parse_cgroup_path(path)
        if parsed is None:
            return
        runtime, cid, _pod = parsed
        cgid = int(e.attrs.get("cgroup_id", 0) or 0)
        if cgid <= 0 or cgid in self._pending or not self._claim(cgid):
            return  # known already, or being bound by the hold binder (or bound)
        try:
            self._on_new_cgroup(e, path, runtime, cid, cgid)
        finally:
            self._unclaim(cgid)

    def _on_new_cgroup(self, e: Event, path: str, runtime: str, cid: str, cgid: int) -> None:
        if any(p.cid == cid for p in self._pending.values()) or any(a.container.id == cid
                                                                    for a in self._applied.values()):
            return  # a nested cgroup of a container already handled
        if self.scope is not None:
            creator = procfs.cgroup_path(e.pid) if e.pid > 0 else None
            if creator is None or not (creator == self.scope or creator.startswith(self.scope + "/")):
                return
        self.counts["seen"] += 1
        pend = _Pending(cid, runtime, path, self.cgroups.dir_of(path), cgid, time.monotonic())
        self._pending[cgid] = pend
        # Early: the runtime creating the cgroup runs in the bundle (runc chdirs there), so
        # the name and labels are known now; the egress part needs nothing more than the cgroup.
        labels: dict[str, str] = {}
        with contextlib.suppress(OSError):
            labels = runtimes.bundle_annotations(os.readlink(f"/proc/{e.pid}/cwd"))
        container = self.workload(Container(id=cid, runtime=runtime, name=_name_of(labels), cgroup=path))
        policy = self.policies.for_container(container, labels)
        if policy is None or policy.egress is None:
            return
        early = msgspec.structs.replace(policy, exec=None, files=None)
        target = CgroupTarget(id=cid, cgroup_dir=pend.cgroup_dir, cgroup_id=cgid, init_pid=e.pid)
        if self._apply(target, early, container, early=True):
            pend.early_policy = policy.id

    def _advance(self) -> None:
        now = time.monotonic()
        for cgid, pend in list(self._pending.items()):
            if cgid in self._applied:
                self._pending.pop(cgid, None)  # bound by the hold binder
                continue
            if self.enforcers.is_held(cgid):
                # held in the kernel: the hold binder binds it at its first exec, when the
                # runtime has set the container up; applying now would race that set-up
                if now - pend.since > PENDING_S:
                    self._pending.pop(cgid, None)
                continue
            found = runtime_state(pend.cid)
            if found is None:
                if now - pend.since > PENDING_S or not pend.cgroup_dir.exists():
                    self._pending.pop(cgid, None)
                    if pend.early_policy is not None:
                        self._drop(pend.cid)
                    if pend.cgroup_dir.exists():
                        self.say(f"container {pend.cid}: its runtime recorded no init process within "
                                 f"{PENDING_S:.0f}s; only egress is governed" if pend.early_policy else
                                 f"container {pend.cid}: no runtime state; no policy applied")
                continue
            self._pending.pop(cgid, None)
            init_pid, labels = found
            container, policy = self._select(cgid, pend.cid, pend.runtime, pend.path, labels)
            if policy is None:
                self.counts["unselected"] += 1
                self.enforcers.release(cgid)
                if pend.early_policy is not None:
                    self._drop(pend.cid)
                continue
            target = CgroupTarget(id=pend.cid, cgroup_dir=pend.cgroup_dir, cgroup_id=cgid, init_pid=init_pid)
            if self._claim(cgid):
                try:
                    self._apply(target, policy, container, early=False)
                finally:
                    self._unclaim(cgid)

    def _select(self, cgid: int, cid: str, runtime: str, path: str,
                labels: dict[str, str]) -> tuple[Container, Policy | None]:
        """The container of cgroup ``cgid`` as enrichment knows it (else from its path and the
        runtime's labels), with its workload facts, and the policy that selects it."""
        container = self.resolver.resolve(cgid) if self.resolver is not None else None
        if container is None or container.id != cid:
            container = Container(id=cid, runtime=runtime, cgroup=path)
        if container.name is None and _name_of(labels):
            container = msgspec.structs.replace(container, name=_name_of(labels))
        container = self.workload(container)
        return container, self.policies.for_container(container, labels)

    def _claim(self, cgid: int) -> bool:
        with self._bind_lock:
            if cgid in self._binding or cgid in self._applied:
                return False
            self._binding.add(cgid)
            return True

    def _unclaim(self, cgid: int) -> None:
        with self._bind_lock:
            self._binding.discard(cgid)

    def bind_held(self, cgid: int, pid: int) -> Bound | None:
        """Bind the policy of held cgroup ``cgid`` whose task ``pid`` is stopped at its exec
        (called by :class:`~runwatch.policy.holds.HoldBinder` on its thread).

        Returns what is applied there (also when the pipeline bound it first), or None when
        no policy applies (not a container, a nested cgroup of one, unselected) or applying
        failed (under ``fail: closed`` the container was killed). The kernel hold of the
        cgroup is released in every case; continuing ``pid`` is the caller's."""
        try:
            return self._bind_held(cgid, pid)
        finally:
            self.enforcers.release(cgid)

    def _bind_held(self, cgid: int, pid: int) -> Bound | None:
        deadline = time.monotonic() + PENDING_S
        while True:
            if self._closed:
                return None
            a = self._applied.get(cgid)
            if a is not None:
                return Bound(a.target, a.policy, a.container)
            if self._claim(cgid):
                break
            if time.monotonic() > deadline:
                return None
            time.sleep(0.01)  # the pipeline is applying it now
        try:
            path = procfs.cgroup_path(pid)
            parsed = parse_cgroup_path(path) if path else None
            if parsed is None:
                return None
            runtime, cid, _pod = parsed
            if any(a.container.id == cid for a in self._applied.values()):
                return None  # a nested cgroup of a governed container: its policy covers it
            found = runtime_state(cid)
            while found is None and time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.01)
                found = runtime_state(cid)
            init_pid, labels = found if found is not None else (pid, {})
            container, policy = self._select(cgid, cid, runtime, path or "/", labels)
            if policy is None:
                self.counts["unselected"] += 1
                return None
            self.counts["seen"] += 1
            target = CgroupTarget(id=cid, cgroup_dir=self.cgroups.dir_of(path or "/"), cgroup_id=cgid,
                                  init_pid=init_pid)
            if not self._apply(target, policy, container, early=False):
                return None
            return Bound(target, policy, container)
        finally:
            self._unclaim(cgid)

    def _apply(self, target: CgroupTarget, policy: Policy, container: Container, *, early: bool) -> bool:
        who = f"{container.name} ({container.id})" if container.name else container.id
        with self._lock:
            if self._closed:
                return False
            try:
                notices = self.enforcers.apply(target, policy)
            except EnforcementError as exc:
                self.counts["failed"] += 1
                self.say(f"policy {policy.id} not applied to container {who}: {exc}")
                if policy.fail == "closed" and policy.mode == "enforce":
                    self._kill_container(target, policy, str(exc))
                return False
        for line in notices:
            self.say(f"policy {policy.id} on container {who}: {line}")
        if early:
            self.counts["early"] += 1
            self.say(f"policy {policy.id} ({policy.mode}): egress of container {who} governed from its cgroup's "
                     "creation")
        else:
            self.counts["applied"] += 1
            self.enforcers.release(target.cgroup_id)
            self._learn_hosts(policy, target.init_pid, who)
            self._applied[target.cgroup_id] = _Applied(target, policy, container)
            self._known[container.id] = (container, target.cgroup_id)
            while len(self._known) > 4096:
                self._known.pop(next(iter(self._known)))
            self.say(f"policy {policy.id} ({policy.mode}) applied to container {who}")
        return True

    def _learn_hosts(self, policy: Policy, pid: int, who: str) -> None:
        """Resolve the policy's host names as the container does (its network namespace and its
        own resolv.conf) and allow those addresses too; the host's resolver may know other
        addresses, or none (a name served by a resolver inside the container's network)."""
        if policy.egress is None or pid == os.getpid():
            return
        for host, _port in policy.egress.hosts():
            if is_glob(host):
                continue
            addrs = resolve_in_namespaces(pid, host)
            if addrs:
                self.enforcers.learn_dns(host, sorted(addrs))
            else:
                self.say(f"policy {policy.id} on container {who}: {host} does not resolve inside the container")

    def _kill_container(self, target: CgroupTarget, policy: Policy, why: str) -> None:
        """fail: closed and the policy cannot be applied: kill everything in the container."""
        with contextlib.suppress(OSError):
            (target.cgroup_dir / "cgroup.kill").write_text("1")
        t = time.time_ns()
        record_decision(decision_event(Enforcement(
            time_ns=t, layer="exec", verdict="kill", policy_id=policy.id, rule="policy.apply",
            reason=f"policy could not be applied (fail: closed): {why}", latency_ns=0, mode=policy.mode,
            pid=target.init_pid, target=target.id, container_id=target.id, cgroup_id=target.cgroup_id)))

    def _drop(self, cid: str) -> None:
        with self._lock:
            if not self._closed:
                self.enforcers.remove(cid)

    def _remove(self, cgid: int, why: str) -> None:
        a = self._applied.pop(cgid, None)
        if a is None:
            return
        self._drop(a.container.id)
        self.counts["removed"] += 1
        self.say(f"policy {a.policy.id} removed from container {a.container.name or a.container.id}: {why}")


class RuleActionSink:
    """Alert sink turning rule actions into policy decisions; see the module docstring.

    Only workloads a policy selects are acted on; the policy's mode decides kill versus
    ``would_deny``. Decisions go to :func:`record_decision` (the pipeline stores them).
    """

    name = "policy-actions"

    def __init__(self, policies: PolicySet, say: Say | None = None) -> None:
        self.policies = policies
        self.say: Say = say or (lambda _line: None)
        self.acted = 0

    def open(self) -> None:
        """Nothing to open."""

    def flush(self) -> None:
        """Nothing is buffered: decisions are recorded as they are made."""

    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        """Act on every alert whose rule asks for ``kill`` or ``deny``."""
        for a in alerts:
            if a.rule_action not in ("kill", "deny") or a.process.pid <= 0:
                continue
            w = a.workload
            if w.id:
                policy = self.policies.for_container(Container(id=w.id, runtime=w.runtime or "", name=w.name,
                                                               pod=w.pod, namespace=w.namespace,
                                                               spiffe_id=w.spiffe_id),
                                                     exe=a.process.exe or None)
            else:
                policy = self.policies.for_process(a.process.exe)
            if policy is None:
                continue
            rule = f"rule:{a.rule}"
            if a.rule_action == "kill":
                d = kill_pid(a.process.pid, policy, rule, f"detection rule {a.rule} asks to kill the process",
                             target=a.process.exe)
            else:
                d = Enforcement(time_ns=time.time_ns(), layer="exec", verdict="would_deny", policy_id=policy.id,
                             rule=rule, reason=f"detection rule {a.rule} asks to deny; rules see events after "
                             "they happened, so nothing was blocked", latency_ns=0, mode=policy.mode,
                             pid=a.process.pid, target=a.process.exe)
            d = dataclasses.replace(d, container_id=w.id, exe=a.process.exe or None)
            self.acted += 1
            record_decision(decision_event(d))

    def close(self) -> None:
        """Nothing to release."""
