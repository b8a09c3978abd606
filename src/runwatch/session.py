"""A monitoring session: outputs, sources, the pipeline and the policies, started in order.

Used by ``runwatch run`` (one command's subtree), ``runwatch watch`` (host-wide) and the
demo. Everything is built unstarted first (rules and policies load here, so their located
errors come before anything runs), then started as a short list of steps::

    (first)   remove what a runwatch killed with SIGKILL left: stale sockets at this session's
              paths, empty cgroups of dead runs (runwatch.leftovers); one notice line
    outputs   open the output group (store, files, console, OTLP, the outputs file's webhook,
              Slack, syslog and OCSF outputs, alert outputs; opening the store marks the runs of
              dead owners crashed, one notice line each; network outputs start their senders)
    metrics   serve Prometheus /metrics (opts.metrics_listen; runwatch.metrics), read at scrape time
    sources   start the source group (system source, SDK collector, OTLP receiver, decisions)
    pipeline  record the run, start the consumer thread
    policy    bind the endpoint, load the enforcers, open the apply gate

:meth:`Session.close` always runs the stop of every step that started, in reverse: the
policy first (its last decisions reach the decision source), then the pipeline drains and
the run is recorded with its counters and drops, then the sources stop, the outputs close.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runwatch.argskey import ArgsKey
from runwatch.enrich.k8s import PodIndex, PodWatcher
from runwatch.enrich.stage import Enrichment
from runwatch.enrich.workload import DEFAULT_SPIFFE_TEMPLATE, DEFAULT_TRUST_DOMAIN, SpiffeTemplate, WorkloadJoin
from runwatch.events import Event
from runwatch.leftovers import sweep
from runwatch.outputs.base import AlertOutput, Output, output_factory
from runwatch.outputs.group import OutputGroup
from runwatch.pipeline import Pipeline, Stage
from runwatch.sdk.wire import ENV_ARGS_KEY
from runwatch.sensors.select import Sources, build_sources
from runwatch.store.sqlite import Retention, SpoolLimits, SqliteStore, StoreError
from runwatch.svid.attest import Attestor
from runwatch.svid.bundles import trust_bundles

if TYPE_CHECKING:
    from runwatch.enrich.aicontext import ToolCallJoin
    from runwatch.enrich.corroborate import Corroboration
    from runwatch.metrics.collector import SessionCollector
    from runwatch.metrics.server import MetricsServer
    from runwatch.metrics.tap import MetricsTap
    from runwatch.outputs.config import OutputSpec
    from runwatch.policy.model import PolicySet
    from runwatch.policy.wiring import SessionPolicy
    from runwatch.rules.stage import DetectionStage


@dataclass
class SessionOptions:
    """How to run a session."""

    db: str | None = "runwatch.db"
    spool: SpoolLimits | None = None  # what the store holds while it cannot write (default: 100k events, 64 MiB)
    retention: Retention | None = None  # how much the store keeps (None: everything)
    events_out: str | None = None
    lake: str | None = None  # also write OCSF records to this Parquet lake directory (events and alerts)
    source: str = "auto"  # auto | kernel | proc
    ring_bytes: int = 1 << 24
    detach_wait: bool = True  # close() returns once the sensor is detached (False: a child finishes it)
    track_self: bool = False  # only what this process starts from now on
    containers: tuple[str, ...] = ()  # keep only events of these container ids/names (prefixes)
    drop_containers: tuple[str, ...] = ()  # drop the events of these container ids/names (prefixes)
    sdk_socket: str | None = None  # collect agent-SDK events here (None: no collector)
    otlp_listen: tuple[str, int] | None = None  # OTLP/HTTP receiver for GenAI spans
    otlp_token: str | None = None  # bearer token the OTLP receiver requires (None: none, loopback only)
    otlp_export: str | None = None  # export tool-attributed events as OTLP spans to this URL
    otlp_options: dict[str, Any] = field(default_factory=dict)  # the OTLP output's options (compression, ...)
    outputs: list[OutputSpec] = field(default_factory=list)  # --outputs FILE and the shortcuts (--webhook, ...)
    join_hold_ms: float | None = None  # reorder window of the tool-call join (default: 200, 6000 with OTLP)
    rules: tuple[str, ...] = ()  # rule files/dirs; empty: no detection stage
    alerts_out: str | None = None  # also append alerts as JSON lines here
    live_alerts: bool = True  # print alerts to stderr as they happen
    throttle_s: float = 60.0
    live: Output | None = None  # e.g. a TextOutput for live printing
    extra_sinks: list[Output] = field(default_factory=list)  # further event outputs, after the others
    policy_paths: tuple[str, ...] = ()  # policy files/dirs; empty: no policy
    policy_mode: str | None = None  # monitor | enforce: overrides every policy's mode
    control_socket: str | None = None  # approve/reject socket (None: the default)
    own_cgroup: bool = False  # spawn() puts the command in its own v2 cgroup (runwatch run)
    notice: Callable[[str], None] | None = None  # live one-line notices (policy applied, ...)
    kube: KubeOptions | None = None  # watch this node's pods on a Kubernetes API (None: no API)
    trust_domain: str = DEFAULT_TRUST_DOMAIN  # of the SPIFFE ids derived from Kubernetes facts
    spiffe_template: str = DEFAULT_SPIFFE_TEMPLATE
    spiffe_bundle: str | None = None  # PEM roots of trust_domain that reported SVIDs are verified against
    spiffe_socket: str | None = None  # else fetch the trust bundles from this Workload API ($SPIFFE_ENDPOINT_SOCKET)
    metrics_listen: tuple[str, int] | None = None  # serve Prometheus /metrics here (checked by the caller)
    live_metrics: bool = False  # keep the metrics collector (Session.collector) without serving it


@dataclass(frozen=True)
class KubeOptions:
    """Where the Kubernetes API is (one of url, kubeconfig, in_cluster) and which node's pods to watch."""

    node: str
    url: str | None = None
    kubeconfig: str | None = None
    in_cluster: bool = False
    token_file: str | None = None
    sync_timeout: float = 10.0  # seconds start-up waits for the first list (then goes on without it)


class _ContainerFilter:
    """Stage keeping events whose container id starts with, or whose name is, one of ``wanted``
    (with ``keep=False``: dropping those events and keeping every other)."""

    def __init__(self, wanted: tuple[str, ...], keep: bool = True) -> None:
        self.wanted = wanted
        self.keep = keep

    def __call__(self, batch: list[Event]) -> list[Event]:
        out = []
        for e in batch:
            c = e.container
            hit = c is not None and any(c.id.startswith(w) or (c.name or "") == w for w in self.wanted)
            if hit == self.keep:
                out.append(e)
        return out


class _SelfFilter:
    """Drops events of this process (the proc fallback reports its own root)."""

    def __init__(self) -> None:
        self.pid = os.getpid()

    def __call__(self, batch: list[Event]) -> list[Event]:
        return [e for e in batch if e.pid != self.pid]


Stop = Callable[[], "list[str] | None"]


def store_summary(store: SqliteStore) -> dict[str, Any]:
    """The run summary's ``store`` part: what was written, spooled, recovered and lost."""
    st = store.stats()
    keys = ("written", "spooled", "spool_peak", "recovered", "lost", "lost_by_reason", "alerts_lost", "fault",
            "faults", "first_fault", "pruned")
    return {"path": store.path, **{k: st[k] for k in keys},
            "spool_limits": {"events": store.spool_limits.events, "bytes": store.spool_limits.bytes}}


def output_summary(group: OutputGroup) -> dict[str, Any]:
    """The run summary's ``outputs`` part: each network output's delivery counters, by name."""
    out: dict[str, Any] = {}
    for member in group.members:
        stats = getattr(member, "output_stats", None)
        if callable(stats):
            counters = stats()
            if counters:
                out[member.name] = counters
    return out


class Session:
    """One sensor session. Use as a context manager; ``close`` is idempotent."""

    def __init__(self, opts: SessionOptions) -> None:
        self.opts = opts
        self.started_ns = time.time_ns()
        self.command = ""
        self.exit_code: int | None = None
        self.run_id: str | None = None
        self.policies: PolicySet | None = None
        self.policy: SessionPolicy | None = None
        self.said: list[str] = []  # every live notice, in order (kept also when no callback is set)
        self.outputs = OutputGroup()
        self.store: SqliteStore | None = None
        self.sources: Sources | None = None
        self.pods: PodWatcher | None = None  # the Kubernetes pod watch (opts.kube)
        index = PodIndex() if opts.kube is not None else None
        self.enrichment = Enrichment(workload=WorkloadJoin(
            pods=index, spiffe=SpiffeTemplate(opts.trust_domain, opts.spiffe_template)),
            attestor=Attestor(trust_bundles(opts.spiffe_bundle, opts.trust_domain, opts.spiffe_socket)))
        self.args_key = ArgsKey()  # digests of tool arguments: the decide endpoint and the command's SDK
        self.detection: DetectionStage | None = None
        self.corroboration: Corroboration | None = None
        self.join: ToolCallJoin | None = None
        self.metrics: MetricsServer | None = None  # opts.metrics_listen
        self._tap: MetricsTap | None = None
        self.collector: SessionCollector | None = None  # opts.metrics_listen or opts.live_metrics
        self.pipeline: Pipeline | None = None
        self._thread: threading.Thread | None = None
        self._stops: list[tuple[str, Stop]] = []  # teardown of each started step, in start order
        self._final: dict[str, Any] | None = None
        self._closed = False

    # -- build (nothing runs yet) -----------------------------------------------------------

    def _say(self, line: str) -> None:
        self.said.append(line)
        if self.opts.notice is not None:
            self.opts.notice(line)

    def _build(self) -> None:
        """Rules, policies, outputs and sources, all unstarted (located load errors raise here)."""
        o = self.opts
        self.sources = build_sources(o.source, track_self=o.track_self, ring_bytes=o.ring_bytes,
                                     detach_wait=o.detach_wait, sdk_socket=o.sdk_socket, otlp_listen=o.otlp_listen,
                                     otlp_token=o.otlp_token)
        # the sensor's programs verify in the kernel meanwhile (released by close, or below)
        self.sources.prepare()
        try:
            self._build_rest()
        except BaseException:
            self.sources.stop()
            raise

    def _build_rest(self) -> None:
        o = self.opts
        assert self.sources is not None
        if o.policy_paths:
            from runwatch.policy.loader import load_policies

            policies = load_policies(list(o.policy_paths))
            self.policies = policies.with_mode(o.policy_mode) if o.policy_mode else policies  # type: ignore[arg-type]
            self.enrichment.containers.role_of = self.policies.role_of
            self.enrichment.workload.governance_of = self.policies.governance_of
        if o.rules:
            self.detection = self._detection()
        if self.policies is not None:
            from runwatch.policy.wiring import SessionPolicy

            self.policy = SessionPolicy(self.policies, sdk_socket=o.sdk_socket, control_socket=o.control_socket,
                                        own_cgroup=o.own_cgroup, resolver=self.enrichment.containers, say=self._say,
                                        args_key=self.args_key, workload=self.enrichment.workload)
            self.sources.group.add(self.policy.source)
        for out in self._outputs():
            self.outputs.add(out)
        if o.metrics_listen is not None or o.live_metrics:
            from runwatch.metrics.collector import SessionCollector
            from runwatch.metrics.tap import MetricsTap

            self._tap = MetricsTap()
            self.outputs.add(self._tap)  # last: it counts what reached every other output
            self.collector = SessionCollector(self, self._tap)
        if o.metrics_listen is not None:
            from runwatch.metrics.server import MetricsServer

            assert self.collector is not None
            self.metrics = MetricsServer(self.collector, *o.metrics_listen)

    def _outputs(self) -> list[Output | AlertOutput]:
        """The output group's members in declared order (events first, then alert outputs)."""
        o = self.opts
        outs: list[Output | AlertOutput] = []
        if o.db:
            outs.append(output_factory("sqlite")(o.db, spool=o.spool, retention=o.retention))
        if o.events_out:
            outs.append(output_factory("jsonl")(o.events_out))
        if o.lake:
            outs.append(output_factory("lake")(o.lake))
        if o.live is not None:
            outs.append(o.live)
        if o.otlp_export:
            outs.append(output_factory("otlp")(o.otlp_export, **o.otlp_options))
        outs.extend(o.extra_sinks)
        outs.extend(spec.build() for spec in o.outputs)
        if self.detection is not None:
            if o.live_alerts:
                outs.append(output_factory("alerts-stream")())
            if o.alerts_out:
                outs.append(output_factory("alerts-jsonl")(o.alerts_out))
        if self.policy is not None:
            outs.append(self.policy.actions)
        return outs

    def _detection(self) -> DetectionStage:
        """The detection stage over the chosen rules (RuleLoadError lists every located error;
        each load warning is a notice)."""
        from runwatch.alerts.throttle import Throttle
        from runwatch.rules import DetectionStage, Engine, load_rules

        rules = load_rules(list(self.opts.rules))
        for warning in rules.warnings:
            self._say(str(warning))
        engine = Engine(rules)
        return DetectionStage(engine, self.outputs.write_alerts, throttle=Throttle(self.opts.throttle_s))

    # -- start-up, in order ---------------------------------------------------------------

    def start(self, command: Sequence[str] = ()) -> Session:
        """Build everything, then start outputs, sources, pipeline and policy in that order."""
        self.command = " ".join(command)
        self._build()
        assert self.sources is not None
        cleaned = sweep(self._socket_paths())  # what a runwatch killed with SIGKILL left
        if cleaned:
            self._say(cleaned)
        try:
            self._stops.append(("sensor load", self._stop_sources))  # prepared in _build
            self._step("outputs", self._open_outputs, self._close_outputs)
            if self.metrics is not None:
                self._step("metrics", self._start_metrics, self._stop_metrics)
            self._step("runtime states", self.enrichment.containers.watch_states, self._stop_states)
            if self.opts.kube is not None:
                self._step("kubernetes pods", self._start_pods, self._stop_pods)
            self._step("sources", self.sources.start, self._stop_sources)
            self._step("pipeline", self._start_pipeline, self._stop_pipeline)
            if self.policy is not None:
                self._step("policy", self.policy.start, self.policy.stop)
        except BaseException:
            self.close()
            raise
        return self

    def _socket_paths(self) -> list[str]:
        """The unix sockets this session binds (SDK, and the policy's decide and control sockets)."""
        paths = [self.opts.sdk_socket] if self.opts.sdk_socket else []
        if self.policy is not None:
            runtime = self.policy.runtime
            paths += [p for p in (runtime.decide_socket, runtime.control_socket) if p]
        return paths

    def _step(self, name: str, start: Callable[[], object], stop: Stop) -> None:
        self._stops.append((name, stop))  # a step that fails half-way still releases what it took
        start()

    def _start_pods(self) -> None:
        """List and watch this node's pods; wait (bounded) for the first list so early events join."""
        from runwatch.enrich.k8s import api_client, wait_synced

        k = self.opts.kube
        assert k is not None and self.enrichment.workload.pods is not None
        client = api_client(k.url, k.kubeconfig, k.in_cluster, k.token_file)
        self.pods = PodWatcher(client, k.node, self.enrichment.workload.pods)
        self.pods.start()
        if wait_synced(self.pods, k.sync_timeout):
            self._say(f"kubernetes: {len(self.pods.index.pods())} pod(s) on node {k.node}, watching")
        else:
            self._say(f"kubernetes: no pod list from the API within {k.sync_timeout:g} s "
                      f"({self.pods.stats.last_error or 'no answer'}); events go on without pod facts until it answers")

    def _stop_pods(self) -> list[str]:
        if self.pods is not None:
            self.pods.stop()
        return []

    def _open_outputs(self) -> None:
        self.outputs.open()
        for m in self.outputs.members:
            store = getattr(m, "store", None)
            if isinstance(store, SqliteStore):
                self.store = store
                for line in store.recovered_runs:
                    self._say(line)

    def _start_metrics(self) -> None:
        assert self.metrics is not None
        self.metrics.start()  # MetricsError (one line) when the address cannot be bound
        self._say(f"metrics: {self.metrics.url}")

    def _stop_metrics(self) -> list[str]:
        if self.metrics is not None:
            self.metrics.stop()
        return []

    def _start_pipeline(self) -> None:
        assert self.sources is not None
        stages: list[Stage] = [_SelfFilter()]
        if self.policy is not None:
            stages.append(self.policy.gate)  # before enrichment: it consumes cgroup.mkdir
        stages.append(self.enrichment)
        if self.sources.sdk_socket or self.sources.otlp_endpoint:
            from runwatch.enrich.aicontext import ToolCallJoin

            # OTLP spans arrive only after they end (plus the exporter's batch delay).
            hold = self.opts.join_hold_ms or (6000.0 if self.sources.otlp_endpoint else 200.0)
            # only the events of processes that send AI events (and their kin) wait; with OTLP
            # every event does, since a process's first spans come only after they end
            self.join = ToolCallJoin(hold_ms=hold, hold_unknown=self.sources.otlp_endpoint is not None)
            stages.append(self.join)
            if self.sources.sdk_socket:
                from runwatch.enrich.corroborate import Corroboration

                # after the join, which releases in time order: an audit event's kernel twin
                # comes at most the window later, plus the join's hold
                # with the kernel sensor running, an exec or connect it did not see did not happen
                kernel = self.sources.system.name == "kernel"
                confirms = frozenset({"process.exec", "net.connect"}) if kernel else frozenset()
                self.corroboration = Corroboration(hold_ms=hold + 1500.0, confirms=confirms)
                stages.append(self.corroboration)
        if self.detection is not None:
            stages.append(self.detection)
        if self.opts.containers:
            stages.append(_ContainerFilter(self.opts.containers))
        if self.opts.drop_containers:
            stages.append(_ContainerFilter(self.opts.drop_containers, keep=False))
        # Each event output is its own sink: one that fails loses the batch alone (counted).
        self.pipeline = Pipeline(self.sources.group, stages, self.outputs.event_outputs)
        if self.store is not None:
            self.run_id = self.store.record_run(started_ns=self.started_ns, command=self.command,
                                               stats=self.summary())
        self._thread = threading.Thread(target=self.pipeline.run, name="runwatch-pipeline", daemon=True)
        self._thread.start()

    @property
    def notices(self) -> list[str]:
        """What the user should be told about the sources (fallbacks, refused programs, ...)."""
        return self.sources.notices if self.sources is not None else []

    # -- the watched command ------------------------------------------------------------

    def spawn(self, argv: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` so that it and every descendant is watched from its first exec."""
        group = self.sources.group if self.sources is not None else None
        me = os.getpid()
        if self.opts.track_self and group is not None:
            group.track(me)
        env: dict[str, str] = {}
        if self.sources is not None and self.sources.sdk_socket:
            env["RUNWATCH_SOCKET"] = self.sources.sdk_socket
        if self.policy is not None:
            env.update(self.policy.env())
        base = popen.get("env") or os.environ
        if ENV_ARGS_KEY not in base:
            try:
                env[ENV_ARGS_KEY] = self.args_key.text  # the SDK's digests then match the endpoint's
            except OSError as exc:
                self._say(f"the command's SDK digests tool arguments under its own key: {exc}")
        if env:
            popen["env"] = {**base, **env}
        if self.policy is not None:
            preexec = self.policy.prepare_command(argv)
            if preexec is not None:
                popen["preexec_fn"] = preexec
        try:
            return subprocess.Popen(list(argv), **popen)
        finally:
            if self.opts.track_self and group is not None:
                group.untrack(me)

    # -- teardown, in reverse -------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Sources, active/refused hooks, events and drops so far."""
        out: dict[str, Any] = {"events": self.pipeline.events if self.pipeline else 0, "drops": 0}
        malformed: dict[str, dict[str, Any]] = {}  # per listener: count and the first reason
        if self.sources is not None and self.sources.group.running:
            group = self.sources.group
            stats = group.stats()
            out["drops"] = stats.get("drops", 0)
            out["source"] = group.name
            out["source_stats"] = stats
            out["hooks"] = {"active": sorted(self.sources.active), "refused": self.sources.refused}
            out["notices"] = self.sources.notices
            for member in getattr(group, "sources", [group]):
                count = member.stats().get("malformed", 0)
                if count:
                    malformed[member.name] = {"count": count, "first": getattr(member, "first_error", None)}
        if self.policy is not None:
            for label, (count, first) in self.policy.malformed().items():
                if count:
                    malformed[f"policy {label} socket"] = {"count": count, "first": first}
        if malformed:
            out["malformed"] = malformed
        if self.corroboration is not None:
            out["corroboration"] = self.corroboration.stats()
        attestor = self.enrichment.attestor
        if attestor.counters["reported"]:
            out["svid"] = {**attestor.stats(), "rejected_by": dict(attestor.rejected_by),
                           "last_rejection": attestor.last_rejection,
                           "bundle": getattr(attestor.bundles, "source", None)}
        if self.store is not None:
            out["store"] = store_summary(self.store)
        delivered = output_summary(self.outputs)
        if delivered:
            out["outputs"] = delivered
        if self.pipeline is not None:
            faults = self.pipeline.faults()
            if faults["stage_errors"] or faults["lost"] or faults["poll_errors"]:
                out["faults"] = faults
            if self.pipeline.failure is not None:
                out["failure"] = self.pipeline.failure
        return out

    def _stop_pipeline(self) -> list[str]:
        """Stop consuming and drain; hand on throttle summaries; record the run on the open store."""
        errors: list[str] = []
        if self.pipeline is not None and self._thread is not None:
            self.pipeline.request_stop()
            self._thread.join(timeout=30)
            errors.extend(self.pipeline.errors)
        if self.store is not None:
            try:  # the store's counters in the run record include a due retry of its spool
                self.store.flush(timeout=10)
            except StoreError as exc:
                errors.append(str(exc))
        summary = self.summary()  # before the sources stop: their counters go with them
        if self.detection is not None:
            self.detection.close()
            summary["alerts"] = self.detection.emitted
        if self.policy is not None:
            summary["policy"] = self.policy.stats()
        if self.store is not None and self.run_id is not None:
            try:
                self.store.record_run(started_ns=self.started_ns, ended_ns=time.time_ns(), command=self.command,
                                      exit_code=self.exit_code, stats=summary, run_id=self.run_id)
            except StoreError as exc:
                errors.append(str(exc))
        self._final = summary
        return errors

    def _stop_sources(self) -> list[str]:
        assert self.sources is not None
        try:
            self.sources.stop()
        except Exception as exc:
            return [f"stopping sources: {exc}"]
        return []

    def _stop_states(self) -> list[str]:
        self.enrichment.containers.close()
        return []

    def _close_outputs(self) -> list[str]:
        self.outputs.close()
        return list(self.outputs.errors)

    def close(self) -> dict[str, Any]:
        """Stop every started step in reverse; returns the final summary (with any errors)."""
        if self._closed:
            return self._final if self._final is not None else self.summary()
        self._closed = True
        errors: list[str] = []
        for _name, stop in reversed(self._stops):
            try:
                errors.extend(stop() or [])
            except Exception as exc:
                errors.append(f"{_name}: {exc}")
        self._stops = []
        summary = self._final if self._final is not None else self.summary()
        if self.store is not None:
            summary["store"] = store_summary(self.store)  # final: after the last retries at close
        delivered = output_summary(self.outputs)  # final: after the outputs sent or spooled what was left
        if delivered:
            summary["outputs"] = delivered
        if errors:
            summary["errors"] = errors
        self._final = summary
        return summary

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
