"""The alert schema (the DESIGN.md contract) and how an alert is built from an event.

Every key of the contract is always present in the JSON form (no omitted defaults), so
consumers can rely on ``alert["workload"]["id"]`` being there (``null`` on the host).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from runwatch.events import Event, new_id

SEVERITY_ORDER: dict[str, int] = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


class Mappings(msgspec.Struct):
    """Framework mappings: OWASP Agentic (ASI), OWASP LLM, OWASP NHI and NIST CSF 2.0 ids."""

    owasp_agentic: list[str] = msgspec.field(default_factory=list)
    owasp_llm: list[str] = msgspec.field(default_factory=list)
    owasp_nhi: list[str] = msgspec.field(default_factory=list)
    nist_csf: list[str] = msgspec.field(default_factory=list)


class Workload(msgspec.Struct):
    """The container (and pod) an alert is about and its role; all ``None`` for a host process
    that is no declared workload."""

    id: str | None = None
    name: str | None = None
    runtime: str | None = None
    pod: str | None = None
    namespace: str | None = None
    spiffe_id: str | None = None
    role: str | None = None
    attested: bool | None = None  # whether spiffe_id was attested (False: derived from Kubernetes facts)
    pod_uid: str | None = None
    service_account: str | None = None
    labels: dict[str, str] | None = None
    image: str | None = None
    image_digest: str | None = None
    node: str | None = None
    controller: str | None = None  # the pod's controller as Kind/name (ReplicaSet/shop-7d9f)
    siblings: list[str] | None = None  # the pod's other containers
    owner: str | None = None  # who answers for the workload (runwatch.io/owner, or its policy's owner)
    escalation: str | None = None  # whom to reach when the owner does not answer


class AlertProcess(msgspec.Struct):
    """The process that triggered the alert; ``ancestry`` lists executables from the parent up;
    ``uid`` is the event's (0 for root, always present)."""

    pid: int = 0
    exe: str = ""
    cmdline: str = ""
    ancestry: list[str] = msgspec.field(default_factory=list)
    uid: int = 0


class AlertToolCall(msgspec.Struct):
    """The AI tool call the triggering event happened inside."""

    name: str
    call_id: str | None = None
    agent: str | None = None


class Alert(msgspec.Struct, kw_only=True):
    """One alert. ``time`` and ``first_time`` are ns since the epoch.

    ``count`` is how many matches this alert stands for (more than 1 after throttling,
    matches from ``first_time`` to ``time``); ``evidence`` holds their event ids (bounded:
    ``evidence_dropped`` counts the ids left out) and ``tools`` the distinct tool names they
    happened in. When the join could not tell which of several open calls the event belongs
    to, ``tool_call`` is ``None``, ``tool_candidates`` lists them all and each of their names
    is in ``tools``. ``action`` is what was done (the engine
    only alerts); ``rule_action`` is what the rule asks the policy stage for.
    """

    id: str
    time: int
    rule: str
    severity: str
    output: str
    attack: list[str] = msgspec.field(default_factory=list)
    mappings: Mappings = msgspec.field(default_factory=Mappings)
    workload: Workload = msgspec.field(default_factory=Workload)
    process: AlertProcess = msgspec.field(default_factory=AlertProcess)
    tool_call: AlertToolCall | None = None
    evidence: list[str] = msgspec.field(default_factory=list)
    evidence_dropped: int = 0
    tools: list[str] = msgspec.field(default_factory=list)
    tool_candidates: list[AlertToolCall] = msgspec.field(default_factory=list)
    action: str = "alert"
    rule_action: str = "alert"
    count: int = 1
    first_time: int = 0
    kind: str = ""
    tags: list[str] = msgspec.field(default_factory=list)
    desc: str = ""
    source: str = ""  # the triggering event's source (kernel, proc, sdk, audit, otlp, policy)

    @property
    def fold_key(self) -> tuple[str, str, str]:
        """What throttling folds by: rule, workload (container id, or ``host``) and process (exe)."""
        return (self.rule, self.workload_key, self.process.exe)

    @property
    def workload_key(self) -> str:
        """The dedupe key part for the workload: container id, or ``host``."""
        return self.workload.id or "host"


def workload_of(event: Event) -> Workload:
    """The alert workload for an event's container (empty on the host, but for its role)."""
    c = event.container
    if c is None:
        return Workload(role=event.role)
    return Workload(id=c.id, name=c.name, runtime=c.runtime, pod=c.pod, namespace=c.namespace,
                    spiffe_id=c.spiffe_id, role=event.role,
                    attested=(c.spiffe_source == "attested") if c.spiffe_id and c.spiffe_source else None,
                    pod_uid=c.pod_uid, service_account=c.service_account, labels=c.labels, image=c.image,
                    image_digest=c.image_digest, node=c.node,
                    controller=f"{c.owner_kind}/{c.owner_name}" if c.owner_kind and c.owner_name else None,
                    siblings=c.siblings, owner=c.owner, escalation=c.escalation)


def alert_from_event(
    event: Event,
    *,
    rule: str,
    severity: str,
    output: str,
    attack: Sequence[str] = (),
    mappings: dict[str, list[str]] | None = None,
    rule_action: str = "alert",
    evidence: Sequence[str] | None = None,
    first_time: int | None = None,
    tags: Sequence[str] = (),
    desc: str = "",
) -> Alert:
    """Build an alert about ``event`` (the last event, for a sequence)."""
    m = mappings or {}
    tc = event.tool_call
    candidates = event.ai.candidates if event.ai is not None and event.ai.candidates else []
    return Alert(
        id=new_id(event.time),
        time=event.time,
        rule=rule,
        severity=severity,
        output=output,
        attack=list(attack),
        mappings=Mappings(list(m.get("owasp_agentic", ())), list(m.get("owasp_llm", ())),
                          list(m.get("owasp_nhi", ())), list(m.get("nist_csf", ()))),
        workload=workload_of(event),
        process=AlertProcess(event.pid, event.exe, event.cmdline, list(event.ancestry), event.uid),
        tool_call=AlertToolCall(tc.name, tc.call_id, tc.agent) if tc is not None else None,
        evidence=list(evidence) if evidence is not None else [event.id],
        tools=[tc.name] if tc is not None else sorted({c.name for c in candidates}),
        tool_candidates=[AlertToolCall(c.name, c.call_id, c.agent) for c in candidates],
        rule_action=rule_action,
        first_time=event.time if first_time is None else first_time,
        kind=event.kind,
        tags=list(tags),
        desc=desc,
        source=event.source,
    )
