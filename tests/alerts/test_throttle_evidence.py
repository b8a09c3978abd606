"""A folded alert keeps its evidence: the ids of the matches it stands for (bounded, the rest
counted) and the distinct tool names; different processes of one workload fold apart."""

from __future__ import annotations

from typing import Any

import msgspec

from runwatch.alerts import Alert, Throttle
from runwatch.alerts.throttle import MAX_EVIDENCE
from runwatch.events import Event
from runwatch.rules import Engine, load_texts

T0 = 1_790_000_000_000_000_000
S = 1_000_000_000

RULE = """
- rule: shell_anywhere
  desc: A shell.
  condition: kind = process.exec and proc.name in (sh, dash)
  output: "shell %proc.cmdline"
  severity: high
"""


def shell(n: int, t_s: float, tool: str | None = None, exe: str = "/bin/sh") -> Event:
    d: dict[str, Any] = {"id": f"e{n}", "time": T0 + int(t_s * S), "kind": "process.exec", "pid": 900 + n,
                         "exe": exe, "cmdline": "sh -c id", "ancestry": ["/usr/bin/python3"]}
    if tool is not None:
        d["tool_call"] = {"name": tool, "call_id": f"call-{n}"}
    return msgspec.convert(d, Event)


def fold(events: list[Event], window_s: float = 60) -> list[Alert]:
    th = Throttle(window_s=window_s)
    raw = Engine(load_texts([(RULE, "r.yaml")])).process_batch(events)
    out = [x for a in raw for x in th.offer(a)]
    return out + th.flush()


def test_a_folded_host_alert_keeps_every_evidence_id_and_both_tool_names() -> None:
    tools = ["run_shell", "probe_port"]
    out = fold([shell(i, i, tool=tools[i % 2] if i % 3 else None) for i in range(7)])
    assert [(a.count, a.evidence) for a in out] == [(1, ["e0"]), (6, ["e1", "e2", "e3", "e4", "e5", "e6"])]
    summary = out[1]
    assert summary.tools == ["probe_port", "run_shell"]
    assert summary.evidence_dropped == 0


def test_evidence_is_bounded_and_the_rest_is_counted() -> None:
    n = MAX_EVIDENCE + 23
    out = fold([shell(i, i * 0.1) for i in range(n + 1)])
    assert [a.count for a in out] == [1, n]
    assert out[1].evidence == [f"e{i}" for i in range(1, MAX_EVIDENCE + 1)]
    assert out[1].evidence_dropped == 23


def test_different_processes_of_one_workload_fold_apart() -> None:
    out = fold([shell(1, 0), shell(2, 1, exe="/usr/bin/dash"), shell(3, 2), shell(4, 3, exe="/usr/bin/dash")])
    assert sorted((a.process.exe, a.count, tuple(a.evidence)) for a in out) == [
        ("/bin/sh", 1, ("e1",)), ("/bin/sh", 1, ("e3",)), ("/usr/bin/dash", 1, ("e2",)),
        ("/usr/bin/dash", 1, ("e4",))]


def test_the_window_carries_the_folded_evidence_into_the_next_alert() -> None:
    out = fold([shell(1, 0, tool="a"), shell(2, 5, tool="b"), shell(3, 12, tool="c")], window_s=10)
    assert [(a.count, a.evidence, a.tools) for a in out] == [(1, ["e1"], ["a"]), (2, ["e2", "e3"], ["b", "c"])]
