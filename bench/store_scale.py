"""The store at scale: a report-style query for one workload over a store of N events, and
bytes per event before and after the process context moved to its own table (layout 5).

Usage: python bench/store_scale.py [--n 10000000] [--workloads 211] [--db PATH] [--reuse]
                                   [--sample 500000] [--rounds 5]

1. Builds (or, with --reuse and an existing --db, reuses) a store of N synthetic events: a
   realistic mix (file opens 55%, connects, DNS, sends, process fork/exec/exit, tool calls,
   secret reads, policy decisions) from ``--workloads`` pods in 7 namespaces (1-3 containers
   each, a few processes per container with argv and ancestry), spread over 24 hours, written
   through ``SqliteStore`` in batches of 10,000 as a session writes them.
2. Times the report's queries for one workload over a 1-hour window, through the public read
   API (``runwatch.store.sqlite_read``): all its events; its process tree (exec, fork, exit);
   its secret reads; the connects and sends after the first secret read. Median of --rounds
   runs, with a cold first run reported apart (the first run after the build reads pages the
   build left in the OS cache; nothing is dropped from it).
3. Bytes per event: the first --sample events are written to a fresh store, which is then
   rewritten the way layout 4 stored it (the whole event in every row, no procs table) and
   both are vacuumed: file size / events, before (layout 4) and after (layout 5).
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec

from runwatch.events import AiInfo, Container, DnsInfo, Event, FileInfo, NetInfo, ToolCall
from runwatch.store.sqlite import SqliteStore, query_events

DAY_NS = 86_400 * 10**9
HOUR_NS = 3_600 * 10**9
NAMESPACES = ("prod", "staging", "ml", "agents", "data", "batch", "tools")
PATHS = ("/usr/lib/python3.11/json/__init__.py", "/app/model/weights.safetensors", "/tmp/scratch.txt",
         "/etc/resolv.conf", "/app/config.yaml", "/proc/self/status", "/home/agent/.cache/pip/x.whl")
SECRETS = ("/var/run/secrets/kubernetes.io/serviceaccount/token", "/root/.aws/credentials", "OPENAI_API_KEY")
MIX = (("file.open", 55), ("net.connect", 9), ("dns.query", 6), ("net.send", 6), ("process.fork", 4),
       ("process.exec", 4), ("process.exit", 4), ("tool.start", 4), ("tool.end", 4), ("secret.access", 2),
       ("policy.decision", 1), ("model.call", 1))
KIND_TABLE = [k for k, w in MIX for _ in range(w)]


def workloads(n: int) -> list[list[Container]]:
    """``n`` pods, each with 1-3 containers."""
    rnd = random.Random(7)
    pods: list[list[Container]] = []
    for w in range(n):
        ns = NAMESPACES[w % len(NAMESPACES)]
        pod = f"svc{w}-{rnd.randrange(16**5):05x}"
        boxes = []
        for c in range(1 + w % 3):
            boxes.append(Container(id=f"{w:06x}{c:02x}" + f"{rnd.getrandbits(200):050x}"[:56], runtime="containerd",
                                   name=("app", "sidecar", "init")[c], pod=pod, namespace=ns, pod_uid=f"uid-{w}",
                                   spiffe_id=f"spiffe://cluster.local/ns/{ns}/sa/svc{w}", image=f"reg/svc{w}:1.{c}",
                                   node=f"node-{w % 17}", labels={"app": f"svc{w}", "team": f"t{w % 9}"}))
        pods.append(boxes)
    return pods


def synthetic(n: int, pods: list[list[Container]], start_ns: int, seed: int = 1) -> Iterator[list[Event]]:
    """``n`` events over 24 hours from ``start_ns``, in batches of 10,000, in time order."""
    rnd = random.Random(seed)
    step = DAY_NS // max(n, 1)
    procs: dict[tuple[int, int], list[tuple[int, list[str], list[str]]]] = {}
    tool = ToolCall(name="shell", call_id="call-1", agent="planner")
    batch: list[Event] = []
    for i in range(n):
        w = rnd.randrange(len(pods))
        boxes = pods[w]
        c = rnd.randrange(len(boxes))
        box = boxes[c]
        kind = KIND_TABLE[rnd.randrange(len(KIND_TABLE))]
        plist = procs.setdefault((w, c), [])
        if not plist or (kind == "process.exec" and len(plist) < 40):
            pid = 1000 + w * 64 + len(plist)
            argv = ["python3", "-m", f"svc{w}.worker", "--port", str(8000 + c), "--workers", "4", "--log-level", "info"]
            plist.append((pid, argv, ["/usr/bin/bash", "/usr/bin/containerd-shim-runc-v2", "/usr/lib/systemd/systemd"]))
        pid, argv, ancestry = plist[rnd.randrange(len(plist))]
        t = start_ns + i * step
        e = Event(id=f"{t:016x}-bench-{i:x}", time=t, kind=kind, pid=pid, tid=pid, ppid=pid - 1, uid=1000,
                  exe="/usr/bin/python3.11", cmdline=" ".join(argv), argv=argv, ancestry=ancestry, container=box,
                  pcmdline="bash -c exec python3", proc_start=start_ns - 3_600 * 10**9 + pid, comm="python3",
                  cgroup_id=4096 + w, role="agent" if w % 4 == 0 else None)
        if kind == "file.open":
            e.file = FileInfo(path=PATHS[rnd.randrange(len(PATHS))], intent="read", flags=0)
        elif kind in ("net.connect", "net.send"):
            e.net = NetInfo(proto="tcp", family="ipv4", dst_ip=f"10.{w % 250}.{rnd.randrange(250)}.7",
                            dst_port=443, src_port=40000 + rnd.randrange(20000), result=0)
        elif kind == "dns.query":
            e.dns = DnsInfo(name=f"api{w % 13}.example.com", qtype="A", server_ip="10.96.0.10", server_port=53)
        elif kind == "secret.access":
            name = SECRETS[rnd.randrange(len(SECRETS))]
            e.ai = AiInfo(secret=name, secret_kind="env" if name.isupper() else "file")
            e.tool_call = tool
        elif kind in ("tool.start", "tool.end", "model.call"):
            e.source = "sdk"
            e.tool_call = tool
            e.ai = AiInfo(operation="execute_tool", agent="planner", tool_type="function", span=i)
        batch.append(e)
        if len(batch) == 10_000:
            yield batch
            batch = []
    if batch:
        yield batch


def build(db: Path, n: int, pods: list[list[Container]], start_ns: int) -> float:
    """Write ``n`` events into ``db``; returns the seconds it took."""
    t0 = time.perf_counter()
    with SqliteStore(db) as store:
        for k, batch in enumerate(synthetic(n, pods, start_ns)):
            store.write(batch)
            if k % 100 == 99:
                print(f"  {(k + 1) * 10_000:,} events, {time.perf_counter() - t0:.0f} s", flush=True)
    return time.perf_counter() - t0


def report_queries(db: Path, workload: str, since: int, until: int) -> dict[str, int]:
    """What ``runwatch report`` asks for one workload in [since, until): counts per part."""
    everything = query_events(db, workload=workload, since_ns=since, until_ns=until)
    tree = query_events(db, workload=workload, since_ns=since, until_ns=until,
                        kinds=["process.fork", "process.exec", "process.exit"])
    secrets = query_events(db, workload=workload, since_ns=since, until_ns=until, kinds=["secret.access"])
    after = query_events(db, workload=workload, since_ns=secrets[0].time if secrets else until, until_ns=until,
                         kinds=["net.connect", "net.send"])
    return {"events": len(everything), "process_tree": len(tree), "secret_reads": len(secrets),
            "egress_after_first_secret": len(after)}


def bytes_per_event(sample: int, pods: list[list[Container]], start_ns: int, tmp: Path) -> tuple[float, float]:
    """(layout 4, layout 5) file bytes per event for the first ``sample`` events, vacuumed."""
    after = tmp / "sample-v5.db"
    before = tmp / "sample-v4.db"
    for p in (after, before):
        p.unlink(missing_ok=True)
    with SqliteStore(after) as store:
        for batch in synthetic(sample, pods, start_ns):
            store.write(batch)
    with SqliteStore(before) as store:
        for batch in synthetic(sample, pods, start_ns):
            store.write(batch)
    _to_layout_4(before, sample, pods, start_ns)
    for p in (after, before):
        conn = sqlite3.connect(p)
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    return before.stat().st_size / sample, after.stat().st_size / sample


def _to_layout_4(db: Path, n: int, pods: list[list[Container]], start_ns: int) -> None:
    """Rewrite ``db`` as layout 4 stored it: every row's data the whole event, no procs."""
    enc = msgspec.msgpack.Encoder()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN")
    for batch in synthetic(n, pods, start_ns):
        conn.executemany("UPDATE events SET data = ?, proc = NULL, batch = NULL WHERE time = ? AND id = ?",
                         [(enc.encode(e), e.time, e.id) for e in batch])
    for index in ("procs_pid", "procs_last", "batches_tmax", "containers_pod", "alerts_workload"):
        conn.execute(f"DROP INDEX {index}")
    conn.execute("DROP TABLE procs")
    conn.execute("DROP TABLE batches")
    for table, column in (("events", "proc"), ("events", "batch"), ("containers", "pod"),
                          ("containers", "namespace"), ("containers", "spiffe_id")):
        conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    conn.execute("COMMIT")
    conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--workloads", type=int, default=211)
    ap.add_argument("--db", type=Path, help="store to build (default: a temporary file, deleted after)")
    ap.add_argument("--reuse", action="store_true", help="reuse --db if it exists (skip the build)")
    ap.add_argument("--sample", type=int, default=500_000, help="events for the bytes-per-event comparison")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    pods = workloads(args.workloads)
    start_ns = 1_796_000_000 * 10**9
    tmp = Path(tempfile.mkdtemp(prefix="rw-scale-"))
    db = args.db or tmp / "scale.db"
    if not (args.reuse and db.exists()):
        db.unlink(missing_ok=True)
        print(f"building {args.n:,} events from {args.workloads} workloads into {db}", flush=True)
        secs = build(db, args.n, pods, start_ns)
        print(f"built in {secs:.0f} s ({args.n / secs:,.0f} events/s)")
    size = db.stat().st_size + (Path(f"{db}-wal").stat().st_size if Path(f"{db}-wal").exists() else 0)
    print(f"store: {size / 1e9:.2f} GB, {size / args.n:.0f} bytes/event (layout 5, indexes included)")
    target = pods[len(pods) // 2]
    workload = f"{target[0].namespace}/{target[0].pod}"
    since = start_ns + 12 * HOUR_NS
    for label, until in (("1-hour window", since + HOUR_NS), ("whole day", start_ns + DAY_NS)):
        lo = start_ns if label == "whole day" else since
        times = []
        counts: dict[str, int] = {}
        for _ in range(args.rounds + 1):
            t0 = time.perf_counter()
            counts = report_queries(db, workload, lo, until)
            times.append(time.perf_counter() - t0)
        print(f"report queries, workload {workload}, {label}: first {times[0] * 1000:.0f} ms, "
              f"median of {args.rounds} {statistics.median(times[1:]) * 1000:.0f} ms; {counts}")
    if args.sample:
        before, after = bytes_per_event(min(args.sample, args.n), pods, start_ns, tmp)
        print(f"bytes/event ({min(args.sample, args.n):,} events, vacuumed): layout 4 {before:.0f}, "
              f"layout 5 {after:.0f} ({100 * (1 - after / before):.0f}% less)")
    if args.db is None:
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()
    else:
        for p in tmp.iterdir():
            p.unlink()
        os.rmdir(tmp)


if __name__ == "__main__":
    main()
