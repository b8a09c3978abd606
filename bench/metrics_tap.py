"""The metrics tap's cost per event, beside the stages it rides along with.

``runwatch watch --metrics-listen`` adds :class:`runwatch.metrics.tap.MetricsTap` as the last
event and alert output. This replays the recorded mixed stream (``bench/data/mixed_stream.jsonl.gz``,
see ``bench/rules_engine.py``) in batches of 512 through, interleaved round by round:

  * ``empty``: an output whose ``write`` does nothing (the call itself: the floor);
  * ``tap``: the metrics tap;
  * ``rules``: the default rule pack (``Engine.process_batch``), for scale.

Prints the median ns per event of each over ``--rounds`` rounds and the tap's cost as a share
of the rule pack's. Figures, not a test: exit 0.

    .venv/bin/python bench/metrics_tap.py [--events 300000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rules_engine import load_stream, operator_config, replay, rule_set

from runwatch.events import Event
from runwatch.metrics.tap import MetricsTap


def _nothing(events: Sequence[Event]) -> None:
    """The floor: a write that does nothing."""


def _per_event_ns(write: Callable[[list[Event]], object], batches: list[list[Event]]) -> float:
    n = sum(len(b) for b in batches)
    t0 = time.perf_counter_ns()
    for batch in batches:
        write(batch)
    return (time.perf_counter_ns() - t0) / n


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table; exit 0."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=300_000, help="events per round (default 300000)")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds; the median counts (default 7)")
    args = ap.parse_args(argv)
    base = load_stream()
    batches = replay(base, args.events)
    engine, _ = rule_set("pack", operator_config(base))
    tap = MetricsTap()
    subjects: dict[str, Callable[[list[Event]], object]] = {
        "empty": _nothing, "tap": tap.write, "rules": engine.process_batch}
    times: dict[str, list[float]] = {name: [] for name in subjects}
    for _ in range(args.rounds):
        for name, write in subjects.items():
            times[name].append(_per_event_ns(write, batches))
    med = {name: statistics.median(v) for name, v in times.items()}
    n = sum(len(b) for b in batches)
    print(f"{n} events per round in batches of 512, {args.rounds} rounds, medians")
    print(f"{'output':<8} {'ns/event':>9} {'min':>8} {'max':>8}")
    for name, v in times.items():
        print(f"{name:<8} {med[name]:>9.1f} {min(v):>8.1f} {max(v):>8.1f}")
    tap_cost = med["tap"] - med["empty"]
    share = 100 * tap_cost / med["rules"]
    print(f"tap over the floor: {tap_cost:.1f} ns/event = {share:.2f} % of the rule pack's cost")
    counted = sum(tap.snapshot().events.values())
    print(f"tap counted {counted} events ({counted // n} rounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
