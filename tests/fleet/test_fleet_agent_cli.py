"""``runwatch run --nats`` with the real sensor: what the node saw reaches a worker's sink."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fleet_helpers import RUNWATCH

from runwatch.store.sqlite_read import query_events
from runwatch.testing.natsserver import NatsServer


@pytest.mark.kernel
def test_run_publishes_what_it_saw_to_nats(nats_server: NatsServer, tmp_path: Path) -> None:
    marker = tmp_path / "fleet-marker-7"
    done = subprocess.run([RUNWATCH, "run", "--nats", nats_server.url, "--cluster", "lab", "--node", "node-k",
                           "--nats-spool", str(tmp_path / "spool"), "--no-sdk", "--db", str(tmp_path / "local.db"),
                           "--", "/bin/sh", "-c", f"echo x > {marker}; /bin/true"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "nats nats://" in done.stderr and "as node node-k; 0 kept in the spool" in done.stderr
    local = query_events(tmp_path / "local.db")
    sink = tmp_path / "sink.db"
    w = subprocess.run([RUNWATCH, "worker", "--nats", nats_server.url, "--db", str(sink), "--duration", "4",
                        "--no-rules"], capture_output=True, text=True, timeout=60)
    assert w.returncode == 0, w.stderr
    stored = query_events(sink)
    assert sorted(e.id for e in stored) == sorted(e.id for e in local)  # every event the node stored locally
    execs = [e for e in stored if e.kind == "process.exec" and e.exe.endswith("/true")]
    assert len(stored) == len(local) > 0
    assert len(execs) == 1


@pytest.mark.kernel
def test_run_with_nats_away_keeps_everything_in_the_spool(tmp_path: Path) -> None:
    from runwatch.testing.natsserver import free_port
    from runwatch.transport.spool import MessageSpool

    spool = tmp_path / "spool"
    done = subprocess.run([RUNWATCH, "run", "--nats", f"nats://127.0.0.1:{free_port()}", "--node", "node-k",
                           "--nats-spool", str(spool), "--no-sdk", "--no-rules", "--db", str(tmp_path / "local.db"),
                           "--", "/bin/sh", "-c", "/bin/true"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr  # detection and the local store went on; nothing was lost
    local = query_events(tmp_path / "local.db")
    held, left = [], MessageSpool(spool)
    while (item := left.head()) is not None:
        held += [mid for _, mid, _ in item[1]]
        left.remove(item[0])
    assert held == [f"node-k:{e.id}" for e in local]  # every event, in the order the node saw them
    assert f"published 0 message(s) as node node-k; {len(local)} kept in the spool" in done.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--nats", "nats://127.0.0.1:4222", "--node", "bad.node"],
     "node name (--node) 'bad.node' must be letters, digits, '_' or '-'"),
    (["--nats", "nats://127.0.0.1:4222", "--cluster", "a b"], "--cluster 'a b' must be letters, digits"),
    (["--node", "n1"], "--node and --kube-token-file need --kube-api, --kubeconfig or --in-cluster"),
])
def test_agent_options_are_checked_before_anything_starts(args: list[str], message: str) -> None:
    done = subprocess.run([RUNWATCH, "watch", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
