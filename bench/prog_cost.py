"""What each BPF program costs per run on a workload loop, by the kernel's own counters.

With ``kernel.bpf_stats_enabled`` the kernel keeps ``run_cnt`` and ``run_time_ns`` per program.
This loads the sensor (every program attached, host-wide, the default watch list) and the
no-op floor's program on the same path (``bench/noop.bpf.c``), runs a workload loop
(``bench/build/open_loop N FILE`` on an unwatched file by default), and prints for every
program the loop ran (at least once per two operations: the rest is the host's other
activity): runs, ns per run, and its ns per operation of the loop; then their sum per
operation beside the no-op program's. Interleaved ``--rounds``
times; medians. Figures, not a test: exit 0. Needs root and ``make -C bench``.

    .venv/bin/python bench/prog_cost.py [--n 300000] [--file /usr/lib/os-release] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from runwatch.bpf.libbpf import lib
from runwatch.bpf.object import BpfObject
from runwatch.sensors.kernel import loader

HERE = Path(__file__).resolve().parent
LOOP = HERE / "build" / "open_loop"
NOOP = HERE / "build" / "noop.bpf.o"
NOOP_PROGRAM = "rwb_openat"


@contextlib.contextmanager
def _stats() -> Iterator[None]:
    subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=1"], check=True)
    try:
        yield
    finally:
        subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=0"], check=False)


def _prog_id(prog_fd: int) -> int:
    for line in Path(f"/proc/self/fdinfo/{prog_fd}").read_text().splitlines():
        if line.startswith("prog_id:"):
            return int(line.split()[1])
    raise RuntimeError("no prog_id in fdinfo")


def _counters(ids: dict[int, str]) -> dict[str, tuple[int, int]]:
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True).stdout
    return {ids[p["id"]]: (p.get("run_cnt", 0), p.get("run_time_ns", 0)) for p in json.loads(out) if p["id"] in ids}


def one_round(n: int, target: str) -> tuple[dict[str, tuple[int, float]], float]:
    """Per sensor program (runs, ns per run), and the no-op program's ns per run."""
    obj, enabled, report = loader.load_programs()
    links = loader.attach_programs(obj, enabled, report)
    noop = BpfObject(NOOP)
    try:
        noop.set_autoload({NOOP_PROGRAM})
        noop.load()
        noop.attach(NOOP_PROGRAM)
        ids = {_prog_id(lib().bpf_program__fd(obj.programs[name])): name for name in report.active}
        ids[_prog_id(lib().bpf_program__fd(noop.programs[NOOP_PROGRAM]))] = NOOP_PROGRAM
        with _stats():
            before = _counters(ids)
            subprocess.run([str(LOOP), str(n), target], check=True, capture_output=True)
            after = _counters(ids)
    finally:
        noop.close()
        loader.unload(obj, links)
    ran: dict[str, tuple[int, float]] = {}
    for name, (cnt, ns) in after.items():
        runs, spent = cnt - before[name][0], ns - before[name][1]
        if runs > 0:
            ran[name] = (runs, spent / runs)
    noop_ns = ran.pop(NOOP_PROGRAM, (0, float("nan")))[1]
    return ran, noop_ns


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table; exit 0."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300_000, help="operations of the loop (default 300000)")
    ap.add_argument("--file", default="/usr/lib/os-release", help="the file opened (default: unwatched)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; medians (default 3)")
    args = ap.parse_args(argv)
    if not LOOP.exists() or not NOOP.exists():
        print(f"build the workloads first: make -C {HERE}", file=sys.stderr)
        return 1
    rounds = [one_round(args.n, args.file) for _ in range(args.rounds)]
    # the loop's own programs: run at least once per two operations (the rest is other host activity)
    rounds = [({k: v for k, v in ran.items() if v[0] * 2 >= args.n}, noop) for ran, noop in rounds]
    names = sorted({name for ran, _ in rounds for name in ran})
    print(f"{'program':<24} {'runs/op':>8} {'ns/run':>8} {'ns/op':>8}")
    total: list[float] = []
    for ran, _ in rounds:
        total.append(sum(runs * ns for runs, ns in ran.values()) / args.n)
    for name in names:
        runs = statistics.median(r[name][0] for r, _ in rounds if name in r)
        ns = statistics.median(r[name][1] for r, _ in rounds if name in r)
        print(f"{name:<24} {runs / args.n:>8.3f} {ns:>8.0f} {runs * ns / args.n:>8.0f}")
    noop = statistics.median(ns for _, ns in rounds)
    print(f"sensor programs per operation: {statistics.median(total):.0f} ns; the no-op program on the same "
          f"path: {noop:.0f} ns per run ({args.n:,} operations on {args.file}, median of {args.rounds})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
