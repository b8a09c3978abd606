"""Fleet mode on NATS JetStream: worker throughput, node -> alert latency, publishing cost on the node.

Usage: python bench/fleet.py [--events N] [--workers 1,2,4] [--pairs P] [--node-events M]

One run, three parts, each against its own fresh nats-server (JetStream, file store in a
temporary directory, loopback):

1. throughput: W ``runwatch worker`` processes (default and fleet rule packs, each its own SQLite
   sink) share the partitions; three in-process node publishers then put N events each on the
   stream and the clock runs until every event is durable in a sink. Printed: events/s in all
   and per worker, for each W.
2. latency: two workers; node a publishes a secret read of workload i, node b 0.2 s later its
   egress (the cross-node sequence): the time from b's publish (the egress event's ``time``) to
   the alert line in a worker's ``--alerts-out``, which a worker writes once the alert is durable
   in its sink. Printed: p50 and p99 over P alerts.
3. node cost: the project's pipeline over M replayed events with the default rules into the
   SQLite store (a node's usual work), then the same with the ``nats`` output added (until every
   message is acked): pipeline-thread microseconds per event (what the node's detection loop
   pays) and process CPU per event (the publisher thread included), as ratios nats/local.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from runwatch.pipeline import Pipeline
from runwatch.sensors.replay import ReplaySource
from runwatch.testing.fleet import egress, node_events, secret_read, workload
from runwatch.testing.natsserver import NatsServer
from runwatch.transport.nats import NatsOutput

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))


def _workers(url: str, tmp: Path, n: int, *extra: str) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(n):
        argv = [RUNWATCH, "worker", "--nats", url, "--db", str(tmp / f"w{i}.db"), "--worker-id", f"w{i}",
                "--lease-s", "2", "--stats-json", str(tmp / f"w{i}.json"), "-q", *extra]
        procs.append(subprocess.Popen(argv, stderr=subprocess.DEVNULL))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        held = []
        for i in range(n):
            try:
                held.append(set(json.loads((tmp / f"w{i}.json").read_text())["partitions"]))
            except (OSError, ValueError, KeyError):
                held.append(set())
        if all(held) and sum(map(len, held)) == 16:
            return procs
        time.sleep(0.1)
    raise SystemExit("workers did not share the partitions within 60 s")


def _stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=30)


def _stored(tmp: Path, n: int) -> int:
    total = 0
    for i in range(n):
        try:
            with sqlite3.connect(f"file:{tmp / f'w{i}.db'}?mode=ro", uri=True, timeout=5) as conn:
                total += conn.execute("SELECT count(*) FROM events").fetchone()[0]
        except sqlite3.OperationalError:
            pass
    return total


def _publishers(url: str, nodes: Sequence[str]) -> dict[str, NatsOutput]:
    outs = {n: NatsOutput(url, cluster="bench", node=n, queue_max=10_000_000) for n in nodes}
    for o in outs.values():
        o.open()
    return outs


def throughput(workers: int, per_node: int) -> tuple[float, float]:
    """(events/s in all, seconds) for ``workers`` workers over 3 * per_node events."""
    with tempfile.TemporaryDirectory() as d, NatsServer(Path(d) / "nats") as srv:
        tmp = Path(d)
        procs = _workers(srv.url, tmp, workers)
        try:
            outs = _publishers(srv.url, ("a", "b", "c"))
            total = 3 * per_node
            batches = {n: node_events(n, per_node) for n in outs}
            t0 = time.monotonic()
            for node, out in outs.items():
                out.write(batches[node])
            while _stored(tmp, workers) < total:
                if time.monotonic() - t0 > 600:
                    raise SystemExit("throughput run did not finish in 600 s")
                time.sleep(0.05)
            elapsed = time.monotonic() - t0
            for out in outs.values():
                out.close()
        finally:
            _stop(procs)
    return total / elapsed, elapsed


class _Tail(threading.Thread):
    """Reads the alerts file as it grows and notes when each cross-node alert's line appeared."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.arrived: dict[str, int] = {}  # egress event id -> when its alert line was read (ns)
        self.stop = threading.Event()

    def run(self) -> None:
        pos, buf = 0, b""
        while not self.stop.is_set():
            if self.path.exists():
                with open(self.path, "rb") as fh:
                    fh.seek(pos)
                    chunk = fh.read()
                now = time.time_ns()
                pos += len(chunk)
                *lines, buf = (buf + chunk).split(b"\n")
                for line in lines:
                    a = json.loads(line)
                    if a["rule"] == "fleet_secret_read_then_egress_elsewhere":
                        self.arrived[a["evidence"][-1]] = now
            time.sleep(0.001)


def latency(pairs: int) -> list[float]:
    """Seconds from the egress publish to the durable alert, per cross-node alert."""
    with tempfile.TemporaryDirectory() as d, NatsServer(Path(d) / "nats") as srv:
        tmp = Path(d)
        procs = _workers(srv.url, tmp, 2, "--alerts-out", str(tmp / "alerts.jsonl"))
        tail = _Tail(tmp / "alerts.jsonl")
        tail.start()
        try:
            outs = _publishers(srv.url, ("a", "b"))
            sent: dict[str, int] = {}  # egress event id -> its time (= publish time)
            for i in range(pairs + 20):
                if i < pairs:
                    outs["a"].write([secret_read("a", i, workload(f"lat{i}", "any"), time.time_ns())])
                if i >= 20:  # egress of the workload read 20 steps (0.2 s) ago
                    e = egress("b", i, workload(f"lat{i - 20}", "any"), time.time_ns())
                    sent[e.id] = e.time
                    outs["b"].write([e])
                time.sleep(0.01)
            deadline = time.monotonic() + 60
            while len(tail.arrived) < len(sent) and time.monotonic() < deadline:
                time.sleep(0.05)
            for out in outs.values():
                out.close()
        finally:
            tail.stop.set()
            _stop(procs)
    if len(tail.arrived) != len(sent):
        raise SystemExit(f"latency: {len(tail.arrived)} of {len(sent)} alerts arrived")
    return [(tail.arrived[k] - t) / 1e9 for k, t in sent.items()]


def node_cost(n: int) -> dict[str, float]:
    """Pipeline-thread and process CPU microseconds per event of a node's usual work (the default
    rules and the SQLite store), then of the same with the ``nats`` output added."""
    from runwatch.outputs.store import StoreOutput
    from runwatch.rules import DetectionStage, Engine, load_rules
    from runwatch.rules.default import default_rule_paths

    events = node_events("n", n)
    rules = load_rules([str(x) for x in default_rule_paths()])
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d, NatsServer(Path(d) / "nats") as srv:
        for name in ("local", "nats"):
            store = StoreOutput(str(Path(d) / f"{name}.db"))
            sinks: list[StoreOutput | NatsOutput] = [store]
            pub = NatsOutput(srv.url, cluster="bench", node="n", queue_max=10_000_000) if name == "nats" else None
            if pub is not None:
                sinks.append(pub)
            for s in sinks:
                s.open()
            if pub is not None:
                pub.drain(10)
            src = ReplaySource(events=events, batch=256)
            src.start()
            stage = DetectionStage(Engine(rules), lambda alerts: None)
            c0, t0, w0 = time.process_time(), time.thread_time(), time.monotonic()
            Pipeline(src, [stage], sinks).run()
            store.flush()
            thread_s = time.thread_time() - t0
            if pub is not None and not pub.drain(300):
                raise SystemExit("the publisher did not drain in 300 s")
            cpu_s, wall = time.process_time() - c0, time.monotonic() - w0
            for s in sinks:
                s.close()
            out[f"{name}_thread_us"] = thread_s / n * 1e6
            out[f"{name}_cpu_us"] = cpu_s / n * 1e6
            out[f"{name}_wall_s"] = wall
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_001, help="events per node (3 nodes) in the throughput part")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--pairs", type=int, default=301, help="cross-node alerts in the latency part")
    ap.add_argument("--node-events", type=int, default=50_001)
    args = ap.parse_args()
    print(f"host: {os.cpu_count()} CPUs; nats-server {subprocess.run(['nats-server', '--version'], capture_output=True, text=True).stdout.strip()}")  # noqa: E501
    base = None
    print(f"{'workers':>7} {'events':>7} {'seconds':>8} {'events/s':>9} {'per worker':>10} {'vs 1':>6}")
    for w in (int(x) for x in args.workers.split(",")):
        rate, secs = throughput(w, args.events)
        base = base or rate
        print(f"{w:>7} {3 * args.events:>7} {secs:>8.2f} {rate:>9.0f} {rate / w:>10.0f} {rate / base:>6.2f}")
    lat = sorted(latency(args.pairs))
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(f"node -> alert (cross-node sequence, 2 workers, {len(lat)} alerts): p50 {p50 * 1e3:.1f} ms, "
          f"p99 {p99 * 1e3:.1f} ms, max {lat[-1] * 1e3:.1f} ms")
    c = node_cost(args.node_events)
    print(f"node cost over {args.node_events} events (default rules + SQLite store = local): pipeline thread "
          f"{c['local_thread_us']:.1f} us/event local, {c['nats_thread_us']:.1f} with nats, ratio "
          f"{c['nats_thread_us'] / c['local_thread_us']:.2f}; process CPU {c['local_cpu_us']:.1f} vs "
          f"{c['nats_cpu_us']:.1f} us/event, ratio {c['nats_cpu_us'] / c['local_cpu_us']:.2f}; "
          f"all acked after {c['nats_wall_s']:.2f} s ({args.node_events / c['nats_wall_s']:.0f} events/s)")


if __name__ == "__main__":
    main()
