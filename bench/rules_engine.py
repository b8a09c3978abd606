"""Rule-engine throughput: 25, 250 and 2,500 rules over a recorded mixed event stream.

The stream (``bench/data/mixed_stream.jsonl.gz``) was recorded by ``runwatch demo`` under the
live sensor: model-server, plugin, exfil and AgentDojo workloads in runc containers (execs,
connects, secret opens, DNS, tool calls, the runtime's mounts). It is replayed until at least
``--events`` events were processed, with times shifted forward on each pass so first-seen and
sequence state behave as on a longer recording.

Rule sets, all loaded through the real loader and compiled by the real engine:
  * ``pack``: the built-in AI-workload pack (the production configuration);
  * ``25`` / ``250`` / ``2500``: the pack's first 25 detections, then the pack plus generated
    rules of the shapes operators write (an exe name, a path prefix, a destination port, a DNS
    suffix, a tool name), each with its own constant so they spread over the engine's index.

Prints events/s per set and each set's cost relative to the 25-rule run, in one process on
one core (``taskset`` pins it when available). Targets: 2,500 rules cost less than 3x the
25-rule run; at least 300k events/s with the pack.

    .venv/bin/python bench/rules_engine.py [--events 300000] [--kind KIND]... [--json-out FILE]

``--kind`` keeps only the recorded events of those kinds (``--kind file.open``: the pack over
file opens alone, where the index decides how many rules each event meets).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from runwatch.events import Event
from runwatch.rules import Engine, load_texts
from runwatch.rules.default import default_rule_paths

STREAM = Path(__file__).resolve().parent / "data" / "mixed_stream.jsonl.gz"

_TEMPLATES = (
    "kind = process.exec and proc.name = tool{i}",
    "kind = file.open and file.path startswith /data/bench{i}/",
    "kind = net.connect and net.dst.port = {port}",
    "kind = dns.query and dns.name endswith .bench{i}.example",
    "kind = tool.start and tool.name = bench_tool_{i}",
)


def generated_rules(n: int) -> str:
    """``n`` rules in runwatch YAML, cycling through the templates with distinct constants."""
    out = []
    for i in range(n):
        cond = _TEMPLATES[i % len(_TEMPLATES)].format(i=i, port=20000 + i)
        out.append(
            f"- rule: bench_{i}\n  desc: generated benchmark rule {i}\n  condition: {cond}\n"
            f"  output: bench {i}\n  severity: low\n  attack: [T1059]\n"
            "  mappings: {owasp_agentic: [ASI02], owasp_llm: [LLM06], owasp_nhi: [NHI5], nist_csf: [DE.CM-09]}\n")
    return "".join(out)


UNREVIEWED_TOOLS = ("run_shell", "load_plugin")


def operator_config(stream: list[Event]) -> str:
    """What an operator of the recorded workloads configures: their reviewed tools approved
    (every tool seen except the unreviewed ones and the plugin's), as the demo does."""
    tools = sorted({e.tool_call.name for e in stream if e.kind == "tool.start" and e.tool_call is not None
                    and e.tool_call.name not in UNREVIEWED_TOOLS and "." not in e.tool_call.name})
    return "- list: approved_tools\n  append: true\n  items: " + json.dumps(tools) + "\n"


def rule_set(name: str, config: str) -> tuple[Engine, int]:
    """An engine for one of the named sets (see the module docstring) and its detection count."""
    texts = [(p.read_text(), str(p)) for p in default_rule_paths()] + [(config, "operator.yaml")]
    rs = load_texts(texts)
    detections = len(rs.rules) + len(rs.sequences)
    if name == "pack":
        return Engine(rs), detections
    if name == "25":
        # The pack's first 25 detections: its sequences first, then rules up to 25.
        seqs = rs.sequences[:25]
        small = dataclasses.replace(rs, sequences=seqs, rules=rs.rules[:25 - len(seqs)])
        return Engine(small), len(small.rules) + len(small.sequences)
    extra = int(name) - detections
    return Engine(load_texts([*texts, (generated_rules(extra), "generated.yaml")])), int(name)


def load_stream() -> list[Event]:
    """The recorded events, in time order."""
    dec = msgspec.json.Decoder(Event)
    with gzip.open(STREAM, "rb") as fh:
        events = [dec.decode(line) for line in fh if line.strip()]
    events.sort(key=lambda e: e.time)
    return events


def replay(base: list[Event], total: int) -> list[list[Event]]:
    """Batches of 512 events covering ``total`` events, times shifted per pass."""
    span = base[-1].time - base[0].time + 1_000_000_000
    events: list[Event] = []
    shift = 0
    while len(events) < total:
        for e in base:
            events.append(msgspec.structs.replace(e, time=e.time + shift, id=f"{e.id}-{shift}"))
        shift += span
    events = events[:total]
    return [events[i:i + 512] for i in range(0, len(events), 512)]


def measure(engine: Engine, batches: list[list[Event]], rounds: int) -> tuple[float, int]:
    """Best events/s over ``rounds`` passes (interference only slows a pass) and alerts per pass.

    The engine keeps its state between passes (first-seen destinations, sequence partials),
    as a long-running agent would."""
    best, alerts = 0.0, 0
    n = sum(len(b) for b in batches)
    for _ in range(rounds):
        t0 = time.perf_counter()
        alerts = 0
        for batch in batches:
            alerts += len(engine.process_batch(batch))
        best = max(best, n / (time.perf_counter() - t0))
    return best, alerts


def main(argv: list[str] | None = None) -> int:
    """Run every set, print the table and the verdicts; exit 0 (figures, not a test)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=300_000, help="events per measured pass (default 300000)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved passes per set; the best counts (default 5)")
    ap.add_argument("--json-out", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--kind", action="append", default=[], metavar="KIND",
                    help="replay only the recorded events of this kind (repeatable)")
    args = ap.parse_args(argv)
    if args.events < 1000 or args.rounds < 1:
        ap.error("--events must be at least 1000 and --rounds at least 1")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    base = load_stream()
    if args.kind:
        base = [e for e in base if e.kind in args.kind]
        if not base:
            ap.error(f"the recorded stream has no events of kind {', '.join(args.kind)}")
    batches = replay(base, args.events)
    results: dict[str, Any] = {"stream": str(STREAM.name), "kinds": args.kind or "all", "stream_events": len(base),
                               "events": args.events,
                               "rounds": args.rounds, "sets": {}}
    config = operator_config(base)
    names = ("25", "250", "2500", "pack")
    engines = {name: rule_set(name, config) for name in names}
    measure(engines["pack"][0], batches, 1)  # warm-up pass (caches, CPU clock), not reported
    best: dict[str, float] = dict.fromkeys(names, 0.0)
    alerts: dict[str, int] = {}
    for _ in range(args.rounds):  # rounds interleaved across sets, so drift hits all alike
        for name in names:
            rate, alerts[name] = measure(engines[name][0], batches, 1)
            best[name] = max(best[name], rate)
    for name in names:
        results["sets"][name] = {"rules": engines[name][1], "events_per_s": round(best[name]),
                                 "alerts_per_pass": alerts[name]}
    base_rate = results["sets"]["25"]["events_per_s"]
    print(f"{'set':>6} {'rules':>6} {'events/s':>12} {'cost vs 25':>11} {'alerts':>8}")
    for name, r in results["sets"].items():
        r["cost_vs_25"] = round(base_rate / r["events_per_s"], 3)
        print(f"{name:>6} {r['rules']:>6} {r['events_per_s']:>12,} {r['cost_vs_25']:>11} {r['alerts_per_pass']:>8}")
    scale_ok = results["sets"]["2500"]["cost_vs_25"] < 3.0
    pack_ok = results["sets"]["pack"]["events_per_s"] >= 300_000
    results["targets"] = {"2500_under_3x_of_25": scale_ok, "pack_at_least_300k_per_s": pack_ok}
    print(f"2,500 rules cost {results['sets']['2500']['cost_vs_25']}x the 25-rule run (target < 3x): "
          f"{'PASS' if scale_ok else 'FAIL'}")
    print(f"default pack: {results['sets']['pack']['events_per_s']:,} events/s (target >= 300,000): "
          f"{'PASS' if pack_ok else 'FAIL'}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
