"""Tool-call decision latency: ``runwatch.sdk.decide`` over the unix socket vs baselines, same run.

runwatch's decide endpoint runs in its own process (as it does in production: the agent and
runwatch never share an interpreter), serving one enforce-mode policy that selects this
benchmark's interpreter. Measured in this process, each op timed alone with
``perf_counter_ns``:

* ``noop``           -- calling an empty function (the floor);
* ``tool_call_off``  -- ``with sdk.tool_call(...)`` with request-time policy off;
* ``health``         -- one HTTP round trip on the decide socket (transport only);
* ``decide_allow``   -- ``sdk.decide`` of an allowed tool (policy selected, event recorded);
* ``decide_deny``    -- ``sdk.decide`` of a denied tool;
* ``tool_call_on``   -- ``with sdk.tool_call(...)`` of an allowed tool, policy on.

Prints a table and, after ``--- json ---``, the figures. Target: decision p99 < 1 ms.
Usage: ``python bench/decide_latency.py [--n 20000] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from runwatch import sdk  # noqa: E402
from runwatch.sdk import policy as sdk_policy  # noqa: E402

SERVER = """
import sys, time
from runwatch.policy import load_policy_texts
from runwatch.policy.decide import Decider
from runwatch.policy.server import PolicyServer
from runwatch.policy.source import DecisionBus
text, sock = sys.argv[1], sys.argv[2]
bus = DecisionBus(capacity=1 << 20)
decider = Decider(load_policy_texts([(text, "bench.yaml")]), emit=bus.put)
with PolicyServer(decider, sock, None):
    print("ready", flush=True)
    while True:
        if not sys.stdin.readline():
            break
        bus.drain()  # keep memory flat between phases
print(bus.stats()["recorded"], flush=True)
"""


def _policy(exe: str) -> str:
    return (f"- id: bench\n  selector: {{process: {json.dumps(exe)}}}\n  mode: enforce\n"
            "  tools: {allow: [search, read_*], deny: [run_shell]}\n")


def _measure(fn: Callable[[], object], n: int, warm: int) -> dict[str, float]:
    for _ in range(warm):
        fn()
    samples = [0] * n
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        fn()
        samples[i] = clock() - t0
    samples.sort()
    return {
        "n": n,
        "p50_us": samples[n // 2] / 1000,
        "p99_us": samples[min(n - 1, (n * 99) // 100)] / 1000,
        "max_us": samples[-1] / 1000,
        "mean_us": sum(samples) / n / 1000,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="timed calls per measurement")
    ap.add_argument("--quick", action="store_true", help="2000 calls per measurement")
    args = ap.parse_args()
    n = 2000 if args.quick else args.n
    if n < 100:
        print("decide_latency: --n must be at least 100", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="rw-bench-decide-")
    sock = os.path.join(tmp, "policy.sock")
    exe = os.readlink("/proc/self/exe")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, _policy(exe), sock], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    results: dict[str, dict[str, float]] = {}
    try:
        assert proc.stdout is not None and proc.stdin is not None
        if proc.stdout.readline().strip() != "ready":
            print("decide_latency: the decide server did not start", file=sys.stderr)
            return 1

        def noop() -> None:
            return None

        def tool_call() -> None:
            with sdk.tool_call("search"):
                pass

        sdk_policy.configure(None)
        results["noop"] = _measure(noop, n, n // 10)
        results["tool_call_off"] = _measure(tool_call, n, n // 10)
        sdk_policy.configure(sock)
        client = sdk_policy.PolicyClient(sock)
        results["health"] = _measure(lambda: client.request("GET", "/v1/health"), n, n // 10)
        ok = sdk.decide("search")
        no = sdk.decide("run_shell")
        if (ok.verdict, no.verdict) != ("allow", "deny"):
            print(f"decide_latency: unexpected decisions {ok!r} {no!r}", file=sys.stderr)
            return 1
        for name, fn in (("decide_allow", lambda: sdk.decide("search")),
                         ("decide_deny", lambda: sdk.decide("run_shell")),
                         ("tool_call_on", tool_call)):
            results[name] = _measure(fn, n, n // 10)
            proc.stdin.write("\n")
            proc.stdin.flush()
    finally:
        sdk_policy.configure(None)
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'op':<15}{'p50 us':>10}{'p99 us':>10}{'mean us':>10}{'max us':>10}")
    for name, r in results.items():
        print(f"{name:<15}{r['p50_us']:>10.1f}{r['p99_us']:>10.1f}{r['mean_us']:>10.1f}{r['max_us']:>10.1f}")
    p99 = results["decide_allow"]["p99_us"]
    verdict = "met" if p99 < 1000 else "missed"
    print(f"target decision p99 < 1000 us: {verdict} ({p99:.1f} us)")
    print("--- json ---")
    print(json.dumps({"params": {"n": n, "python": sys.version.split()[0], "cpus": os.cpu_count()},
                      "results": results, "target": {"decision_p99_us": 1000, "met": p99 < 1000}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
