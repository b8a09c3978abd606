"""The one typed event schema.

Every source (kernel sensor, proc-connector fallback, replay, later the agent SDK and
ingest adapters) produces :class:`Event` values; every sink consumes them.

Contract (add-only): fields are only ever added. A changed meaning is a new ``kind``.
Kind-specific data lives in one optional group per domain (``file``, ``net``, ``dns``,
``priv``, ``decision``, ``ai``) so rule fields read naturally (``file.path``, ``ai.route``).
The kinds themselves are declared in :mod:`runwatch.eventkinds`. :data:`SCHEMA_VERSION`
is written with stored events; :func:`upgrade` brings events of older schemas up to date.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import msgspec

from runwatch import eventkinds, exepath

SCHEMA_VERSION = 8
"""Version of the :class:`Event` schema. Bumped whenever a field or group is added (the
schema test compares the structs with the committed ``tests/schema/event_schema_v<N>.json``
and fails on a removed, renamed or retyped field, or on an addition without a bump).
A new kind needs no bump (kinds are entries of the event table, checked add-only by the same
test). Version 2 added the ``ai`` group (before it, AI facts were keys of ``attrs``); version 3
added the workload role (``Event.role``, ``Container.role``); version 4 added ``exec_name``,
``exe_ino``, ``exe_dev`` and ``exe_deleted`` (``exe`` is the executed file, see
:mod:`runwatch.exepath`); version 5 added ``AiInfo.candidates`` (the tool calls an event may
belong to when the join cannot tell which); version 6 added ``pcmdline`` (the parent's command
line, filled by the process tree) and the workload metadata of :class:`Container` (``labels``,
``annotations``, ``service_account``, ``node``, ``owner_kind``, ``owner_name``, ``image``,
``image_digest``, ``privileged``, ``cap_add``, ``devices``, ``gpu``, ``siblings``,
``spiffe_source``); version 7 added the process facts Falco rules read (``proc_start``, ``tty``,
``loginuid``, ``cap_effective``, ``cap_permitted``, ``user``, ``login_user``, ``exe_upper_layer``),
``Container.image_repository`` and ``image_tag``, and ``PrivInfo.user``; version 8 added the
workload's governance (``Container.owner``, ``escalation``, ``review_by``)."""

#: Every event kind, in table order (derived from :data:`runwatch.eventkinds.TABLE`). The
#: strings are part of the public contract.
KINDS: tuple[str, ...] = eventkinds.names()

IDENTITY_SOURCES: frozenset[str] = frozenset({"kernel", "proc"})
"""Sources that say what a process is (its exe, cmdline, parent). The others (the audit hook,
the SDK, OTLP, the policy engine) report what a process asked for or was inside of: they add
context to events and never change the process tree."""

SPAWNED_ATTR = "spawned"
UNCONFIRMED_ATTR = "unconfirmed"
"""Set on an audit-hook or SDK claim of an act the running kernel sensor would have seen and did
not: stored with its source, never the subject of a rule."""
"""``attrs`` key of an audit-hook ``process.exec`` whose program runs in a child the caller
starts (``subprocess``, ``os.system``, ``posix_spawn``): ``pid`` is the caller, the new
image's parent. Without it (``os.exec``) the caller's own image is replaced."""


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
    role: str | None = None  # declared by the runwatch.io/role label or annotation
    # Workload metadata (schema 6), from the runtime (OCI annotations, podman) and the Kubernetes API.
    labels: dict[str, str] | None = None  # the pod's (or container's) labels
    annotations: dict[str, str] | None = None  # the pod's annotations, from the Kubernetes API
    service_account: str | None = None
    node: str | None = None
    owner_kind: str | None = None  # the pod's controller: ReplicaSet, Job, StatefulSet, DaemonSet, ...
    owner_name: str | None = None
    image: str | None = None  # as the pod spec / runtime names it
    image_digest: str | None = None  # sha256:... of the image the container runs
    privileged: bool | None = None
    cap_add: list[str] | None = None  # capabilities added to the runtime's default set
    devices: list[str] | None = None  # host device paths given to the container
    gpu: int | None = None  # GPUs: nvidia.com/gpu limits, or /dev/nvidiaN devices
    siblings: list[str] | None = None  # the names of the pod's other containers (sidecars, app)
    spiffe_source: str | None = None  # how spiffe_id is known: derived (from Kubernetes facts) | attested
    # schema 7: the image reference split as Falco reads it
    image_repository: str | None = None
    image_tag: str | None = None
    # schema 8: governance, from the runwatch.io/owner, /escalation and /review-by labels or
    # annotations, or the selecting policy's metadata
    owner: str | None = None  # the team or person answerable for the workload
    escalation: str | None = None  # whom to reach when the owner does not answer
    review_by: str | None = None  # ISO date (YYYY-MM-DD) by which the workload's access is reviewed


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
    user: str | None = None  # setuid: the name of ``uid`` in the process's passwd (schema 7)


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


class AiInfo(msgspec.Struct, omit_defaults=True, gc=False):
    """AI-layer facts of ``tool.*``, ``model.call``, ``plugin.load``, ``secret.access`` and
    ``policy.decision`` events (from the agent SDK, audit hooks and OTLP GenAI spans).

    The tool call itself is :class:`ToolCall` (``Event.tool_call``); this group holds what
    the AI sources say about it and about the other AI operations. Add-only like the rest.
    Times are nanoseconds (``start_time`` since the epoch); ``span``/``parent_span`` are the
    SDK's (or the OTLP span id's low 63 bits) integer span keys, ``trace_id``/``span_id``/
    ``parent_span_id`` the OTLP ids in hex.
    """

    operation: str | None = None  # execute_tool | model.call | prompt.route | chat | ...
    route: str | None = None  # the prompt route the operation came in on (untrusted:web, operator, ...)
    provider: str | None = None  # model.call
    model: str | None = None
    agent: str | None = None
    agent_id: str | None = None
    conversation_id: str | None = None
    tool_type: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    status: str | None = None  # tool.end / model.call: ok | error
    error: str | None = None
    duration_ns: int | None = None
    start_time: int | None = None  # tool.end: when its call started
    args_digest: str | None = None  # tool.start / policy.decision: digest of the arguments
    args: str | None = None  # tool.start: the arguments, only when the agent opted in
    span: int | None = None
    parent_span: int | None = None
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None
    plugin: str | None = None  # plugin.load
    plugin_source: str | None = None
    plugin_version: str | None = None
    sha256: str | None = None
    secret: str | None = None  # secret.access: the secret's name (or path)
    secret_kind: str | None = None  # env | file | vault | ...
    tool_call_candidates: int | None = None  # set by the join when several calls were open: how many
    # Set by the join with tool_call_candidates: the calls open when the event happened (or when
    # its process was spawned), oldest first. ``Event.tool_call`` then stays unset (schema 5).
    candidates: list[ToolCall] | None = None


_KERNEL = "kernel"
"""The default ``Event.source``; ``_KERNEL.__str__`` returns this very object (no new string per event)."""


class Event(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """One observation. ``time`` is nanoseconds since the epoch.

    ``exe`` is the executed file (symlinks, ``./x``, ``/proc/self/exe`` and ``/dev/fd/N``
    resolved; ``memfd:NAME``; a deleted file keeps the `` (deleted)`` suffix), in every source;
    ``exec_name`` is the name passed to ``execve`` as given. ``exe_ino``/``exe_dev`` identify
    the executed file (``st_ino``/``st_dev`` as ``os.stat`` gives them); see
    :mod:`runwatch.exepath`. ``ancestry`` lists executables from the parent upward. ``pidns``/``vpid`` let
    events from inside a pid namespace join with host-side kernel events.

    Not tracked by the garbage collector (``gc=False``): events are created at ring-buffer
    rate and never form reference cycles, so cycle collection would only cost time.
    """

    id: str
    time: int
    kind: str
    # ``source`` and ``uid`` are in every encoding, at their defaults too (the README lists both
    # keys): msgspec omits a plain default but never a factory's value. The factories return the
    # same values ("kernel" and 0) as the defaults the schema snapshots record (runwatch.schema).
    source: str = msgspec.field(default_factory=_KERNEL.__str__)
    pid: int = 0
    tid: int = 0
    ppid: int = 0
    uid: int = msgspec.field(default_factory=int)
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
    attrs: dict[str, Any] | None = None  # source-specific extras (notice text, sensor details)
    ai: AiInfo | None = None  # AI-layer facts (schema 2)
    role: str | None = None  # the workload's role (schema 3): its container's, or agent (see enrich)
    exec_name: str | None = None  # process.exec: the name passed to execve, as given (schema 4)
    exe_ino: int | None = None  # the executed file's inode (schema 4)
    exe_dev: int | None = None  # and device, as os.stat's st_dev (schema 4)
    exe_deleted: bool | None = None  # the executed file had no directory entry (schema 4)
    pcmdline: str | None = None  # the parent's command line, space-joined (schema 6; from the process tree)
    # schema 7: process facts (the exec's own, carried by the process tree to its later events)
    proc_start: int | None = None  # when the process started (its fork), ns since the epoch
    tty: int | None = None  # controlling terminal as /proc/PID/stat tty_nr; 0: none
    loginuid: int | None = None  # audit login uid; 4294967295: never set
    cap_effective: int | None = None  # effective capability bits at the last exec (or capset)
    cap_permitted: int | None = None  # permitted capability bits, the same way
    user: str | None = None  # uid's name in the passwd of the process's root (its container's)
    login_user: str | None = None  # loginuid's name, the same way
    exe_upper_layer: bool | None = None  # process.exec: the file is in an overlay's upper layer


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
    """Decode one event, validating it against the schema (older schemas are upgraded)."""
    return upgrade(_decoder.decode(data))


#: ``attrs`` keys that schema 1 used for what is now the ``ai`` group.
AI_KEYS: frozenset[str] = frozenset(AiInfo.__struct_fields__)


UPGRADE_BELOW = 4
"""Events of a schema older than this need :func:`upgrade` (schema 3 only added optional
fields, which older events simply lack; schema 4 changed what an exec's ``exe`` holds)."""


#: Sources whose schema-3 ``process.exec`` held the execve name in ``exe``.
_NAMED_EXECS = frozenset({"kernel", "audit"})


def _upgrade_exec(event: Event) -> None:
    event.exec_name = event.exe
    if exepath.is_indirect(event.exe):
        event.attrs = {**(event.attrs or {}), "exe_unresolved": True}


def upgrade(event: Event) -> Event:
    """Bring an event decoded from an older schema up to :data:`SCHEMA_VERSION`, in place.

    Schema 1 -> 2: the AI keys of ``attrs`` move into ``ai``. A value of the wrong type stays
    in ``attrs``. Schema 3 -> 4: a kernel or audit ``process.exec`` held the name passed to
    ``execve`` in ``exe``; it is copied to ``exec_name``, and an ``exe`` that only points at the
    executable (``/proc/self/exe``, ``/dev/fd/N``) is marked ``attrs["exe_unresolved"]``: which
    file ran is not known. Idempotent and cheap for current events (a few attribute tests), so readers of
    recordings whose version is unknown (JSONL, rule test cases) call it on every event.
    """
    if event.kind == "process.exec" and event.exec_name is None and event.source in _NAMED_EXECS:
        _upgrade_exec(event)
    attrs = event.attrs
    if attrs is None or event.ai is not None or AI_KEYS.isdisjoint(attrs):
        return event
    moved: dict[str, Any] = {}
    for key in AI_KEYS.intersection(attrs):
        try:
            msgspec.convert({key: attrs[key]}, AiInfo)
        except msgspec.ValidationError:
            continue
        moved[key] = attrs[key]
    if moved:
        event.ai = msgspec.convert(moved, AiInfo)
        rest = {k: v for k, v in attrs.items() if k not in moved}
        event.attrs = rest or None
    return event


def to_dict(event: Event) -> dict[str, Any]:
    """Plain builtins form (for rule engines and templates)."""
    result: dict[str, Any] = msgspec.to_builtins(event)
    return result
