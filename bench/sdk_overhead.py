"""Per-tool-call cost of the agent SDK, as ratios to an uninstrumented loop in the same run.

Usage:
    .venv/bin/python bench/sdk_overhead.py [--calls N] [--rounds R] [--work-us W] [--json-out FILE]

Conditions, each a loop of N iterations doing the same ``work()`` (a CPU loop of about W us):
    bare          no instrumentation
    no_collector  ``with sdk.tool_call(...)`` with nothing listening on the socket
    collector     the same with an SdkCollector draining in a separate process
    collector_args  as collector, with ``args=`` (an HMAC-SHA256 digest per call)

Rounds are interleaved (every condition once per round, order rotated) and each figure is
the best round. Reported per condition: ns per iteration, ns added per tool call over bare,
the ratio to bare, and the SDK's delivery counters (sent / dropped) for the last round.
The collector runs on the same machine, so on a small or busy machine its decoding
competes with the agent for CPU (the load average is in the JSON).
Prints a table, then ``--- json ---`` and one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from runwatch import sdk  # noqa: E402
from runwatch.sdk.transport import Transport  # noqa: E402

COLLECTOR = """
import sys, time
from runwatch.sensors.inproc.collector import SdkCollector
col = SdkCollector(sys.argv[1])
col.start()
print("ready", flush=True)
try:
    while True:
        col.poll(0.05)
except KeyboardInterrupt:
    pass
finally:
    col.stop()
"""


def calibrate(work_us: float) -> int:
    """Loop count that takes about ``work_us`` microseconds."""
    n = 1000
    while True:
        t = time.perf_counter_ns()
        spin(n)
        dt = time.perf_counter_ns() - t
        if dt > 2_000_000:
            return max(1, int(n * work_us * 1000 / dt))
        n *= 2


def spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def loop(kind: str, calls: int, spins: int) -> int:
    """Time ``calls`` iterations under ``kind``; returns elapsed ns."""
    t = time.perf_counter_ns()
    if kind == "bare":
        for _ in range(calls):
            spin(spins)
    elif kind == "collector_args":
        for i in range(calls):
            with sdk.tool_call("bench", call_id="c", args={"i": i, "cmd": "ls -l"}):
                spin(spins)
    else:
        for _ in range(calls):
            with sdk.tool_call("bench", call_id="c"):
                spin(spins)
    return time.perf_counter_ns() - t


def with_transport(path: str, fn: Callable[[], int]) -> tuple[int, dict[str, int]]:
    old = sdk.set_transport(Transport(path, capacity=1 << 16))
    try:
        elapsed = fn()
        sdk.flush(5.0)
        return elapsed, sdk.stats()
    finally:
        t = sdk.set_transport(old)
        if t is not None:
            t.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--work-us", type=float, default=20.0, help="CPU work per iteration (us)")
    ap.add_argument("--json-out")
    opts = ap.parse_args()
    spins = calibrate(opts.work_us)
    tmp = Path(tempfile.mkdtemp(prefix="rw-sdk-bench-"))
    live, absent = str(tmp / "sdk.sock"), str(tmp / "absent.sock")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", COLLECTOR, live], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        kinds = ["bare", "no_collector", "collector", "collector_args"]
        best: dict[str, int] = {}
        last_stats: dict[str, dict[str, int]] = {}
        for r in range(opts.rounds):
            order = kinds[r % len(kinds):] + kinds[: r % len(kinds)]
            for kind in order:
                if kind == "bare":
                    elapsed, stats = loop(kind, opts.calls, spins), {}
                else:
                    path = absent if kind == "no_collector" else live
                    elapsed, stats = with_transport(path, lambda k=kind: loop(k, opts.calls, spins))  # type: ignore[misc]
                best[kind] = min(best.get(kind, elapsed), elapsed)
                last_stats[kind] = stats
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()
    bare_ns = best["bare"] / opts.calls
    result: dict[str, Any] = {"calls": opts.calls, "rounds": opts.rounds, "work_us": opts.work_us,
                              "python": sys.version.split()[0], "loadavg": os.getloadavg()[0], "conditions": {}}
    print(f"{'condition':<16}{'ns/iter':>10}{'added ns/call':>15}{'ratio':>8}{'sent':>9}{'dropped':>9}")
    for kind in kinds:
        per = best[kind] / opts.calls
        st = last_stats.get(kind, {})
        row = {"ns_per_iter": round(per), "added_ns_per_call": round(per - bare_ns), "ratio": round(per / bare_ns, 4),
               "sent": st.get("sent", 0), "dropped": st.get("dropped", 0)}
        result["conditions"][kind] = row
        print(f"{kind:<16}{row['ns_per_iter']:>10}{row['added_ns_per_call']:>15}{row['ratio']:>8.3f}"
              f"{row['sent']:>9}{row['dropped']:>9}")
    print("--- json ---")
    print(json.dumps(result))
    if opts.json_out:
        Path(opts.json_out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
