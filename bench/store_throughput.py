"""Write throughput of the SQLite event store: events/s for N synthetic events.

Usage: python bench/store_throughput.py [N] [BATCH]   (defaults: 500000 events, batches of 1000)

The clock covers encoding in the caller, queueing, and commit (write() calls plus the final
flush()), i.e. what a sensor loop pays end to end on one core.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from runwatch.events import Container, Event, FileInfo, NetInfo, new_id
from runwatch.store.sqlite import SqliteStore


def synthetic(n: int) -> list[Event]:
    """A realistic mix: exec, file opens and connects, some inside a container."""
    base = time.time_ns()
    box = Container(id="4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a99", runtime="runc", name="agent")
    out: list[Event] = []
    for i in range(n):
        t = base + i * 1000
        common = {
            "id": new_id(t),
            "time": t,
            "pid": 1000 + i % 500,
            "ppid": 999,
            "uid": 1000,
            "exe": "/usr/bin/python3.11",
            "cmdline": "python3 agent.py --task summarise",
            "ancestry": ["/usr/bin/bash", "/usr/sbin/runc"],
            "container": box if i % 3 else None,
        }
        r = i % 3
        if r == 0:
            out.append(Event(kind="process.exec", **common))
        elif r == 1:
            out.append(
                Event(
                    kind="file.open", file=FileInfo(path="/etc/ssl/private/key.pem", intent="read"), **common
                )
            )
        else:
            out.append(
                Event(
                    kind="net.connect",
                    net=NetInfo(proto="tcp", family="ipv4", dst_ip="10.0.0.7", dst_port=443, result=0),
                    **common,
                )
            )
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    events = synthetic(n)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        store = SqliteStore(db)
        try:
            t0 = time.perf_counter()
            for i in range(0, n, batch):
                store.write(events[i : i + batch])
            store.flush()
            dt = time.perf_counter() - t0
        finally:
            store.close()
        size = db.stat().st_size
        print(f"{n} events in {dt:.2f}s: {n / dt:,.0f} events/s ({size / n:.0f} bytes/event on disk)")
        print(store.stats())


if __name__ == "__main__":
    main()
