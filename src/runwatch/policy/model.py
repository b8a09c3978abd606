"""The typed policy model: what a workload may do, as loaded from policy files.

Built by :func:`runwatch.policy.loader.load_policies` (which validates and reports every
located error); every struct here is frozen and safe to share between threads.

API for enforcers and deciders
------------------------------

:class:`PolicySet` -- the loaded policies, in file order.

* ``select(workload) -> Policy | None``: the first policy whose selector matches;
  ``for_container(container, labels=None)`` and ``for_process(exe)`` are shorthands.
* ``get(policy_id)``, iteration, ``len()``, ``with_mode("monitor"|"enforce")`` (a copy with
  every policy's mode overridden, for ``runwatch run --mode``).

:class:`Policy` -- one policy:

* ``id`` (unique in the set), ``source`` (``file:line``), ``selector`` (:class:`Selector`),
* ``mode``: ``"monitor"`` (record ``would_deny``, never block) or ``"enforce"`` (block),
* ``fail``: ``"open"`` or ``"closed"``: what happens when a decision cannot be made
  (runwatch unreachable, challenge timed out, enforcer cannot answer in time),
* ``challenge_timeout_ns`` (default 30 s),
* ``role``: the workload role (``model-server``, ``agent``, ...) of the containers it selects
  whose ``runwatch.io/role`` label does not declare one (``None``: the policy says nothing),
* ``owner``, ``escalation``, ``review_by`` (an ISO date): the governance of the containers it
  selects whose ``runwatch.io/owner``, ``/escalation``, ``/review-by`` labels declare none,
* ``tools`` (:class:`ToolRules`), ``egress`` (:class:`EgressRules` or ``None`` when the
  policy does not restrict egress), ``exec`` (:class:`ExecRules` or ``None``), ``files``
  (:class:`FileRules` or ``None``).
* Verdict helpers, each returning ``(verdict, rule)`` where verdict is ``"allow"``,
  ``"deny"`` or (tools only) ``"challenge"`` and ``rule`` names the list entry that decided
  (e.g. ``"tools.deny:shell_*"``, ``"egress.allow:10.0.0.0/8:443"``, ``"exec.default"``):
  ``tool_verdict(name)``, ``exec_verdict(path)``, ``egress_verdict(ip, port, names=())``,
  ``file_verdict(path, exe, write)``. The mode is *not* applied here: callers turn a
  ``deny`` into ``would_deny`` in monitor mode.

:class:`EgressRules` -- ``allow``: tuple of :class:`EgressRule`; anything not allowed is
denied. Each rule is either an address rule (``network`` -> ``ipaddress.IPv4Network`` /
``IPv6Network``, already parsed; ``cidr`` is its normalised text) or a host rule (``host``:
a lower-case DNS name or glob such as ``*.openai.com``, to be matched against names the
workload resolved, i.e. observed ``dns.query`` answers), plus ``port`` (``None`` = any port).
``EgressRules.networks()`` lists ``(network, port)`` pairs and ``hosts()`` ``(host, port)``
pairs for loading BPF maps.

:class:`ExecRules` -- ``allow`` (tuple of globs, or ``None`` = no allow list), ``deny``
(tuple of globs), ``action`` (``"deny"``: refuse the exec, ``"kill"``: kill the process that
tried). Deny wins; with an allow list, an executable matching none is denied.

:class:`FileRules` -- ``protect``: tuple of :class:`ProtectedFile` (``path`` glob, or a
directory prefix ending in ``/``; ``readers``: exe globs allowed to open it; everyone else is
denied), ``immutable``: tuple of path globs (or ``dir/`` prefixes) nobody may open for writing.

Globs are :func:`fnmatch.fnmatchcase` patterns applied to the whole string: ``*`` also
matches ``/``, so ``/usr/bin/*`` covers everything below ``/usr/bin``. A pattern without
glob characters matches exactly (tool names, exe paths) or, for file paths ending in ``/``,
as a directory prefix.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterator, Mapping
from typing import Literal

import msgspec

from runwatch.enrich.governance import Governance
from runwatch.events import Container

Mode = Literal["monitor", "enforce"]
Fail = Literal["open", "closed"]

MODES: tuple[str, ...] = ("monitor", "enforce")
FAILS: tuple[str, ...] = ("open", "closed")

#: Every verdict a ``policy.decision`` event can carry (DecisionInfo.verdict).
VERDICTS: tuple[str, ...] = (
    "allow", "deny", "challenge", "approve", "reject", "timeout", "kill", "would_deny", "would_challenge",
)

DEFAULT_CHALLENGE_TIMEOUT_NS = 30_000_000_000

_GLOB_CHARS = frozenset("*?[")


def is_glob(pattern: str) -> bool:
    """Whether ``pattern`` contains fnmatch glob characters."""
    return any(c in _GLOB_CHARS for c in pattern)


def glob_match(pattern: str, value: str) -> bool:
    """Exact match for plain patterns, :func:`fnmatch.fnmatchcase` for globs."""
    if not is_glob(pattern):
        return pattern == value
    return fnmatch.fnmatchcase(value, pattern)


def path_match(pattern: str, path: str) -> bool:
    """Like :func:`glob_match`, and a plain pattern ending in ``/`` matches everything below it."""
    if not is_glob(pattern) and pattern.endswith("/"):
        return path.startswith(pattern)
    return glob_match(pattern, path)


def first_match(patterns: tuple[str, ...], value: str) -> str | None:
    """The first pattern matching ``value`` (plain patterns first, they are cheapest), or None."""
    if value in patterns:
        return value
    for p in patterns:
        if is_glob(p) and fnmatch.fnmatchcase(value, p):
            return p
    return None


class Workload(msgspec.Struct, frozen=True, kw_only=True):
    """What asks: a container (or none, for a host process), its labels, the process, the agent."""

    container: Container | None = None
    labels: dict[str, str] = msgspec.field(default_factory=dict)  # container labels and annotations
    exe: str | None = None
    pid: int | None = None
    agent: str | None = None


class Selector(msgspec.Struct, frozen=True, kw_only=True):
    """Which workloads a policy applies to. Every given key must match (AND); within a key
    any pattern may match (OR).

    ``container``: container name or id globs (an id also matches by prefix of 12+ chars);
    ``labels``: label/annotation -> value glob; ``identity``: SPIFFE id globs; ``pod`` and
    ``namespace``: Kubernetes pod name / namespace globs; ``process``: exe globs (for host
    workloads, or to narrow a container selector to one program).
    """

    container: tuple[str, ...] = ()
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    identity: tuple[str, ...] = ()
    pod: tuple[str, ...] = ()
    namespace: tuple[str, ...] = ()
    process: tuple[str, ...] = ()

    @property
    def needs_container(self) -> bool:
        """Whether only containerised workloads can match."""
        return bool(self.container or self.labels or self.identity or self.pod or self.namespace)

    def matches(self, w: Workload) -> bool:
        """Whether workload ``w`` is selected."""
        c = w.container
        if self.needs_container:
            if c is None:
                return False
            if self.container and not any(
                glob_match(p, c.name or "") or glob_match(p, c.id) or (len(p) >= 12 and c.id.startswith(p))
                for p in self.container
            ):
                return False
            if self.identity and not any(glob_match(p, c.spiffe_id or "") for p in self.identity):
                return False
            if self.pod and not any(glob_match(p, c.pod or "") for p in self.pod):
                return False
            if self.namespace and not any(glob_match(p, c.namespace or "") for p in self.namespace):
                return False
            for key, pattern in self.labels.items():
                value = w.labels.get(key)
                if value is None or not glob_match(pattern, value):
                    return False
        if self.process:
            return w.exe is not None and first_match(self.process, w.exe) is not None
        return True


#: The tool lists in the order :meth:`Policy.tool_verdict` checks them (the first match wins).
TOOL_PRECEDENCE: tuple[str, ...] = ("deny", "challenge", "allow")


class ToolRules(msgspec.Struct, frozen=True, kw_only=True):
    """Tool-name globs. Precedence: deny, then challenge, then allow; when ``allow`` is a list
    (even empty) a tool in none of the lists is denied, when it is ``None`` such a tool is allowed."""

    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] = ()
    challenge: tuple[str, ...] = ()


class EgressRule(msgspec.Struct, frozen=True, kw_only=True):
    """One allowed destination: an address/CIDR (``cidr`` set) or a host name/glob (``host`` set)."""

    text: str  # as written in the policy
    cidr: str | None = None  # normalised network text, e.g. "10.0.0.0/8", "::1/128"
    host: str | None = None  # lower-case DNS name or glob, without trailing dot
    port: int | None = None  # None: any port

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
        """The parsed network of an address rule (None for host rules)."""
        return ipaddress.ip_network(self.cidr) if self.cidr is not None else None

    def port_ok(self, port: int | None) -> bool:
        """Whether ``port`` is allowed by this rule."""
        return self.port is None or self.port == port


SOCKET_KINDS = ("raw", "packet")
"""Socket kinds ``egress.sockets`` may allow: raw IP/ICMP sockets, AF_PACKET sockets."""


class EgressRules(msgspec.Struct, frozen=True, kw_only=True):
    """Allowed destinations; every other destination is denied. Raw IP and AF_PACKET sockets
    (which bypass destination checks) are refused unless listed in ``sockets``."""

    allow: tuple[EgressRule, ...] = ()
    sockets: tuple[str, ...] = ()

    def networks(self) -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]]:
        """``(network, port or None)`` of every address rule, in policy order."""
        return [(net, r.port) for r in self.allow if (net := r.network) is not None]

    def hosts(self) -> list[tuple[str, int | None]]:
        """``(host name or glob, port or None)`` of every host rule, in policy order."""
        return [(r.host, r.port) for r in self.allow if r.host is not None]


class ExecRules(msgspec.Struct, frozen=True, kw_only=True):
    """Executable path globs. Deny wins; with an allow list anything unlisted is denied."""

    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] = ()
    action: Literal["deny", "kill"] = "deny"


class ProtectedFile(msgspec.Struct, frozen=True, kw_only=True):
    """A secret (path glob or ``dir/`` prefix) only ``readers`` (exe globs) may open."""

    path: str
    readers: tuple[str, ...] = ()


class FileRules(msgspec.Struct, frozen=True, kw_only=True):
    """Protected secrets and immutable paths.

    ``sources`` holds ``(rule, "file:line")`` for each entry the loader read (rule as in
    decisions: ``files.protect:/run/secrets/``, ``files.immutable:/etc/app.conf``), so an
    enforcer can say where an entry it cannot place was written.
    """

    protect: tuple[ProtectedFile, ...] = ()
    immutable: tuple[str, ...] = ()
    sources: tuple[tuple[str, str], ...] = ()

    def source_of(self, rule: str) -> str:
        """``file:line`` of the entry behind ``rule``, or ``""`` when unknown."""
        return next((where for r, where in self.sources if r == rule), "")


class Policy(msgspec.Struct, frozen=True, kw_only=True):
    """One policy: a selector and what selected workloads may do (see the module docstring)."""

    id: str
    selector: Selector
    mode: Mode = "monitor"
    fail: Fail = "closed"
    challenge_timeout_ns: int = DEFAULT_CHALLENGE_TIMEOUT_NS
    description: str | None = None
    role: str | None = None  # the role of the workloads it selects, unless they declare their own
    owner: str | None = None  # governance of the workloads it selects, unless they declare their own
    escalation: str | None = None
    review_by: str | None = None  # ISO date YYYY-MM-DD
    tools: ToolRules = msgspec.field(default_factory=ToolRules)
    egress: EgressRules | None = None
    exec: ExecRules | None = None
    files: FileRules | None = None
    source: str = ""  # file:line where the policy starts

    def tool_verdict(self, name: str) -> tuple[str, str]:
        """``("allow"|"deny"|"challenge", rule)`` for a tool named ``name``."""
        t = self.tools
        hit = first_match(t.deny, name)
        if hit is not None:
            return "deny", f"tools.deny:{hit}"
        hit = first_match(t.challenge, name)
        if hit is not None:
            return "challenge", f"tools.challenge:{hit}"
        if t.allow is None:
            return "allow", "tools.unlisted"
        hit = first_match(t.allow, name)
        if hit is not None:
            return "allow", f"tools.allow:{hit}"
        return "deny", "tools.default"

    def exec_verdict(self, path: str) -> tuple[str, str]:
        """``("allow"|"deny", rule)`` for executing ``path``."""
        x = self.exec
        if x is None:
            return "allow", "exec.unrestricted"
        hit = first_match(x.deny, path)
        if hit is not None:
            return "deny", f"exec.deny:{hit}"
        if x.allow is None:
            return "allow", "exec.unlisted"
        hit = first_match(x.allow, path)
        if hit is not None:
            return "allow", f"exec.allow:{hit}"
        return "deny", "exec.default"

    def egress_verdict(self, ip: str, port: int | None, names: tuple[str, ...] = ()) -> tuple[str, str]:
        """``("allow"|"deny", rule)`` for a connection to ``ip:port``; ``names`` are DNS names the
        workload resolved to ``ip`` (host rules match those)."""
        e = self.egress
        if e is None:
            return "allow", "egress.unrestricted"
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return "deny", "egress.bad_address"
        lowered = tuple(n.lower().rstrip(".") for n in names)
        for r in e.allow:
            if not r.port_ok(port):
                continue
            net = r.network
            if net is not None:
                if addr.version == net.version and addr in net:
                    return "allow", f"egress.allow:{r.text}"
            elif r.host is not None and any(glob_match(r.host, n) for n in lowered):
                return "allow", f"egress.allow:{r.text}"
        return "deny", "egress.default"

    def file_verdict(self, path: str, exe: str, write: bool = False) -> tuple[str, str]:
        """``("allow"|"deny", rule)`` for ``exe`` opening ``path`` (for writing when ``write``)."""
        f = self.files
        if f is None:
            return "allow", "files.unrestricted"
        if write:
            for p in f.immutable:
                if path_match(p, path):
                    return "deny", f"files.immutable:{p}"
        for prot in f.protect:
            if path_match(prot.path, path):
                if first_match(prot.readers, exe) is not None:
                    return "allow", f"files.protect:{prot.path}"
                return "deny", f"files.protect:{prot.path}"
        return "allow", "files.unlisted"


class PolicySet(msgspec.Struct, frozen=True):
    """Loaded policies in file order, with unique ids. Selection takes the first match."""

    policies: tuple[Policy, ...] = ()
    files: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[Policy]:
        return iter(self.policies)

    def __len__(self) -> int:
        return len(self.policies)

    def get(self, policy_id: str) -> Policy | None:
        """The policy with this id, or None."""
        for p in self.policies:
            if p.id == policy_id:
                return p
        return None

    def select(self, workload: Workload) -> Policy | None:
        """The first policy whose selector matches ``workload`` (None: no policy applies)."""
        for p in self.policies:
            if p.selector.matches(workload):
                return p
        return None

    def for_container(self, container: Container, labels: Mapping[str, str] | None = None,
                      exe: str | None = None) -> Policy | None:
        """The policy of a container (optionally of one program in it). ``labels`` are the runtime's
        labels and annotations; the pod labels the container carries (``Container.labels``) count too,
        under them."""
        merged = {**(container.labels or {}), **(labels or {})}
        return self.select(Workload(container=container, labels=merged, exe=exe))

    def for_process(self, exe: str) -> Policy | None:
        """The policy of a host process running ``exe``."""
        return self.select(Workload(exe=exe))

    def role_of(self, container: Container, labels: Mapping[str, str]) -> str | None:
        """The role the policy selecting ``container`` gives it (``None``: none, or no role)."""
        policy = self.for_container(container, labels)
        return policy.role if policy is not None else None

    def governance_of(self, container: Container) -> Governance | None:
        """The owner, escalation and review date the policy selecting ``container`` declares."""
        policy = self.for_container(container)
        if policy is None or (policy.owner, policy.escalation, policy.review_by) == (None, None, None):
            return None
        return Governance(policy.owner, policy.escalation, policy.review_by)

    def with_mode(self, mode: Mode) -> PolicySet:
        """A copy with every policy's mode set to ``mode``."""
        if mode not in MODES:
            raise ValueError(f"mode must be monitor or enforce, not {mode!r}")
        return PolicySet(tuple(msgspec.structs.replace(p, mode=mode) for p in self.policies), self.files)
