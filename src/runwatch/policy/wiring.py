"""Everything a monitoring session needs for its policies, as one stage with a lifecycle.

:class:`SessionPolicy` is built before the session starts anything (policies already
loaded) and offers the session three pieces to place:

* :attr:`SessionPolicy.source` -- the decision events, a member of the session's source group;
* :attr:`SessionPolicy.actions` -- the alert output turning rule actions into decisions;
* :attr:`SessionPolicy.gate` -- the pipeline stage placed before enrichment (it consumes the
  kernel's ``cgroup.mkdir``): until :meth:`SessionPolicy.start` has loaded the enforcers it
  holds batches back, then applies policies to containers as they appear.

Ordering: the session starts it after the pipeline runs -- the endpoint binds (a live socket
of another runwatch is an error), the kernel enforcers load, the watched command's cgroup is
made, running containers are checked, then the gate opens -- and stops it first, so the last
decisions reach the decision source before the pipeline drains. ``stop`` is idempotent.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Sequence
from typing import Any

from runwatch.argskey import ArgsKey
from runwatch.bpf.pins import stale_dirs
from runwatch.enrich.containers import ContainerResolver
from runwatch.events import Container, DecisionInfo, Event
from runwatch.host import cgroup_v2_if_any
from runwatch.policy.apply import CommandCgroup, ContainerPolicyStage, RuleActionSink
from runwatch.policy.enforce import EnforcementError, Enforcers, decision_event
from runwatch.policy.holds import HoldBinder, continue_stopped_containers
from runwatch.policy.model import PolicySet
from runwatch.policy.runtime import PolicyRuntime, decide_socket_beside
from runwatch.policy.server import DEFAULT_CONTROL_SOCKET
from runwatch.policy.source import record_decision

Say = Callable[[str], None]


class PolicyGate:
    """Pipeline stage: holds batches until opened, then runs them through the apply stage (if any).

    Thread safety: ``__call__``/``flush`` on the pipeline thread; ``open`` from the owner.
    """

    def __init__(self, admissions: Callable[[int, str | None, str], DecisionInfo | None] | None = None) -> None:
        self._lock = threading.Lock()
        self._admissions = admissions
        self._open = False
        self._applier: ContainerPolicyStage | None = None
        self._held: list[Event] = []

    def open(self, applier: ContainerPolicyStage | None) -> None:
        """Let batches through from now on (through ``applier`` when there is one)."""
        with self._lock:
            self._applier, self._open = applier, True

    def __call__(self, batch: list[Event]) -> list[Event]:
        with self._lock:
            if not self._open:
                self._held.extend(batch)
                return []
            held, self._held = self._held, []
            applier = self._applier
        batch = held + batch if held else batch
        if self._admissions is not None:
            self._admit(batch)
        return applier(batch) if applier is not None else batch

    def _admit(self, batch: list[Event]) -> None:
        """Give each SDK ``tool.start`` the decision that admitted its call (the policy's word)."""
        admission = self._admissions
        assert admission is not None
        for e in batch:
            if e.kind == "tool.start" and e.source == "sdk" and e.decision is None and e.tool_call is not None:
                e.decision = admission(e.pid, e.tool_call.call_id, e.tool_call.name)

    def flush(self) -> list[Event]:
        """What is held (the gate never opened) or what the apply stage still holds."""
        with self._lock:
            held, self._held = self._held, []
            applier = self._applier
        if applier is None:
            return held
        return applier(held) + applier.flush() if held else applier.flush()


class SessionPolicy:
    """The policies of one session: endpoint, decision source, enforcers, apply stage, rule actions."""

    def __init__(self, policies: PolicySet, *, sdk_socket: str | None, control_socket: str | None = None,
                 own_cgroup: bool = False, resolver: ContainerResolver | None = None,
                 say: Say | None = None, args_key: ArgsKey | None = None,
                 workload: Callable[[Container], Container] | None = None) -> None:
        self.policies = policies
        self.workload = workload  # Kubernetes/podman/SPIFFE facts for the selectors (enrich.workload)
        self.own_cgroup = own_cgroup
        self.resolver = resolver
        self.say: Say = say or (lambda _line: None)
        self.runtime = PolicyRuntime(policies, decide_socket=decide_socket_beside(sdk_socket),
                                     control_socket=control_socket or DEFAULT_CONTROL_SOCKET, args_key=args_key,
                                     workload=workload)
        self.source = self.runtime.source
        self.actions = RuleActionSink(policies, say=self.say)
        self.gate = PolicyGate(self._admission)
        self.enforcers: Enforcers | None = None
        self.applier: ContainerPolicyStage | None = None
        self.cmd_cgroup: CommandCgroup | None = None
        self.holds: HoldBinder | None = None

    def _admission(self, pid: int, call_id: str | None, tool: str) -> DecisionInfo | None:
        decider = self.runtime.decider
        return decider.admission(pid, call_id, tool) if decider is not None else None

    @property
    def enforces(self) -> bool:
        """Whether any policy has kernel-enforced parts (egress, exec or files)."""
        return any(p.egress is not None or p.exec is not None or p.files is not None for p in self.policies)

    def start(self) -> SessionPolicy:
        """Bind the endpoint, load the enforcers, open the gate (see the module docstring)."""
        self.runtime.start()
        try:
            self._start_enforcement()
        finally:
            self.gate.open(self.applier)
        return self

    def _start_enforcement(self) -> None:
        if not self.enforces:
            return
        cgroups = cgroup_v2_if_any()
        if cgroups is None:
            self.say("no cgroup v2 hierarchy: egress, file and exec rules are not enforced")
            return
        self.enforcers = Enforcers(on_decision=lambda d: record_decision(decision_event(d))).start()
        for problem in self.enforcers.problems:
            self.say(problem)
        scope = None
        if self.own_cgroup:
            self.cmd_cgroup = CommandCgroup(cgroups).create()
            scope = self.cmd_cgroup.rel
        self.applier = ContainerPolicyStage(self.policies, self.enforcers, cgroups=cgroups, scope=scope,
                                            resolver=self.resolver, say=self.say, workload=self.workload)
        if self.holds_containers:
            self._start_holds(cgroups.id_of(scope or "/"))
        if scope is None:
            n = self.applier.scan_existing()
            if n:
                self.say(f"{n} running container(s) checked against the policies")
            adopted = self.enforcers.adopt()
            for stale in adopted:
                self.say(f"adopted the enforcement a crashed runwatch (pid {stale.pid}) left pinned on "
                         f"{len(stale.cgroups())} cgroup(s): released, this run's policies govern them now")
            if adopted and (n := continue_stopped_containers()):
                self.say(f"continued {n} container task(s) a crashed runwatch had held at their first exec")
        else:
            for stale in stale_dirs():
                self.say(f"a crashed runwatch (pid {stale.pid}) left fail-closed enforcement pinned on "
                         f"{len(stale.cgroups())} cgroup(s) ({stale.dir}); runwatch watch adopts it")

    @property
    def holds_containers(self) -> bool:
        """Whether new containers are held until bound: some container policy fails closed
        (in monitor mode too, so what the entrypoint does first is recorded; see
        :mod:`runwatch.policy.holds`)."""
        return any(p.fail == "closed" and p.selector.needs_container
                   and (p.egress is not None or p.exec is not None or p.files is not None) for p in self.policies)

    def _start_holds(self, scope_cgid: int | None) -> None:
        assert self.applier is not None and self.enforcers is not None
        if scope_cgid is None:
            self.say("new containers are not held until their policy is bound: the scope cgroup is gone")
            return
        self.holds = HoldBinder(self.applier, self.enforcers, say=self.say)
        try:
            self.holds.start(scope_cgid)
        except EnforcementError as exc:
            self.say(f"new containers are not held until their policy is bound: {exc}")

    def env(self) -> dict[str, str]:
        """Environment for the watched command (where its SDK asks, its fail default)."""
        return self.runtime.env()

    def prepare_command(self, argv: Sequence[str]) -> Callable[[], None] | None:
        """Apply the command's policy to its cgroup before it starts; returns the ``preexec_fn``
        moving the child there (None without a command cgroup).

        The policy is the one selected by the executable, else the only policy in the set
        unless that one selects containers. Raises EnforcementError if it cannot be applied.
        """
        if self.cmd_cgroup is None:
            return None
        if self.enforcers is not None:
            self._apply_command_policy(argv)
        return self.cmd_cgroup.preexec

    def _apply_command_policy(self, argv: Sequence[str]) -> None:
        assert self.cmd_cgroup is not None and self.enforcers is not None
        found = shutil.which(argv[0]) if argv else None
        exe = os.path.realpath(found) if found else (argv[0] if argv else "")
        policy = self.policies.for_process(exe)
        if policy is None and len(self.policies) == 1:
            only = next(iter(self.policies))
            policy = None if only.selector.needs_container else only
        if policy is None or (policy.egress is None and policy.exec is None and policy.files is None):
            return
        try:
            for line in self.enforcers.apply(self.cmd_cgroup.target(), policy):
                self.say(f"policy {policy.id} on {argv[0]}: {line}")
        except EnforcementError as exc:
            raise EnforcementError(f"policy {policy.id} cannot be applied to the command: {exc}") from None
        self.say(f"policy {policy.id} ({policy.mode}) applied to the command's cgroup {self.cmd_cgroup.rel}")

    def stop(self) -> list[str]:
        """Endpoint, apply stage, enforcers, command cgroup: stopped in that order. Returns
        problems (one line each). Idempotent."""
        errors: list[str] = []
        self.runtime.stop()
        if self.holds is not None:
            self.holds.close()  # tasks still stopped continue: nothing stays held
            self.holds = None
        if self.applier is not None:
            self.applier.close()
        if self.enforcers is not None:
            try:
                self.enforcers.stop()  # last decisions reach the bus before the pipeline drains
            except Exception as exc:
                errors.append(f"stopping enforcers: {exc}")
            self.enforcers = None
        if self.cmd_cgroup is not None:
            errors.extend(self.cmd_cgroup.remove())
            self.cmd_cgroup = None
        return errors

    def malformed(self) -> dict[str, tuple[int, str | None]]:
        """Malformed requests per endpoint listener (``decide``, ``control``): (count, first answer)."""
        return self.runtime.malformed()

    def stats(self) -> dict[str, Any]:
        """Decision counts and per-container apply counts (for the run summary)."""
        return {"decisions": self.runtime.stats(),
                "containers": self.applier.counts if self.applier is not None else {},
                **({"holds": {**self.holds.counts, "max_hold_ms": round(self.holds.max_hold_ms, 1)}}
                   if self.holds is not None else {})}
