"""What the kernel enforcers act on (a :class:`Target`) and what they report (a :class:`Enforcement`).

Enforcers take the policy model (:class:`runwatch.policy.model.Policy`) directly; this
module adds only the two shapes the model does not have, and :func:`decision_event` which
turns a decision into a ``policy.decision`` :class:`~runwatch.events.Event`.

Thread safety: every class here is immutable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from runwatch.events import DecisionInfo, Event, FileInfo, NetInfo, new_id

Verdict = Literal["allow", "deny", "would_deny", "kill"]


class EnforcementError(RuntimeError):
    """An enforcer could not be started or applied; the message is one line."""


class Target(Protocol):
    """A container to enforce on (:class:`~runwatch.containers.runc.RuncContainer` fits).

    ``init_pid`` is a process inside the container: its ``/proc/<pid>/root`` and mount
    table give the container's view of paths at apply time.
    """

    @property
    def id(self) -> str: ...

    @property
    def cgroup_dir(self) -> Path: ...

    @property
    def cgroup_id(self) -> int: ...

    @property
    def init_pid(self) -> int: ...


@dataclass(frozen=True)
class Hold:
    """A task the kernel stopped (SIGSTOP) at its exec because its cgroup's policy is not
    bound yet: ``cgroup_id`` the held cgroup, ``ino``/``dev`` the executed file (``dev`` in
    the kernel's encoding), ``time_ns`` wall-clock ns."""

    pid: int
    cgroup_id: int
    ino: int
    dev: int
    time_ns: int


@dataclass(frozen=True)
class Enforcement:
    """One decision a kernel enforcer made, ready to become a ``policy.decision`` event.

    (The request-time answer to a tool call is :class:`runwatch.policy.decide.Decision`; the
    agent's view of it is :class:`runwatch.sdk.Decision`; all three are recorded as
    :class:`runwatch.events.DecisionInfo`.)

    ``time_ns`` is wall-clock ns since the epoch; ``latency_ns`` the time spent deciding (in
    the BPF program for egress and kill, in the responder for fanotify). ``layer`` is
    ``egress``, ``file`` or ``exec``; ``target`` what was decided on (``ip:port``, a file
    path in the container's view, an executable path).
    """

    time_ns: int
    layer: str
    verdict: Verdict
    policy_id: str
    rule: str
    reason: str
    latency_ns: int
    mode: str
    pid: int
    target: str
    container_id: str | None = None
    cgroup_id: int | None = None
    comm: str | None = None
    exe: str | None = None
    proto: str | None = None
    dst_ip: str | None = None
    dst_port: int | None = None
    write: bool | None = None


def decision_event(d: Enforcement) -> Event:
    """The ``policy.decision`` event for ``d`` (DecisionInfo plus the net/file group)."""
    net = None
    file = None
    if d.layer == "egress" and d.dst_ip is not None:
        family = "ipv6" if ":" in d.dst_ip else "ipv4"
        net = NetInfo(proto=d.proto or "tcp", family=family, dst_ip=d.dst_ip, dst_port=d.dst_port,
                      result=-1 if d.verdict == "deny" else None)
    elif d.layer in ("file", "exec"):
        intent = None if d.write is None else ("write" if d.write else "read")
        file = FileInfo(path=d.target, intent=intent)
    attrs = {"container_id": d.container_id} if d.container_id else None
    return Event(
        id=new_id(d.time_ns), time=d.time_ns, kind="policy.decision", source="enforce",
        pid=d.pid, exe=d.exe or "", comm=d.comm, cgroup_id=d.cgroup_id, attrs=attrs,
        net=net, file=file,
        decision=DecisionInfo(policy=d.policy_id, verdict=d.verdict, rule=d.rule, reason=d.reason,
                              latency_ns=d.latency_ns, mode=d.mode, target=d.target, layer=d.layer),
    )


def mono_to_wall_ns(mono_ns: int) -> int:
    """Convert a CLOCK_MONOTONIC timestamp (bpf_ktime_get_ns) to wall-clock ns."""
    return time.time_ns() - (time.monotonic_ns() - mono_ns)
