"""The delivery under the network outputs: the disk spool across reopen, and an endpoint that never answers."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from runwatch.alerts.model import Alert
from runwatch.outputs.delivery import RetryPolicy
from runwatch.outputs.webhook import webhook_output
from runwatch.store.spool import DiskSpool, SpoolLimits


def test_the_disk_spool_keeps_order_and_limits_across_reopen(tmp_path: Path) -> None:
    spool = DiskSpool(str(tmp_path / "s"), SpoolLimits(events=7, bytes=100))
    spool.open()
    assert [spool.put(seq, f"item-{seq}".encode()) for seq in (5, 3, 9)] == [True, True, True]
    assert spool.put(3, b"again") is False  # a sequence is kept once
    assert spool.put(11, b"x" * 83) is False  # 18 + 83 bytes: over 100
    (tmp_path / "s" / "0000000000000012.item.tmp").write_bytes(b"half")  # a write cut short
    (tmp_path / "s" / "notes.txt").write_text("not ours")
    again = DiskSpool(str(tmp_path / "s"), SpoolLimits(events=7, bytes=100))
    again.open()
    assert (again.recovered, again.bytes, again.next_seq) == (3, 18, 10)
    assert not (tmp_path / "s" / "0000000000000012.item.tmp").exists()
    got = []
    while (head := again.head()) is not None:
        got.append(head)
        again.remove(head[0])
    assert got == [(3, b"item-3"), (5, b"item-5"), (9, b"item-9")]
    assert (len(again), again.bytes) == (0, 0)
    assert (tmp_path / "s").stat().st_mode & 0o777 == 0o700


def test_an_endpoint_that_never_answers_neither_blocks_the_pipeline_nor_the_exit(
        tmp_path: Path, alerts: list[Alert]) -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        out = webhook_output(f"http://127.0.0.1:{port}", timeout=0.3, close_timeout=0.2, queue_max=3,
                             retry=RetryPolicy(0.05, 0.1), spool_dir=str(tmp_path / "spool"))
        out.open()
        started = time.monotonic()
        out.write_alerts(alerts)
        assert time.monotonic() - started < 0.2  # handed over, not sent
        time.sleep(0.5)
        started = time.monotonic()
        out.close()
        assert time.monotonic() - started < 1.5
    st = out.output_stats()
    assert (st["sent"], st["spooled"], st["dropped"], st["pending"]) == (0, 23, 0, 23)
    assert st["last_error"] == f"POST http://127.0.0.1:{port}: timed out"
