"""Added latency of permitted operations under kernel enforcement, against the same operations
without runwatch, in one run.

Usage:
    .venv/bin/python bench/enforce_latency.py [--ops N] [--rounds R] [--json-out FILE]

A long-lived runc container runs a Python probe that times, one by one (perf_counter_ns):

    open_plain      open+close of an unprotected file (/tmp/plain)
    open_protected  open+close of a protected secret (/run/secrets/token) by its listed reader
    connect_udp     UDP connect() to an allowed destination (runs the cgroup/connect4 program)
    connect_tcp     TCP connect()+close to an allowed local listener

Conditions, interleaved per round: ``bare`` (no enforcement on the container) and
``enforced`` (one enforce-mode policy: egress allowlist, the secret protected with the probe's
Python as reader, an immutable path, an exec deny list, i.e. fanotify inode and mount marks
plus the four cgroup programs attached). p50/p99 are over every op of every round of a
condition; overhead = enforced - bare. Prints a table, then ``--- json ---`` and one object.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from runwatch.containers.rootfs import build_rootfs  # noqa: E402
from runwatch.containers.runc import RuncContainer  # noqa: E402
from runwatch.policy import load_policy_texts  # noqa: E402
from runwatch.policy.enforce import Enforcers  # noqa: E402

PROBE = r'''
import json, os, socket, sys, time
n, port = int(sys.argv[1]), int(sys.argv[2])
ns = time.perf_counter_ns
out = {}
def timed(name, fn):
    for _ in range(50):
        fn()
    xs = []
    for _ in range(n):
        t = ns(); fn(); xs.append(ns() - t)
    out[name] = xs
def op_open(path):
    def f():
        os.close(os.open(path, os.O_RDONLY))
    return f
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(("127.0.0.1", port)); s.close()
def tcp():
    s = socket.socket(); s.connect(("127.0.0.1", port)); s.close()
timed("open_plain", op_open("/tmp/plain"))
timed("open_protected", op_open("/run/secrets/token"))
timed("connect_udp", udp)
timed("connect_tcp", tcp)
print(json.dumps(out))
'''

OPS = ("open_plain", "open_protected", "connect_udp", "connect_tcp")


def pct(xs: list[int], q: float) -> float:
    """The q-quantile (nearest rank) in microseconds."""
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] / 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", type=int, default=5000, help="operations per op kind per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4096)
    port = srv.getsockname()[1]

    def drain() -> None:
        while True:
            try:
                srv.accept()[0].close()
            except OSError:
                return

    threading.Thread(target=drain, daemon=True).start()
    rootfs = build_rootfs()
    py = str(rootfs.python)
    policy = next(iter(load_policy_texts([(
        "id: bench\nselector: {container: [bench]}\nmode: enforce\n"
        "egress:\n  allow: ['127.0.0.0/8', '10.0.0.0/8:443']\n"
        f"files:\n  protect: [{{path: /run/secrets/token, readers: ['{py}']}}]\n  immutable: [/etc/passwd]\n"
        "exec:\n  deny: [/usr/bin/env, /usr/bin/nc*]\n", "bench.yaml")])))
    samples: dict[str, dict[str, list[int]]] = {c: {op: [] for op in OPS} for c in ("bare", "enforced")}
    decisions: list[object] = []
    with Enforcers(on_decision=decisions.append) as enf, \
            RuncContainer(rootfs, name="bench", secrets={"token": b"bench-secret"}) as c:
        c.start()
        c.exec(["/bin/busybox", "sh", "-c", "echo x > /tmp/plain"])
        for rnd in range(args.rounds):
            order = ("bare", "enforced") if rnd % 2 == 0 else ("enforced", "bare")
            for cond in order:
                if cond == "enforced":
                    notices = enf.apply(c, policy)
                    assert not notices, notices
                else:
                    enf.remove(c.id)
                proc = c.exec([py, "-c", PROBE, str(args.ops), str(port)], timeout=600)
                if proc.returncode != 0:
                    raise SystemExit(f"probe failed: {proc.stderr.decode(errors='replace')[-400:]}")
                for op, xs in json.loads(proc.stdout).items():
                    samples[cond][op].extend(xs)
        enf.remove(c.id)
        stats = enf.stats()
    srv.close()
    result: dict[str, Any] = {"ops_per_round": args.ops, "rounds": args.rounds, "decisions": len(decisions),
                              "fanotify_answered": stats["fanotify_answered"], "results": {}}
    print(f"{'operation':16} {'bare p50':>9} {'bare p99':>9} {'enf p50':>9} {'enf p99':>9} "
          f"{'+p50 us':>8} {'+p99 us':>8}")
    for op in OPS:
        b, e = samples["bare"][op], samples["enforced"][op]
        row = {"bare_p50_us": pct(b, 0.5), "bare_p99_us": pct(b, 0.99), "enforced_p50_us": pct(e, 0.5),
               "enforced_p99_us": pct(e, 0.99)}
        row["overhead_p50_us"] = round(row["enforced_p50_us"] - row["bare_p50_us"], 2)
        row["overhead_p99_us"] = round(row["enforced_p99_us"] - row["bare_p99_us"], 2)
        result["results"][op] = row
        print(f"{op:16} {row['bare_p50_us']:9.2f} {row['bare_p99_us']:9.2f} {row['enforced_p50_us']:9.2f} "
              f"{row['enforced_p99_us']:9.2f} {row['overhead_p50_us']:8.2f} {row['overhead_p99_us']:8.2f}")
    print("--- json ---")
    print(json.dumps(result))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
