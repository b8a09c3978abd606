"""The consumer's pipeline after decode, stage by stage: what one core sustains.

``runwatch watch``'s default stages over the recorded mixed stream
(``bench/data/mixed_stream.jsonl.gz``, see ``bench/rules_engine.py``), in batches of 512:
enrichment (process tree, containers, workload), the tool-call join (SDK collector on,
OTLP off), corroboration, detection (the default rule pack and the throttle) and the
SQLite store (its writer thread included: the figure is the time until every event is
committed). The kernel delivers a non-exec event without its process context, so the
replay strips ``exe``, ``cmdline``, ``argv``, ``ancestry`` and ``pcmdline`` from every event
but execs and lets the process tree fill them, as it does live.

Prints, for ``--rounds`` rounds (median), the microseconds per event of each stage and the
events/s of the whole. Not measured here: the ring and decode (``bench/drain.py``). Figures,
not a test: exit 0.

    .venv/bin/python bench/pipeline_stages.py [--events 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rules_engine import load_stream, operator_config, replay, rule_set

from runwatch.alerts.model import Alert
from runwatch.alerts.throttle import Throttle
from runwatch.enrich.aicontext import ToolCallJoin
from runwatch.enrich.corroborate import Corroboration
from runwatch.enrich.proctree import ProcessTree
from runwatch.enrich.stage import Enrichment
from runwatch.events import Event
from runwatch.rules import DetectionStage
from runwatch.store.sqlite import SqliteStore

_CONTEXT = ("exe", "cmdline", "argv", "ancestry", "pcmdline")


def _as_live(batches: list[list[Event]]) -> list[list[Event]]:
    """Copies of the events as the kernel hands them over (process context only on execs)."""
    enc, dec = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder(Event)
    out = []
    for batch in batches:
        copies = [dec.decode(enc.encode(e)) for e in batch]
        for e in copies:
            if e.kind != "process.exec" and e.source != "sdk":
                e.exe, e.cmdline, e.argv, e.ancestry, e.pcmdline = "", "", None, [], None
        out.append(copies)
    return out


def one_round(base: list[Event], total: int, db: str) -> dict[str, float]:
    batches = _as_live(replay(base, total))
    n = sum(len(b) for b in batches)
    alerts: list[Alert] = []
    engine, _ = rule_set("pack", operator_config(base))
    stages: list[tuple[str, Callable[[list[Event]], list[Event]]]] = [
        ("enrich", Enrichment(tree=ProcessTree(proc_fallback=False), seed=False)),
        ("join", ToolCallJoin(hold_ms=200, hold_unknown=False, clock=lambda: 1 << 62)),
        ("corroborate", Corroboration(hold_ms=1700, clock=lambda: 1 << 62)),
        ("detect", DetectionStage(engine, alerts.extend, throttle=Throttle(60.0))),
    ]
    spent = dict.fromkeys([name for name, _ in stages] + ["store"], 0.0)
    store = SqliteStore(db)
    t0 = time.perf_counter()
    for batch in batches:
        for name, stage in stages:
            s = time.perf_counter()
            batch = stage(batch)
            spent[name] += time.perf_counter() - s
        s = time.perf_counter()
        store.write(batch)
        spent["store"] += time.perf_counter() - s
    s = time.perf_counter()
    store.flush(timeout=120)
    store.close()
    spent["store"] += time.perf_counter() - s
    wall = time.perf_counter() - t0
    out = {name: secs / n * 1e6 for name, secs in spent.items()}
    out["events_per_s"] = n / wall
    out["alerts"] = float(len(alerts))
    return out


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table; exit 0."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000, help="events per round (default 200000)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; the median counts (default 3)")
    args = ap.parse_args(argv)
    base = load_stream()
    rows = []
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="rw-stages-") as tmp:
            rows.append(one_round(base, args.events, f"{tmp}/s.db"))
        print(f"round {i + 1}/{args.rounds}", file=sys.stderr)
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(f"{'stage':<12} {'us/event':>9}")
    for name in ("enrich", "join", "corroborate", "detect", "store"):
        print(f"{name:<12} {med[name]:>9.2f}")
    print(f"whole: {med['events_per_s']:,.0f} events/s ({args.events:,} events per round, median of "
          f"{args.rounds}); alerts per round {med['alerts']:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
