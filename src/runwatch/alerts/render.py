"""Alert renderers: JSON (the DESIGN.md contract), OCSF 1.7 Detection Finding, one-line text.

OCSF mapping (ocsf-schema ``events/findings/detection_finding.json``, ``objects/finding_info.json``,
``objects/attack.json``): class_uid 2004 Detection Finding in category 2 Findings, activity 1
Create, ``type_uid`` 200401; ``finding_info`` (required: ``uid``; with ``title``, ``desc``,
``analytic`` {type_id 1 Rule}, ``attacks``, ``types``, ``related_events``, first/last seen
times); ``severity_id`` 1 Informational .. 5 Critical; ``evidences`` hold the process,
container and tool call. ATT&CK and ATLAS ids go to ``attacks`` (top level, as the Security
Control profile has it, and duplicated into ``finding_info``). Framework mappings, the
requested and taken actions and the count go under ``unmapped``. Times are milliseconds.
"""

from __future__ import annotations

import functools
import os
import socket
import time
from typing import Any

import msgspec

from runwatch.alerts.model import Alert
from runwatch.eventkinds import OCSF_VERSION
from runwatch.textsafe import printable

DETECTION_FINDING = 2004
_SEVERITY_ID = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
_SEVERITY_NAME = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Alert)


def to_json(alert: Alert) -> bytes:
    """The alert as one compact JSON object (a JSONL line without the newline)."""
    return _encoder.encode(alert)


def from_json(data: bytes | str) -> Alert:
    """Decode an alert written by :func:`to_json` (validated against the schema)."""
    return _decoder.decode(data)


def to_dict(alert: Alert) -> dict[str, Any]:
    """The alert as plain builtins (same keys as the JSON)."""
    result: dict[str, Any] = msgspec.to_builtins(alert)
    return result


@functools.cache
def _hostname() -> str:
    return socket.gethostname()


def _attack(ident: str) -> dict[str, Any]:
    """One OCSF attack object for an ATT&CK/ATLAS technique, sub-technique or tactic id."""
    bare = ident.removeprefix("AML.")
    if bare.startswith("TA"):
        return {"tactic": {"uid": ident}}
    if "." in bare:
        parent = ident.rsplit(".", 1)[0]
        return {"technique": {"uid": parent}, "sub_technique": {"uid": ident}}
    return {"technique": {"uid": ident}}


def _process(alert: Alert) -> dict[str, Any]:
    p = alert.process
    proc: dict[str, Any] = {"pid": p.pid, "name": os.path.basename(p.exe) if p.exe else ""}
    if p.exe:
        proc["file"] = {"path": p.exe, "name": os.path.basename(p.exe), "type_id": 1}
    if p.cmdline:
        proc["cmd_line"] = p.cmdline
    if p.ancestry:
        # the parent's executable is known, not its pid: OCSF's process needs a pid or uid, so
        # the parent is given by the lineage (executables from the parent up) only
        proc["lineage"] = list(p.ancestry)
    return proc


def to_ocsf(alert: Alert, *, hostname: str | None = None) -> dict[str, Any]:
    """The alert as an OCSF 1.7 Detection Finding object (plain builtins, ready for JSON)."""
    a = alert
    severity_id = _SEVERITY_ID.get(a.severity, 0)
    attacks = [_attack(i) for i in a.attack]
    profiles = ["host", "security_control"]
    evidence: dict[str, Any] = {"process": _process(a)}
    w = a.workload
    if w.id:
        container: dict[str, Any] = {"uid": w.id}
        if w.name:
            container["name"] = w.name
        if w.runtime:
            container["runtime"] = w.runtime
        if w.pod:
            container["orchestrator"] = "kubernetes"
        evidence["container"] = container
        profiles.append("container")
    unmapped: dict[str, Any] = {
        "rule": a.rule,
        "mappings": msgspec.to_builtins(a.mappings),
        "rule_action": a.rule_action,
        "count": a.count,
        "kind": a.kind,
        "evidence": list(a.evidence),
    }
    if w.id and (w.pod or w.namespace or w.spiffe_id or w.owner or w.escalation):
        unmapped["workload"] = {k: v for k, v in (("pod", w.pod), ("namespace", w.namespace),
                                                  ("spiffe_id", w.spiffe_id), ("owner", w.owner),
                                                  ("escalation", w.escalation)) if v}
    out: dict[str, Any] = {
        "class_uid": DETECTION_FINDING,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": DETECTION_FINDING * 100 + 1,
        "type_name": "Detection Finding: Create",
        "time": a.time // 1_000_000,
        "start_time": a.first_time // 1_000_000 if a.first_time else a.time // 1_000_000,
        "end_time": a.time // 1_000_000,
        "severity_id": severity_id,
        "severity": _SEVERITY_NAME.get(severity_id, "Unknown"),
        "status_id": 1,
        "status": "New",
        "is_alert": True,
        "message": a.output,
        "finding_info": {
            "uid": a.id,
            "title": a.rule,
            "desc": a.desc or a.output,
            "analytic": {"uid": a.rule, "name": a.rule, "type_id": 1, "type": "Rule"},
            "attacks": attacks,
            "types": list(a.tags),
            "related_events": [{"uid": e} for e in a.evidence],
            "related_events_count": len(a.evidence),
            "first_seen_time": (a.first_time or a.time) // 1_000_000,
            "last_seen_time": a.time // 1_000_000,
        },
        "attacks": attacks,
        "evidences": [evidence],
        # a detection observes what already happened: nothing was allowed or denied by it
        "action": "Observed" if a.action == "alert" else a.action.capitalize(),
        "action_id": 99,
        "disposition_id": 15 if a.action == "alert" else 99,
        "disposition": "Detected" if a.action == "alert" else a.action.capitalize(),
        "metadata": {
            "version": OCSF_VERSION,
            "uid": a.id,
            "product": {"name": "runwatch", "vendor_name": "runwatch"},
            "profiles": profiles,
        },
        "device": {"hostname": hostname or _hostname(), "type_id": 0},
        "unmapped": unmapped,
    }
    if a.tool_call is not None:
        tc = msgspec.to_builtins(a.tool_call)
        evidence["data"] = {"tool_call": tc}
        unmapped["tool_call"] = tc
    return out


def render_text(alert: Alert) -> str:
    """One human line: time, severity, rule, workload, output, count and ids (control characters
    from the workload shown escaped, so no line can be forged)."""
    a = alert
    secs, ns = divmod(a.time, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ns // 1_000_000:03d}Z"
    where = a.workload.name or (a.workload.id[:12] if a.workload.id else "host")
    if a.workload.owner:
        where += f" owner={a.workload.owner}"
    parts = [stamp, a.severity.upper(), a.rule, f"[{where}]", a.output]
    if a.count > 1:
        parts.append(f"(x{a.count})")
    if a.tool_call is not None:
        parts.append(f"tool={a.tool_call.name}")
    if a.attack:
        parts.append(f"attack={','.join(a.attack)}")
    if a.rule_action != "alert":
        parts.append(f"requested={a.rule_action}")
    return printable(" ".join(parts))
