"""A real session over a replayed JSONL recording, scraped over HTTP: exact counts by kind,
source, verdict and rule, the store's counters, the output hook, and the listen checks."""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from runwatch import session as session_module
from runwatch.events import DecisionInfo, Event, NetInfo, new_id
from runwatch.metrics.server import MetricsError, check_metrics_listen
from runwatch.sensors.fallback import Candidate, FirstAvailable
from runwatch.sensors.multi import MultiSource
from runwatch.sensors.replay import ReplaySource, write_recording
from runwatch.sensors.select import Sources
from runwatch.session import Session, SessionOptions
from runwatch.testing.metrics import Scrape, scrape

EXECS, NC_EXECS, CONNECTS, AUDIT_EXECS = 23, 7, 11, 5
DENIES, ALLOWS = 3, 1
RULE = """
- rule: netcat_ran_here
  desc: nc started
  condition: kind = process.exec and proc.exe = /usr/bin/nc
  output: "nc %proc.cmdline"
  severity: high
  tags: [test]
"""


def _recording(path: Path) -> int:
    """EXECS+NC_EXECS kernel execs, AUDIT_EXECS audit execs, CONNECTS connects, DENIES+ALLOWS decisions."""
    now = time.time_ns()
    events: list[Event] = []

    def add(**kw: Any) -> None:
        t = now + len(events)
        events.append(Event(id=new_id(t), time=t, pid=40_000 + len(events), ppid=1, **kw))

    for i in range(EXECS):
        add(kind="process.exec", exe="/usr/bin/true", cmdline=f"true {i}")
    for i in range(NC_EXECS):
        add(kind="process.exec", exe="/usr/bin/nc", cmdline=f"nc -z 127.0.0.{i + 1} 9")
    for _ in range(AUDIT_EXECS):
        add(kind="process.exec", source="audit", exe="/usr/bin/true", cmdline="true")
    for i in range(CONNECTS):
        add(kind="net.connect", exe="/usr/bin/curl", net=NetInfo(proto="tcp", family="ipv4", dst_ip="127.0.0.1",
                                                                   dst_port=9000 + i, result=0))
    for verdict, layer, n in (("deny", "egress", DENIES), ("allow", "tool", ALLOWS)):
        for _ in range(n):
            add(kind="policy.decision", source="policy",
                decision=DecisionInfo(policy="p-23", verdict=verdict, layer=layer, target="10.0.0.9:443"))
    return write_recording(path, events)


class _Counting:
    """An output offering the output_stats() hook: counters, gauges (its own, a level), a keyed counter."""

    name = "probe"
    gauge_stats = frozenset({"depth"})

    def __init__(self) -> None:
        self.sent = 0

    def open(self) -> None: ...

    def write(self, events: Any) -> None:
        self.sent += len(events)

    def flush(self) -> None: ...

    def close(self) -> None: ...

    def output_stats(self) -> dict[str, Any]:
        return {"sent": self.sent, "depth": 13, "pending": 5, "dropped": {"full": 3, "error": 1}, "endpoint": "x"}


@pytest.fixture
def replayed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Sessions built in this test read the recording instead of the host (kernel/proc)."""
    path = tmp_path / "rec.jsonl"
    _recording(path)

    def build(*_a: Any, **_kw: Any) -> Sources:
        system = FirstAvailable([Candidate("replay", ReplaySource(path, batch=9))])
        group = MultiSource()
        group.add(system)
        return Sources(group, system)

    monkeypatch.setattr(session_module, "build_sources", build)
    return path


def documented(doc: str) -> set[str]:
    """The metric family names docs/metrics.md lists (counters without ``_total``)."""
    return set(re.findall(r"`(runwatch_[a-z_]+?)(?:_total)?`", doc))


def _wait_for(url: str, name: str, want: float, **labels: str) -> Scrape:
    deadline = time.monotonic() + 20
    while True:
        got = scrape(url)
        if got.value(name, **labels) >= want or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def test_scrape_counts_events_decisions_alerts_store_and_outputs(tmp_path: Path, replayed: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULE)
    probe = _Counting()
    opts = SessionOptions(db=str(tmp_path / "m.db"), rules=(str(rules),), live_alerts=False, throttle_s=0,
                          metrics_listen=("127.0.0.1", 0), extra_sinks=[probe])
    with Session(opts).start(["metrics-test"]) as s:
        assert s.metrics is not None
        total = EXECS + NC_EXECS + AUDIT_EXECS + CONNECTS + DENIES + ALLOWS
        assert s.store is not None
        _wait_for(s.metrics.url, "runwatch_pipeline_events_total", total)
        s.store.flush(timeout=10)
        got = scrape(s.metrics.url)
        assert s.said[0] == f"metrics: http://127.0.0.1:{s.metrics.port}/metrics"
    assert got.types["runwatch_events"] == "counter"
    assert got.labelled("runwatch_events_total") == {
        (("kind", "process.exec"), ("source", "kernel")): EXECS + NC_EXECS,
        (("kind", "process.exec"), ("source", "audit")): AUDIT_EXECS,
        (("kind", "net.connect"), ("source", "kernel")): CONNECTS,
        (("kind", "policy.decision"), ("source", "policy")): DENIES + ALLOWS,
    }
    assert got.labelled("runwatch_decisions_total") == {
        (("layer", "egress"), ("verdict", "deny")): DENIES, (("layer", "tool"), ("verdict", "allow")): ALLOWS}
    assert got.labelled("runwatch_alerts_total") == {(("rule", "netcat_ran_here"), ("severity", "high")): NC_EXECS}
    assert got.value("runwatch_alert_matches_total", rule="netcat_ran_here", severity="high") == NC_EXECS
    assert got.value("runwatch_pipeline_events_total") == total
    assert got.value("runwatch_pipeline_lag_seconds_count") == total
    assert 0 < got.value("runwatch_pipeline_lag_seconds_sum") < 60 * total
    assert got.value("runwatch_source_events_total", source="replay") == total
    assert got.value("runwatch_source_stat", source="replay", stat="total") == total
    assert got.value("runwatch_store_written_total") == total
    assert got.value("runwatch_store_writable") == 1
    assert got.value("runwatch_store_spool_limit_events") == 100_000
    assert got.value("runwatch_output_sent_total", output="probe") == total
    assert got.types["runwatch_output_depth"] == "gauge"
    assert got.value("runwatch_output_depth", output="probe") == 13
    assert got.types["runwatch_output_pending"] == "gauge" and got.value("runwatch_output_pending", output="probe") == 5
    assert got.labelled("runwatch_output_dropped_total") == {
        (("key", "error"), ("output", "probe")): 1, (("key", "full"), ("output", "probe")): 3}
    assert "runwatch_output_endpoint" not in got.types
    assert got.labelled("runwatch_metrics_scrape_failures_total") == {}
    assert got.value("process_open_fds") > 0
    assert "runwatch_kernel_drops" not in got.types  # not the kernel sensor


def test_metrics_server_stops_with_the_session(tmp_path: Path, replayed: Path) -> None:
    opts = SessionOptions(db=None, live_alerts=False, metrics_listen=("127.0.0.1", 0))
    with Session(opts).start(["metrics-test"]) as s:
        assert s.metrics is not None
        port = s.metrics.port
        assert port > 0
        assert [t.name for t in threading.enumerate() if t.name == "runwatch-metrics"] == ["runwatch-metrics"]
        scrape(s.metrics.url)
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
    assert [t.name for t in threading.enumerate() if t.name.startswith("runwatch-metrics")] == []


def test_a_taken_port_is_one_line_and_nothing_keeps_running(tmp_path: Path, replayed: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        session = Session(SessionOptions(db=str(tmp_path / "t.db"), live_alerts=False,
                                         metrics_listen=("127.0.0.1", port)))
        with pytest.raises(MetricsError, match=rf"^cannot serve metrics on 127\.0\.0\.1:{port}: "):
            session.start(["metrics-test"])
    assert session.pipeline is None and session.sources is not None and not session.sources.group.running


@pytest.mark.parametrize(("host", "allowed", "problem"), [
    ("127.0.0.1", False, None), ("::1", False, None), ("localhost", False, None), ("127.0.0.23", False, None),
    ("0.0.0.0", False, "not a loopback address"), ("10.1.2.3", False, "not a loopback address"),
    ("0.0.0.0", True, None), ("unix:/run/m.sock", True, "TCP only"),
])
def test_listen_checks(host: str, allowed: bool, problem: str | None) -> None:
    if problem is None:
        check_metrics_listen(host, allowed)
    else:
        with pytest.raises(ValueError, match=problem):
            check_metrics_listen(host, allowed)


def test_docs_list_every_metric_and_nothing_else(tmp_path: Path, replayed: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    listed = documented(doc)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULE)
    opts = SessionOptions(db=str(tmp_path / "d.db"), rules=(str(rules),), live_alerts=False,
                          metrics_listen=("::1", 0))
    with Session(opts).start(["metrics-doc"]) as s:
        assert s.metrics is not None and s.metrics.url.startswith("http://[::1]:")
        got = scrape(s.metrics.url)
    scraped = {name for name in got.types if name.startswith("runwatch_")}
    assert scraped - listed == set()
    assert listed - scraped == {"runwatch_kernel_drops", "runwatch_kernel_ring_used_bytes",
                                "runwatch_kernel_ring_size_bytes", "runwatch_kernel_ring_usage_ratio",
                                "runwatch_join", "runwatch_join_entries", "runwatch_corroboration",
                                "runwatch_corroboration_entries"}  # the kernel sensor's and the SDK's


def test_join_and_corroboration_counters_are_the_stages_own(tmp_path: Path, replayed: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from runwatch.sensors.base import source_factory

    plain = session_module.build_sources

    def with_sdk(*a: Any, **kw: Any) -> Sources:
        sources = plain(*a, **kw)
        sources.group.add(source_factory("sdk")(str(tmp_path / "sdk.sock")))
        sources.sdk_path = str(tmp_path / "sdk.sock")
        return sources

    monkeypatch.setattr(session_module, "build_sources", with_sdk)
    opts = SessionOptions(db=None, live_alerts=False, join_hold_ms=1, metrics_listen=("127.0.0.1", 0))
    total = EXECS + NC_EXECS + AUDIT_EXECS + CONNECTS + DENIES + ALLOWS
    with Session(opts).start(["metrics-join"]) as s:
        assert s.metrics is not None and s.join is not None and s.corroboration is not None
        _wait_for(s.metrics.url, "runwatch_pipeline_events_total", total)
        got = scrape(s.metrics.url)
        join, corroboration = s.join.stats(), s.corroboration.stats()
    assert got.value("runwatch_pipeline_events_total") == total
    for key, value in join.items():
        name = "runwatch_join_entries" if key in ("held", "processes", "calls", "lineage") else "runwatch_join_total"
        assert got.value(name, **{("table" if name.endswith("entries") else "counter"): key}) == value, key
    assert got.value("runwatch_join_entries", table="held") == 0
    for key, value in corroboration.items():
        name = "runwatch_corroboration_entries" if key in ("held", "recent") else "runwatch_corroboration_total"
        assert got.value(name, **{("table" if name.endswith("entries") else "counter"): key}) == value, key
    assert len(join) == 16 and len(corroboration) >= 3


def test_a_webhooks_delivery_counters_are_scraped(tmp_path: Path, replayed: Path) -> None:
    from runwatch.outputs.webhook import webhook_output
    from runwatch.testing.receivers import HttpReceiver

    rules = tmp_path / "rules.yaml"
    rules.write_text(RULE)
    with HttpReceiver() as rx:
        hook = webhook_output(f"{rx.url}/alerts", name="hook-23")
        opts = SessionOptions(db=None, rules=(str(rules),), live_alerts=False, throttle_s=0,
                              metrics_listen=("127.0.0.1", 0), extra_sinks=[hook])  # type: ignore[list-item]
        with Session(opts).start(["metrics-webhook"]) as s:
            assert s.metrics is not None
            assert rx.wait_for(NC_EXECS)
            got = _wait_for(s.metrics.url, "runwatch_output_sent_total", NC_EXECS, output="hook-23")
    assert got.value("runwatch_output_sent_total", output="hook-23") == NC_EXECS
    assert got.value("runwatch_output_dropped_total", output="hook-23") == 0
    assert got.types["runwatch_output_pending"] == "gauge" and got.types["runwatch_output_queued"] == "gauge"
    assert got.value("runwatch_output_pending", output="hook-23") == 0
    assert got.value("runwatch_alerts_total", rule="netcat_ran_here", severity="high") == NC_EXECS
    assert "runwatch_output_spool" not in got.types  # the spool directory is text, not a number
