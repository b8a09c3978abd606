"""OCSF mapping: exact class/activity/type ids per kind and the key objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from runwatch.events import AiInfo, Container, DnsInfo, Event, FileInfo, NetInfo, PrivInfo, ToolCall
from runwatch.outputs.ocsf import OcsfOutput, to_ocsf

T = 1_760_000_000_123_456_789


def ev(kind: str, **kw: Any) -> Event:
    base: dict[str, Any] = {
        "id": "ev-1",
        "time": T,
        "pid": 4242,
        "ppid": 4241,
        "uid": 1001,
        "exe": "/usr/bin/curl",
        "cmdline": "curl -s http://x",
        "ancestry": ["/bin/sh", "/usr/bin/python3.11"],
    }
    base.update(kw)
    return Event(kind=kind, **base)


CASES = [
    # kind, extra fields, class_uid, activity_id
    ("process.exec", {}, 1007, 1),
    ("process.fork", {"child_pid": 4243}, 1007, 1),
    ("process.exit", {"exit_code": 3}, 1007, 2),
    ("priv.setuid", {"priv": PrivInfo(op="setuid", uid=0)}, 1007, 5),
    ("priv.setgid", {"priv": PrivInfo(op="setgid", gid=0)}, 1007, 99),
    ("priv.capset", {"priv": PrivInfo(op="capset", cap_effective=1)}, 1007, 99),
    ("priv.ptrace", {"priv": PrivInfo(op="ptrace", request=16, target_pid=77)}, 1007, 3),
    ("priv.unshare", {"priv": PrivInfo(op="unshare", ns_flags=0x20000)}, 1007, 99),
    ("priv.setns", {"priv": PrivInfo(op="setns", ns_flags=0)}, 1007, 99),
    ("priv.mount", {"priv": PrivInfo(op="mount", source="tmpfs", target="/mnt/x", fstype="tmpfs")}, 1001, 12),
    ("file.open", {"file": FileInfo(path="/etc/shadow", intent="read")}, 1001, 14),
    ("file.unlink", {"file": FileInfo(path="/tmp/x")}, 1001, 4),
    ("file.rename", {"file": FileInfo(path="/tmp/a", new_path="/tmp/b")}, 1001, 5),
    ("file.memfd", {"file": FileInfo(path="", name="payload")}, 1001, 1),
    (
        "net.connect",
        {"net": NetInfo(proto="tcp", family="ipv4", dst_ip="1.2.3.4", dst_port=443, result=0)},
        4001,
        1,
    ),
    (
        "net.connect",
        {"net": NetInfo(proto="tcp", family="ipv4", dst_ip="1.2.3.4", dst_port=1, result=-111)},
        4001,
        5,
    ),
    (
        "net.connect",
        {"net": NetInfo(proto="tcp", family="ipv4", dst_ip="1.2.3.4", dst_port=1, result=-113)},
        4001,
        4,
    ),
    (
        "net.accept",
        {"net": NetInfo(proto="tcp", family="ipv6", src_ip="::1", src_port=5000, dst_port=80)},
        4001,
        1,
    ),
    ("net.listen", {"net": NetInfo(proto="tcp", family="ipv4", dst_ip="0.0.0.0", dst_port=8080)}, 4001, 7),
    ("net.bind", {"net": NetInfo(proto="udp", family="ipv4", dst_ip="0.0.0.0", dst_port=53)}, 4001, 99),
    (
        "dns.query",
        {"dns": DnsInfo(name="api.example.com", qtype="AAAA", server_ip="10.0.0.2", server_port=53)},
        4003,
        1,
    ),
    ("file.link", {"file": FileInfo(path="/etc/shadow", new_path="/tmp/s")}, 1001, 1),
    ("file.symlink", {"file": FileInfo(path="/etc/shadow", new_path="/tmp/s")}, 1001, 1),
    ("file.chmod", {"file": FileInfo(path="/tmp/t", flags=0o4755), "attrs": {"mode": "4755"}}, 1001, 7),
    ("file.mkdir", {"file": FileInfo(path="/tmp/d", flags=0o755)}, 1001, 1),
    ("file.rmdir", {"file": FileInfo(path="/tmp/d")}, 1001, 4),
    ("net.socket", {"net": NetInfo(proto="icmp", family="ipv4", result=3)}, 4001, 99),
    ("net.redirect", {"net": NetInfo(proto="tcp", family="ipv4", dst_ip="10.1.1.1", dst_port=4444)}, 4001, 99),
    ("priv.module_load", {"priv": PrivInfo(op="finit_module", target="/tmp/rk.ko")}, 1002, 1),
    ("priv.bpf_load", {"priv": PrivInfo(op="bpf", target="probe")}, 1002, 1),
    ("priv.userfaultfd", {"priv": PrivInfo(op="userfaultfd")}, 1003, 1),
    ("priv.io_uring_setup", {"priv": PrivInfo(op="io_uring_setup")}, 1003, 1),
    ("process.exec_failed", {"exec_name": "/tmp/x", "attrs": {"errno": 13}}, 1007, 1),
    ("dns.answer", {"dns": DnsInfo(name="a.example", server_ip="10.0.0.2"), "attrs": {"answers": ["1.2.3.4"]}},
     4003, 2),
    ("net.send", {"net": NetInfo(proto="udp", family="ipv4", dst_ip="10.9.9.9", dst_port=9, result=0)}, 4001, 6),
    ("tool.start", {"tool_call": ToolCall(name="shell")}, 6003, 99),
    ("tool.end", {"tool_call": ToolCall(name="shell"), "ai": AiInfo(status="ok", duration_ns=7_000_000)}, 6003, 99),
    ("model.call", {"ai": AiInfo(provider="openai", model="gpt-4o")}, 6003, 99),
    ("plugin.load", {"ai": AiInfo(plugin="calc", sha256="0" * 64)}, 1005, 1),
    ("secret.access", {"ai": AiInfo(secret="OPENAI_API_KEY", secret_kind="env")}, 6003, 2),
    ("sensor.notice", {"attrs": {"message": "hi"}}, 0, 99),
]


@pytest.mark.parametrize(("kind", "extra", "class_uid", "activity_id"), CASES)
def test_class_activity_type(kind: str, extra: dict[str, Any], class_uid: int, activity_id: int) -> None:
    o = to_ocsf(ev(kind, **extra), hostname="h1")
    assert (o["class_uid"], o["activity_id"], o["type_uid"]) == (
        class_uid,
        activity_id,
        class_uid * 100 + activity_id,
    )
    categories = {0: 0, 1001: 1, 1003: 1, 1002: 1, 1005: 1, 1007: 1, 4001: 4, 4003: 4, 6003: 6}
    assert o["category_uid"] == categories[class_uid]
    assert o["time"] == 1_760_000_000_123
    assert o["severity_id"] == 1
    assert o["metadata"]["version"] == "1.7.0"
    assert o["metadata"]["product"] == {"name": "runwatch", "vendor_name": "runwatch"}
    assert o["metadata"]["uid"] == "ev-1"
    assert o["unmapped"]["kind"] == kind
    assert o["actor"]["process"]["pid"] in (4241, 4242)
    msgspec.json.encode(o)  # plain JSON-able


def test_process_exec_objects() -> None:
    o = to_ocsf(ev("process.exec"), hostname="h1")
    assert o["process"]["pid"] == 4242
    assert o["process"]["cmd_line"] == "curl -s http://x"
    assert o["process"]["file"] == {"path": "/usr/bin/curl", "name": "curl", "type_id": 1}
    assert o["process"]["lineage"] == ["/bin/sh", "/usr/bin/python3.11"]
    assert o["process"]["parent_process"]["pid"] == 4241
    assert o["process"]["parent_process"]["file"]["path"] == "/bin/sh"
    assert o["actor"]["process"]["pid"] == 4241
    assert o["launch_type_id"] == 3
    assert o["device"]["hostname"] == "h1"


def test_fork_exit_ptrace_targets() -> None:
    fork = to_ocsf(ev("process.fork", child_pid=4243))
    assert (
        fork["process"]["pid"],
        fork["process"]["parent_process"]["pid"],
        fork["actor"]["process"]["pid"],
    ) == (
        4243,
        4242,
        4242,
    )
    assert fork["launch_type_id"] == 2
    ex = to_ocsf(ev("process.exit", exit_code=0, signal=9))
    assert ex["exit_code"] == 0 and ex["unmapped"]["signal"] == 9
    pt = to_ocsf(ev("priv.ptrace", priv=PrivInfo(op="ptrace", request=16, target_pid=77)))
    assert pt["process"] == {"pid": 77} and pt["unmapped"]["priv"]["request"] == 16


def test_network_and_dns_fields() -> None:
    c = to_ocsf(
        ev("net.connect", net=NetInfo(proto="tcp", family="ipv4", dst_ip="1.2.3.4", dst_port=1, result=-111))
    )
    assert c["dst_endpoint"] == {"ip": "1.2.3.4", "port": 1}
    assert c["connection_info"] == {
        "protocol_name": "tcp",
        "protocol_ver_id": 4,
        "direction_id": 2,
        "direction": "Outbound",
    }
    assert (c["status_id"], c["status_code"]) == (2, "-111")
    a = to_ocsf(
        ev("net.accept", net=NetInfo(proto="tcp", family="ipv6", src_ip="::1", src_port=5000, dst_port=80))
    )
    assert a["src_endpoint"] == {"ip": "::1", "port": 5000} and a["connection_info"]["direction_id"] == 1
    d = to_ocsf(
        ev(
            "dns.query",
            dns=DnsInfo(name="api.example.com", qtype="AAAA", server_ip="10.0.0.2", server_port=53),
        )
    )
    assert d["query"] == {"hostname": "api.example.com", "type": "AAAA"}
    assert d["dst_endpoint"] == {"ip": "10.0.0.2", "port": 53}


def test_file_fields() -> None:
    r = to_ocsf(ev("file.rename", file=FileInfo(path="/tmp/a", new_path="/tmp/b")))
    assert r["file"]["path"] == "/tmp/a" and r["file_result"]["path"] == "/tmp/b"
    o = to_ocsf(ev("file.open", file=FileInfo(path="/etc/shadow", intent="read", flags=0)))
    assert o["file"] == {"path": "/etc/shadow", "name": "shadow", "type_id": 1}
    assert o["unmapped"]["file"] == {"intent": "read", "flags": 0}
    m = to_ocsf(ev("priv.mount", priv=PrivInfo(op="mount", source="tmpfs", target="/mnt/x", fstype="tmpfs")))
    assert m["file"]["path"] == "/mnt/x" and m["unmapped"]["priv"]["fstype"] == "tmpfs"


def test_the_newer_kinds_fill_their_class_objects() -> None:
    link = to_ocsf(ev("file.link", file=FileInfo(path="/etc/shadow", new_path="/tmp/s")))
    assert (link["file"]["path"], link["file_result"]["path"]) == ("/etc/shadow", "/tmp/s")
    chmod = to_ocsf(ev("file.chmod", file=FileInfo(path="/tmp/t", flags=0o4755), attrs={"setuid": True}))
    assert (chmod["activity_name"], chmod["unmapped"]["file"]["flags"], chmod["unmapped"]["attrs"]) == (
        "Set Security", 0o4755, {"setuid": True})
    mod = to_ocsf(ev("priv.module_load", priv=PrivInfo(op="finit_module", target="/tmp/rk.ko")))
    assert (mod["class_name"], mod["driver"]) == (
        "Kernel Extension Activity", {"file": {"path": "/tmp/rk.ko", "name": "rk.ko", "type_id": 1}})
    prog = to_ocsf(ev("priv.bpf_load", priv=PrivInfo(op="bpf", target="probe")))
    assert prog["driver"] == {"file": {"name": "probe", "type_id": 0}}  # kernel_driver has only a file
    uffd = to_ocsf(ev("priv.userfaultfd", priv=PrivInfo(op="userfaultfd")))
    assert (uffd["class_name"], uffd["kernel"]) == (
        "Kernel Activity", {"name": "userfaultfd", "type_id": 2, "type": "System Call", "system_call": "userfaultfd"})
    failed = to_ocsf(ev("process.exec_failed", exec_name="/tmp/x", attrs={"errno": 13}))
    assert (failed["status_id"], failed["status_code"], failed["process"]["file"]["path"]) == (2, "13", "/tmp/x")
    redirect = to_ocsf(ev("net.redirect", net=NetInfo(proto="tcp", family="ipv4", dst_ip="10.1.1.1", dst_port=4444)))
    assert redirect["dst_endpoint"] == {"ip": "10.1.1.1", "port": 4444}
    answer = to_ocsf(ev("dns.answer", dns=DnsInfo(name="a.example", server_ip="10.0.0.2"),
                        attrs={"answers": ["1.2.3.4", "::5"], "rcode": 0}))
    assert (answer["activity_name"], answer["query"], answer["answers"], answer["rcode_id"]) == (
        "Response", {"hostname": "a.example"}, [{"rdata": "1.2.3.4", "type": "A"}, {"rdata": "::5", "type": "AAAA"}], 0)
    send = to_ocsf(ev("net.send", net=NetInfo(proto="udp", family="ipv4", dst_ip="10.9.9.9", dst_port=9, result=0)))
    assert (send["activity_name"], send["connection_info"]["direction"], send["dst_endpoint"]["port"]) == (
        "Traffic", "Outbound", 9)


def test_container_and_ai_operation() -> None:
    box = Container(
        id="abc123",
        runtime="runc",
        name="agent",
        pod="agent-0",
        pod_uid="u-1",
        namespace="ml",
        spiffe_id="spiffe://x/y",
    )
    tc = ToolCall(name="shell", call_id="call-7", agent="planner")
    o = to_ocsf(ev("process.exec", container=box, tool_call=tc))
    assert o["container"] == {
        "uid": "abc123",
        "runtime": "runc",
        "name": "agent",
        "pod_uuid": "u-1",
        "orchestrator": "kubernetes",
    }
    assert o["unmapped"]["container"] == {"pod": "agent-0", "namespace": "ml", "spiffe_id": "spiffe://x/y"}
    assert o["metadata"]["profiles"] == ["host", "container"]  # OCSF 1.7 has no AI profile
    assert "ai_agent" not in o
    assert o["unmapped"]["tool_call"] == {"name": "shell", "call_id": "call-7", "agent": "planner"}
    plain = to_ocsf(ev("process.exec"))
    assert plain["metadata"]["profiles"] == ["host"] and "container" not in plain and "ai_agent" not in plain


TRACE, SPAN, PARENT = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "00f067aa0ba902b7"
CALL = ToolCall(name="web_fetch", call_id="call-7", agent="planner")

AI_EVENTS = {
    "tool.start": ev("tool.start", source="sdk", tool_call=CALL, ai=AiInfo(
        operation="execute_tool", route="untrusted:web", args_digest="d-23", trace_id=TRACE, span_id=SPAN, span=3)),
    "tool.end": ev("tool.end", source="otlp", tool_call=CALL, ai=AiInfo(
        status="error", error="timeout", duration_ns=23_000_000, start_time=T - 23_000_000, trace_id=TRACE,
        span_id=SPAN, parent_span_id=PARENT)),
    "model.call": ev("model.call", source="sdk", ai=AiInfo(
        operation="chat", provider="openai", model="gpt-4o", input_tokens=13, output_tokens=7, status="ok",
        duration_ns=5_000_000, agent="planner")),
    "plugin.load": ev("plugin.load", source="sdk", ai=AiInfo(
        plugin="calc_plugin", plugin_source="/opt/plugins/calc_plugin", plugin_version="1.2.3", sha256="ab" * 32)),
    "secret.access": ev("secret.access", source="sdk", ai=AiInfo(secret="OPENAI_API_KEY", secret_kind="env")),
}


def test_ai_events_are_api_and_module_activity() -> None:
    o = {kind: to_ocsf(e, hostname="h1") for kind, e in AI_EVENTS.items()}
    start, end, model, plugin, secret = (o[k] for k in AI_EVENTS)
    assert [(r["class_uid"], r["activity_id"], r["activity_name"]) for r in o.values()] == [
        (6003, 99, "Tool Call Start"), (6003, 99, "Tool Call End"), (6003, 99, "Model Call"), (1005, 1, "Load"),
        (6003, 2, "Read")]
    assert start["api"] == {"operation": "web_fetch", "service": {"name": "planner"}, "request": {"uid": "call-7"}}
    assert start["actor"]["app_name"] == "planner" and start["actor"]["process"]["pid"] == 4242
    assert start["trace"] == {"uid": TRACE}  # no span before the call has ended
    assert start["metadata"]["profiles"] == ["host", "trace"]
    assert start["unmapped"]["ai"] == {"operation": "execute_tool", "route": "untrusted:web", "args_digest": "d-23",
                                       "span": 3}
    assert end["api"]["response"] == {"message": "error", "error": "timeout"}
    assert (end["status_id"], end["status"], end["duration"]) == (2, "Failure", 23)
    assert (end["start_time"], end["end_time"]) == (1_760_000_000_100, 1_760_000_000_123)
    assert end["trace"] == {"uid": TRACE, "span": {"uid": SPAN, "parent_uid": PARENT, "start_time": 1_760_000_000_100,
                                                   "end_time": 1_760_000_000_123, "duration": 23,
                                                   "operation": "web_fetch"}}
    assert "ai" not in end["unmapped"]
    assert model["api"] == {"operation": "chat", "service": {"name": "openai"}, "response": {"message": "ok"}}
    assert model["resources"] == [{"name": "gpt-4o", "type": "model"}] and model["status_id"] == 1
    assert model["actor"]["app_name"] == "planner" and model["duration"] == 5
    assert model["unmapped"]["ai"] == {"input_tokens": 13, "output_tokens": 7}
    assert plugin["module"] == {"file": {"name": "calc_plugin", "type_id": 1, "version": "1.2.3", "hashes": [
        {"algorithm_id": 3, "algorithm": "SHA-256", "value": "ab" * 32}]}, "load_type_id": 1, "load_type": "Standard"}
    assert plugin["unmapped"]["ai"] == {"plugin_source": "/opt/plugins/calc_plugin"}
    assert secret["resources"] == [{"name": "OPENAI_API_KEY", "type": "env secret"}]
    assert secret["api"] == {"operation": "read secret"} and "ai" not in secret["unmapped"]
    assert all(r["unmapped"]["source"] in ("sdk", "otlp") for r in o.values())


def test_ocsf_output_lines(tmp_path: Path, events: list[Event]) -> None:
    path = tmp_path / "ocsf.jsonl"
    out = OcsfOutput(path, hostname="h1")
    out.open()
    out.write(events)
    out.close()
    lines = [msgspec.json.decode(line) for line in path.read_bytes().splitlines()]
    assert len(lines) == 23
    assert [x["metadata"]["uid"] for x in lines] == [e.id for e in events]
    assert [x["class_uid"] for x in lines[:6]] == [1007, 1001, 4001, 4003, 1007, 1007]
    assert [x["type_uid"] for x in lines[:6]] == [100701, 100114, 400101, 400301, 100705, 100702]


DECISIONS = [
    # layer, verdict, extra fields, class_uid, activity_id, action_id, disposition_id
    ("egress", "deny", {"net": NetInfo(proto="tcp", family="ipv4", dst_ip="10.9.9.29", dst_port=443, result=-1)},
     4001, 5, 2, 2),
    ("file", "deny", {"file": FileInfo(path="/run/secrets/token", intent="read")}, 1001, 14, 2, 2),
    ("file", "would_deny", {"file": FileInfo(path="/run/secrets/token", intent="read")}, 1001, 14, 1, 17),
    ("exec", "kill", {}, 1007, 1, 2, 2),
    ("tool", "challenge", {"tool_call": ToolCall(name="wire_money", agent="agent-23")}, 6003, 99, 99, 23),
    ("tool", "approve", {"tool_call": ToolCall(name="wire_money", agent="agent-23")}, 6003, 99, 1, 8),
    ("tool", "reject", {"tool_call": ToolCall(name="wire_money", agent="agent-23")}, 6003, 99, 2, 25),
]


@pytest.mark.parametrize(("layer", "verdict", "extra", "class_uid", "activity_id", "action_id", "disposition_id"),
                         DECISIONS)
def test_a_decision_is_the_activity_it_decided_on_and_keeps_its_whole_decision(
        layer: str, verdict: str, extra: dict[str, Any], class_uid: int, activity_id: int, action_id: int,
        disposition_id: int) -> None:
    from runwatch.events import DecisionInfo

    d = DecisionInfo(policy="p-23", verdict=verdict, rule="r", reason="why", mode="enforce", layer=layer,
                     target="/usr/bin/dash" if layer == "exec" else "t")
    o = to_ocsf(ev("policy.decision", decision=d, **extra), hostname="h")
    assert (o["class_uid"], o["activity_id"], o["action_id"], o["disposition_id"]) == (
        class_uid, activity_id, action_id, disposition_id)
    assert o["unmapped"]["decision"] == msgspec.to_builtins(d)
    assert "security_control" in o["metadata"]["profiles"]


def test_every_record_is_valid_against_the_published_schema() -> None:
    """Every kind, every decision layer and an alert, checked with the schema package's models
    plus the schema's own required attributes and constraints (runwatch.testing.ocsf_check)."""
    from runwatch.alerts.model import Alert, AlertProcess, AlertToolCall, Workload
    from runwatch.alerts.render import to_ocsf as alert_to_ocsf
    from runwatch.events import DecisionInfo
    from runwatch.testing.ocsf_check import violations

    records = [to_ocsf(ev(kind, **extra), hostname="h") for kind, extra, _c, _a in CASES]
    records += [to_ocsf(e, hostname="h") for e in AI_EVENTS.values()]
    records += [to_ocsf(ev("net.connect", net=NetInfo(proto="tcp", family="ipv4", src_port=40000, dst_ip="1.2.3.4",
                                                      dst_port=443, result=0)), hostname="h")]  # a port-only source
    for layer, verdict, extra, *_ in DECISIONS:
        d = DecisionInfo(policy="p-23", verdict=verdict, rule="r", reason="why", mode="enforce", layer=layer,
                         target="/usr/bin/dash" if layer == "exec" else "t")
        records.append(to_ocsf(ev("policy.decision", decision=d, **extra), hostname="h"))
    alert = Alert(id="a-23", time=T, first_time=T, rule="shell_in_tool_call", severity="high", output="shell",
                  kind="process.exec", process=AlertProcess(4242, "/bin/sh", "sh -c id", ["/usr/bin/python3.11"]),
                  workload=Workload(id="c-1", name="agent"), tool_call=AlertToolCall("run", agent="a-23"),
                  attack=["T1059.004"], evidence=["ev-1"])
    records.append(alert_to_ocsf(alert, hostname="h"))
    bad = {f"{r['class_uid']}/{r['unmapped'].get('kind', 'alert')}": v for r in records if (v := violations(r))}
    assert bad == {}
    assert len(records) == len(CASES) + len(AI_EVENTS) + 1 + len(DECISIONS) + 1
    assert {r["class_uid"] for r in records} == {0, 1001, 1002, 1003, 1005, 1007, 2004, 4001, 4003, 6003}
    assert [r["unmapped"]["kind"] for r in records if r["class_uid"] == 0] == ["sensor.notice"]
