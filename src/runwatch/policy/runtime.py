"""Request-time policy for one session: loaded policies, decider, endpoint and decision source.

What ``runwatch run --policy`` and ``runwatch watch --policy`` need, in one object::

    rt = PolicyRuntime(["policy.yaml"], mode="enforce", decide_socket=".../policy.sock").start()
    source = MultiSource([system_source, rt.source])      # decisions become stored events
    env = {**os.environ, **rt.env()}                       # the watched command's SDK finds the socket
    ...
    rt.stop()                                              # before the pipeline drains

Ordering: ``start()`` loads every policy first (raising
:class:`~runwatch.policy.loader.PolicyLoadError` with all located errors before anything is
bound), then binds the sockets. ``stop()`` closes the endpoint (pending challenges are left
to time out; callers see their connection close and apply ``fail``) and leaves queued
decision events for the source to deliver. Both are idempotent.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from runwatch.argskey import ArgsKey
from runwatch.events import Container
from runwatch.policy.challenges import ChallengeBook
from runwatch.policy.decide import Decider, ProcWorkloads
from runwatch.policy.loader import load_policies
from runwatch.policy.model import Mode, PolicySet
from runwatch.policy.server import DEFAULT_CONTROL_SOCKET, DEFAULT_DECIDE_SOCKET, PolicyServer
from runwatch.policy.source import BUS, DecisionBus, DecisionSource
from runwatch.sdk.policy import ENV_POLICY_FAIL, ENV_POLICY_SOCKET


class PolicyRuntime:
    """Owns a :class:`Decider`, its :class:`PolicyServer` and the :class:`DecisionSource`."""

    def __init__(self, paths: Sequence[str] | PolicySet, *, mode: Mode | None = None,
                 decide_socket: str | None = DEFAULT_DECIDE_SOCKET,
                 control_socket: str | None = DEFAULT_CONTROL_SOCKET,
                 tcp_port: int | None = None, bus: DecisionBus | None = None,
                 args_key: ArgsKey | None = None, workload: Callable[[Container], Container] | None = None) -> None:
        self.paths = paths
        self.workload = workload  # facts and SPIFFE id of the asking process's container (enrich.workload)
        self.args_key = args_key
        self.mode = mode
        self.decide_socket = decide_socket
        self.control_socket = control_socket
        self.tcp_port = tcp_port
        self.bus = bus if bus is not None else BUS
        self.policies: PolicySet | None = None
        self.decider: Decider | None = None
        self.server: PolicyServer | None = None
        self.challenges = ChallengeBook()
        self.source = DecisionSource(self.bus, self.challenges)
        self._malformed: dict[str, tuple[int, str | None]] = {}

    def start(self) -> PolicyRuntime:
        """Load the policies, then serve decisions."""
        policies = self.paths if isinstance(self.paths, PolicySet) else load_policies(list(self.paths))
        if self.mode is not None:
            policies = policies.with_mode(self.mode)
        self.policies = policies
        self.decider = Decider(policies, self.challenges, emit=self.bus.put,
                               workloads=ProcWorkloads(workload=self.workload))
        self.server = PolicyServer(self.decider, self.decide_socket, self.control_socket, self.tcp_port,
                                   args_key=self.args_key).start()
        return self

    def env(self) -> dict[str, str]:
        """Environment for the watched command: where its SDK asks, and its fail default."""
        out: dict[str, str] = {}
        if self.decide_socket:
            out[ENV_POLICY_SOCKET] = self.decide_socket
        if self.policies is not None and len(self.policies):
            # Unreachable runwatch: fail closed if any policy says so.
            out[ENV_POLICY_FAIL] = "closed" if any(p.fail == "closed" for p in self.policies) else "open"
        return out

    def stop(self) -> None:
        """Close the endpoint; queued decision events stay for the source, counts for :meth:`malformed`."""
        if self.server is not None:
            self.server.stop()
            self._malformed = self.server.malformed()
            self.server = None

    def malformed(self) -> dict[str, tuple[int, str | None]]:
        """Malformed requests per listener (``decide``, ``control``, ``tcp``): (count, first answer)."""
        return self.server.malformed() if self.server is not None else dict(self._malformed)

    def stats(self) -> dict[str, int]:
        """Decision counts by recorded verdict plus the bus counters."""
        out = dict(self.decider.counts) if self.decider is not None else {}
        out.update({f"bus_{k}": v for k, v in self.bus.stats().items()})
        return out

    def __enter__(self) -> PolicyRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def decide_socket_beside(sdk_socket: str | None) -> str:
    """The decide socket path next to the SDK socket (same directory, so one mount serves both)."""
    if not sdk_socket:
        return DEFAULT_DECIDE_SOCKET
    return os.path.join(os.path.dirname(sdk_socket) or ".", "policy.sock")
