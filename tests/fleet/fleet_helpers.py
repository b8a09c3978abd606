"""Fleet test helpers: agents and workers as processes of their own against a real nats-server."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))


class Procs:
    """Processes a test started; every one still running is killed at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def agent(self, url: str, node: str, recording: Path, *, rate: float = 0.0, extra: tuple[str, ...] = ()
              ) -> subprocess.Popen[bytes]:
        """One node agent replaying ``recording`` as ``node``; counters in ``<tmp>/agent-<node>.json``."""
        argv = [sys.executable, "-m", "runwatch.testing.fleet", "agent", "--nats", url, "--node", node,
                "--events", str(recording), "--rate", str(rate), "--spool", str(self.tmp / f"spool-{node}"),
                "--stats", str(self.tmp / f"agent-{node}.json"), *extra]
        p = subprocess.Popen(argv, stderr=open(self.tmp / f"agent-{node}.log", "ab"))  # noqa: SIM115
        self.procs.append(p)
        return p

    def worker(self, url: str, name: str, db: Path, *extra: str) -> subprocess.Popen[bytes]:
        """One ``runwatch worker``; counters in ``<tmp>/worker-<name>.json``."""
        argv = [RUNWATCH, "worker", "--nats", url, "--db", str(db), "--worker-id", name, "--lease-s", "2",
                "--ack-wait-s", "3", "--stats-json", str(self.tmp / f"worker-{name}.json"), "-q", *extra]
        p = subprocess.Popen(argv, stderr=open(self.tmp / f"worker-{name}.log", "ab"))  # noqa: SIM115
        self.procs.append(p)
        return p

    def stats(self, what: str) -> dict[str, Any]:
        """The counters a process wrote (``agent-a``, ``worker-w1``)."""
        path = self.tmp / f"{what}.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until true, else fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def stored_ids(db: Path, table: str = "events", where: str = "") -> list[str]:
    """Ids in the sink (every row, duplicates included were there any)."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return [r[0] for r in conn.execute(f"SELECT id FROM {table} {where}")]
    except sqlite3.OperationalError:
        return []


def wait_workers(procs: Procs, names: tuple[str, ...], partitions: int = 16) -> None:
    """Until the workers hold every partition between them, each at least one."""
    def spread() -> bool:
        held = [set(procs.stats(f"worker-{n}").get("partitions", [])) for n in names]
        return all(held) and sum(len(h) for h in held) == partitions and len(set().union(*held)) == partitions

    wait_for(spread, 30, f"workers {names} to share the {partitions} partitions")


def lake_ids(lake: Path) -> list[str]:
    """Record ids of the events in the lake (every row, duplicates included were there any;
    Detection Findings, class 2004, left out)."""
    import pyarrow.parquet as pq

    ids: list[str] = []
    for path in sorted(lake.glob("class_uid=*/day=*/hour=*/*.parquet")):
        if path.parts[-4] != "class_uid=2004":
            ids += pq.read_table(path, columns=["record_id"]).column(0).to_pylist()
    return ids
