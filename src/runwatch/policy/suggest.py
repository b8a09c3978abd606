"""Policy from behaviour: the least-privilege policy that would have allowed what was recorded.

:func:`suggest_policy` reads one container's recorded events and writes a reviewable
policy file (YAML with comments) in monitor mode:

* ``tools.allow``: every tool name of a ``tool.start``;
* ``egress.allow``: every ``net.connect`` destination ``ip:port`` (failed connects other
  than "in progress" are left out). The first connect (not to a resolver or loopback) a
  process makes within :data:`DNS_WINDOW_NS` after it asked DNS for a name becomes a host
  rule ``name:port``
  (the IPs seen are listed in a comment); four or more addresses of one IPv4 /24 on one
  port collapse to the /24. The resolvers asked (``dns.query`` server) are allowed on their port.
* ``exec.allow``: every executed file of a ``process.exec`` (``Event.exe``, resolved by the
  sensor; an exe that is not known, such as ``/proc/self/exe`` in a recording of schema 3 or older,
  is never written, and a memfd or a deleted file is only named in a comment: see
  :func:`known_exe`);
* ``files.protect``: every secret path (mounted secrets, service-account tokens, private
  keys, cloud and SSH credentials) read, with the executables that read it as readers;
  ``files.immutable``: the system binary directories, if nothing wrote there.

Loading the result back (:func:`runwatch.policy.loader.load_policies`) and deciding each
recorded tool call, exec, connect and secret read against it allows every one of them.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from runwatch import exepath
from runwatch.events import Event

DNS_WINDOW_NS = 5_000_000_000
"""A connect this soon after the same process's DNS query is attributed to the queried name."""

SUGGEST_KINDS = ("tool.start", "net.connect", "dns.query", "process.exec", "file.open", "secret.access")

#: Paths whose readers are worth pinning (prefixes; ``/*/`` segments match any home).
SECRET_PREFIXES: tuple[str, ...] = (
    "/run/secrets/", "/var/run/secrets/", "/etc/shadow", "/etc/gshadow", "/etc/ssl/private/",
    "/etc/pki/tls/private/", "/etc/kubernetes/pki/", "/var/lib/kubelet/pki/",
)
_HOME_SECRETS = re.compile(r"^/(?:root|home/[^/]+)/(?:\.aws/|\.ssh/|\.kube/|\.docker/config\.json|\.config/gcloud/|"
                           r"\.azure/)")
BINARY_DIRS: tuple[str, ...] = ("/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/", "/usr/local/bin/", "/usr/lib/")
_IN_PROGRESS = (0, -115)  # ok, -EINPROGRESS (non-blocking connect)
_ID_BAD = re.compile(r"[^A-Za-z0-9_.:-]+")


def is_secret_path(path: str) -> bool:
    """Whether ``path`` is a secret whose readers a suggested policy should pin."""
    return path.startswith(SECRET_PREFIXES) or _HOME_SECRETS.match(path) is not None


def _q(value: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(value, ensure_ascii=False)


def _dest(ip: str, port: int | None) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return host if port is None else f"{host}:{port}"


def known_exe(e: Event) -> str:
    """The event's executed file, or "" when no policy could allow it by path: an ``exe`` that
    only points at an executable (``/proc/self/exe``, ``/dev/fd/N``, kept by recordings of schema 3
    or older) or that its source could not resolve, a memfd, or a file deleted since (see
    :func:`unallowable`)."""
    if not e.exe or exepath.is_indirect(e.exe) or (e.attrs is not None and e.attrs.get("exe_unresolved")):
        return ""
    return "" if unallowable(e) else e.exe


def unallowable(e: Event) -> str | None:
    """Why the executed file of ``e`` must never be allowed by path, or ``None``: a memfd has no
    path, and a deleted file's last path may name another file by now."""
    exe = e.exe or ""
    if exe.startswith(exepath.MEMFD_PREFIX):
        return "a memfd has no path"
    if exe.endswith(exepath.DELETED_SUFFIX) or (e.attrs is not None and e.attrs.get("exe_deleted")):
        return "deleted since"
    return None


class _Seen:
    """What the events show, in first-seen order."""

    def __init__(self) -> None:
        self.tools: dict[str, int] = {}
        self.execs: dict[str, int] = {}
        self.unallowed: dict[str, tuple[int, str]] = {}  # exe -> (execs, why it cannot be allowed)
        self.conns: dict[tuple[str, int | None], set[str]] = {}  # (ip, port) -> names looked up first
        self.resolvers: dict[tuple[str, int], int] = {}
        self.secrets: dict[str, dict[str, int]] = {}  # path -> reader exe -> count
        self.binary_writes: set[str] = set()
        self.events = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None

    def feed(self, events: Iterable[Event]) -> None:
        recent_dns: dict[int, list[tuple[int, str]]] = defaultdict(list)  # pid -> [(time, name)]
        for e in sorted(events, key=lambda ev: (ev.time, ev.id)):
            self.events += 1
            self.first_ns = e.time if self.first_ns is None else self.first_ns
            self.last_ns = e.time
            k = e.kind
            if k == "tool.start" and e.tool_call is not None and e.tool_call.name:
                self.tools[e.tool_call.name] = self.tools.get(e.tool_call.name, 0) + 1
            elif k == "process.exec" and (exe := known_exe(e)):
                self.execs[exe] = self.execs.get(exe, 0) + 1
            elif k == "process.exec" and e.exe and (why := unallowable(e)):
                self.unallowed[e.exe] = (self.unallowed.get(e.exe, (0, why))[0] + 1, why)
            elif k == "dns.query" and e.dns is not None:
                recent_dns[e.pid].append((e.time, e.dns.name.lower().rstrip(".")))
                if e.dns.server_ip:
                    key = (e.dns.server_ip, e.dns.server_port or 53)
                    self.resolvers[key] = self.resolvers.get(key, 0) + 1
            elif k == "net.connect" and e.net is not None and e.net.dst_ip and e.net.proto != "unix":
                if e.net.result is not None and e.net.result not in _IN_PROGRESS:
                    continue
                names = self.conns.setdefault((e.net.dst_ip, e.net.dst_port), set())
                lookups = recent_dns.get(e.pid)
                # The first connect after a lookup (not to a resolver, not to loopback) takes the name.
                if lookups and e.net.dst_port != 53 and not _is_loopback(e.net.dst_ip):
                    asked_ns, name = lookups.pop()
                    lookups.clear()
                    if e.time - asked_ns <= DNS_WINDOW_NS:
                        names.add(name)
            elif k == "file.open" and e.file is not None:
                self._file(e.file.path, e.file.intent, known_exe(e))
            elif k == "secret.access" and e.ai is not None and e.ai.secret_kind == "file":
                path = e.ai.secret or ""
                if path.startswith("/"):
                    self._file(path, "read", known_exe(e))

    def _file(self, path: str, intent: str | None, exe: str) -> None:
        if intent in ("write", "rw") and path.startswith(BINARY_DIRS):
            self.binary_writes.add(path)
        if intent in (None, "read", "rw") and is_secret_path(path) and exe:
            readers = self.secrets.setdefault(path, {})
            readers[exe] = readers.get(exe, 0) + 1


def _egress_lines(seen: _Seen) -> list[str]:
    """Destination lines (``- "dest"  # comment``), hosts first, then addresses, then resolvers."""
    by_host: dict[tuple[str, int | None], set[str]] = {}
    plain: dict[tuple[str, int | None], int] = {}
    for (ip, port), names in seen.conns.items():
        if (ip, port) in seen.resolvers:
            continue  # the resolver gets its own line below
        if names:
            for n in sorted(names):
                by_host.setdefault((n, port), set()).add(ip)
        else:
            plain[(ip, port)] = 1
    lines: list[str] = []
    for (name, port), ips in sorted(by_host.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        lines.append(f"- {_q(name if port is None else f'{name}:{port}')}  # resolved, then connected to "
                     f"{', '.join(sorted(ips))}")
    # Collapse 4+ IPv4 addresses of one /24 on one port.
    groups: dict[tuple[str, int | None], list[str]] = defaultdict(list)
    for ip, port in plain:
        addr = ipaddress.ip_address(ip) if _is_ip(ip) else None
        if addr is not None and addr.version == 4 and not addr.is_loopback:
            groups[(str(ipaddress.ip_network(f"{ip}/24", strict=False)), port)].append(ip)
    collapsed: set[tuple[str, int | None]] = set()
    for (net, gport), members in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        if len(members) >= 4:
            lines.append(f"- {_q(net if gport is None else f'{net}:{gport}')}  # {len(members)} addresses seen")
            collapsed.update((m, gport) for m in members)
    for ip, port in sorted(plain, key=lambda k: (k[0], k[1] or 0)):
        if (ip, port) not in collapsed and _is_ip(ip):
            lines.append(f"- {_q(_dest(ip, port))}")
    for (rip, rport), queries in sorted(seen.resolvers.items()):
        lines.append(f"- {_q(_dest(rip, rport))}  # DNS resolver ({queries} queries)")
    return lines


def _is_loopback(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def suggest_policy(events: Iterable[Event], container: str, *, policy_id: str | None = None,
                   source: str | None = None) -> str:
    """The suggested policy (YAML text with comments) for ``container`` from its ``events``.

    ``container`` is the selector written (name, or id); ``source`` names where the events
    came from, for the header comment.
    """
    seen = _Seen()
    seen.feed(events)
    pid = policy_id or ("suggested-" + _ID_BAD.sub("-", container).strip("-"))[:128]
    span = ""
    if seen.first_ns is not None and seen.last_ns is not None:
        span = f" over {(seen.last_ns - seen.first_ns) / 1e9:.1f}s"
    out = [
        f"# Suggested by `runwatch policy suggest` from {seen.events} recorded events{span}"
        + (f" in {source}" if source else "") + ".",
        "# Least privilege: it allows exactly what was recorded. Review every list, then switch",
        "# mode to enforce once monitor mode records no would_deny for normal work.",
        "policies:",
        f"  - id: {_q(pid)}",
        "    selector:",
        f"      container: [{_q(container)}]",
        "    mode: monitor",
        "    fail: closed  # what happens when runwatch cannot decide (open: allow, closed: deny)",
        "    tools:",
    ]
    if seen.tools:
        out.append("      allow:")
        out.extend(f"        - {_q(t)}  # {n} call(s)" for t, n in sorted(seen.tools.items()))
    else:
        out.append("      allow: []  # no tool calls were recorded: every tool is denied")
    out.append("    egress:")
    dests = _egress_lines(seen)
    if dests:
        out.append("      allow:")
        out.extend("        " + line for line in dests)
    else:
        out.append("      allow: []  # no outgoing connection was recorded: all egress is denied")
    if seen.execs:
        out += ["    exec:", "      allow:"]
        out.extend(f"        - {_q(x)}  # {n} exec(s)" for x, n in sorted(seen.execs.items()))
    elif not seen.unallowed:
        out.append("    # exec: no process.exec was recorded, so executables are not restricted")
    else:
        out += ["    exec:", "      allow: []"]
    out.extend(f"      # not allowed: {_q(x)} ({n} exec(s), {why})" for x, (n, why) in sorted(seen.unallowed.items()))
    protect = sorted(seen.secrets.items())
    immutable = [d for d in BINARY_DIRS if not any(w.startswith(d) for w in seen.binary_writes)]
    out.append("    files:")
    if protect:
        out.append("      protect:")
        for path, readers in protect:
            out.append(f"        - path: {_q(path)}")
            out.append("          readers:")
            out.extend(f"            - {_q(r)}  # {n} read(s)" for r, n in sorted(readers.items()))
    else:
        out.append("      protect: []  # no secret read was recorded")
    if immutable:
        out.append("      immutable:  # nothing wrote here while recording")
        out.extend(f"        - {_q(d)}" for d in immutable)
    return "\n".join(out) + "\n"


class SuggestError(Exception):
    """``policy suggest`` cannot produce a policy (one-line message)."""


def cli_suggest(db: str, container: str, output: str | None = None) -> str:
    """``runwatch policy suggest --db PATH --container NAME [-o FILE]``: returns the YAML and,
    with ``output``, also writes it there. Raises :class:`SuggestError` with one line."""
    from runwatch.store.sqlite import StoreError, query_events

    if not Path(db).exists():
        raise SuggestError(f"{db}: no such event store")
    try:
        events = query_events(db, kinds=SUGGEST_KINDS, container=container)
    except StoreError as exc:
        raise SuggestError(str(exc)) from None
    if not events:
        raise SuggestError(f"{db}: no recorded events of container {container!r} "
                           "(name, id or id prefix; see `runwatch events`)")
    name = next((e.container.name for e in events if e.container is not None and e.container.name), None)
    text = suggest_policy(events, name or container, source=db)
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise SuggestError(f"{output}: cannot write: {exc.strerror or exc}") from None
    return text
