"""Time loading, attaching and closing the kernel sensor's BPF object.

``python bench/bpf_close.py [--rounds N] [--serial]`` loads and attaches the sensor
object N times (default 3) and closes it each time, printing one line per round and a
JSON summary. ``--serial`` destroys the links one after the other (the way close worked
before links were destroyed concurrently), for comparison. ``--pinned`` holds a disabled perf
event on each syscall tracepoint meanwhile (what the test suite does, see
``runwatch.testing.tracepins``). Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from runwatch.sensors.kernel import loader
from runwatch.testing.tracepins import TracepointPins, tracepoints_of


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def main() -> None:
    """Run the rounds and print the timings (seconds)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--serial", action="store_true", help="destroy links one by one")
    ap.add_argument("--pinned", action="store_true", help="pin the syscall tracepoints meanwhile")
    args = ap.parse_args()
    pins = TracepointPins(tracepoints_of([loader.SPEC])).open() if args.pinned else None
    rounds = []
    fds_before = _open_fds()
    for i in range(args.rounds):
        t0 = time.perf_counter()
        obj, links, _ = loader.load()
        t1 = time.perf_counter()
        count = len(links)
        if args.serial:
            for link in links:
                obj.destroy([link])  # one link per call: no concurrency
        loader.unload(obj, links)
        t2 = time.perf_counter()
        rounds.append({"load_attach_s": round(t1 - t0, 3), "close_s": round(t2 - t1, 3), "links": count})
        print(f"round {i + 1}: load+attach {t1 - t0:.3f} s, close {t2 - t1:.3f} s ({count} links)")
    fds_left = _open_fds() - fds_before
    if pins is not None:
        pins.close()
    summary = {
        "mode": ("serial" if args.serial else "concurrent") + ("+pinned" if args.pinned else ""),
        "close_s_best": min(r["close_s"] for r in rounds),
        "close_s_mean": round(sum(r["close_s"] for r in rounds) / len(rounds), 3),
        "fds_left": fds_left,
        "rounds": rounds,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
