"""How many rules each event of the recorded mixed stream meets through the engine's index.

The count the index decides (every candidate's full condition is then evaluated): per kind,
the mean number of candidate rules per event of the default pack with the operator's approved
tools, over ``bench/data/mixed_stream.jsonl.gz``. Deterministic, so a change to the index is
compared by running this before and after.

    .venv/bin/python bench/rule_candidates.py
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rules_engine import load_stream, operator_config

from runwatch.rules import Engine, load_texts
from runwatch.rules.default import default_rule_paths
from runwatch.rules.fields import EvalCtx


def main() -> int:
    """Print candidates per event by kind, and over all events."""
    base = load_stream()
    texts = [(p.read_text(), str(p)) for p in default_rule_paths()] + [(operator_config(base), "operator.yaml")]
    eng = Engine(load_texts(texts))
    ctx = EvalCtx()
    met: collections.Counter[str] = collections.Counter()
    seen: collections.Counter[str] = collections.Counter()
    for e in base:
        met[e.kind] += len(eng.candidates_of(e, ctx))
        seen[e.kind] += 1
    print(f"{'kind':<16} {'events':>7} {'rules met per event':>20}")
    for kind, n in seen.most_common():
        print(f"{kind:<16} {n:>7} {met[kind] / n:>20.2f}")
    print(f"{'all':<16} {sum(seen.values()):>7} {sum(met.values()) / sum(seen.values()):>20.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
