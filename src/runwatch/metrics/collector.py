"""The session's collector: every metric read from counters the session already keeps, at scrape time.

:class:`SessionCollector` is a prometheus-client custom collector. Nothing here runs on the
pipeline thread: each scrape copies the counters of the metrics tap, the pipeline, every
running source (the kernel sensor's per-CPU drop map and ring positions included), the
tool-call join and corroboration, the store and every output that offers ``stats()``, and
turns them into metric families. A part that is not there (no join, no store, the pipeline
not started yet) yields no samples; a part that fails while being read (a source stopping
under the scrape) is left out of that scrape alone. Every metric is listed in ``docs/metrics.md``.

The output hook is the one the run summary reads (:mod:`runwatch.outputs.base`): an output may
offer ``output_stats() -> Mapping[str, int | float | Mapping[str, int | float]]`` (the network
outputs' delivery counters: sent, retried, spooled, dropped by reason, queued, pending). Each
number is exported as ``runwatch_output_<stat>_total{output="<name>"}`` (a counter), or as the
gauge ``runwatch_output_<stat>{output="<name>"}`` when ``<stat>`` is a level (:data:`LEVELS`, or
named in the output's optional ``gauge_stats``); a mapping of numbers becomes one sample per key
(label ``key``). Other values (strings, None) are left out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from runwatch import __version__
from runwatch.metrics.tap import MetricsTap, copy_table

if TYPE_CHECKING:
    from runwatch.session import Session

NS = 1e-9
JOIN_TABLES = frozenset({"held", "processes", "calls", "lineage", "recent"})
"""Join and corroboration stats that are table sizes (gauges); the others are counters."""
LEVELS = frozenset({"queued", "pending"})
"""Output stats that are levels, not counts (payloads in the queue, in the disk spool)."""
_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(text: str) -> str:
    """``text`` as a metric name part (characters outside ``[a-zA-Z0-9_]`` become ``_``)."""
    return _UNSAFE.sub("_", text).strip("_").lower() or "value"


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


class _Families:
    """Metric families by name, made on first use (so labels of one family come from several parts)."""

    def __init__(self) -> None:
        self.by_name: dict[str, Metric] = {}

    def counter(self, name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
        fam = self.by_name.get(name)
        if fam is None:
            fam = self.by_name[name] = CounterMetricFamily(name, doc, labels=list(labels))
        assert isinstance(fam, CounterMetricFamily)
        return fam

    def gauge(self, name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
        fam = self.by_name.get(name)
        if fam is None:
            fam = self.by_name[name] = GaugeMetricFamily(name, doc, labels=list(labels))
        assert isinstance(fam, GaugeMetricFamily)
        return fam


class SessionCollector(Collector):
    """Reads ``session`` (and its ``tap``) at every scrape; see the module docstring."""

    def __init__(self, session: Session, tap: MetricsTap) -> None:
        self.session = session
        self.tap = tap
        self.failures: dict[str, int] = {}  # per part: scrapes that left it out because reading it failed

    def describe(self) -> list[Metric]:
        """No fixed description: the families depend on what the session runs."""
        return []

    def collect(self) -> Iterator[Metric]:
        """One scrape: every part of the session that is there."""
        fams = _Families()
        parts: tuple[Callable[[_Families], None], ...] = (
            self._info, self._tap, self._pipeline, self._sources, self._join, self._store, self._outputs)
        for part in parts:
            try:
                part(fams)
            except Exception:  # a part changing under the scrape (stopping): left out this time
                self._failed(part.__name__.lstrip("_"))
        failures = fams.counter("runwatch_metrics_scrape_failures", "Scrapes that left a part of the session "
                                "out because reading it failed", ["part"])
        for part_name, n in sorted(self.failures.items()):
            failures.add_metric([part_name], n)
        yield from fams.by_name.values()

    def _failed(self, part: str) -> None:
        self.failures[part] = self.failures.get(part, 0) + 1

    # -- the parts ----------------------------------------------------------------------------

    def _info(self, fams: _Families) -> None:
        s = self.session
        group = s.sources.group if s.sources is not None else None
        source = group.name if group is not None and group.running else ""
        fams.gauge("runwatch_info", "Always 1: the runwatch version and the session's sources",
                   ["version", "source"]).add_metric([__version__, source], 1)
        fams.gauge("runwatch_session_start_time_seconds", "When the session started (seconds since the "
                   "epoch)").add_metric([], s.started_ns * NS)

    def _tap(self, fams: _Families) -> None:
        snap = self.tap.snapshot()
        events = fams.counter("runwatch_events", "Events that reached the outputs, by kind and source",
                              ["kind", "source"])
        for (kind, source), n in sorted(snap.events.items()):
            events.add_metric([kind, source], n)
        decisions = fams.counter("runwatch_decisions", "Policy decisions, by verdict and the layer that "
                                 "decided (tool, exec, egress, file)", ["verdict", "layer"])
        for (verdict, layer), n in sorted(snap.decisions.items()):
            decisions.add_metric([verdict, layer], n)
        alerts = fams.counter("runwatch_alerts", "Alerts emitted (after throttling), by rule and severity",
                              ["rule", "severity"])
        matches = fams.counter("runwatch_alert_matches", "Rule matches the emitted alerts stand for (a "
                               "throttled alert stands for several)", ["rule", "severity"])
        for key, n in sorted(snap.alerts.items()):
            alerts.add_metric(list(key), n)
            matches.add_metric(list(key), snap.alert_matches.get(key, 0))
        lag = SummaryMetricFamily("runwatch_pipeline_lag_seconds", "Time from an event's own time to its "
                                  "reaching the outputs (reorder holds included)",
                                  count_value=snap.lag_count, sum_value=snap.lag_sum_ns * NS)
        fams.by_name[lag.name] = lag
        fams.gauge("runwatch_pipeline_lag_last_seconds", "Lag of the oldest event of the last batch that "
                   "reached the outputs").add_metric([], snap.lag_last_max_ns * NS)

    def _pipeline(self, fams: _Families) -> None:
        p = self.session.pipeline
        if p is None:
            return
        fams.counter("runwatch_pipeline_events", "Events the pipeline handed to its outputs").add_metric([], p.events)
        faults: dict[str, Any] = p.faults()
        stage = fams.counter("runwatch_pipeline_stage_errors", "Batches a stage failed on (the events went "
                             "on)", ["stage"])
        for name, n in sorted(faults["stage_errors"].items()):
            stage.add_metric([name], n)
        lost = fams.counter("runwatch_pipeline_lost_events", "Events an output lost because it raised",
                            ["output"])
        for name, n in sorted(faults["lost"].items()):
            lost.add_metric([name], n)
        fams.counter("runwatch_pipeline_poll_errors", "Source polls that raised").add_metric(
            [], faults["poll_errors"])

    def _sources(self, fams: _Families) -> None:
        s = self.session
        if s.sources is None or not s.sources.group.running:
            return
        events = fams.counter("runwatch_source_events", "Events each source produced", ["source"])
        stats = fams.gauge("runwatch_source_stat", "Every other counter or size a source reports",
                           ["source", "stat"])
        for src in s.sources.group.running:
            member: Any = getattr(src, "chosen", None) or src  # FirstAvailable: the source that runs
            for key, value in sorted(member.stats().items()):
                n = _number(value)
                if n is None or key.startswith("drops."):
                    continue
                if key == "events":
                    events.add_metric([member.name], n)
                else:
                    stats.add_metric([member.name, key], n)
            self._kernel(member, fams)

    def _kernel(self, member: Any, fams: _Families) -> None:
        drops_by_cpu = getattr(member, "drops_by_cpu", None)
        if callable(drops_by_cpu):
            drops = fams.counter("runwatch_kernel_drops", "Records the kernel could not queue (ring buffer "
                                 "full), by CPU and event record kind", ["cpu", "kind"])
            for (cpu, kind), n in sorted(drops_by_cpu().items()):
                drops.add_metric([str(cpu), kind], n)
        ring_usage = getattr(member, "ring_usage", None)
        usage = ring_usage() if callable(ring_usage) else None
        if usage is not None:
            used, size = usage
            fams.gauge("runwatch_kernel_ring_used_bytes", "Bytes queued in the kernel ring buffer and not yet "
                       "read").add_metric([], used)
            fams.gauge("runwatch_kernel_ring_size_bytes", "Size of the kernel ring buffer").add_metric([], size)
            fams.gauge("runwatch_kernel_ring_usage_ratio", "Queued bytes over ring size (1: full, records "
                       "are dropped)").add_metric([], used / size if size else 0.0)

    def _join(self, fams: _Families) -> None:
        s = self.session
        stages = (("join", "tool-call join", s.join), ("corroboration", "audit/kernel corroboration", s.corroboration))
        for label, what, stage in stages:
            if stage is None:
                continue
            counters = fams.counter(f"runwatch_{label}", f"Counters of the {what} stage", ["counter"])
            tables = fams.gauge(f"runwatch_{label}_entries", "Entries in the stage's bounded tables (held: "
                                "events waiting in the reorder buffer)", ["table"])
            for key, value in sorted(copy_table(stage.stats()).items()):
                (tables if key in JOIN_TABLES else counters).add_metric([key], value)

    def _store(self, fams: _Families) -> None:
        store = self.session.store
        if store is None:
            return
        st = store.stats()
        for key, kind, doc in (
            ("written", "counter", "Events and alerts committed to the store"),
            ("duplicates", "counter", "Rows whose id was stored already"),
            ("transactions", "counter", "Store transactions committed"),
            ("spooled_total", "counter", "Rows that waited in the spool while the store could not write"),
            ("recovered", "counter", "Rows committed from the spool"),
            ("alerts_lost", "counter", "Alerts the store gave up"),
            ("faults", "counter", "Failed store write attempts"),
            ("queued", "gauge", "Batches waiting for the store's writer"),
            ("spooled", "gauge", "Rows in the spool now"),
            ("spool_peak", "gauge", "Most rows the spool held at once"),
        ):
            name = f"runwatch_store_{'spool_rows' if key == 'spooled' else key.removesuffix('_total')}"
            if kind == "counter":
                fams.counter(name, doc).add_metric([], st[key])
            else:
                fams.gauge(name, doc).add_metric([], st[key])
        lost = fams.counter("runwatch_store_lost", "Events the store gave up, by reason", ["reason"])
        for reason, n in sorted(st["lost_by_reason"].items()):
            lost.add_metric([reason], n)
        fams.gauge("runwatch_store_writable", "1 while the store can write, 0 while it spools").add_metric(
            [], 0 if st["fault"] else 1)
        limits = store.spool_limits
        fams.gauge("runwatch_store_spool_limit_events", "Rows the spool may hold").add_metric([], limits.events)
        fams.gauge("runwatch_store_spool_limit_bytes", "Bytes the spool may hold").add_metric([], limits.bytes)

    def _outputs(self, fams: _Families) -> None:
        seen: dict[str, int] = {}
        for member in self.session.outputs.members:
            stats = getattr(member, "output_stats", None)
            if member is self.tap or not callable(stats):
                continue
            name = member.name
            seen[name] = seen.get(name, 0) + 1
            label = name if seen[name] == 1 else f"{name}#{seen[name]}"
            gauges = LEVELS | frozenset(getattr(member, "gauge_stats", ()) or ())
            try:
                values = stats()
            except Exception:
                self._failed("outputs")
                continue
            if isinstance(values, Mapping):
                export_output_stats(fams, label, values, gauges)


def export_output_stats(fams: _Families, output: str, values: Mapping[str, Any], gauges: frozenset[str]) -> None:
    """One output's ``stats()`` as samples labelled ``output`` (see the module docstring)."""
    for key, value in values.items():
        stat = metric_name(str(key))
        base = f"runwatch_output_{stat.removesuffix('_total')}"
        doc = f"The outputs' {key!s} (from their stats())"
        items = ([("", value)] if not isinstance(value, Mapping) else sorted(value.items()))
        numbers = [(str(k), n) for k, v in items if (n := _number(v)) is not None]
        if not numbers:
            continue
        keyed = isinstance(value, Mapping)
        labels = ["output", "key"] if keyed else ["output"]
        fam: CounterMetricFamily | GaugeMetricFamily
        fam = fams.gauge(base, doc, labels) if key in gauges else fams.counter(base, doc, labels)
        for sub, n in numbers:
            fam.add_metric([output, sub] if keyed else [output], n)
