"""Behaviour -> alert written: how long after a rule-triggering act its alert is on disk.

``runwatch run --alerts-out FILE -- python TRIGGER`` with the default rules. The trigger sets
the setuid bit (``chmod 4755``, rule ``setuid_bit_set``) ``--triggers`` times, ``--gap-ms``
apart, each time with its own copy of ``chmod`` (the throttle folds alerts of one rule,
workload and executable into one, so each act needs an executable of its own). The bench
reads FILE as it grows (every millisecond) and takes, for each alert, the time its line
appeared minus the alert's time (the kernel's time of the chmod). Both clocks are this
host's epoch clock.

Cases, interleaved round by round: ``sdk on`` (the default of ``run``: the agent-SDK
collector and the tool-call join on; the trigger sends nothing to it) and ``sdk off``
(``--no-sdk``). Prints p50/p90/p99/max in ms over every alert of every round and the count
seen against the count expected. Figures, not a test: exit 0. Needs root.

    .venv/bin/python bench/alert_latency.py [--triggers 51] [--gap-ms 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))

TRIGGER = """
import os, shutil, subprocess, sys, time
work, n, gap = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
time.sleep(0.5)  # the sensor is up before the first act
for i in range(n):
    exe = os.path.join(work, f"chmod-{i}")
    shutil.copy("/bin/chmod", exe)
    target = os.path.join(work, f"f-{i}")
    open(target, "w").close()
    subprocess.run([exe, "4755", target], check=True)
    time.sleep(gap)
time.sleep(0.5)
"""


class Tail:
    """Reads a file as lines are appended; stamps each line with the epoch ns it was seen."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buf, offset = b"", 0
        while not self._stop.is_set():
            try:
                with open(self.path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                data = b""
            now = time.time_ns()
            if data:
                offset += len(data)
                buf += data
                *done, buf = buf.split(b"\n")
                self.lines.extend((now, line.decode()) for line in done if line.strip())
            time.sleep(0.001)

    def stop(self) -> list[tuple[int, str]]:
        """Stop after one last read; the lines seen."""
        time.sleep(0.05)
        self._stop.set()
        self._thread.join()
        return self.lines


def one_round(tmp: Path, name: str, extra: list[str], n: int, gap_s: float) -> tuple[list[float], int]:
    work = tmp / name.replace(" ", "-")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    out = work / "alerts.jsonl"
    tail = Tail(out)
    subprocess.run([RUNWATCH, "run", "--db", str(work / "rw.db"), "--alerts-out", str(out), *extra, "--",
                    sys.executable, "-c", TRIGGER, str(work), str(n), str(gap_s)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=work)
    lat = []
    for seen, line in tail.stop():
        alert = json.loads(line)
        if alert.get("rule") == "setuid_bit_set":
            lat.append((seen - int(alert["time"])) / 1e6)
    return lat, n


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table; exit 0."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--triggers", type=int, default=51, help="acts per round (default 51)")
    ap.add_argument("--gap-ms", type=float, default=40.0, help="pause between acts (default 40)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    args = ap.parse_args(argv)
    cases = {"sdk on": [], "sdk off": ["--no-sdk"]}
    got: dict[str, list[float]] = {k: [] for k in cases}
    expected: dict[str, int] = dict.fromkeys(cases, 0)
    with tempfile.TemporaryDirectory(prefix="rw-alertlat-") as tmpdir:
        tmp = Path(tmpdir)
        for i in range(args.rounds):
            for name, extra in cases.items():
                lat, n = one_round(tmp, name, extra, args.triggers, args.gap_ms / 1000)
                got[name] += lat
                expected[name] += n
            print(f"round {i + 1}/{args.rounds}", file=sys.stderr)
    print(f"{'case':<8} {'alerts':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, lat in got.items():
        if not lat:
            print(f"{name:<8} {0:>4}/{expected[name]:<4} (no alert seen)")
            continue
        print(f"{name:<8} {len(lat):>4}/{expected[name]:<4} {statistics.median(lat):>8.1f} {pct(lat, 0.9):>8.1f} "
              f"{pct(lat, 0.99):>8.1f} {max(lat):>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
