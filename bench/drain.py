"""Consumer-side measurements with the Python API (KernelSource + SqliteStore).

Two entry points, each run as its own process so its CPU pinning is its own:

``drain.py burst --n N --open-loop PATH``
    The drain benchmark. The consumer (this process, every thread pinned to CPU 0) loads
    the sensor host-wide with a fresh temporary directory added as a watched prefix; the
    load (``open_loop N FILE`` pinned to CPU 1) opens a file in it N times, so each open is
    a ``file.open`` event. Two phases, one JSON object on stdout:

    * ``live``: load and consumer run at once. Events/s = events committed to SQLite /
      (time of the final commit - time the load started). Drops are the sensor's
      ring-buffer drops during the phase.
    * ``capacity``: the load runs to completion while the consumer waits, then the
      consumer drains the full ring into SQLite. Events/s = events committed / drain time.
      This is the consumer's own ceiling, independent of the load's speed.
    * ``decode_only``: as ``capacity`` but the batches are discarded instead of stored,
      to show how the time splits between ring+decode and SQLite.

    Each phase runs ``--repeat`` times; a phase reports its fastest repeat (on a shared
    machine interference only slows it down), the drops of all repeats added up, and
    every repeat's events/s under ``runs``.

``drain.py agent --db PATH --stats-json FILE``
    A stand-in for ``runwatch watch --db PATH --stats-json FILE`` when the CLI is not
    installed: sensor host-wide into SQLite until SIGINT/SIGTERM, then it drains, flushes
    and writes ``{"events": .., "drops": .., ...}`` to FILE.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from runwatch.sensors.kernel.source import KernelSource
from runwatch.sensors.kernel.watchlist import default_watches
from runwatch.store.sqlite import SqliteStore

RING_BYTES = 1 << 28  # 256 MiB: holds ~400k file.open records (640 B each) for the capacity phase
POLL_S = 0.01  # consumer poll timeout (s); the kernel wakes it early at wakeup_bytes


def _drain_until_idle(src: KernelSource, store: SqliteStore | None) -> int:
    """Drain the ring until a poll comes back empty; returns the number of events."""
    total = 0
    while True:
        batch = src.poll(0)
        if not batch:
            return total
        total += len(batch)
        if store is not None:
            store.write(batch)


def _phase(src: KernelSource, store: SqliteStore | None, load: list[str], live: bool) -> dict[str, Any]:
    """Run one load and drain its events; times are from time.perf_counter (s)."""
    _drain_until_idle(src, store)  # start from an empty ring
    if store is not None:
        store.flush()
    drops0 = src.stats()["drops"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(load, stdout=subprocess.PIPE, text=True)
    events = 0
    if live:
        while proc.poll() is None:
            batch = src.poll(POLL_S)
            if batch:
                events += len(batch)
                if store is not None:
                    store.write(batch)
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"load {' '.join(load)} exited {proc.returncode}")
    t_load = time.perf_counter()
    t_drain = t_load
    events += _drain_until_idle(src, store)
    if store is not None:
        store.flush()
    t_end = time.perf_counter()
    elapsed = (t_end - t0) if live else (t_end - t_drain)
    return {
        "events": events,
        "seconds": round(elapsed, 6),
        "events_per_s": round(events / elapsed, 1) if elapsed > 0 else 0.0,
        "drops": src.stats()["drops"] - drops0,
        "load_ops_per_s": json.loads(out.strip().splitlines()[-1])["ops_per_s"],
    }


def burst(n: int, open_loop: str, repeat: int = 3) -> dict[str, Any]:
    """The drain benchmark (see the module docstring). Cleans up its temp dir and sensor."""
    os.sched_setaffinity(0, {0})
    tmp = Path(tempfile.mkdtemp(prefix="rw-bench-watched-"))
    target = tmp / "secret"
    target.write_text("x")
    load = ["taskset", "-c", "1", open_loop, str(n), str(target)]
    src = KernelSource(watches=default_watches(extra=(f"{tmp}/",)), ring_bytes=RING_BYTES)
    result: dict[str, Any] = {"n": n, "ring_bytes": RING_BYTES, "repeat": repeat}
    try:
        src.start()
        for name, live, store_it in (("live", True, True), ("capacity", False, True),
                                     ("decode_only", False, False)):
            runs: list[dict[str, Any]] = []
            for i in range(repeat):
                store = SqliteStore(tmp / f"{name}-{i}.db") if store_it else None
                try:
                    runs.append(_phase(src, store, load, live))
                finally:
                    if store is not None:
                        store.close()
            best = dict(max(runs, key=lambda r: float(r["events_per_s"])))
            best["drops"] = sum(r["drops"] for r in runs)
            best["runs"] = [r["events_per_s"] for r in runs]
            result[name] = best
        result["sensor_stats"] = src.stats()
    finally:
        src.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def agent(db: str, stats_json: str) -> int:
    """Host-wide sensor into SQLite until SIGINT/SIGTERM; writes the stats JSON at exit."""
    stopping = False

    def _stop(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    src = KernelSource()
    store = SqliteStore(db)
    try:
        src.start()
        print("runwatch agent: watching", file=sys.stderr, flush=True)
        while not stopping:
            batch = src.poll(0.1)
            if batch:
                store.write(batch)
        _drain_until_idle(src, store)
        stats = src.stats()
    finally:
        src.stop()
        store.close()
    Path(stats_json).write_text(json.dumps(stats))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("burst", help="drain benchmark; prints one JSON object")
    b.add_argument("--n", type=int, required=True)
    b.add_argument("--open-loop", required=True, help="path of the built open_loop workload")
    b.add_argument("--repeat", type=int, default=3, help="runs per phase (default 3)")
    a = sub.add_parser("agent", help="stand-in for `runwatch watch --db --stats-json`")
    a.add_argument("--db", required=True)
    a.add_argument("--stats-json", required=True)
    args = ap.parse_args(argv)
    if args.cmd == "burst":
        if args.n <= 0 or args.repeat <= 0:
            ap.error(f"--n and --repeat must be positive, got {args.n} and {args.repeat}")
        print(json.dumps(burst(args.n, args.open_loop, args.repeat)))
        return 0
    return agent(args.db, args.stats_json)


if __name__ == "__main__":
    sys.exit(main())
