"""The field catalogue: rule field names mapped to typed accessors over :class:`Event`.

Each accessor is built once per field at compile time and called as ``get(event, ctx)``;
it returns ``None`` when the value is absent (no group on the event, empty string). The
``ctx`` argument carries per-event values computed by the engine from its own state
(``net.dst.first_seen``, ``proc.tree``). Accessors are pure and thread-safe; the ctx is
owned by one engine and is not.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runwatch import eventkinds, exepath
from runwatch.events import AI_KEYS, Event
from runwatch.host.runtimes import split_image
from runwatch.linuxnames import cap_names, mode_names, open_flag_names

#: Field types. ``ip`` is a string holding an address (adds ``cidr``).
FieldType = str  # "str" | "int" | "bool" | "ip" | "list" | "object"


class EvalCtx:
    """Per-event values derived from engine state, reset by the engine before each event.

    Not thread-safe: one per engine, filled then read on the engine's thread.
    """

    __slots__ = ("first_seen", "reused_by", "tree")

    def __init__(self) -> None:
        self.first_seen: bool | None = None
        self.tree: int | None = None
        self.reused_by: str | None = None


Getter = Callable[[Event, EvalCtx], Any]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One rule field: its name, value type, accessor and the engine state it needs."""

    name: str
    type: FieldType
    get: Getter
    needs: str | None = None  # "first_seen" | "tree" | "reuse": engine state the field reads
    reads: str | None = None  # the Event attribute that must be set (None: every kind has it)


def _base(path: str) -> str | None:
    return path.rpartition("/")[2] or None if path else None


def _dirname(path: str) -> str | None:
    if not path:
        return None
    head = path.rpartition("/")[0]
    return head or ("/" if path.startswith("/") else None)


@functools.lru_cache(maxsize=8192)
def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Parse an address (IPv4-mapped IPv6 becomes IPv4); ``None`` if it is not one."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@functools.lru_cache(maxsize=8192)
def is_external(text: str) -> bool | None:
    """True for a globally routable unicast address; ``None`` when ``text`` is no address."""
    ip = parse_ip(text)
    if ip is None:
        return None
    return bool(ip.is_global and not ip.is_multicast)


def _nz(value: str | None) -> str | None:
    return value or None


def _proc_name(e: Event, c: EvalCtx) -> str | None:
    # The name the program was run as (the execve name's last component, like the kernel's
    # comm: a busybox applet or /bin/sh keeps its name), else the executed file's.
    name = e.exec_name or e.exe
    return name.rpartition("/")[2] or e.comm or None if name else e.comm or None


def _args(e: Event, c: EvalCtx) -> str | None:
    if e.argv:
        return " ".join(e.argv[1:]) or None
    if e.cmdline:
        return e.cmdline.partition(" ")[2] or None
    return None


def _text(v: Any) -> str | None:
    if v is None or v == "":
        return None
    if isinstance(v, bool):  # as rules write them: evt.attr[setuid] = true
        return "true" if v else "false"
    return v if isinstance(v, str) else str(v)


def _attr(key: str) -> Getter:
    if key in AI_KEYS:  # schema 1 kept the AI facts in attrs: the same key reads the ai group
        def get_ai(e: Event, c: EvalCtx) -> Any:
            g = e.ai
            v = getattr(g, key) if g is not None else None
            if v is None and e.attrs is not None:
                v = e.attrs.get(key)
            return _text(v)

        return get_ai

    def get(e: Event, c: EvalCtx) -> Any:
        a = e.attrs
        return _text(a.get(key)) if a is not None else None

    return get


def _aname(n: int) -> Getter:
    i = n - 1

    def get(e: Event, c: EvalCtx) -> Any:
        a = e.ancestry
        return a[i].rpartition("/")[2] or None if len(a) > i else None

    return get


def _argv_at(i: int) -> Getter:
    def get(e: Event, c: EvalCtx) -> Any:
        a = e.argv
        return a[i] or None if a is not None and len(a) > i else None

    return get


def _exec_env(e: Event) -> dict[str, Any] | None:
    env = e.attrs.get("env") if e.attrs else None
    return env if isinstance(env, dict) else None


def _env_text(e: Event, c: EvalCtx) -> str | None:
    # Falco's form: NAME=VALUE entries, each followed by a space (a match on "NAME=VALUE " cannot
    # hit a longer value); only the names of the sensor's environment allow-list are ever there
    env = _exec_env(e)
    return "".join(f"{k}={v} " for k, v in env.items()) or None if env else None


def _env_at(name: str) -> Getter:
    def get(e: Event, c: EvalCtx) -> Any:
        env = _exec_env(e)
        value = env.get(name) if env else None
        return None if value is None else str(value)

    return get


def _aexe(n: int) -> Getter:
    i = n - 1

    def get(e: Event, c: EvalCtx) -> Any:
        a = e.ancestry
        return a[i] or None if len(a) > i else None

    return get


def _trust_domain(e: Event, c: EvalCtx) -> str | None:
    s = e.container.spiffe_id if e.container is not None else None
    if not s or not s.startswith("spiffe://"):
        return None
    return s[9:].partition("/")[0] or None


TOKEN_OWNER_LABEL = "runwatch.io/token-owner"
"""Label or annotation of a pod naming (comma-separated) the containers its tokens are mounted for."""


def _token_owners(e: Event, c: EvalCtx) -> list[str] | None:
    k = e.container
    if k is None:
        return None
    raw = (k.labels or {}).get(TOKEN_OWNER_LABEL) or (k.annotations or {}).get(TOKEN_OWNER_LABEL)
    if not raw:
        return None
    return [n.strip() for n in raw.split(",") if n.strip()] or None


def _is_token_owner(e: Event, c: EvalCtx) -> bool | None:
    """Whether the container owns its pod's tokens: named by ``runwatch.io/token-owner``; without
    that declaration, every container but a declared sidecar (the app the tokens are mounted for)."""
    k = e.container
    if k is None:
        return None
    owners = _token_owners(e, c)
    if owners is not None:
        return bool(k.name) and k.name in owners
    return (k.role or e.role) != "sidecar"


def _image_part(e: Event, i: int) -> str | None:
    """Repository (0) or tag (1) of the container's image: as the runtime split it, else split
    from the reference (a pod spec's, the Kubernetes API's)."""
    c = e.container
    if c is None:
        return None
    known = c.image_repository if i == 0 else c.image_tag
    if known or not c.image:
        return known or None
    return split_image(c.image)[i] or None


def _container_getter(attr: str) -> Getter:
    def get(e: Event, c: EvalCtx) -> Any:
        k = e.container
        return getattr(k, attr) or None if k is not None else None

    return get


def _group_getter(group: str, attr: str, empty_is_none: bool) -> Getter:
    if empty_is_none:
        def get(e: Event, c: EvalCtx) -> Any:
            g = getattr(e, group)
            return getattr(g, attr) or None if g is not None else None
    else:
        def get(e: Event, c: EvalCtx) -> Any:
            g = getattr(e, group)
            return getattr(g, attr) if g is not None else None
    return get


def _tool(attr: str) -> Getter:
    def get(e: Event, c: EvalCtx) -> Any:
        t = e.tool_call
        return getattr(t, attr) or None if t is not None else None

    return get


def _tool_names(e: Event, c: EvalCtx) -> list[str] | None:
    # Inside a call, named or not: the call's name, or every candidate's when the join could not pick one.
    if e.tool_call is not None:
        return [e.tool_call.name] if e.tool_call.name else None
    return _candidates(e, c)


def _candidates(e: Event, c: EvalCtx) -> list[str] | None:
    g = e.ai
    return [t.name for t in g.candidates] or None if g is not None and g.candidates else None


def _dns_name(e: Event, c: EvalCtx) -> str | None:
    # DNS names are case-insensitive (resolvers may even randomise the case, 0x20 encoding)
    # and may be written fully qualified: compare them lower-cased, without the root dot.
    d = e.dns
    return d.name.lower().rstrip(".") or None if d is not None and d.name else None


def _dest_name(e: Event, c: EvalCtx) -> str | None:
    v = e.attrs.get("dest_name") if e.attrs is not None else None
    return v.lower().rstrip(".") or None if isinstance(v, str) and v else None


def _exe_is_runtime(e: Event, c: EvalCtx) -> bool:
    # Set by enrichment (runwatch.enrich.runtime) from the executed file's inode and device.
    return bool(e.attrs and e.attrs.get("exe_is_runtime") is True)


def _duration(e: Event, c: EvalCtx) -> int | None:
    # the process's age at the event (ns), as Falco's proc.duration
    return max(0, e.time - e.proc_start) if e.proc_start else None


def _caps(e: Event, c: EvalCtx) -> str | None:
    return cap_names(e.cap_effective) or None if e.cap_effective is not None else None


def _caps_permitted(e: Event, c: EvalCtx) -> str | None:
    return cap_names(e.cap_permitted) or None if e.cap_permitted is not None else None


def _memfd_exe(e: Event, c: EvalCtx) -> bool | None:
    return exepath.is_memfd_exe(e.exe) if e.exe else None


def _flag_names(e: Event, c: EvalCtx) -> str | None:
    f = e.file
    return open_flag_names(f.flags) if f is not None and f.flags is not None and e.kind == "file.open" else None


def _mode_names(e: Event, c: EvalCtx) -> str | None:
    # file.chmod and file.mkdir keep the mode in flags
    f = e.file
    if f is None or f.flags is None or e.kind not in ("file.chmod", "file.mkdir"):
        return None
    return mode_names(f.flags & 0o7777) or None


def _file_result(e: Event, c: EvalCtx) -> int | None:
    # file.open: 0 for an opened file, -errno for a failed open (reported for watched paths)
    if e.kind != "file.open" or e.file is None:
        return None
    r = e.attrs.get("result") if e.attrs is not None else None
    return r if isinstance(r, int) else 0


def _external(e: Event, c: EvalCtx) -> bool | None:
    n = e.net
    if n is None or not n.dst_ip:
        return None
    return is_external(n.dst_ip)


#: Field-name prefix -> the Event group its fields read.
_PREFIX_READS = {"file": "file", "net": "net", "dns": "dns", "priv": "priv", "tool": "tool_call", "ai": "ai",
                 "policy": "decision"}
#: Fields outside those prefixes that only some kinds carry.
_READS = {"proc.exit_code": "exit_code", "proc.signal": "signal", "proc.child_pid": "child_pid",
          "tool.unattested": "unattested", "tool.names": "tool_call", "tool.candidates": "tool_call"}

#: ``ai.*`` string fields: the ``Event.ai`` attribute of the same name.
AI_STR_FIELDS: tuple[str, ...] = (
    "operation", "route", "provider", "model", "agent", "agent_id", "conversation_id", "tool_type", "status",
    "error", "args_digest", "plugin", "plugin_source", "plugin_version", "sha256", "secret", "secret_kind",
)
#: ``ai.*`` integer fields.
AI_INT_FIELDS: tuple[str, ...] = ("input_tokens", "output_tokens", "duration_ns", "tool_call_candidates")


def _fields() -> dict[str, FieldSpec]:
    f: dict[str, FieldSpec] = {}

    def add(name: str, typ: FieldType, get: Getter, needs: str | None = None) -> None:
        reads = _READS.get(name) or _PREFIX_READS.get(name.partition(".")[0])
        f[name] = FieldSpec(name, typ, get, needs, reads)

    add("kind", "str", lambda e, c: e.kind)
    add("evt.kind", "str", lambda e, c: e.kind)
    add("evt.id", "str", lambda e, c: e.id or None)
    add("evt.time", "int", lambda e, c: e.time)
    add("evt.source", "str", lambda e, c: e.source or None)
    add("proc.pid", "int", lambda e, c: e.pid)
    add("proc.tid", "int", lambda e, c: e.tid)
    add("proc.ppid", "int", lambda e, c: e.ppid)
    add("proc.vpid", "int", lambda e, c: e.vpid)
    add("proc.name", "str", _proc_name)
    add("proc.comm", "str", lambda e, c: e.comm or None)
    add("proc.exe", "str", lambda e, c: e.exe or None)
    add("proc.exec_name", "str", lambda e, c: e.exec_name or None)
    add("proc.cmdline", "str", lambda e, c: e.cmdline or None)
    add("proc.args", "str", _args)
    add("proc.argv", "list", lambda e, c: e.argv or None)
    add("proc.cwd", "str", lambda e, c: e.cwd or None)
    add("proc.uid", "int", lambda e, c: e.uid)
    add("proc.euid", "int", lambda e, c: e.euid)
    add("proc.exe_is_runtime", "bool", _exe_is_runtime)
    add("proc.gid", "int", lambda e, c: e.gid)
    add("proc.pname", "str", _aname(1))
    add("proc.pexe", "str", _aexe(1))
    add("proc.pcmdline", "str", lambda e, c: e.pcmdline or None)
    add("proc.env", "str", _env_text)
    add("proc.ancestry", "list", lambda e, c: e.ancestry or None)
    add("proc.anames", "list", lambda e, c: [a.rpartition("/")[2] for a in e.ancestry] or None)
    add("proc.tree", "int", lambda e, c: c.tree, "tree")
    add("proc.exit_code", "int", lambda e, c: e.exit_code)
    add("proc.signal", "int", lambda e, c: e.signal)
    add("proc.child_pid", "int", lambda e, c: e.child_pid)
    add("proc.start", "int", lambda e, c: e.proc_start)
    add("proc.duration", "int", _duration)
    add("proc.tty", "int", lambda e, c: e.tty)
    add("proc.loginuid", "int", lambda e, c: e.loginuid)
    add("proc.user", "str", lambda e, c: e.user or None)
    add("proc.login_user", "str", lambda e, c: e.login_user or None)
    add("proc.cap_effective", "int", lambda e, c: e.cap_effective)
    add("proc.cap_effective_names", "str", _caps)
    add("proc.cap_permitted", "int", lambda e, c: e.cap_permitted)
    add("proc.cap_permitted_names", "str", _caps_permitted)
    add("proc.exe_memfd", "bool", _memfd_exe)
    add("proc.exe_upper_layer", "bool", lambda e, c: bool(e.exe_upper_layer) if e.kind == "process.exec" else None)
    add("container", "object", lambda e, c: e.container)
    for attr in ("id", "name", "runtime", "pod", "pod_uid", "namespace", "spiffe_id", "image", "image_digest"):
        add(f"container.{attr}", "str", _container_getter(attr))
    add("container.image_repository", "str", lambda e, c: _image_part(e, 0))
    add("container.image_tag", "str", lambda e, c: _image_part(e, 1))
    add("container.privileged", "bool", lambda e, c: e.container.privileged if e.container is not None else None)
    for attr in ("id", "name", "runtime", "pod", "namespace", "spiffe_id"):
        add(f"workload.{attr}", "str", _container_getter(attr))
    add("workload.role", "str", lambda e, c: e.role)
    # Kubernetes and runtime facts (schema 6)
    add("container.cap_add", "list", _container_getter("cap_add"))
    add("container.devices", "list", _container_getter("devices"))
    add("container.gpu", "int", lambda e, c: e.container.gpu if e.container is not None else None)
    add("k8s.pod.name", "str", _container_getter("pod"))
    add("k8s.pod.uid", "str", _container_getter("pod_uid"))
    add("k8s.ns.name", "str", _container_getter("namespace"))
    add("k8s.pod.labels", "list", lambda e, c: [f"{k}:{v}" for k, v in sorted(e.container.labels.items())]
        if e.container is not None and e.container.labels else None)
    for attr in ("service_account", "node", "owner_kind", "owner_name", "siblings"):
        add(f"workload.{attr}", "list" if attr == "siblings" else "str", _container_getter(attr))
    for attr in ("owner", "escalation", "review_by"):  # governance (schema 8)
        add(f"workload.{attr}", "str", _container_getter(attr))
    # the policy decision of a policy.decision event, or the one that admitted a tool.start
    for attr in ("policy", "verdict", "rule", "mode", "layer"):
        add("policy.id" if attr == "policy" else f"policy.{attr}", "str", _group_getter("decision", attr, True))
    add("identity.spiffe_id", "str", _container_getter("spiffe_id"))
    add("identity.trust_domain", "str", _trust_domain)
    add("identity.source", "str", _container_getter("spiffe_source"))
    add("identity.attested", "bool", lambda e, c: (e.container.spiffe_source == "attested")
        if e.container is not None and e.container.spiffe_id else None)
    add("identity.reused_by", "str", lambda e, c: c.reused_by, "reuse")
    add("secret.name", "str", lambda e, c: (e.file.path or None) if e.file is not None
        else (e.ai.secret if e.ai is not None else None))
    add("workload.token_owners", "list", _token_owners)
    add("workload.token_owner", "bool", _is_token_owner)
    add("file.path", "str", _group_getter("file", "path", True))
    add("file.name", "str", lambda e, c: _base(e.file.path) if e.file is not None else None)
    add("file.dir", "str", lambda e, c: _dirname(e.file.path) if e.file is not None else None)
    add("file.intent", "str", _group_getter("file", "intent", True))
    add("file.flags", "int", _group_getter("file", "flags", False))
    add("file.flag_names", "str", _flag_names)
    add("file.result", "int", _file_result)
    add("file.mode_names", "str", _mode_names)
    add("file.new_path", "str", _group_getter("file", "new_path", True))
    add("file.memfd_name", "str", _group_getter("file", "name", True))
    add("net.proto", "str", _group_getter("net", "proto", True))
    add("net.family", "str", _group_getter("net", "family", True))
    add("net.dst.ip", "ip", _group_getter("net", "dst_ip", True))
    add("net.dst.port", "int", _group_getter("net", "dst_port", False))
    add("net.dst.name", "str", _dest_name)
    add("net.src.ip", "ip", _group_getter("net", "src_ip", True))
    add("net.src.port", "int", _group_getter("net", "src_port", False))
    add("net.result", "int", _group_getter("net", "result", False))
    add("net.dst.external", "bool", _external)
    add("net.dst.first_seen", "bool", lambda e, c: c.first_seen, "first_seen")
    add("dns.name", "str", _dns_name)
    add("dns.qtype", "str", _group_getter("dns", "qtype", True))
    add("dns.server", "ip", _group_getter("dns", "server_ip", True))
    add("dns.server_port", "int", _group_getter("dns", "server_port", False))
    add("priv.op", "str", _group_getter("priv", "op", True))
    for attr in ("uid", "euid", "gid", "egid", "cap_effective", "cap_permitted", "cap_inheritable",
                 "mount_flags", "request", "target_pid", "ns_flags", "result"):
        add(f"priv.{attr}", "int", _group_getter("priv", attr, False))
    for attr in ("target", "source", "fstype", "user"):
        add(f"priv.{attr}", "str", _group_getter("priv", attr, True))
    add("tool.name", "str", _tool("name"))
    add("tool.call_id", "str", _tool("call_id"))
    add("tool.agent", "str", _tool("agent"))
    add("tool.unattested", "bool", lambda e, c: e.unattested)
    add("tool.names", "list", _tool_names)
    add("tool.candidates", "list", _candidates)
    for attr in AI_STR_FIELDS:
        add(f"ai.{attr}", "str", _group_getter("ai", attr, True))
    for attr in AI_INT_FIELDS:
        add(f"ai.{attr}", "int", _group_getter("ai", attr, False))
    return f


#: Every plain field, by name. Indexed fields (``proc.aname[N]``, ``proc.aexe[N]``,
#: ``proc.argv[N]``, ``proc.env[NAME]``, ``evt.attr[KEY]``) are resolved by :func:`resolve_field`.
FIELDS: dict[str, FieldSpec] = _fields()

#: The indexed field families, as written in the docs.
INDEXED_FIELDS: tuple[str, ...] = ("proc.aname[N]", "proc.aexe[N]", "proc.argv[N]", "proc.env[NAME]",
                                   "evt.attr[KEY]")

_INDEXED = re.compile(r"^(proc\.aname|proc\.aexe|proc\.argv|proc\.env|evt\.attr)\[([^\]]+)\]$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ARGV_MAX = 1023  # highest argv index a rule may name
_ATTR_KEY = re.compile(r"^[A-Za-z0-9_.:-]+$")


@functools.lru_cache(maxsize=256)
def fields_for_kind(kind: str) -> tuple[str, ...]:
    """The plain fields an event of ``kind`` can have a value for (from the event table).

    Every field of an unknown kind is possible (it may carry anything).
    """
    k = eventkinds.spec(kind)
    if k is None:
        return tuple(FIELDS)
    have = eventkinds.carried(k)
    return tuple(n for n, s in FIELDS.items() if s.reads is None or s.reads in have)


def kinds_for_field(name: str) -> tuple[str, ...]:
    """The kinds whose events can have a value for the plain field ``name`` (table order)."""
    return tuple(k.name for k in eventkinds.TABLE if name in fields_for_kind(k.name))


def resolve_field(name: str) -> FieldSpec | None:
    """The spec for a field name (plain or indexed), or ``None`` if there is no such field."""
    spec = FIELDS.get(name)
    if spec is not None:
        return spec
    m = _INDEXED.match(name)
    if m is None:
        return None
    family, arg = m.group(1), m.group(2)
    if family == "evt.attr":
        return FieldSpec(name, "ip", _attr(arg)) if _ATTR_KEY.match(arg) else None  # str ops plus cidr
    if family == "proc.env":  # a value ("" when set empty), present only for allow-listed names
        return FieldSpec(name, "str", _env_at(arg)) if _ENV_NAME.match(arg) else None
    if family == "proc.argv":  # 0-based, like argv itself: proc.argv[0] is the name the program was run as
        if not arg.isdigit() or int(arg) > _ARGV_MAX:
            return None
        return FieldSpec(name, "str", _argv_at(int(arg)))
    if not arg.isdigit() or not 1 <= int(arg) <= 64:
        return None
    n = int(arg)
    return FieldSpec(name, "str", _aname(n) if family == "proc.aname" else _aexe(n))


def field_text(value: Any) -> str:
    """A field value as output-template text (lists comma-joined, absent as ``<NA>``)."""
    if value is None:
        return "<NA>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)
