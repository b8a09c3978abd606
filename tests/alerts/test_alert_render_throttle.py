"""Alert JSON contract, OCSF Detection Finding rendering, text, and dedupe/throttle counts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec

from runwatch.alerts import Alert, Throttle, from_json, render_text, to_json, to_ocsf
from runwatch.events import Event
from runwatch.outputs.group import OutputGroup
from runwatch.rules import DetectionStage, Engine, load_texts

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000

RULE = """
- rule: shell_in_agent
  desc: A shell in an agent container.
  condition: kind = process.exec and proc.name = sh
  output: "shell %proc.cmdline in %container.name"
  severity: high
  attack: [T1059.004, TA0002, AML.T0051.000]
  mappings: {owasp_agentic: [ASI05], owasp_llm: [LLM06], owasp_nhi: [NHI5], nist_csf: [DE.CM-01, DE.CM-09]}
  action: deny
  tags: [process]
"""


def exec_event(n: int, t_s: float, container: str | None = "c1", tool: bool = False) -> Event:
    d: dict[str, Any] = {"id": f"e{n}", "time": T0 + int(t_s * S), "kind": "process.exec", "pid": 700 + n,
                         "exe": "/bin/sh", "cmdline": "sh -c id", "ancestry": ["/usr/bin/python3"]}
    if container:
        d["container"] = {"id": container, "runtime": "runc", "name": f"agent-{container}", "pod": "p",
                          "spiffe_id": "spiffe://td/agent"}
    if tool:
        d["tool_call"] = {"name": "run_shell", "call_id": "call-7", "agent": "planner"}
    return msgspec.convert(d, Event)


def alerts_for(events: list[Event]) -> list[Alert]:
    return Engine(load_texts([(RULE, "r.yaml")])).process_batch(events)


NO_K8S = dict.fromkeys(("attested", "pod_uid", "service_account", "labels", "image", "image_digest", "node",
                         "controller", "siblings", "owner", "escalation"))


def test_json_keys_match_the_contract() -> None:
    a = alerts_for([exec_event(1, 0, tool=True)])[0]
    obj = json.loads(to_json(a))
    for key in ("time", "rule", "severity", "attack", "mappings", "workload", "process", "tool_call", "evidence",
                "action", "id", "output", "count"):
        assert key in obj, key
    assert obj["time"] == T0 and obj["rule"] == "shell_in_agent" and obj["severity"] == "high"
    assert obj["mappings"] == {"owasp_agentic": ["ASI05"], "owasp_llm": ["LLM06"], "owasp_nhi": ["NHI5"],
                               "nist_csf": ["DE.CM-01", "DE.CM-09"]}
    assert obj["workload"] == {"id": "c1", "name": "agent-c1", "runtime": "runc", "pod": "p", "namespace": None,
                               "spiffe_id": "spiffe://td/agent", "role": None, **NO_K8S}
    assert obj["process"] == {"pid": 701, "exe": "/bin/sh", "cmdline": "sh -c id", "ancestry": ["/usr/bin/python3"],
                              "uid": 0}
    assert obj["source"] == "kernel"
    assert obj["tool_call"] == {"name": "run_shell", "call_id": "call-7", "agent": "planner"}
    assert (obj["evidence"], obj["action"], obj["rule_action"], obj["count"]) == (["e1"], "alert", "deny", 1)
    assert from_json(to_json(a)) == a


def test_host_alert_has_null_workload_and_tool_call() -> None:
    obj = json.loads(to_json(alerts_for([exec_event(1, 0, container=None)])[0]))
    assert obj["workload"] == {"id": None, "name": None, "runtime": None, "pod": None, "namespace": None,
                               "spiffe_id": None, "role": None, **NO_K8S}
    assert obj["tool_call"] is None


def test_uid_and_source_are_always_in_the_alert_json() -> None:
    audit = msgspec.structs.replace(exec_event(3, 0), source="audit", uid=1013)
    root, other = (json.loads(to_json(a)) for a in alerts_for([exec_event(1, 0), audit]))
    assert (root["process"]["uid"], root["source"]) == (0, "kernel")
    assert (other["process"]["uid"], other["source"]) == (1013, "audit")
    old = json.loads(to_json(alerts_for([exec_event(1, 0)])[0]))
    del old["source"], old["process"]["uid"]  # written before these keys
    assert (from_json(json.dumps(old)).source, from_json(json.dumps(old)).process.uid) == ("", 0)


def test_ocsf_detection_finding() -> None:
    a = alerts_for([exec_event(1, 2.5, tool=True)])[0]
    o = to_ocsf(a, hostname="node-1")
    assert (o["class_uid"], o["category_uid"], o["activity_id"], o["type_uid"]) == (2004, 2, 1, 200401)
    assert (o["class_name"], o["severity_id"], o["severity"], o["time"]) == ("Detection Finding", 4, "High",
                                                                           T0 // 1_000_000 + 2500)
    fi = o["finding_info"]
    assert fi["uid"] == a.id and fi["title"] == "shell_in_agent" and fi["analytic"]["type_id"] == 1
    assert fi["related_events"] == [{"uid": "e1"}]
    assert o["attacks"] == fi["attacks"] == [
        {"technique": {"uid": "T1059"}, "sub_technique": {"uid": "T1059.004"}},
        {"tactic": {"uid": "TA0002"}},
        {"technique": {"uid": "AML.T0051"}, "sub_technique": {"uid": "AML.T0051.000"}},
    ]
    assert o["metadata"]["version"] == "1.7.0" and o["metadata"]["product"]["name"] == "runwatch"
    assert o["device"]["hostname"] == "node-1"
    ev = o["evidences"][0]
    assert ev["process"]["pid"] == 701 and ev["process"]["cmd_line"] == "sh -c id"
    assert ev["container"] == {"uid": "c1", "name": "agent-c1", "runtime": "runc", "orchestrator": "kubernetes"}
    assert o["unmapped"]["mappings"]["nist_csf"] == ["DE.CM-01", "DE.CM-09"]
    assert "ai_agent" not in o and o["unmapped"]["tool_call"]["agent"] == "planner"  # OCSF 1.7: no AI profile
    assert (o["action_id"], o["disposition_id"], o["disposition"]) == (99, 15, "Detected")  # observed, not enforced
    json.dumps(o)  # plain builtins


def test_render_text() -> None:
    a = alerts_for([exec_event(1, 0, tool=True)])[0]
    assert render_text(a) == ("2023-11-14T22:13:20.000Z HIGH shell_in_agent [agent-c1] shell sh -c id in agent-c1 "
                              "tool=run_shell attack=T1059.004,TA0002,AML.T0051.000 requested=deny")


def test_throttle_counts_and_summaries() -> None:
    # 23 matches in c1 over 46 s with a 10 s window, plus 3 in c2
    raw = alerts_for([exec_event(i, i * 2) for i in range(23)] + [exec_event(100 + i, i, "c2") for i in range(3)])
    assert len(raw) == 26
    th = Throttle(window_s=10)
    out: list[Alert] = []
    for a in raw:
        out.extend(th.offer(a))
    out.extend(th.flush())
    c1 = [(a.time - T0) // S for a in out if a.workload.id == "c1"]
    counts = [a.count for a in out if a.workload.id == "c1"]
    assert c1 == [0, 10, 20, 30, 40, 44]
    assert counts == [1, 5, 5, 5, 5, 2]
    assert sum(a.count for a in out) == 26
    assert [a.count for a in out if a.workload.id == "c2"] == [1, 2]
    assert th.stats() == {"offered": 26, "emitted": 6, "suppressed": 20, "summaries": 2, "keys": 2,
                          "evicted_keys": 0}
    # a summary covers from the first suppressed match
    second = [a for a in out if a.workload.id == "c1"][1]
    assert (second.first_time - T0) // S == 2


def test_throttle_eviction_emits_pending_summary() -> None:
    raw = alerts_for([exec_event(1, 0, "a"), exec_event(2, 1, "a"), exec_event(3, 2, "b")])
    th = Throttle(window_s=60, max_keys=1)
    out = [x for a in raw for x in th.offer(a)]
    assert [(a.workload.id, a.count) for a in out] == [("a", 1), ("a", 1), ("b", 1)]
    assert th.stats()["evicted_keys"] == 1 and th.stats()["summaries"] == 1


class ListSink:
    name = "list"

    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self.closed = False

    def open(self) -> None:
        pass

    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        self.alerts.extend(alerts)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_detection_stage_passes_events_and_flushes_on_close() -> None:
    sink = ListSink()
    outputs = OutputGroup([sink])
    outputs.open()
    stage = DetectionStage(Engine(load_texts([(RULE, "r.yaml")])), outputs.write_alerts, Throttle(window_s=100))
    batch = [exec_event(i, i) for i in range(7)]
    assert stage(batch) is batch
    assert [a.count for a in sink.alerts] == [1]
    stage.close()
    assert [a.count for a in sink.alerts] == [1, 6] and not sink.closed
    outputs.close()
    assert sink.closed and outputs.alerts_written == 2
    st = stage.stats()
    assert st["emitted"] == 2 and st["engine"]["events"] == 7  # type: ignore[index]


def test_render_text_escapes_what_the_workload_wrote() -> None:
    event = exec_event(3, 0.0)
    event.cmdline = "sh -c id\n2023-11-14T22:13:20.000Z CRITICAL forged [host] \x1b[2J"
    (alert,) = alerts_for([event])
    line = render_text(alert)
    assert "\n" not in line and "\x1b" not in line
    assert line.endswith("shell sh -c id\\n2023-11-14T22:13:20.000Z CRITICAL forged [host] \\x1b[2J in agent-c1 "
                         "attack=T1059.004,TA0002,AML.T0051.000 requested=deny")
