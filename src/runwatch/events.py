"""The one typed event schema.

Every source (kernel sensor, proc-connector fallback, replay, later the agent SDK and
ingest adapters) produces :class:`Event` values; every sink consumes them.

Contract (add-only): fields are only ever added. A changed meaning is a new ``kind``.
Kind-specific data lives in one optional group per domain (``file``, ``net``, ``dns``,
``priv``) so rule fields read naturally (``file.path``, ``net.dst_port``).
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import msgspec

SCHEMA_VERSION = 1

#: Every event kind, grouped by domain. The strings are part of the public contract.
KINDS: tuple[str, ...] = (
    "process.exec",
    "process.fork",
    "process.exit",
    "net.connect",
    "net.accept",
    "net.listen",
    "net.bind",
    "dns.query",
    "file.open",
    "file.unlink",
    "file.rename",
    "file.memfd",
    "priv.setuid",
    "priv.setgid",
    "priv.capset",
    "priv.mount",
    "priv.ptrace",
    "priv.unshare",
    "priv.setns",
    "tool.start",
    "tool.end",
    "model.call",
    "plugin.load",
    "secret.access",
    "policy.decision",
    "sensor.notice",
    "cgroup.mkdir",  # internal: consumed by container attribution, not stored
)


class Container(msgspec.Struct, omit_defaults=True, frozen=True, gc=False):
    """Where an event happened: the container and, under Kubernetes, its pod."""

    id: str
    runtime: str
    name: str | None = None
    pod: str | None = None
    pod_uid: str | None = None
    namespace: str | None = None
    cgroup: str | None = None
    spiffe_id: str | None = None


class ToolCall(msgspec.Struct, omit_defaults=True, frozen=True, gc=False):
    """The AI tool call an event happened inside (filled by the AI-context join)."""

    name: str
    call_id: str | None = None
    agent: str | None = None


class FileInfo(msgspec.Struct, omit_defaults=True, gc=False):
    """``file.*`` kinds. ``intent`` is ``read``, ``write`` or ``rw``. Contents are never stored."""

    path: str
    intent: str | None = None
    flags: int | None = None
    new_path: str | None = None  # file.rename target
    name: str | None = None  # file.memfd name


class NetInfo(msgspec.Struct, omit_defaults=True, gc=False):
    """``net.*`` kinds. For ``net.accept`` the peer is ``src``; ``result`` is 0 or -errno."""

    proto: str  # tcp | udp | raw | unix
    family: str  # ipv4 | ipv6
    dst_ip: str | None = None
    dst_port: int | None = None
    src_ip: str | None = None
    src_port: int | None = None
    result: int | None = None


class DnsInfo(msgspec.Struct, omit_defaults=True, gc=False):
    """``dns.query``: the question as sent, parsed from the packet head."""

    name: str
    qtype: str | None = None
    server_ip: str | None = None
    server_port: int | None = None


class PrivInfo(msgspec.Struct, omit_defaults=True, gc=False):
    """``priv.*`` kinds. Only the fields meaningful for the operation are set."""

    op: str  # the syscall: setuid, setresuid, capset, mount, ptrace, unshare, setns, ...
    uid: int | None = None  # new real uid (or -1 when unchanged)
    euid: int | None = None
    gid: int | None = None
    egid: int | None = None
    cap_effective: int | None = None
    cap_permitted: int | None = None
    cap_inheritable: int | None = None
    source: str | None = None  # mount
    target: str | None = None
    fstype: str | None = None
    mount_flags: int | None = None
    request: int | None = None  # ptrace
    target_pid: int | None = None
    ns_flags: int | None = None  # unshare / setns
    result: int | None = None


class DecisionInfo(msgspec.Struct, omit_defaults=True, gc=False):
    """``policy.decision``: what a policy decided, and why.

    ``verdict`` is one of allow, deny, challenge, approve, reject, timeout, kill, would_deny,
    would_challenge (the ``would_*`` verdicts are monitor mode: recorded, not enforced).
    ``target`` is what was decided on (tool name, exe path, ``ip:port``, file path) and
    ``layer`` which decider made it (``tool``, ``exec``, ``egress``, ``file``).
    ``latency_ns`` is the time the decision took (for approve/reject/timeout: since the challenge).
    """

    policy: str
    verdict: str
    rule: str | None = None
    reason: str | None = None
    latency_ns: int | None = None
    mode: str | None = None  # monitor | enforce
    target: str | None = None
    layer: str | None = None
    challenge_id: str | None = None


class Event(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """One observation. ``time`` is nanoseconds since the epoch.

    ``ancestry`` lists executables from the parent upward. ``pidns``/``vpid`` let
    events from inside a pid namespace join with host-side kernel events.

    Not tracked by the garbage collector (``gc=False``): events are created at ring-buffer
    rate and never form reference cycles, so cycle collection would only cost time.
    """

    id: str
    time: int
    kind: str
    source: str = "kernel"
    pid: int = 0
    tid: int = 0
    ppid: int = 0
    uid: int = 0
    euid: int | None = None
    gid: int | None = None
    exe: str = ""
    cmdline: str = ""
    argv: list[str] | None = None
    comm: str | None = None
    cwd: str | None = None
    cgroup_id: int | None = None
    pidns: int | None = None
    vpid: int | None = None
    vtid: int | None = None  # thread id inside the pid namespace
    container: Container | None = None
    ancestry: list[str] = msgspec.field(default_factory=list)
    tool_call: ToolCall | None = None
    unattested: bool | None = None
    child_pid: int | None = None  # process.fork
    exit_code: int | None = None  # process.exit
    signal: int | None = None  # process.exit, killed by this signal
    file: FileInfo | None = None
    net: NetInfo | None = None
    dns: DnsInfo | None = None
    priv: PrivInfo | None = None
    decision: DecisionInfo | None = None  # policy.decision
    attrs: dict[str, Any] | None = None  # source-specific extras (notice text, AI fields)


_seq = itertools.count(1)
_boot_tag = f"{os.getpid() & 0xFFFF:04x}"


def new_id(t_ns: int | None = None) -> str:
    """A unique, time-sortable event id (hex time, process tag, sequence)."""
    t = time.time_ns() if t_ns is None else t_ns
    return f"{t:016x}-{_boot_tag}-{next(_seq):x}"


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


def to_json(event: Event) -> bytes:
    """Encode one event as compact JSON (the JSONL line, without newline)."""
    return _encoder.encode(event)


def from_json(data: bytes | str) -> Event:
    """Decode one event, validating it against the schema."""
    return _decoder.decode(data)


def to_dict(event: Event) -> dict[str, Any]:
    """Plain builtins form (for rule engines and templates)."""
    result: dict[str, Any] = msgspec.to_builtins(event)
    return result
