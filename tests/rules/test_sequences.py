"""Sequences: window, keyed separation, ordering, bounded state with counted eviction."""

from __future__ import annotations

from typing import Any

import msgspec

from runwatch.events import Event
from runwatch.rules import Engine, load_texts

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000

SEQ = """
- sequence: secret_then_egress
  by: [container.id, proc.tree]
  within: 60s
  steps:
    - kind = file.open and file.path startswith /run/secrets
    - condition: kind = net.connect and net.dst.external and net.dst.first_seen
  severity: high
  output: "secret then %net.dst.ip:%net.dst.port"
"""


def secret(n: int, t_s: float, container: str | None = "c1", pid: int = 50, ppid: int = 40) -> Event:
    d: dict[str, Any] = {"id": f"s{n}", "time": T0 + int(t_s * S), "kind": "file.open", "pid": pid, "ppid": ppid,
                         "exe": "/bin/cat", "file": {"path": "/run/secrets/token", "intent": "read"}}
    if container:
        d["container"] = {"id": container, "runtime": "runc"}
    return msgspec.convert(d, Event)


def connect(n: int, t_s: float, container: str | None = "c1", ip: str = "1.2.3.4", pid: int = 51,
            ppid: int = 40) -> Event:
    d: dict[str, Any] = {"id": f"n{n}", "time": T0 + int(t_s * S), "kind": "net.connect", "pid": pid, "ppid": ppid,
                         "exe": "/usr/bin/curl", "net": {"proto": "tcp", "family": "ipv4", "dst_ip": ip,
                                                         "dst_port": 443}}
    if container:
        d["container"] = {"id": container, "runtime": "runc"}
    return msgspec.convert(d, Event)


def engine(**kw: Any) -> Engine:
    return Engine(load_texts([(SEQ, "s.yaml")]), **kw)


def test_inside_window_fires_with_evidence() -> None:
    eng = engine()
    alerts = eng.process_batch([secret(1, 0), connect(1, 59.5)])
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.rule, a.evidence, a.first_time, a.time) == ("secret_then_egress", ["s1", "n1"], T0, T0 + 59_500_000_000)
    assert a.output == "secret then 1.2.3.4:443" and a.workload.id == "c1"


def test_step_outside_window_does_not_fire() -> None:
    eng = engine()
    assert eng.process_batch([secret(1, 0), connect(1, 60.001)]) == []
    assert eng.stats()["sequence_state"]["secret_then_egress"]["expired"] == 1


def test_later_first_step_restarts_the_window() -> None:
    eng = engine()
    alerts = eng.process_batch([secret(1, 0), secret(2, 50), connect(1, 100)])
    assert [a.evidence for a in alerts] == [["s2", "n1"]]


def test_order_matters_and_one_event_cannot_start_and_finish() -> None:
    eng = engine()
    assert eng.process_batch([connect(1, 0), secret(1, 1)]) == []


def test_keys_are_separate() -> None:
    eng = engine()
    alerts = eng.process_batch([secret(1, 0, "c1"), connect(1, 1, "c2"), connect(2, 2, "c1", ip="5.6.7.8")])
    assert [(a.workload.id, a.evidence) for a in alerts] == [("c1", ["s1", "n2"])]


def test_host_events_key_on_process_tree() -> None:
    eng = engine()
    # same tree (children of 40), then a different tree (parent 41, not seen before)
    alerts = eng.process_batch([secret(1, 0, None, pid=50, ppid=40), connect(1, 1, None, pid=60, ppid=41),
                                connect(2, 2, None, ip="9.9.9.9", pid=51, ppid=40)])
    assert [a.evidence for a in alerts] == [["s1", "n2"]]


def test_first_seen_gates_second_step() -> None:
    eng = engine()
    alerts = eng.process_batch([connect(1, 0), secret(1, 1), connect(2, 2)])
    assert alerts == []  # 1.2.3.4 was already seen from c1


def test_eviction_is_bounded_and_counted() -> None:
    eng = engine(sequence_max_keys=5)
    eng.process_batch([secret(i, i * 0.1, f"c{i}") for i in range(23)])
    st = eng.stats()["sequence_state"]["secret_then_egress"]
    assert (st["keys"], st["partials"], st["evicted_keys"], st["evicted_partials"], st["started"]) == (5, 5, 18, 18, 23)
    # the evicted key c0 no longer completes; a kept one (c22) does
    alerts = eng.process_batch([connect(1, 3, "c0"), connect(2, 3, "c22")])
    assert [a.workload.id for a in alerts] == ["c22"]


def test_three_steps_keep_one_partial_per_stage() -> None:
    text = """
- sequence: three
  by: tool.call_id
  within: 10s
  steps: [kind = tool.start, kind = process.exec, kind = net.connect]
"""
    eng = Engine(load_texts([(text, "t.yaml")]))

    def e(n: int, kind: str, t: float, call: str = "c-1") -> Event:
        extra: dict[str, Any] = {"net": {"proto": "tcp", "family": "ipv4"}} if kind == "net.connect" else {}
        return msgspec.convert({"id": f"x{n}", "time": T0 + int(t * S), "kind": kind, "tool_call": {"name": "t",
                                "call_id": call}, **extra}, Event)

    alerts = eng.process_batch([e(1, "tool.start", 0), e(2, "process.exec", 1), e(3, "tool.start", 2),
                                e(4, "process.exec", 3), e(5, "net.connect", 11.5), e(6, "net.connect", 20)])
    # x5 completes the partial started by x3 (it superseded x1's); x6 has nothing left to complete
    assert [a.evidence for a in alerts] == [["x3", "x4", "x5"]]
    st = eng.stats()["sequence_state"]["three"]
    assert (st["started"], st["completed"], st["keys"]) == (2, 1, 0)
