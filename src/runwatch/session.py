"""A monitoring session: source, enrichment, store and outputs wired in order.

Used by ``runwatch run`` (one command's subtree), ``runwatch watch`` (host-wide) and the
demo. Start-up is ordered (store, outputs, source, pipeline thread); :meth:`close` always
runs every teardown step, in reverse, and records the run with its counters and drops.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runwatch.enrich.stage import Enrichment
from runwatch.events import Event
from runwatch.pipeline import Pipeline, Sink
from runwatch.rules.stage import AlertSink, DetectionStage
from runwatch.sensors.select import Opened, open_source
from runwatch.store.sqlite import SqliteStore, StoreError

if TYPE_CHECKING:
    from runwatch.policy.apply import CommandCgroup, ContainerPolicyStage
    from runwatch.policy.enforce import Enforcers
    from runwatch.policy.model import PolicySet
    from runwatch.policy.runtime import PolicyRuntime


@dataclass
class SessionOptions:
    """How to run a session."""

    db: str | None = "runwatch.db"
    events_out: str | None = None
    source: str = "auto"  # auto | kernel | proc
    ring_bytes: int = 1 << 24
    track_self: bool = False  # only what this process starts from now on
    containers: tuple[str, ...] = ()  # keep only events of these container ids/names (prefixes)
    sdk_socket: str | None = None  # collect agent-SDK events here (None: no collector)
    otlp_listen: tuple[str, int] | None = None  # OTLP/HTTP receiver for GenAI spans
    otlp_export: str | None = None  # export tool-attributed events as OTLP spans to this URL
    join_hold_ms: float | None = None  # reorder window of the tool-call join (default: 200, 6000 with OTLP)
    rules: tuple[str, ...] = ()  # rule files/dirs; empty: no detection stage
    alerts_out: str | None = None  # also append alerts as JSON lines here
    live_alerts: bool = True  # print alerts to stderr as they happen
    throttle_s: float = 60.0
    live: Sink | None = None  # e.g. a TextOutput for live printing
    extra_sinks: list[Sink] = field(default_factory=list)
    policy_paths: tuple[str, ...] = ()  # policy files/dirs; empty: no policy
    policy_mode: str | None = None  # monitor | enforce: overrides every policy's mode
    control_socket: str | None = None  # approve/reject socket (None: the default)
    own_cgroup: bool = False  # spawn() puts the command in its own v2 cgroup (runwatch run)
    notice: Callable[[str], None] | None = None  # live one-line notices (policy applied, ...)


class _ContainerFilter:
    """Stage keeping events whose container id or name starts with one of ``wanted``."""

    def __init__(self, wanted: tuple[str, ...]) -> None:
        self.wanted = wanted

    def __call__(self, batch: list[Event]) -> list[Event]:
        out = []
        for e in batch:
            c = e.container
            if c is not None and any(c.id.startswith(w) or (c.name or "") == w for w in self.wanted):
                out.append(e)
        return out


class _SelfFilter:
    """Drops events of this process (the proc fallback reports its own root)."""

    def __init__(self) -> None:
        self.pid = os.getpid()

    def __call__(self, batch: list[Event]) -> list[Event]:
        return [e for e in batch if e.pid != self.pid]


class Session:
    """One sensor session. Use as a context manager; ``close`` is idempotent."""

    def __init__(self, opts: SessionOptions) -> None:
        self.opts = opts
        self.started_ns = time.time_ns()
        self.store: SqliteStore | None = None
        self.opened: Opened | None = None
        self.pipeline: Pipeline | None = None
        self.enrichment: Enrichment | None = None
        self.detection: DetectionStage | None = None
        self._thread: threading.Thread | None = None
        self._sinks: list[Sink] = []
        self._closed = False
        self.run_id: str | None = None
        self.command: str = ""
        self.exit_code: int | None = None
        self.policies: PolicySet | None = None
        self.policy_runtime: PolicyRuntime | None = None
        self.enforcers: Enforcers | None = None
        self.applier: ContainerPolicyStage | None = None
        self.cmd_cgroup: CommandCgroup | None = None
        self.policy_notices: list[str] = []

    # -- start-up, in order ---------------------------------------------------------------

    def start(self, command: Sequence[str] = ()) -> Session:
        """Open the store and outputs, start the source and the consumer thread."""
        self.command = " ".join(command)
        if self.opts.policy_paths:
            self._load_policies()  # PolicyLoadError (every located error) before anything starts
        try:
            if self.opts.db:
                self.store = SqliteStore(self.opts.db)
                self._sinks.append(self.store)
            if self.opts.events_out:
                from runwatch.outputs.jsonl import JsonlOutput

                out = JsonlOutput(self.opts.events_out)
                out.open()
                self._sinks.append(out)
            if self.opts.live is not None:
                self._sinks.append(self.opts.live)
            if self.opts.otlp_export:
                from runwatch.outputs.otlp import OtlpOutput

                otlp_out = OtlpOutput(self.opts.otlp_export)
                otlp_out.open()
                self._sinks.append(otlp_out)
            self._sinks.extend(self.opts.extra_sinks)
            self.enrichment = Enrichment()
            self.detection = self._detection()
            self.opened = open_source(self.opts.source, track_self=self.opts.track_self,
                                      ring_bytes=self.opts.ring_bytes, sdk_socket=self.opts.sdk_socket,
                                      otlp_listen=self.opts.otlp_listen)
            stages: list[Any] = [_SelfFilter()]
            if self.policies is not None:
                self._start_policy()
                if self.applier is not None:
                    stages.append(self.applier)  # before enrichment: it consumes cgroup.mkdir
            stages.append(self.enrichment)
            if self.opened.sdk_socket or self.opened.otlp_endpoint:
                from runwatch.enrich.aicontext import ToolCallJoin

                # OTLP spans arrive only after they end (plus the exporter's batch delay).
                hold = self.opts.join_hold_ms or (6000.0 if self.opened.otlp_endpoint else 200.0)
                stages.append(ToolCallJoin(hold_ms=hold))
            if self.detection is not None:
                stages.append(self.detection)
            if self.opts.containers:
                stages.append(_ContainerFilter(self.opts.containers))
            self.pipeline = Pipeline(self.opened.source, stages, self._sinks)
            if self.store is not None:
                self.run_id = self.store.record_run(started_ns=self.started_ns, command=self.command,
                                                   stats=self.summary())
            self._thread = threading.Thread(target=self.pipeline.run, name="runwatch-pipeline", daemon=True)
            self._thread.start()
        except BaseException:
            self._stop_policy()
            self.close()
            raise
        return self

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- policy ---------------------------------------------------------------------------

    def _say(self, line: str) -> None:
        self.policy_notices.append(line)
        if self.opts.notice is not None:
            self.opts.notice(line)

    def _load_policies(self) -> None:
        from runwatch.policy.loader import load_policies

        policies = load_policies(list(self.opts.policy_paths))
        if self.opts.policy_mode is not None:
            policies = policies.with_mode(self.opts.policy_mode)  # type: ignore[arg-type]
        self.policies = policies

    def _start_policy(self) -> None:
        """Decisions endpoint, its events as a source, kernel enforcers and the apply stage.

        Ordering: the endpoint binds first (a live socket of another runwatch is an error),
        then the enforcers load; the decision source joins the session's sources."""
        from runwatch.enrich.containers import find_cgroup2_mount
        from runwatch.policy.apply import ContainerPolicyStage, RuleActionSink
        from runwatch.policy.enforce import Enforcers, decision_event
        from runwatch.policy.runtime import PolicyRuntime, decide_socket_beside
        from runwatch.policy.server import DEFAULT_CONTROL_SOCKET
        from runwatch.policy.source import record_decision
        from runwatch.sensors.multi import MultiSource

        assert self.policies is not None and self.opened is not None
        sdk = self.opened.sdk_socket or self.opts.sdk_socket
        self.policy_runtime = PolicyRuntime(self.policies, decide_socket=decide_socket_beside(sdk),
                                            control_socket=self.opts.control_socket or DEFAULT_CONTROL_SOCKET)
        self.policy_runtime.start()
        src = self.opened.source
        parts = list(src.sources) if isinstance(src, MultiSource) else [src]
        self.opened.source = MultiSource([*parts, self.policy_runtime.source])
        if self.detection is not None:
            self.detection.sinks.append(RuleActionSink(self.policies, say=self._say))
        if not any(p.egress is not None or p.exec is not None or p.files is not None for p in self.policies):
            return
        v2_root = find_cgroup2_mount()
        if v2_root is None:
            self._say("no cgroup v2 hierarchy: egress, file and exec rules are not enforced")
            return
        self.enforcers = Enforcers(on_decision=lambda d: record_decision(decision_event(d))).start()
        for problem in self.enforcers.problems:
            self._say(problem)
        scope = None
        if self.opts.own_cgroup:
            from runwatch.policy.apply import CommandCgroup

            self.cmd_cgroup = CommandCgroup(v2_root).create()
            scope = self.cmd_cgroup.rel
        self.applier = ContainerPolicyStage(self.policies, self.enforcers, v2_root=v2_root, scope=scope,
                                            resolver=self.enrichment.containers if self.enrichment else None,
                                            say=self._say)
        if scope is None:
            n = self.applier.scan_existing()
            if n:
                self._say(f"{n} running container(s) checked against the policies")

    def _stop_policy(self) -> list[str]:
        """Endpoint, apply stage, enforcers, command cgroup: stopped in that order. Idempotent."""
        errors: list[str] = []
        if self.policy_runtime is not None:
            self.policy_runtime.stop()
        if self.applier is not None:
            self.applier.close()
        if self.enforcers is not None:
            try:
                self.enforcers.stop()  # last decisions reach the bus before the pipeline drains
            except Exception as exc:
                errors.append(f"stopping enforcers: {exc}")
            self.enforcers = None
        if self.cmd_cgroup is not None:
            errors.extend(self.cmd_cgroup.remove())
            self.cmd_cgroup = None
        return errors

    def _detection(self) -> DetectionStage | None:
        """The detection stage over the chosen rules (RuleLoadError lists every located error)."""
        if not self.opts.rules:
            return None
        from runwatch.alerts.throttle import Throttle
        from runwatch.rules import Engine, JsonlAlertSink, StreamAlertSink, load_rules

        engine = Engine(load_rules(list(self.opts.rules)))
        sinks: list[AlertSink] = []
        if self.opts.live_alerts:
            sinks.append(StreamAlertSink())
        if self.opts.alerts_out:
            sinks.append(JsonlAlertSink(self.opts.alerts_out))
        if self.store is not None:
            sinks.append(self.store.alert_sink())
        return DetectionStage(engine, sinks, throttle=Throttle(self.opts.throttle_s))

    # -- the watched command ------------------------------------------------------------

    def spawn(self, argv: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` so that it and every descendant is watched from its first exec."""
        src = self.opened.source if self.opened else None
        track = getattr(src, "track", None)
        untrack = getattr(src, "untrack", None)
        me = os.getpid()
        if self.opts.track_self and track is not None:
            track(me)
        env: dict[str, str] = {}
        if self.opened is not None and self.opened.sdk_socket:
            env["RUNWATCH_SOCKET"] = self.opened.sdk_socket
        if self.policy_runtime is not None:
            env.update(self.policy_runtime.env())
        if env:
            popen["env"] = {**(popen.get("env") or os.environ), **env}
        if self.cmd_cgroup is not None:
            self._apply_command_policy(argv)
            popen["preexec_fn"] = self.cmd_cgroup.preexec
        try:
            return subprocess.Popen(list(argv), **popen)
        finally:
            if self.opts.track_self and untrack is not None:
                untrack(me)

    def _apply_command_policy(self, argv: Sequence[str]) -> None:
        """Apply the command's policy to its cgroup before it starts: the one selected by its
        executable, else the only policy in the set unless that one selects containers."""
        import shutil

        from runwatch.policy.enforce import EnforcementError

        assert self.cmd_cgroup is not None and self.policies is not None and self.enforcers is not None
        found = shutil.which(argv[0]) if argv else None
        exe = os.path.realpath(found) if found else (argv[0] if argv else "")
        policy = self.policies.for_process(exe)
        if policy is None and len(self.policies) == 1:
            only = next(iter(self.policies))
            policy = None if only.selector.needs_container else only
        if policy is None or (policy.egress is None and policy.exec is None and policy.files is None):
            return
        try:
            for line in self.enforcers.apply(self.cmd_cgroup.target(), policy):
                self._say(f"policy {policy.id} on {argv[0]}: {line}")
        except EnforcementError as exc:
            raise EnforcementError(f"policy {policy.id} cannot be applied to the command: {exc}") from None
        self._say(f"policy {policy.id} ({policy.mode}) applied to the command's cgroup {self.cmd_cgroup.rel}")

    # -- teardown -------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Sources, active/refused hooks, events and drops so far."""
        out: dict[str, Any] = {"events": self.pipeline.events if self.pipeline else 0, "drops": 0}
        if self.opened is not None:
            stats = self.opened.source.stats()
            out["drops"] = stats.get("drops", 0)
            out["source"] = self.opened.source.name
            out["source_stats"] = stats
            out["hooks"] = {"active": sorted(self.opened.active), "refused": self.opened.refused}
            out["notices"] = self.opened.notices
        return out

    def close(self) -> dict[str, Any]:
        """Stop, drain and flush everything; record the run. Returns the final summary."""
        if self._closed:
            return self.summary()
        self._closed = True
        errors: list[str] = self._stop_policy()
        if self.pipeline is not None and self._thread is not None:
            self.pipeline.stop.set()
            self._thread.join(timeout=30)
        summary = self.summary()
        if self.detection is not None:
            self.detection.close()  # pending throttle summaries reach the sinks before the store closes
            errors.extend(self.detection.errors)
            summary["alerts"] = self.detection.emitted
        if self.store is not None and self.run_id is not None:
            try:  # on the open writer, before the pipeline closes the store with its sinks
                self.store.record_run(started_ns=self.started_ns, ended_ns=time.time_ns(), command=self.command,
                                      exit_code=self.exit_code, stats=summary, run_id=self.run_id)
            except StoreError as exc:
                errors.append(str(exc))
        if self.pipeline is not None:
            self.pipeline.close()
            errors.extend(self.pipeline.errors)
        elif self.opened is not None:
            self.opened.source.stop()
        else:
            for sink in self._sinks:
                try:
                    sink.close()
                except Exception as exc:
                    errors.append(str(exc))
        if self.policy_runtime is not None:
            summary["policy"] = {"decisions": self.policy_runtime.stats(),
                                 "containers": self.applier.counts if self.applier is not None else {}}
        if errors:
            summary["errors"] = errors
        return summary
