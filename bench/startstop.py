"""Start and stop: the wall time of ``runwatch run -- /bin/true``, beside its floors.

Interleaved round by round, each a fresh process (medians over ``--rounds``):

  * ``bare``: ``/bin/true`` alone;
  * ``python``: the interpreter starting and importing nothing of runwatch (``python -c pass``);
  * ``import``: the interpreter importing the ``run`` command's modules and exiting;
  * ``run --no-sdk``: ``runwatch run --no-sdk --db DB -- /bin/true`` (rules on, SDK collector off);
  * ``run``: ``runwatch run --db DB -- /bin/true`` (the default: rules and SDK collector on).

After each ``run`` the sensor's links are handed to a child that detaches them after the
command has returned; the bench waits until none of them is left before the next command
(so one round's detach never slows the next) and reports that time too, as ``detached after``.

It also loads the sensor's programs alone (no attach) ``--rounds`` times and prints the
median, with the kernel's verification time summed over the programs (log level 4 statistics)
and the five programs that take longest. Figures, not a test: exit 0. Needs root.

    .venv/bin/python bench/startstop.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import ctypes
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runwatch.bpf.libbpf import lib
from runwatch.bpf.object import BpfObject
from runwatch.sensors.kernel import loader

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))
IMPORTS = "import runwatch.cli, runwatch.cli.watch"


def _links() -> set[int]:
    out = subprocess.run(["bpftool", "link", "list"], capture_output=True, text=True, check=True).stdout
    return {int(line.split(":")[0]) for line in out.splitlines() if line[:1].isdigit()}


def _wall(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def _detached_after(before: set[int], limit_s: float = 60.0) -> float:
    """Seconds until no link made since ``before`` is left (the caller's command has returned)."""
    t0 = time.perf_counter()
    while _links() - before and time.perf_counter() - t0 < limit_s:
        time.sleep(0.05)
    return time.perf_counter() - t0


def _verification() -> tuple[float, float, list[tuple[float, str]]]:
    """One load of the sensor's programs: wall s, summed verification s, the slowest programs."""
    libbpf = lib()
    libbpf.bpf_program__set_log_level.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    libbpf.bpf_program__set_log_buf.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    obj = BpfObject(loader.object_path())
    try:
        enabled = {p.name for p in loader.PROGRAMS}
        loader._prepare(obj, loader.LoadOptions(), enabled)
        bufs = {}
        for name in enabled:
            bufs[name] = ctypes.create_string_buffer(1 << 16)
            libbpf.bpf_program__set_log_level(obj.programs[name], 4)
            libbpf.bpf_program__set_log_buf(obj.programs[name], bufs[name], len(bufs[name]))
        t0 = time.perf_counter()
        try:
            obj.load()
        except OSError:
            return float("nan"), float("nan"), []  # a program this kernel lacks: see the wall figure
        wall = time.perf_counter() - t0
    finally:
        obj.close()
    each = []
    for name, buf in bufs.items():
        m = re.search(r"verification time (\d+) usec", buf.value.decode(errors="replace"))
        each.append((int(m.group(1)) / 1e6 if m else 0.0, name))
    each.sort(reverse=True)
    return wall, sum(s for s, _ in each), each[:5]


def _load_alone() -> float:
    t0 = time.perf_counter()
    obj, _enabled, _report = loader.load_programs()
    wall = time.perf_counter() - t0
    obj.close()
    return wall


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table; exit 0."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=9, help="interleaved rounds; the median counts (default 9)")
    args = ap.parse_args(argv)
    cases = {
        "bare": ["/bin/true"],
        "python": [sys.executable, "-c", "pass"],
        "import": [sys.executable, "-c", IMPORTS],
    }
    times: dict[str, list[float]] = {k: [] for k in (*cases, "run --no-sdk", "run")}
    detached: list[float] = []
    with tempfile.TemporaryDirectory(prefix="rw-startstop-") as tmp:
        runs = {
            "run --no-sdk": [RUNWATCH, "run", "--no-sdk", "--db", f"{tmp}/a.db", "--", "/bin/true"],
            "run": [RUNWATCH, "run", "--db", f"{tmp}/b.db", "--sdk-socket", f"{tmp}/sdk.sock", "--",
                    "/bin/true"],
        }
        _wall(runs["run"])  # warm the page cache and the store's schema
        _detached_after(set())
        for i in range(args.rounds):
            for name, argv_ in cases.items():
                times[name].append(_wall(argv_))
            for name, argv_ in runs.items():
                before = _links()
                times[name].append(_wall(argv_))
                detached.append(_detached_after(before))
            print(f"round {i + 1}/{args.rounds}", file=sys.stderr)
    loads = [_load_alone() for _ in range(args.rounds)]
    wall, verified, slowest = _verification()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{'case':<14} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name, values in times.items():
        print(f"{name:<14} {med[name]:>9.3f} {min(values):>7.3f} {max(values):>7.3f}")
    print(f"detached after {statistics.median(detached):.2f} s (median; max {max(detached):.2f} s)")
    print(f"sensor programs loaded alone: median {statistics.median(loads):.3f} s over {len(loads)}; one load "
          f"with statistics {wall:.3f} s, verification summed {verified:.3f} s; slowest: "
          + ", ".join(f"{n} {s * 1000:.0f} ms" for s, n in slowest))
    print(f"run - import: {med['run'] - med['import']:.3f} s; run --no-sdk - import: "
          f"{med['run --no-sdk'] - med['import']:.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
