"""Cost of the exec, mapping, socket and guard hooks, against no enforcement and against
enforcement without them, in one run.

Usage:
    .venv/bin/python bench/enforce_hooks.py [--ops N] [--rounds R] [--json-out FILE]

A Python probe times, op by op (perf_counter_ns), in a long-lived runc container:

    getpid        a system call the hooks do not act on (tp_btf/sys_enter runs for every one)
    socket        socket(AF_INET, SOCK_DGRAM) + close (cgroup/sock_create, sys_enter)
    mmap_exec     mmap of libc with PROT_EXEC + munmap (the executable-mapping check)
    mprotect      mprotect of an anonymous page to PROT_EXEC and back
    spawn         posix_spawn of /usr/bin/true + waitpid (exec kill hook, sys_enter on each call)

and the same probe runs on the host (``host_getpid``: a task no policy governs pays only
the host-wide hooks' first test). Conditions, interleaved per round:

    bare      no enforcement loaded
    previous  one enforce-mode fail: closed policy (egress, exec deny, files) with the
              cgroup programs and the exec hook only: the syscall hooks detached
    full      the same policy with every hook (sys_enter: AF_PACKET, executable mappings,
              32-bit calls, the guard's heartbeat test; io_uring socket hook; pinned links)

p50 over every op of every round of a condition; ratios full/bare and full/previous.
Prints a table, then ``--- json ---`` and one object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from runwatch.containers.rootfs import build_rootfs  # noqa: E402
from runwatch.containers.runc import RuncContainer  # noqa: E402
from runwatch.policy import load_policy_texts  # noqa: E402
from runwatch.policy.enforce import Enforcers  # noqa: E402

PROBE = r'''
import ctypes, ctypes.util, json, mmap, os, socket, sys, time
n = int(sys.argv[1])
ns = time.perf_counter_ns
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
lib_fd = os.open(sys.argv[2], os.O_RDONLY)
page = libc.mmap(None, 4096, 3, 0x22, -1, 0)
out = {}
def timed(name, fn, k=n):
    for _ in range(min(50, k)):
        fn()
    xs = []
    for _ in range(k):
        t = ns(); fn(); xs.append(ns() - t)
    out[name] = xs
def sock():
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()
def mapx():
    libc.munmap(libc.mmap(None, 8192, 5, 2, lib_fd, 0), 8192)
def prot():
    libc.mprotect(page, 4096, 5); libc.mprotect(page, 4096, 3)
def spawn():
    os.waitpid(os.posix_spawn("/usr/bin/true", ["true"], {}), 0)
timed("getpid", os.getpid)
timed("socket", sock)
timed("mmap_exec", mapx)
timed("mprotect", prot)
timed("spawn", spawn, max(1, n // 20))
print(json.dumps(out))
'''

OPS = ("getpid", "socket", "mmap_exec", "mprotect", "spawn", "host_getpid")
CONDITIONS = ("bare", "previous", "full")


def p50(xs: list[int]) -> float:
    """The median in microseconds."""
    s = sorted(xs)
    return s[len(s) // 2] / 1000.0 if s else float("nan")


def libc_path() -> str:
    """The C library's file (the probe maps it executable, as the loader does)."""
    out = subprocess.run(["ldd", sys.executable], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        if "libc.so" in line and "=>" in line:
            return line.split("=>")[1].split()[0]
    raise SystemExit("cannot find libc for the probe")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", type=int, default=20000, help="operations per op kind per round (spawn: 1/20)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    rootfs = build_rootfs()
    py = str(rootfs.python)
    lib = libc_path()
    policy = next(iter(load_policy_texts([(
        "id: bench\nselector: {container: [bench]}\nmode: enforce\nfail: closed\n"
        "egress:\n  allow: ['127.0.0.0/8']\n"
        "files:\n  immutable: [/etc/passwd]\n"
        "exec:\n  deny: [/usr/bin/env, /usr/bin/nc*]\n", "bench.yaml")])))
    samples: dict[str, dict[str, list[int]]] = {c: {op: [] for op in OPS} for c in CONDITIONS}

    def probe(run: Any) -> dict[str, list[int]]:
        proc = run([py, "-c", PROBE, str(args.ops), lib])
        if proc.returncode != 0:
            raise SystemExit(f"probe failed: {proc.stderr.decode(errors='replace')[-400:]}")
        return json.loads(proc.stdout)

    def on_host(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(argv, capture_output=True, timeout=600, check=False)

    with RuncContainer(rootfs, name="bench") as c:
        c.start()
        for rnd in range(args.rounds):
            order = CONDITIONS if rnd % 2 == 0 else tuple(reversed(CONDITIONS))
            for cond in order:
                enf = Enforcers().start() if cond != "bare" else None
                try:
                    if enf is not None:
                        assert enf.apply(c, policy) == []
                        obj = enf._obj  # the bench takes the new hooks away on purpose
                        if cond == "previous" and obj is not None:
                            for link in obj.syscall_links:
                                obj.pins.unpin(link)
                            obj._obj.destroy(list(obj.syscall_links))
                            obj.syscall_links = []
                    for op, xs in probe(lambda a: c.exec(a, timeout=600)).items():
                        samples[cond][op].extend(xs)
                    samples[cond]["host_getpid"].extend(probe(on_host)["getpid"])
                finally:
                    if enf is not None:
                        enf.stop()
    result: dict[str, Any] = {"ops_per_round": args.ops, "rounds": args.rounds, "results": {}}
    print(f"{'operation':12} {'bare us':>9} {'prev us':>9} {'full us':>9} {'full/bare':>10} {'full/prev':>10}")
    for op in OPS:
        b, pv, f = (p50(samples[c][op]) for c in CONDITIONS)
        row = {"bare_p50_us": b, "previous_p50_us": pv, "full_p50_us": f,
               "full_over_bare": round(f / b, 3), "full_over_previous": round(f / pv, 3)}
        result["results"][op] = row
        print(f"{op:12} {b:9.2f} {pv:9.2f} {f:9.2f} {row['full_over_bare']:10.3f} {row['full_over_previous']:10.3f}")
    print("--- json ---")
    print(json.dumps(result))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
