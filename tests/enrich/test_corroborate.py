"""The same behaviour seen by the audit hook and by the kernel is one event for the rules."""

from __future__ import annotations

from pathlib import Path

import runwatch.rules.default
from runwatch.enrich.corroborate import Corroboration
from runwatch.events import SPAWNED_ATTR, DnsInfo, Event, FileInfo, NetInfo, ToolCall, new_id
from runwatch.rules import Engine, load_rules

MS = 1_000_000
T0 = 1_800_000_000_000_000_000
AGENT, SHELL = 51_017, 51_029
CALL = ToolCall(name="run_report", call_id="call-23")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def ev(kind: str, pid: int, t: int, source: str = "kernel", **kw: object) -> Event:
    return Event(id=new_id(t), time=t, kind=kind, pid=pid, source=source, **kw)  # type: ignore[arg-type]


def audited_spawn(t: int) -> Event:
    return ev("process.exec", AGENT, t, source="audit", exe="/usr/bin/dash", exec_name="/bin/sh", ppid=AGENT,
              argv=["/bin/sh", "-c", "true"], tool_call=CALL, attrs={"via": "audit", SPAWNED_ATTR: True})


def kernel_exec(t: int) -> Event:
    return ev("process.exec", SHELL, t, ppid=AGENT, exe="/usr/bin/dash", exec_name="/bin/sh",
              argv=["/bin/sh", "-c", "true"])


def secret_open(t: int, source: str, pid: int = AGENT) -> Event:
    return ev("file.open", pid, t, source=source, file=FileInfo(path="/run/secrets/db", intent="read"),
              attrs={"via": "audit"} if source == "audit" else None)


def test_an_audited_spawn_and_the_kernel_exec_of_the_child_are_one_event() -> None:
    clock = Clock()
    stage = Corroboration(clock=clock)
    first = stage([audited_spawn(T0)])
    assert first == []  # held, waiting for its kernel twin
    child = kernel_exec(T0 + 7 * MS)
    assert stage([child]) == [child]
    assert child.tool_call == CALL  # the audit hook's context joins the kernel event
    assert child.attrs is not None and child.attrs["seen_by"] == ["kernel", "audit"]
    clock.now = T0 + 10_000 * MS
    assert stage([]) == [] and stage.flush() == []
    assert stage.stats()["merged"] == 1


def test_a_kernel_event_first_then_its_audited_twin() -> None:
    clock = Clock()
    stage = Corroboration(clock=clock)
    kernel = secret_open(T0, "kernel")
    assert stage([kernel]) == [kernel]
    assert stage([secret_open(T0 + 2 * MS, "audit")]) == []
    assert stage.flush() == []
    assert stage.stats()["merged"] == 1


def test_unmatched_audit_events_are_released_after_the_window() -> None:
    clock = Clock()
    stage = Corroboration(clock=clock)
    connect = ev("net.connect", AGENT, T0, source="audit",
                 net=NetInfo(proto="tcp", family="ipv4", dst_ip="169.254.169.254", dst_port=80))
    assert stage([connect]) == []
    clock.now = T0 + stage.hold_ns - MS
    assert stage([]) == []
    clock.now = T0 + stage.hold_ns + MS
    assert stage([]) == [connect]
    assert stage.stats()["merged"] == 0 and stage.stats()["audit_only"] == 1


def test_twins_differ_in_what_they_did_or_who_did_it() -> None:
    stage = Corroboration(clock=Clock())
    audit = secret_open(T0, "audit")
    other_pid = secret_open(T0 + MS, "kernel", pid=AGENT + 2)
    other_path = ev("file.open", AGENT, T0 + MS, file=FileInfo(path="/run/secrets/other", intent="read"))
    out = stage([audit, other_pid, other_path])
    assert out == [other_pid, other_path]
    assert stage.flush() == [audit]


def test_one_audit_event_merges_with_one_kernel_event_only() -> None:
    stage = Corroboration(clock=Clock())
    audit = ev("dns.query", AGENT, T0, source="audit", dns=DnsInfo(name="Example.COM."))
    a = ev("dns.query", AGENT, T0 + MS, dns=DnsInfo(name="example.com", qtype="A"))
    aaaa = ev("dns.query", AGENT, T0 + 2 * MS, dns=DnsInfo(name="example.com", qtype="AAAA"))
    assert stage([audit, a, aaaa]) == [a, aaaa]
    assert a.attrs is not None and a.attrs["seen_by"] == ["kernel", "audit"]
    assert aaaa.attrs is None
    assert stage.flush() == []


def test_far_apart_in_time_is_not_the_same_behaviour() -> None:
    stage = Corroboration(clock=Clock())
    audit = secret_open(T0, "audit")
    late = secret_open(T0 + stage.window_ns + MS, "kernel")
    out = stage([audit, late])
    assert late in out
    assert audit in out + stage.flush()
    assert stage.stats()["merged"] == 0


def test_claims_the_kernel_never_saw_are_unconfirmed_and_raise_no_alert() -> None:
    clock = Clock()
    stage = Corroboration(clock=clock, confirms=frozenset({"process.exec", "net.connect"}))
    metadata = NetInfo(family="ipv4", proto="tcp", dst_ip="169.254.169.254", dst_port=80)
    forged = ev("net.connect", AGENT, T0, source="audit", net=metadata, attrs={"via": "audit"})
    real = ev("net.connect", SHELL, T0 + 3 * MS, net=metadata)
    read = secret_open(T0 + 5 * MS, "audit")  # the kernel does not confirm opens of every path: kept as is
    out = stage([forged, real, read])
    clock.now = T0 + 10_000 * MS
    out += stage([]) + stage.flush()
    assert sorted(e.id for e in out) == sorted(e.id for e in (forged, real, read))
    assert forged.attrs == {"via": "audit", "unconfirmed": True}
    assert real.attrs is None and read.attrs == {"via": "audit"}
    assert stage.stats()["unconfirmed"] == 1
    alerts = Engine(load_rules([Path(runwatch.rules.default.__file__).parent])).process_batch(out)
    assert [(a.rule, a.evidence[0] if a.evidence else None) for a in alerts if a.rule == "cloud_metadata_access"] == [
        ("cloud_metadata_access", real.id)]
