"""``/metrics`` of a session on the real eBPF sensor: exact exec count, ring and drop families."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from runwatch.session import Session, SessionOptions
from runwatch.testing.metrics import scrape

RUNS = 23
RING = 1 << 22


@pytest.mark.kernel
def test_kernel_session_scrape(tmp_path: Path) -> None:
    opts = SessionOptions(db=str(tmp_path / "k.db"), source="kernel", track_self=True, live_alerts=False,
                          ring_bytes=RING, metrics_listen=("127.0.0.1", 0))
    with Session(opts).start(["metrics-kernel"]) as s:
        assert s.metrics is not None
        for _ in range(RUNS):
            assert s.spawn(["/bin/true"]).wait() == 0
        deadline = time.monotonic() + 20
        while True:
            got = scrape(s.metrics.url)
            execs = got.value("runwatch_events_total", kind="process.exec", source="kernel")
            if execs >= RUNS or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        time.sleep(0.5)  # nothing more comes
        got = scrape(s.metrics.url)
    assert got.value("runwatch_events_total", kind="process.exec", source="kernel") == RUNS
    assert got.value("runwatch_events_total", kind="process.exit", source="kernel") == RUNS
    assert got.value("runwatch_source_events_total", source="kernel") >= 2 * RUNS
    assert got.value("runwatch_kernel_ring_size_bytes") == RING
    assert 0 <= got.value("runwatch_kernel_ring_used_bytes") < RING
    assert got.types["runwatch_kernel_drops"] == "counter"
    assert got.labelled("runwatch_kernel_drops_total") == {}  # nothing was dropped at this rate
    assert got.value("runwatch_info", version="0.1.0", source="kernel") == 1
    assert got.labelled("runwatch_metrics_scrape_failures_total") == {}
    doc = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    listed = set(re.findall(r"`(runwatch_[a-z_]+?)(?:_total)?`", doc))
    assert {n for n in got.types if n.startswith("runwatch_")} - listed == set()


@pytest.mark.kernel
def test_kernel_drops_by_cpu_add_up_to_the_sensor_drops(tmp_path: Path) -> None:
    opts = SessionOptions(db=None, source="kernel", track_self=True, live_alerts=False, ring_bytes=1 << 12,
                          metrics_listen=("127.0.0.1", 0))
    burst = "import os\nfor _ in range(30001):\n    os.close(os.open('/etc/hostname', os.O_RDONLY))\n"
    with Session(opts).start(["metrics-drops"]) as s:
        assert s.metrics is not None
        assert s.spawn(["python3", "-c", burst]).wait() == 0
        time.sleep(0.3)
        got = scrape(s.metrics.url)
        by_kind = s.sources.system.chosen.drops_by_kind()  # type: ignore[union-attr]
    drops = got.labelled("runwatch_kernel_drops_total")
    assert drops, "a 4 KiB ring cannot take an exec record"
    assert sum(drops.values()) == got.value("runwatch_source_stat", source="kernel", stat="drops")
    assert {dict(labels)["kind"] for labels in drops} <= set(by_kind)
    assert "exec" in {dict(labels)["kind"] for labels in drops}
    assert all(dict(labels)["cpu"].isdigit() for labels in drops)
