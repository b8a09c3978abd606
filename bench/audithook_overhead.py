"""Run-time cost of the audit-hook sensor on an agent-like Python workload, as ratios to a bare run.

Usage:
    .venv/bin/python bench/audithook_overhead.py [--iterations N] [--rounds R] [--json-out FILE]

The workload (run in a fresh interpreter per measurement, since audit hooks cannot be removed):
N iterations of JSON work (encode and decode a ~2 KB tool-result-like document three times),
an open+read+close of an unwatched file, and every 100 iterations a subprocess
(``/usr/bin/true``) run inside ``sdk.tool_call``; then micro-loops of 20,000 unwatched opens and
200,000 ``len()`` calls (no audit event at all) to show per-operation costs.

Conditions:
    bare          ``python workload.py`` (the SDK is imported but nothing is installed)
    hook          ``python -m runwatch.sdk.run workload.py`` with no collector listening
    hook_collector  the same with an SdkCollector draining in a separate process

Rounds are interleaved (every condition once per round, order rotated); each figure is the
median over rounds. ``cpu`` is the workload process's own CPU time in the loop (children
excluded), steadier than wall time on a shared machine. The loop time is measured inside
the workload (interpreter start-up is reported separately as ``startup_ms``: wall time of
the whole process minus the loop).
Prints a table, then ``--- json ---`` and one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

WORKLOAD = r'''
import json, os, subprocess, sys, time
from runwatch import sdk

n = int(sys.argv[1])
path = sys.argv[2]
with open(path, "w") as fh:
    fh.write("x" * 512)
doc = {"tool": "search", "results": [{"title": f"result {i}", "url": f"https://example.test/{i}",
                                      "score": i / 7, "tags": ["a", "b", "c"]} for i in range(20)]}
t0, c0 = time.perf_counter_ns(), time.process_time_ns()
for i in range(n):
    for _ in range(3):
        doc = json.loads(json.dumps(doc))
    with open(path) as fh:
        fh.read()
    if i % 100 == 0:
        with sdk.tool_call("run_shell", call_id=f"c-{i}"):
            subprocess.run(["/usr/bin/true"], check=True)
loop, cpu = time.perf_counter_ns() - t0, time.process_time_ns() - c0
t0 = time.perf_counter_ns()
for _ in range(20000):
    os.close(os.open(path, os.O_RDONLY))
opens = time.perf_counter_ns() - t0
t0 = time.perf_counter_ns()
for _ in range(200000):
    len(path)
plain = time.perf_counter_ns() - t0
print(json.dumps({"loop_ns": loop, "cpu_ns": cpu, "open_ns": opens / 20000, "plain_ns": plain / 200000,
                  "stats": sdk.stats()}))
'''

COLLECTOR = """
import signal, sys
from runwatch.sensors.inproc.collector import SdkCollector
signal.signal(signal.SIGTERM, signal.default_int_handler)
col = SdkCollector(sys.argv[1])
col.start()
print("ready", flush=True)
n = 0
try:
    while True:
        n += len(col.poll(0.05) or [])
except KeyboardInterrupt:
    pass
finally:
    col.stop()
"""


def run_once(condition: str, workload: Path, data: Path, sock: Path, iterations: int) -> dict[str, Any]:
    """One measurement in a fresh interpreter; returns the workload's JSON plus wall time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWATCH_")}
    env["RUNWATCH_SOCKET"] = str(sock)
    env["PYTHONPATH"] = str(REPO / "src")
    argv = [sys.executable]
    if condition != "bare":
        argv += ["-m", "runwatch.sdk.run"]
    argv += [str(workload), str(iterations), str(data)]
    t0 = time.perf_counter_ns()
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter_ns() - t0
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall_ns"] = wall
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    conditions = ["bare", "hook", "hook_collector"]
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in conditions}
    with tempfile.TemporaryDirectory(prefix="rw-bench-") as tmp:
        workload = Path(tmp) / "workload.py"
        workload.write_text(WORKLOAD)
        data = Path(tmp) / "data.txt"
        live_sock, dead_sock = Path(tmp) / "sdk.sock", Path(tmp) / "nobody.sock"
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        collector = subprocess.Popen([sys.executable, "-c", COLLECTOR, str(live_sock)], env=env,
                                     stdout=subprocess.PIPE, text=True)
        try:
            assert collector.stdout is not None and collector.stdout.readline().strip() == "ready"
            for r in range(args.rounds):
                order = conditions[r % 3:] + conditions[:r % 3]
                for cond in order:
                    sock = live_sock if cond == "hook_collector" else dead_sock
                    results[cond].append(run_once(cond, workload, data, sock, args.iterations))
        finally:
            collector.terminate()
            collector.wait(timeout=10)
    summary: dict[str, Any] = {"iterations": args.iterations, "rounds": args.rounds,
                               "loadavg": os.getloadavg(), "cpus": os.cpu_count(), "conditions": {}}
    bare_loop = statistics.median(r["loop_ns"] for r in results["bare"])
    bare_open = statistics.median(r["open_ns"] for r in results["bare"])
    bare_cpu = statistics.median(r["cpu_ns"] for r in results["bare"])
    print(f"{'condition':<16}{'loop ms':>10}{'ratio':>9}{'spread':>9}{'cpu ms':>9}{'cpu ratio':>10}"
          f"{'startup ms':>12}{'open ns':>10}"
          f"{'len() ns':>10}{'sent':>7}{'dropped':>9}")
    for cond in conditions:
        rows = results[cond]
        loops = [r["loop_ns"] for r in rows]
        loop = statistics.median(loops)
        startup = statistics.median(r["wall_ns"] - r["loop_ns"] for r in rows) / 1e6
        open_ns = statistics.median(r["open_ns"] for r in rows)
        plain_ns = statistics.median(r["plain_ns"] for r in rows)
        spread = (max(loops) - min(loops)) / loop
        cpu = statistics.median(r["cpu_ns"] for r in rows)
        stats = rows[-1]["stats"]
        summary["conditions"][cond] = {
            "loop_ms": loop / 1e6, "ratio": loop / bare_loop, "spread": spread, "cpu_ms": cpu / 1e6,
            "cpu_ratio": cpu / bare_cpu, "startup_ms": startup,
            "open_ns": open_ns, "open_ratio": open_ns / bare_open, "len_ns": plain_ns,
            "sent": stats.get("sent", 0), "dropped": stats.get("dropped", 0),
        }
        print(f"{cond:<16}{loop / 1e6:>10.1f}{loop / bare_loop:>9.3f}{spread:>9.1%}{cpu / 1e6:>9.1f}"
              f"{cpu / bare_cpu:>10.3f}{startup:>12.1f}"
              f"{open_ns:>10.0f}{plain_ns:>10.1f}{stats.get('sent', 0):>7}{stats.get('dropped', 0):>9}")
    print("--- json ---")
    print(json.dumps(summary))
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
