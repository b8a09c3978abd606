"""Events as OCSF 1.7 JSON objects, and an OCSF JSONL output.

Class and activity ids were taken from the OCSF schema (ocsf-schema ``events/`` and the
versioned reference at schema.ocsf.io):

* ``process.*``        -> Process Activity (1007): 1 Launch, 2 Terminate, 3 Open, 4 Inject,
                          5 Set User ID, 99 Other. ``launch_type_id``: 2 Fork, 3 Exec.
* ``file.*``           -> File System Activity (1001): 1 Create, 4 Delete, 5 Rename,
                          7 Set Security (chmod), 12 Mount, 14 Open.
* ``net.*``            -> Network Activity (4001): 1 Open, 4 Fail, 5 Refuse, 6 Traffic (net.send),
                          7 Listen, 99 Other.
* ``dns.query``        -> DNS Activity (4003): 1 Query; ``dns.answer``: 2 Response.
* ``priv.module_load``, ``priv.bpf_load`` -> Kernel Extension Activity (1002): 1 Load.
* ``priv.userfaultfd``, ``priv.io_uring_setup`` -> Kernel Activity (1003): 1 Create, with the
                          syscall as the kernel object.
* ``tool.start``, ``tool.end``, ``model.call``, ``secret.access`` -> API Activity (6003) of the
                          agent (99 Tool Call Start / Tool Call End / Model Call, 2 Read): ``api``
                          (the tool, model operation or secret read; ``service`` the agent or model
                          provider; ``request.uid`` the call id), ``actor.app_name`` the agent,
                          ``resources`` the model or the secret (its name, never its value),
                          ``status``, ``start_time``/``end_time``/``duration`` and, with OTLP ids, the
                          trace profile's ``trace`` (and its ``span`` once the call has ended).
* ``plugin.load``      -> Module Activity (1005): 1 Load, the plugin as ``module.file`` (name,
                          version, SHA-256).
* ``policy.decision``  -> the activity decided on: egress Network Activity (4001), file File
                          System Activity (1001), exec Process Activity (1007), a tool call API
                          Activity (6003), with the security_control profile's ``action_id``
                          and ``disposition_id``; the decision itself under ``unmapped.decision``.
* everything else (``sensor.notice``) -> Base Event (0), activity 99 Other, details in ``unmapped``.

OCSF 1.7 has no AI profile (``ai_operation`` with its ``ai_agent``/``ai_model`` objects comes in a
later version); what of the ``ai`` group has no 1.7 home (prompt route, token counts, argument
digests, the SDK's span keys) stays in ``unmapped.ai``.

Each kind's class and default activity are declared once, in the event table
(:mod:`runwatch.eventkinds`); this module fills the class's objects and refines the
activity where it depends on the event (a refused or failed ``net.connect``).

``type_uid`` is always ``class_uid * 100 + activity_id``; ``time`` is in milliseconds.
Fields without an OCSF home go under ``unmapped`` (never dropped).
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from runwatch import eventkinds
from runwatch.alerts.model import Alert
from runwatch.alerts.render import to_ocsf as alert_finding
from runwatch.events import AiInfo, Event
from runwatch.outputs.base import register_output
from runwatch.outputs.jsonl import JsonlOutput, OutputError

OCSF_VERSION = eventkinds.OCSF_VERSION

_CATEGORY = {0: "Uncategorized", 1: "System Activity", 4: "Network Activity", 6: "Application Activity"}
_CLASS = {
    0: ("Base Event", 0),
    1001: ("File System Activity", 1),
    1003: ("Kernel Activity", 1),
    1007: ("Process Activity", 1),
    1002: ("Kernel Extension Activity", 1),
    1005: ("Module Activity", 1),
    4001: ("Network Activity", 4),
    4003: ("DNS Activity", 4),
    6003: ("API Activity", 6),
}

# Process Activity (1007)
_OTHER = 99
_LAUNCH_FORK, _LAUNCH_EXEC = 2, 3

_ECONNREFUSED = 111
_EINPROGRESS = 115

# Privilege changes. OCSF has no class for "a process changed its own credentials,
# capabilities or namespaces". Account Change (3001) describes changes to accounts in an
# identity store, which these are not; the actor here is a process acting on itself, which is
# Process Activity. setuid-family calls have their own activity (5 Set User ID); ptrace gives
# the caller a handle on another process (3 Open; the request number is kept so consumers can
# tell PTRACE_POKETEXT-style injection apart); the rest are 99 Other with a precise
# activity_name. mount is a file-system operation and OCSF has File System Activity 12 Mount.
# Each kind's class and activity are declared in the event table (runwatch.eventkinds).


@functools.cache
def _hostname() -> str:
    return socket.gethostname()


def _basename(path: str) -> str:
    return os.path.basename(path) if path else ""


def _process(e: Event) -> dict[str, Any]:
    """The OCSF process object for the event's own process."""
    proc: dict[str, Any] = {"pid": e.pid, "name": e.comm or _basename(e.exe)}
    if e.exe:
        proc["file"] = {"path": e.exe, "name": _basename(e.exe), "type_id": 1}
    if e.cmdline:
        proc["cmd_line"] = e.cmdline
    proc["user"] = {"uid": str(e.uid)}
    if e.cwd:
        proc["working_directory"] = e.cwd
    if e.ancestry:
        proc["lineage"] = list(e.ancestry)
    if e.ppid:
        proc["parent_process"] = _parent(e)
    return proc


def _parent(e: Event) -> dict[str, Any]:
    parent: dict[str, Any] = {"pid": e.ppid}
    if e.ancestry:
        parent["file"] = {"path": e.ancestry[0], "name": _basename(e.ancestry[0]), "type_id": 1}
        parent["name"] = _basename(e.ancestry[0])
    return parent


def _container(e: Event, unmapped: dict[str, Any]) -> dict[str, Any] | None:
    c = e.container
    if c is None:
        return None
    out: dict[str, Any] = {"uid": c.id, "runtime": c.runtime}
    if c.name:
        out["name"] = c.name
    if c.pod_uid:
        out["pod_uuid"] = c.pod_uid
    if c.pod:
        out["orchestrator"] = "kubernetes"
    if c.image or c.image_digest:
        image: dict[str, Any] = {}
        if c.image:
            image["name"] = c.image
        if c.image_digest:
            image["uid"] = c.image_digest
        out["image"] = image
    if c.labels:
        out["labels"] = [f"{k}={v}" for k, v in sorted(c.labels.items())]
    # No OCSF container attribute for these; keep them.
    extra = {
        k: v
        for k, v in (
            ("pod", c.pod),
            ("namespace", c.namespace),
            ("cgroup", c.cgroup),
            ("spiffe_id", c.spiffe_id),
            ("spiffe_source", c.spiffe_source),
            ("service_account", c.service_account),
            ("node", c.node),
            ("owner_kind", c.owner_kind),
            ("owner_name", c.owner_name),
            ("privileged", c.privileged),
            ("cap_add", c.cap_add),
            ("devices", c.devices),
            ("gpu", c.gpu),
            ("siblings", c.siblings),
            ("owner", c.owner),
            ("escalation", c.escalation),
            ("review_by", c.review_by),
        )
        if v is not None
    }
    if extra:
        unmapped["container"] = extra
    return out


def _endpoint(ip: str | None, port: int | None) -> dict[str, Any] | None:
    if ip is None and port is None:
        return None
    ep: dict[str, Any] = {}
    if ip is not None:
        ep["ip"] = ip
    if port is not None:
        ep["port"] = port
    return ep


def _status(result: int | None, out: dict[str, Any]) -> None:
    if result is None:
        return
    ok = result == 0 or result == -_EINPROGRESS
    out["status_id"] = 1 if ok else 2
    out["status"] = "Success" if ok else "Failure"
    if not ok:
        out["status_code"] = str(result)


def _declared(e: Event) -> tuple[int, int, str]:
    """The kind's OCSF class, activity id and name from the event table."""
    k = eventkinds.spec(e.kind)
    if k is None:
        return 0, _OTHER, e.kind
    class_uid, activity_id, name = k.ocsf
    return class_uid, activity_id, name or e.kind


def _process_activity(e: Event, out: dict[str, Any], unmapped: dict[str, Any]) -> tuple[int, int, str]:
    me = _process(e)
    if e.kind == "process.exec":
        # The new image is the target; the launching process is the parent (same pid on
        # Linux, but the parent chain is what an analyst follows).
        out["process"] = me
        out["actor"] = {"process": _parent(e) if e.ppid else me}
        out["launch_type_id"], out["launch_type"] = _LAUNCH_EXEC, "Exec"
        return _declared(e)
    if e.kind == "process.fork":
        child: dict[str, Any] = {k: v for k, v in me.items() if k != "parent_process"}
        child["pid"] = e.child_pid if e.child_pid is not None else 0
        child["parent_process"] = {k: v for k, v in me.items() if k != "parent_process"}
        out["process"] = child
        out["actor"] = {"process": me}
        out["launch_type_id"], out["launch_type"] = _LAUNCH_FORK, "Fork"
        return _declared(e)
    if e.kind == "process.exit":
        out["process"] = me
        out["actor"] = {"process": me}
        if e.exit_code is not None:
            out["exit_code"] = e.exit_code
        if e.signal is not None:
            unmapped["signal"] = e.signal
        return _declared(e)
    if e.kind == "process.exec_failed":
        out["process"] = {"pid": e.pid, "file": {"path": e.exec_name or "", "name": _basename(e.exec_name or ""),
                                                  "type_id": 1}}
        out["actor"] = {"process": me}
        out["status_id"], out["status"] = 2, "Failure"
        if e.attrs and "errno" in e.attrs:
            out["status_code"] = str(e.attrs["errno"])
        return _declared(e)
    # priv.* mapped to Process Activity
    out["actor"] = {"process": me}
    if e.kind == "priv.ptrace" and e.priv is not None and e.priv.target_pid is not None:
        out["process"] = {"pid": e.priv.target_pid}
    else:
        out["process"] = me
    return _declared(e)


def _file_activity(e: Event, out: dict[str, Any], unmapped: dict[str, Any]) -> tuple[int, int, str]:
    out["actor"] = {"process": _process(e)}
    if e.kind == "priv.mount":
        p = e.priv
        target = (p.target if p else None) or ""
        out["file"] = {"path": target, "name": _basename(target) or target or "?", "type_id": 2}
        return _declared(e)
    f = e.file
    if f is not None:
        path = f.path if e.kind != "file.memfd" or not f.name else f"memfd:{f.name}"
        out["file"] = {"path": path, "name": _basename(path), "type_id": 1}
        if e.kind in ("file.rename", "file.link", "file.symlink") and f.new_path:
            out["file_result"] = {"path": f.new_path, "name": _basename(f.new_path), "type_id": 1}
    return _declared(e)


def _network_activity(e: Event, out: dict[str, Any], unmapped: dict[str, Any]) -> tuple[int, int, str]:
    out["actor"] = {"process": _process(e)}
    n = e.net
    if n is None:
        return 4001, _OTHER, "Other"
    src = _endpoint(n.src_ip, n.src_port)
    dst = _endpoint(n.dst_ip, n.dst_port)
    if src:
        out["src_endpoint"] = src
    if dst:
        out["dst_endpoint"] = dst
    info: dict[str, Any] = {"protocol_name": n.proto}
    if n.family in ("ipv4", "ipv6"):
        info["protocol_ver_id"] = 4 if n.family == "ipv4" else 6
    if e.kind in ("net.connect", "net.send"):
        info["direction_id"], info["direction"] = 2, "Outbound"
    elif e.kind in ("net.accept", "net.listen"):
        info["direction_id"], info["direction"] = 1, "Inbound"
    else:  # a bind says nothing about direction (the schema requires the field)
        info["direction_id"], info["direction"] = 0, "Unknown"
    out["connection_info"] = info
    _status(n.result, out)
    if e.kind == "net.connect":
        if n.result is None or n.result in (0, -_EINPROGRESS):
            return 4001, 1, "Open"
        if n.result == -_ECONNREFUSED:
            return 4001, 5, "Refuse"
        return 4001, 4, "Fail"
    return _declared(e)


_DECISION_CLASS = {"egress": (4001, 1, "Open"), "file": (1001, 14, "Open"), "exec": (1007, 1, "Launch")}
# verdict -> (action_id, action, disposition_id, disposition) of the security_control profile
_DECISION_ACTION: dict[str, tuple[int, str, int, str]] = {
    "allow": (1, "Allowed", 1, "Allowed"), "approve": (1, "Allowed", 8, "Approved"),
    "deny": (2, "Denied", 2, "Blocked"), "reject": (2, "Denied", 25, "Rejected"),
    "timeout": (2, "Denied", 2, "Blocked"), "kill": (2, "Denied", 2, "Blocked"),
    "challenge": (99, "Challenge", 23, "Challenge"), "would_deny": (1, "Allowed", 17, "Logged"),
}


_REFUSED = frozenset({"deny", "kill", "reject", "timeout"})


def _decision(e: Event, out: dict[str, Any], unmapped: dict[str, Any]) -> tuple[int, int, str]:
    """A policy decision as the activity it decided on (egress: Network Activity, file: File
    System Activity, exec: Process Activity; a tool call: API Activity), with the
    security_control profile's action and disposition; the decision itself in unmapped."""
    d = e.decision
    layer = d.layer if d is not None else ""
    if layer in _DECISION_CLASS:
        class_uid, activity_id, name = _DECISION_CLASS[layer]
        mapped = _ACTIVITY[class_uid](e, out, unmapped)
        if layer == "exec" and "process" not in out:
            out["process"] = {"pid": e.pid, "file": {"path": d.target if d else "", "name": _basename(
                d.target if d and d.target else ""), "type_id": 1}}
        if layer == "file" and "file" not in out and d is not None and d.target:
            out["file"] = {"path": d.target, "name": _basename(d.target) or d.target, "type_id": 1}
        if mapped[0] == class_uid and mapped[1] != _OTHER:
            activity_id, name = mapped[1], mapped[2]
        if layer == "egress" and d is not None and d.verdict in _REFUSED:
            activity_id, name = 5, "Refuse"
    else:
        class_uid, activity_id, name = _declared(e)  # API Activity: the tool call
        out["actor"] = {"process": _process(e)}
        tool = (e.tool_call.name if e.tool_call else None) or (d.target if d else None) or "?"
        out["api"] = {"operation": tool, "service": {"name": (e.tool_call.agent if e.tool_call else None) or
                                                     "agent"}}
    if d is not None:
        action_id, action, disposition_id, disposition = _DECISION_ACTION.get(d.verdict, (99, d.verdict, 99, d.verdict))
        out.update(action_id=action_id, action=action, disposition_id=disposition_id, disposition=disposition)
    return class_uid, activity_id, name


def _dns_activity(e: Event, out: dict[str, Any], unmapped: dict[str, Any]) -> tuple[int, int, str]:
    out["actor"] = {"process": _process(e)}
    d = e.dns
    if d is not None:
        query: dict[str, Any] = {"hostname": d.name}
        if d.qtype:
            query["type"] = d.qtype
        out["query"] = query
        server = _endpoint(d.server_ip, d.server_port)
        if server:
            out["dst_endpoint"] = server
    if e.kind == "dns.answer" and e.attrs:
        out["answers"] = [{"rdata": str(a), "type": "AAAA" if ":" in str(a) else "A"}
                          for a in e.attrs.get("answers") or ()]
        if "rcode" in e.attrs:
            out["rcode_id"] = e.attrs["rcode"]
    return _declared(e)


def _kernel_extension_activity(e: Event, out: dict[str, Any], unmapped: dict[str, Any]) -> tuple[int, int, str]:
    """A module or BPF program load: the driver (OCSF's kernel_driver has only a ``file``) is the
    module's file, or for a BPF program its name as the file name."""
    out["actor"] = {"process": _process(e)}
    p = e.priv
    target = (p.target if p else None) or ""
    name = _basename(target) or (p.op if p else e.kind)
    if target and e.kind == "priv.module_load":
        out["driver"] = {"file": {"path": target, "name": name, "type_id": 1}}
    else:
        out["driver"] = {"file": {"name": name, "type_id": 0}}
    return _declared(e)


def _kernel_activity(e: Event, out: dict[str, Any], unmapped: dict[str, Any]) -> tuple[int, int, str]:
    """A kernel object made by a syscall (userfaultfd, io_uring): kernel type 2 System Call."""
    out["actor"] = {"process": _process(e)}
    op = e.priv.op if e.priv is not None else e.kind
    out["kernel"] = {"name": op, "type_id": 2, "type": "System Call", "system_call": op}
    return _declared(e)


_MS = 1_000_000
_NO_AI = AiInfo()
#: ``ai`` keys the AI mapping puts into OCSF objects (the rest stay in ``unmapped.ai``).
_AI_MAPPED = frozenset({"provider", "model", "agent", "agent_id", "status", "error", "duration_ns",
                        "start_time", "trace_id", "span_id", "parent_span_id", "plugin", "plugin_version", "sha256",
                        "secret", "secret_kind"})


def _ai_times(e: Event, a: AiInfo, out: dict[str, Any]) -> tuple[int, int] | None:
    """``start_time``/``end_time``/``duration`` (ms) of an ended call; (start, end) ns when known."""
    if a.duration_ns is not None:
        out["duration"] = a.duration_ns // _MS
    start = a.start_time if a.start_time is not None else (
        e.time - a.duration_ns if a.duration_ns is not None and e.kind != "tool.start" else None)
    if start is None or e.kind == "tool.start":
        return None
    out["start_time"], out["end_time"] = start // _MS, e.time // _MS
    return start, e.time


def _ai_activity(e: Event, out: dict[str, Any], unmapped: dict[str, Any]) -> tuple[int, int, str]:
    """An AI-layer event as API Activity (a tool call, a model call, a secret read) or Module
    Activity (a plugin load); see the module docstring."""
    a = e.ai if e.ai is not None else _NO_AI
    agent = (e.tool_call.agent if e.tool_call is not None else None) or a.agent
    actor: dict[str, Any] = {"process": _process(e)}
    if agent:
        actor["app_name"] = agent
    if a.agent_id:
        actor["app_uid"] = a.agent_id
    out["actor"] = actor
    named = e.kind == "model.call" or (e.kind.startswith("tool.") and e.tool_call is None)  # api.operation
    mapped = _AI_MAPPED | ({"operation"} if named else set())
    # what has no OCSF home; set even when empty, so the whole group is not added again
    unmapped["ai"] = {k: v for k, v in msgspec.to_builtins(a).items() if k not in mapped}
    if e.kind == "plugin.load":
        file: dict[str, Any] = {"name": a.plugin or "?", "type_id": 1}
        if a.plugin_version:
            file["version"] = a.plugin_version
        if a.sha256:
            file["hashes"] = [{"algorithm_id": 3, "algorithm": "SHA-256", "value": a.sha256}]
        out["module"] = {"file": file, "load_type_id": 1, "load_type": "Standard"}
        return _declared(e)
    tool = e.tool_call.name if e.tool_call is not None else None
    api: dict[str, Any] = {}
    if e.kind == "model.call":
        api["operation"] = a.operation or "chat"
        if a.provider:
            api["service"] = {"name": a.provider}
        if a.model:
            out["resources"] = [{"name": a.model, "type": "model"}]
    elif e.kind == "secret.access":
        api["operation"] = "read secret"
        if a.secret:
            out["resources"] = [{"name": a.secret, "type": f"{a.secret_kind} secret" if a.secret_kind else "secret"}]
    else:
        api["operation"] = tool or a.operation or e.kind
        if agent:
            api["service"] = {"name": agent}
    call_id = e.tool_call.call_id if e.tool_call is not None else None
    if call_id:
        api["request"] = {"uid": call_id}
    if a.status or a.error:
        api["response"] = {k: v for k, v in (("message", a.status), ("error", a.error)) if v}
        ok = a.status == "ok" and not a.error
        out["status_id"], out["status"] = (1, "Success") if ok else (2, "Failure")
    out["api"] = api
    span = _ai_times(e, a, out)
    if a.trace_id:
        trace: dict[str, Any] = {"uid": a.trace_id}
        if a.span_id and span is not None:
            trace["span"] = {"uid": a.span_id, "start_time": span[0] // _MS, "end_time": span[1] // _MS,
                             "operation": api["operation"],
                             **({"parent_uid": a.parent_span_id} if a.parent_span_id else {}),
                             **({"duration": a.duration_ns // _MS} if a.duration_ns is not None else {})}
        out["trace"] = trace
    return _declared(e)


#: OCSF class_uid -> the function that fills that class's objects (others: Base Event).
_ACTIVITY: dict[int, Callable[[Event, dict[str, Any], dict[str, Any]], tuple[int, int, str]]] = {
    1007: _process_activity,
    1001: _file_activity,
    1003: _kernel_activity,
    1002: _kernel_extension_activity,
    4001: _network_activity,
    4003: _dns_activity,
    1005: _ai_activity,
    6003: _ai_activity,
}


def to_ocsf(event: Event, *, hostname: str | None = None) -> dict[str, Any]:
    """Map one event to an OCSF 1.7 event object (plain builtins, ready for JSON).

    ``hostname`` fills ``device.hostname`` (default: this machine's name).
    """
    e = event
    out: dict[str, Any] = {}
    unmapped: dict[str, Any] = {"kind": e.kind, "source": e.source}
    declared = eventkinds.spec(e.kind)
    mapped = _ACTIVITY.get(declared.ocsf[0]) if declared is not None else None
    if e.kind == "policy.decision":
        class_uid, activity_id, activity_name = _decision(e, out, unmapped)
    elif mapped is not None:
        class_uid, activity_id, activity_name = mapped(e, out, unmapped)
    else:
        class_uid, activity_id, activity_name = _declared(e)
        out["actor"] = {"process": _process(e)}
    if e.priv is not None:
        unmapped["priv"] = msgspec.to_builtins(e.priv)
    if e.file is not None and (e.file.intent or e.file.flags is not None):
        unmapped["file"] = {
            k: v for k, v in (("intent", e.file.intent), ("flags", e.file.flags)) if v is not None
        }
    if e.ai is not None and "ai" not in unmapped:
        unmapped["ai"] = msgspec.to_builtins(e.ai)
    if unmapped.get("ai") == {}:
        del unmapped["ai"]
    if e.decision is not None:
        unmapped["decision"] = msgspec.to_builtins(e.decision)
    for key in ("tid", "euid", "gid", "cgroup_id", "pidns", "vpid", "unattested", "attrs", "argv"):
        value = getattr(e, key)
        if value is not None and value != 0:
            unmapped[key] = value

    class_name, category_uid = _CLASS[class_uid]
    profiles = ["host", "security_control"] if "action_id" in out else ["host"]
    if "trace" in out:
        profiles.append("trace")
    device = hostname or _hostname()
    if class_uid in (4001, 6003):
        # this device's end of the connection (or the API call's caller), when its address
        # was not captured
        local = "dst_endpoint" if e.kind in ("net.accept", "net.listen", "net.bind") else "src_endpoint"
        ep = out.setdefault(local, {})
        if not ep.get("ip"):
            ep["hostname"] = device
    container = _container(e, unmapped)
    if container is not None:
        out["container"] = container
        profiles.append("container")
    if e.tool_call is not None:
        # OCSF 1.7 has no AI profile (ai_operation, with ai_agent/ai_model, comes later): the
        # tool call and its agent stay under unmapped.tool_call.
        unmapped["tool_call"] = msgspec.to_builtins(e.tool_call)

    result: dict[str, Any] = {
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": _CATEGORY[category_uid],
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": f"{class_name}: {activity_name}",
        "time": e.time // 1_000_000,
        "severity_id": 1,
        "severity": "Informational",
        "metadata": {
            "version": OCSF_VERSION,
            "uid": e.id,
            "product": {"name": "runwatch", "vendor_name": "runwatch"},
            "profiles": profiles,
        },
        "device": {"hostname": device, "type_id": 0},
    }
    result.update(out)
    result["unmapped"] = unmapped
    return result


class OcsfOutput(JsonlOutput):
    """OCSF JSONL while running (``--ocsf-out``): one OCSF object per line (``"-"``: stdout).

    Events become their class (this module); alerts, given to :meth:`write_alerts`, become
    Detection Findings (2004, :func:`runwatch.alerts.render.to_ocsf`), in the order they
    come (an alert is raised while its batch is being detected on, so its line comes before
    the lines of that batch's events). One thread writes.
    """

    name = "ocsf"

    def __init__(self, path: str | os.PathLike[str] = "-", *, hostname: str | None = None) -> None:
        encoder = msgspec.json.Encoder()
        self.hostname = hostname
        self._alert_encoder = encoder
        self.alerts = 0  # alert lines written

        def encode(event: Event) -> bytes:
            return encoder.encode(to_ocsf(event, hostname=hostname))

        super().__init__(path, encode=encode)

    def write(self, events: Sequence[Event]) -> None:
        """Write one line per event and flush (a live stream: a reader sees each batch at once)."""
        super().write(events)
        if events:
            self.flush()

    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        """Write one Detection Finding line per alert and flush."""
        if not alerts:
            return
        if self._fh is None:
            self.open()
        assert self._fh is not None
        data = b"".join(self._alert_encoder.encode(alert_finding(a, hostname=self.hostname)) + b"\n"
                        for a in alerts)
        try:
            self._fh.write(data)
            self._fh.flush()
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self.alerts += len(alerts)


def to_ocsf_many(events: Sequence[Event], *, hostname: str | None = None) -> list[dict[str, Any]]:
    """Map a batch of events (order kept)."""
    return [to_ocsf(e, hostname=hostname) for e in events]


register_output("ocsf", OcsfOutput)
