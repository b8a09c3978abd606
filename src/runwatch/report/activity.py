"""What an event means for an investigation: bookkeeping or activity, a secret read, an
outbound connection, and its one-line description.

Shared by the investigation report (:mod:`runwatch.report.build`) and the demo's terminal
report (:mod:`runwatch.demo.report`), so both classify and describe events the same way.
Plain text only: renderers escape it for their medium.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import re

from runwatch.events import AiInfo, Event

SDK_KINDS = frozenset({"tool.start", "tool.end", "model.call", "plugin.load", "secret.access", "sensor.notice"})
"""Kinds only the AI layer (agent SDK, OTLP) reports."""

HIDDEN_KINDS = frozenset({"process.fork", "process.exit", "cgroup.mkdir"})
"""Bookkeeping kinds a timeline leaves out (the process tree uses them)."""

SECRET_DIRS: tuple[str, ...] = ("/run/secrets/", "/var/run/secrets/")
"""Mounted secrets and service-account tokens (the rule pack's ``secret_dirs``)."""

CREDENTIAL_GLOBS: tuple[str, ...] = (
    "*/.aws/credentials", "*/.config/gcloud/*credentials*", "*/.config/gcloud/access_tokens.db",
    "*/.azure/accessTokens.json", "*/.azure/msal_token_cache*", "*/.kube/config", "*/.docker/config.json",
    "*/.ssh/id_*")
"""Credential files in home directories (the rule pack's ``credential_file_read``)."""

_CREDENTIALS = re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in CREDENTIAL_GLOBS))

OUTBOUND_KINDS = frozenset({"net.connect", "net.send"})
"""Kinds that carry a destination the workload sent to."""

#: ``net.result`` values of a connection that was made (or is being made: EINPROGRESS).
_MADE = frozenset({0, -115})


def runtime_noise(e: Event) -> bool:
    """The container runtime's own set-up (runc init's mounts, id changes, exec of the init)."""
    return ("runc" in e.exe.rsplit("/", 1)[-1] or (e.comm or "").startswith("runc")
            or e.cmdline.endswith("runc init"))


def on_timeline(e: Event) -> bool:
    """Whether a timeline shows ``e``: AI-layer events and kernel activity, not bookkeeping."""
    return e.kind not in HIDDEN_KINDS and not (e.source != "sdk" and runtime_noise(e))


def secret_path(path: str) -> bool:
    """Whether ``path`` is a mounted secret, a service-account token or a credential file."""
    if path.startswith(SECRET_DIRS):
        return True
    return not path.endswith(".pub") and "/." in path and _CREDENTIALS.match(path) is not None


def secret_touched(e: Event) -> tuple[str, str] | None:
    """(name or path, how) when ``e`` reads a secret: a ``file.open`` of a secret path for
    reading, or an SDK ``secret.access``; ``None`` otherwise. Never a value: none is stored."""
    f = e.file
    if e.kind == "file.open" and f is not None and f.intent in ("read", "rw", None) and secret_path(f.path):
        return f.path, "file"
    if e.kind == "secret.access" and e.ai is not None and e.ai.secret:
        return e.ai.secret, e.ai.secret_kind or "secret"
    return None


@functools.lru_cache(maxsize=4096)
def _local(ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    if mapped is not None:
        addr = mapped
    return addr.is_loopback or addr.is_unspecified


def outbound(e: Event) -> bool:
    """Whether ``e`` sends to another host: a TCP/UDP ``net.connect``/``net.send`` to an
    address that is not loopback (made or failed; see :func:`connected`)."""
    n = e.net
    return (e.kind in OUTBOUND_KINDS and n is not None and n.proto in ("tcp", "udp")
            and bool(n.dst_ip) and not _local(n.dst_ip or ""))


def connected(e: Event) -> bool:
    """Whether an outbound event reached (or was reaching) its destination: no error result."""
    return e.net is not None and (e.net.result is None or e.net.result in _MADE)


def destination(e: Event) -> str:
    """``ip:port`` of a network event (``[ip]:port`` for IPv6), or the DNS name asked for."""
    if e.dns is not None:
        return e.dns.name
    n = e.net
    if n is None:
        return ""
    ip = n.dst_ip or n.src_ip or ""
    port = n.dst_port if n.dst_port is not None else n.src_port
    host = f"[{ip}]" if ":" in ip else ip
    return f"{host}:{port}" if port is not None else host


def _short(text: str, limit: int = 72) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def summary(e: Event) -> str:
    """The kind-specific part of a timeline line, as plain text."""
    a = e.ai or AiInfo()
    tc = e.tool_call
    if e.kind == "tool.start" and tc is not None:
        route = f"  route={a.route}" if a.route is not None else ""
        return f"{tc.name} [{tc.call_id}]{route}"
    if e.kind == "tool.end" and tc is not None:
        dur = a.duration_ns
        took = f" {dur / 1e6:.1f} ms" if isinstance(dur, int) else ""
        return f"{tc.name} [{tc.call_id}] {a.status or '?'}{took}"
    if e.kind == "model.call":
        if a.operation == "prompt.route":
            return f"prompt.route {a.route}"
        return f"{a.provider}/{a.model}"
    if e.kind == "plugin.load":
        return f"{a.plugin} from {a.plugin_source} sha256 {(a.sha256 or '')[:12]}"
    if e.kind == "secret.access":
        return f"{a.secret} ({a.secret_kind})"
    if e.kind == "sensor.notice":
        return f"agent {a.agent or '?'} attached ({(e.attrs or {}).get('notice')})"
    if e.kind == "process.exec":
        return f"{e.exe}  {_short(e.cmdline)}"
    if e.decision is not None:
        d = e.decision
        return f"{d.verdict} {d.layer or '?'} {d.target or ''} ({d.policy}{'/' + d.rule if d.rule else ''})"
    if e.net is not None:
        n = e.net
        if e.kind == "net.accept":
            return f"{n.proto} from {n.src_ip}:{n.src_port}"
        res = "" if n.result in (None, 0) else f" ({n.result})"
        name = (e.attrs or {}).get("dest_name")
        named = f" ({name})" if name else ""
        return f"{n.proto} {destination(e)}{named}{res}"
    if e.dns is not None:
        return f"{e.dns.name} {e.dns.qtype or ''}".rstrip()
    if e.file is not None:
        return f"{e.file.path} ({e.file.intent or '?'}) by {e.exe.rsplit('/', 1)[-1]}"
    if e.priv is not None:
        return f"{e.priv.op} by {e.exe.rsplit('/', 1)[-1]}"
    return e.exe
