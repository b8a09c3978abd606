"""Egress enforcement: the cgroup/connect and sendmsg programs, fed from ``policy.egress``.

Per container: the policy's cgroup id gets a mode in ``cg_cfg`` (monitor or enforce) and
its allowed destinations go into the ``allow`` LPM trie, keyed by (cgroup id, address
prefix). The four programs are attached to the container's cgroup directory as BPF links.

Host names. The kernel sensor sees DNS questions, not answers, and an answer learned
after the fact cannot beat a connect made microseconds later. So host names are resolved
by this process (``getaddrinfo``, i.e. the host's resolver and ``/etc/hosts``) when the
policy is applied and again every ``refresh_s`` seconds; :meth:`EgressEnforcer.learn`
adds addresses observed elsewhere (DNS answers) for names matching a host rule, including
globs such as ``*.example.com`` that cannot be resolved in advance. When a policy has host
rules, port 53 to the resolvers of the container's and the host's ``/etc/resolv.conf``
stays allowed.

Thread safety: every public method may be called from any thread (one internal lock).
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import socket
import struct
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from runwatch.policy.enforce import bpfobj as B
from runwatch.policy.enforce.paths import check_not_own
from runwatch.policy.enforce.spec import Enforcement, EnforcementError, Target, Verdict, mono_to_wall_ns
from runwatch.policy.model import Policy, glob_match

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], set[str]]
_HOOK_PROTO = {B.HOOK_CONNECT4: "connect4", B.HOOK_CONNECT6: "connect6",
               B.HOOK_SENDMSG4: "sendmsg4", B.HOOK_SENDMSG6: "sendmsg6"}
_PROTO = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp", 132: "sctp", 255: "raw"}
_SOCKET_BITS = {"raw": B.SOCK_RAW_BIT, "packet": B.SOCK_PACKET_BIT}
_FAMILY = {2: "AF_INET", 10: "AF_INET6", 17: "AF_PACKET"}
_TYPE = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 10: "SOCK_PACKET"}
_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def getaddrinfo_resolver(name: str) -> set[str]:
    """Addresses of ``name`` through the host's resolver (empty if it does not resolve)."""
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return set()
    return {str(info[4][0]) for info in infos}


def resolvers_of(conf_paths: Iterable[str]) -> set[str]:
    """Nameserver addresses listed in resolv.conf files (missing files are skipped)."""
    found: set[str] = set()
    for path in conf_paths:
        try:
            with open(path) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 2 and parts[0] == "nameserver":
                        with contextlib.suppress(ValueError):
                            found.add(str(ipaddress.ip_address(parts[1].split("%")[0])))
        except OSError:
            continue
    return found


def as_v6(net: Network) -> ipaddress.IPv6Network:
    """IPv4 networks as their v4-mapped IPv6 network (the trie's single address space)."""
    if isinstance(net, ipaddress.IPv4Network):
        mapped = ipaddress.IPv6Address(int(_V4_MAPPED.network_address) | int(net.network_address))
        return ipaddress.IPv6Network((mapped, 96 + net.prefixlen))
    return net


def fold_ports(entries: Iterable[tuple[Network, int | None]]) -> dict[ipaddress.IPv6Network, set[int] | None]:
    """Per distinct network, the ports allowed there: the union over every entry whose network
    contains it (None = any port). With this, the longest prefix match alone decides."""
    nets = [(as_v6(n), p) for n, p in entries]
    out: dict[ipaddress.IPv6Network, set[int] | None] = {}
    for net, _ in nets:
        ports: set[int] | None = set()
        for other, port in nets:
            if net.subnet_of(other):
                if port is None:
                    ports = None
                    break
                assert ports is not None
                ports.add(port)
        out[net] = ports
    return out


def trie_key(cgid: int, net: ipaddress.IPv6Network) -> B.AllowKey:
    """The LPM key of ``net`` under policy cgroup ``cgid``."""
    key = B.AllowKey()
    key.prefixlen = 64 + net.prefixlen
    raw = struct.pack("=Q", cgid) + net.network_address.packed
    ctypes.memmove(key.data, raw, len(raw))
    return key


@dataclass
class _Applied:
    target_id: str
    cgid: int
    policy: Policy
    links: list[int]
    extra: set[str]  # resolver addresses allowed on port 53
    resolved: dict[str, set[str]] = field(default_factory=dict)  # host rule -> addresses
    keys: set[ipaddress.IPv6Network] = field(default_factory=set)


class EgressEnforcer:
    """Applies ``policy.egress`` to containers; see the module docstring."""

    def __init__(self, obj: B.EnforceObject, resolver: Resolver = getaddrinfo_resolver) -> None:
        self._obj = obj
        self._resolve = resolver
        self._lock = threading.RLock()
        self._by_cgid: dict[int, _Applied] = {}
        self._by_target: dict[str, int] = {}

    def apply(self, target: Target, policy: Policy) -> None:
        """Enforce (or monitor) ``policy.egress`` on ``target``; replaces an earlier policy.

        A policy without ``egress`` removes egress enforcement from the target. Raises
        :class:`EnforcementError` (one line) if the cgroup is runwatch's own or cannot be attached.
        """
        if policy.egress is None:
            self.remove(target.id)
            return
        try:
            check_not_own(target.cgroup_dir)
        except ValueError as exc:
            raise EnforcementError(str(exc)) from exc
        cgid = target.cgroup_id
        extra: set[str] = set()
        if policy.egress.hosts():
            extra = resolvers_of([f"/proc/{target.init_pid}/root/etc/resolv.conf", "/etc/resolv.conf"])
        with self._lock:
            old = self._by_cgid.get(cgid)
            links = old.links if old is not None else []
            state = _Applied(target.id, cgid, policy, links, extra)
            if old is not None:
                state.keys = old.keys
            self._resolve_hosts(state)
            self._write(state)
            if not links:
                state.links = self._obj.attach_cgroup(target.cgroup_dir)
            bits = sum(_SOCKET_BITS[k] for k in policy.egress.sockets)
            self._obj.set_mode(cgid, egress=B.MODE_CODES[policy.mode], sockets=bits)
            self._by_cgid[cgid] = state
            self._by_target[target.id] = cgid

    def remove(self, target_id: str) -> None:
        """Stop enforcing egress on a target (detach links, clear maps). Unknown ids are ignored."""
        with self._lock:
            cgid = self._by_target.pop(target_id, None)
            if cgid is None:
                return
            state = self._by_cgid.pop(cgid)
            self._obj.set_mode(cgid, egress=B.ENF_OFF)
            self._obj.detach(state.links)
            for net in state.keys:
                self._obj.allow_delete(trie_key(cgid, net))

    def refresh(self) -> None:
        """Re-resolve every host rule and update the allow entries that changed."""
        with self._lock:
            for state in self._by_cgid.values():
                self._resolve_hosts(state)
                self._write(state)

    def learn(self, name: str, addresses: Iterable[str]) -> int:
        """Allow ``addresses`` for every applied policy with a host rule matching ``name``
        (a DNS answer seen elsewhere). Returns how many policies gained addresses."""
        name = name.lower().rstrip(".")
        valid = set()
        for a in addresses:
            with contextlib.suppress(ValueError):
                valid.add(str(ipaddress.ip_address(a)))
        changed = 0
        with self._lock:
            for state in self._by_cgid.values():
                assert state.policy.egress is not None
                hit = False
                for host, _ in state.policy.egress.hosts():
                    if glob_match(host, name):
                        known = state.resolved.setdefault(host, set())
                        if not valid <= known:
                            known |= valid
                            hit = True
                if hit:
                    self._write(state)
                    changed += 1
        return changed

    def close(self) -> None:
        """Remove every target."""
        with self._lock:
            for target_id in list(self._by_target):
                self.remove(target_id)

    def applied(self) -> dict[str, int]:
        """target id -> policy cgroup id, for every target under egress enforcement."""
        with self._lock:
            return dict(self._by_target)

    def decision(self, rec: B.EnfRecord) -> Enforcement | None:
        """The decision for one kernel record (None if its policy is no longer applied)."""
        with self._lock:
            state = self._by_cgid.get(rec.policy_cgid)
        if state is None:
            return None
        if rec.hook in (B.HOOK_SOCKET, B.HOOK_PACKET):
            return self._socket_decision(rec, state)
        addr = ipaddress.IPv6Address(bytes(rec.addr))
        ip = str(addr.ipv4_mapped) if addr.ipv4_mapped is not None else str(addr)
        dst = f"[{ip}]:{rec.port}" if ":" in ip else f"{ip}:{rec.port}"
        verdict: Verdict = "deny" if rec.verdict == B.V_DENY else "would_deny"
        return Enforcement(
            time_ns=mono_to_wall_ns(rec.ts), layer="egress", verdict=verdict, policy_id=state.policy.id,
            rule="egress.default", reason=f"{_HOOK_PROTO.get(rec.hook, '?')} to {dst} matches no egress.allow entry",
            latency_ns=int(rec.latency_ns), mode=state.policy.mode, pid=int(rec.pid), target=dst,
            container_id=state.target_id, cgroup_id=int(rec.cgid), comm=rec.comm.decode(errors="replace"),
            proto=_PROTO.get(rec.proto, str(rec.proto)), dst_ip=ip, dst_port=int(rec.port),
        )

    def _socket_decision(self, rec: B.EnfRecord, state: _Applied) -> Enforcement:
        family = _FAMILY.get(rec.family, str(rec.family))
        stype = _TYPE.get(rec.stype, str(rec.stype))
        kind = "packet" if rec.hook == B.HOOK_PACKET else "raw"
        what = f"socket({family}, {stype}, {rec.proto})"
        verdicts: dict[int, Verdict] = {B.V_DENY: "deny", B.V_KILL: "kill"}
        verdict = verdicts.get(rec.verdict, "would_deny")
        reason = f"{what}: {kind} sockets are not in egress.sockets"
        if verdict == "kill":
            reason += " (no hook refuses one, so the process is killed)"
        return Enforcement(
            time_ns=mono_to_wall_ns(rec.ts), layer="egress", verdict=verdict, policy_id=state.policy.id,
            rule="egress.sockets", reason=reason, latency_ns=int(rec.latency_ns), mode=state.policy.mode,
            pid=int(rec.pid), target=what, container_id=state.target_id, cgroup_id=int(rec.cgid),
            comm=rec.comm.decode(errors="replace"), proto=kind,
        )

    # -- internals ----------------------------------------------------------------------

    def _resolve_hosts(self, state: _Applied) -> None:
        assert state.policy.egress is not None
        for host, _ in state.policy.egress.hosts():
            if "*" in host or "?" in host or "[" in host:
                state.resolved.setdefault(host, set())  # only learn() can fill a glob
                continue
            found = self._resolve(host)
            state.resolved[host] = state.resolved.get(host, set()) | found

    def _entries(self, state: _Applied) -> list[tuple[Network, int | None]]:
        assert state.policy.egress is not None
        entries: list[tuple[Network, int | None]] = list(state.policy.egress.networks())
        for host, port in state.policy.egress.hosts():
            for ip in sorted(state.resolved.get(host, ())):
                entries.append((ipaddress.ip_network(ip), port))
        entries.extend((ipaddress.ip_network(ip), 53) for ip in sorted(state.extra))
        return entries

    def _write(self, state: _Applied) -> None:
        folded = fold_ports(self._entries(state))
        for net, ports in folded.items():
            val = B.AllowVal()
            if ports is None:
                val.any_port = 1
            else:
                if len(ports) > B.MAX_PORTS:
                    raise EnforcementError(f"policy {state.policy.id}: {net} has {len(ports)} allowed ports "
                                           f"(at most {B.MAX_PORTS} per address range)")
                val.nports = len(ports)
                for i, port in enumerate(sorted(ports)):
                    val.ports[i] = port
            self._obj.allow_put(trie_key(state.cgid, net), val)
        for stale in state.keys - set(folded):
            self._obj.allow_delete(trie_key(state.cgid, stale))
        state.keys = set(folded)
