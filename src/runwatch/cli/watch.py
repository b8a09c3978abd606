"""``runwatch run`` (one command's subtree) and ``runwatch watch`` (host-wide)."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import click

from runwatch.cli.common import config_problems, db_option, err_console, fail, note
from runwatch.cli.fleet import nats_options, report_nats, with_nats
from runwatch.cli.kube import kube_options, with_kube
from runwatch.cli.outputs import output_lines, output_options, with_outputs
from runwatch.cli.policy import DecisionPrinter, policy_options
from runwatch.cli.prune import retention_from, retention_note, retention_options
from runwatch.events import Event
from runwatch.outputs.jsonl import OutputError
from runwatch.outputs.text import TextOutput
from runwatch.policy.enforce.spec import EnforcementError
from runwatch.rules.diagnostics import RuleLoadError
from runwatch.sdk.wire import DEFAULT_SOCKET, ENV_SOCKET
from runwatch.sensors.fallback import NoSourceError
from runwatch.session import Session, SessionOptions
from runwatch.store.sqlite import SpoolLimits, StoreError


class _Counter:
    """Output counting events per kind (for the summary)."""

    name = "counter"

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()

    def open(self) -> None:
        """Nothing to open."""

    def write(self, events: Sequence[Event]) -> None:
        """Count the batch's events by kind."""
        self.kinds.update(e.kind for e in events)

    def flush(self) -> None:
        """Nothing is buffered."""

    def close(self) -> None:
        """Nothing to release."""


def _source_options(f: Any) -> Any:
    f = click.option("--source", type=click.Choice(["auto", "kernel", "proc"]), default="auto",
                     show_default=True, help="Event source: eBPF sensor, proc-connector fallback, or the best "
                     "available.")(f)
    f = click.option("--ring-mb", type=click.IntRange(1, 1024), default=16, show_default=True,
                     help="Kernel ring buffer size in MiB (rounded up to a power of two).")(f)
    f = click.option("--events-out", metavar="FILE", help="Also append every event as JSON lines to FILE "
                     "('-' for stdout).")(f)
    f = click.option("--lake", metavar="DIR", help="Also write every event and alert as OCSF records to the "
                     "Parquet lake DIR (read it with `runwatch query`).")(f)
    f = click.option("-v", "--verbose", is_flag=True, help="Print every event live to stderr.")(f)
    f = click.option("--sdk-socket", metavar="PATH", default=lambda: os.environ.get(ENV_SOCKET, DEFAULT_SOCKET),
                     show_default=f"$RUNWATCH_SOCKET or {DEFAULT_SOCKET}",
                     help="Unix socket where agents using runwatch.sdk report tool calls (bind-mount its "
                     "directory into containers; RUNWATCH_SOCKET is set for CMD).")(f)
    f = click.option("--no-sdk", is_flag=True, help="Do not collect agent-SDK events.")(f)
    f = click.option("--rules", "rules", multiple=True, metavar="PATH",
                     help="Rule file or directory; repeatable (default: the built-in AI-workload pack).")(f)
    f = click.option("--no-rules", is_flag=True, help="Record events only; run no detections.")(f)
    f = retention_options(f)
    f = click.option("--alerts-out", metavar="FILE", help="Also append every alert as JSON lines to FILE.")(f)
    f = click.option("--otlp-listen", metavar="HOST:PORT", callback=_host_port,
                     help="Receive OpenTelemetry GenAI spans (OTLP/HTTP) here, e.g. 127.0.0.1:4318, or on a "
                     "unix socket: unix:/run/runwatch/sdk/otlp.sock.")(f)
    f = click.option("--otlp-token-file", metavar="FILE",
                     help="Require 'Authorization: Bearer <token>' on OTLP requests, the token being FILE's "
                     "content; needed to listen on a non-loopback address.")(f)
    f = click.option("--spool-events", type=click.IntRange(0), default=SpoolLimits.events, show_default=True,
                     metavar="N", help="Events the store keeps in memory while it cannot write (disk full, "
                     "locked); beyond, events are counted as lost.")(f)
    f = click.option("--spool-mb", type=click.IntRange(0), default=SpoolLimits.bytes >> 20, show_default=True,
                     metavar="MIB", help="Bytes (MiB) the store keeps in memory while it cannot write.")(f)
    f = click.option("--otlp-export", metavar="URL",
                     help="Export tool-attributed events as OTLP spans, e.g. http://collector:4318/v1/traces.")(f)
    f = click.option("--metrics-listen", metavar="HOST:PORT", callback=_host_port,
                     help="Serve Prometheus metrics on http://HOST:PORT/metrics, e.g. 127.0.0.1:9464 "
                     "(loopback only unless --metrics-allow-remote; docs/metrics.md).")(f)
    f = click.option("--metrics-allow-remote", is_flag=True,
                     help="Let --metrics-listen use a non-loopback address.")(f)
    return nats_options(output_options(kube_options(db_option()(f))))


def _host_port(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[str, int] | None:
    if value is None:
        return None
    if value.startswith("unix:"):
        if not value[len("unix:"):].startswith("/"):
            raise click.BadParameter(f"expected unix:/ABSOLUTE/PATH, got {value!r}")
        return value, 0
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


def otlp_token(listen: tuple[str, int] | None, token_file: str | None) -> str | None:
    """The OTLP bearer token from ``token_file`` (None without one), checked against ``listen``;
    every problem is a one-line usage error, raised before anything starts."""
    from runwatch.sensors.ingest.access import check_listen

    if token_file is not None and listen is None:
        raise click.UsageError("--otlp-token-file needs --otlp-listen")
    token: str | None = None
    if token_file is not None:
        try:
            with open(token_file, encoding="utf-8") as fh:
                token = fh.read(4096).strip()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise click.UsageError(f"cannot read OTLP token file {token_file}: {why}") from None
        if not token:
            raise click.UsageError(f"OTLP token file {token_file} is empty")
    if listen is not None:
        try:
            check_listen(listen[0], token)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    return token


def _metrics(listen: tuple[str, int] | None, allow_remote: bool) -> tuple[str, int] | None:
    """The checked ``--metrics-listen`` address; every problem is a one-line usage error."""
    from runwatch.metrics.server import check_metrics_listen

    if listen is None:
        if allow_remote:
            raise click.UsageError("--metrics-allow-remote needs --metrics-listen")
        return None
    try:
        check_metrics_listen(listen[0], allow_remote)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    return listen


def rule_paths(rules: tuple[str, ...], no_rules: bool) -> tuple[str, ...]:
    """The rule paths to load: the given ones, else the built-in pack (if installed)."""
    if no_rules:
        return ()
    if rules:
        return rules
    try:
        pack = importlib.import_module("runwatch.rules.default")
    except ImportError:
        return ()
    return tuple(str(p) for p in pack.default_rule_paths())


def ring_bytes(mb: int) -> int:
    """MiB to a power-of-two byte count (the ring buffer needs one)."""
    size = 1 << 20
    while size < mb << 20:
        size <<= 1
    return size


def _with_policy(opts: SessionOptions, policy: tuple[str, ...], mode: str | None, control_socket: str) -> None:
    """Fill the policy fields of ``opts`` (``--mode`` needs ``--policy``)."""
    if mode is not None and not policy:
        raise click.UsageError("--mode needs --policy (the mode applies to the loaded policies)")
    if not policy:
        return
    missing = [p for p in policy if not os.path.exists(p)]
    if missing:
        fail(f"{missing[0]}: no such policy file or directory; nothing was started")
    opts.policy_paths, opts.policy_mode, opts.control_socket = policy, mode, control_socket
    opts.extra_sinks.append(DecisionPrinter())


def _open(opts: SessionOptions, command: list[str]) -> Session:
    from runwatch.metrics.server import MetricsError
    from runwatch.policy.loader import PolicyLoadError

    try:
        session = Session(opts).start(command)
    except RuleLoadError as exc:
        config_problems(exc.errors)
        fail(f"{len(exc.errors)} error(s) in the rules; nothing was started")
    except PolicyLoadError as exc:
        config_problems(exc.errors)
        fail(f"{len(exc.errors)} error(s) in the policies; nothing was started")
    except (NoSourceError, StoreError, EnforcementError, OutputError, MetricsError) as exc:  # OTLP's too
        fail(f"{exc}; nothing was started" if isinstance(exc, MetricsError) else str(exc))
    except OSError as exc:
        fail(f"cannot start the policy endpoint: {exc}")
    for line in session.notices:
        note(line)
    return session


def lost_events(summary: dict[str, Any]) -> str | None:
    """One line saying which events an output lost (the store, or a failing sink), or None."""
    parts: list[str] = []
    store = summary.get("store") or {}
    if store.get("lost") or store.get("alerts_lost"):
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(store["lost_by_reason"].items()))
        alerts = f" and {store['alerts_lost']} alert(s)" if store.get("alerts_lost") else ""
        limits = store.get("spool_limits") or {}
        parts.append(f"the store {store['path']} lost {store['lost']} event(s){alerts} ({reasons or 'alerts only'}; "
                     f"spool {limits.get('events')} events / {int(limits.get('bytes') or 0) >> 20} MiB, "
                     f"--spool-events/--spool-mb; first: {store.get('first_fault')})")
    lost = (summary.get("faults") or {}).get("lost") or {}
    if lost:
        parts.append("; ".join(f"{k} lost {v} event(s)" for k, v in sorted(lost.items())))
    return "; ".join(parts) or None


def _store_notes(store: dict[str, Any]) -> None:
    pruned = retention_note(store)
    if pruned:
        note(pruned)
    if store.get("faults") and not (store.get("lost") or store.get("alerts_lost")):
        note(f"the store {store['path']} could not write for a while ({store.get('first_fault')}); "
             f"{store['recovered']} event(s) waited in the spool and were written; none lost")


def _print_summary(summary: dict[str, Any], counter: _Counter, db: str | None) -> None:
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(counter.kinds.items())) or "none"
    drops = summary.get("drops", 0)
    where = f"; stored in {db}" if db else ""
    alerts = f"; alerts {summary['alerts']}" if "alerts" in summary else ""
    store = summary.get("store") or {}
    lost = int(store.get("lost") or 0) + sum((summary.get("faults") or {}).get("lost", {}).values())
    lost_text = f"; lost {lost}" if lost else ""
    err_console.print(f"[bold]runwatch:[/] {summary.get('events', 0)} events ({kinds}); "
                      f"drops {drops}{lost_text}{alerts}{where}", highlight=False, soft_wrap=True)
    if drops:
        by_kind = {k.split("drops.", 1)[1]: v for k, v in summary.get("source_stats", {}).items()
                   if "drops." in k and v}
        detail = ", ".join(f"{k} {v}" for k, v in sorted(by_kind.items()))
        note(f"the kernel ring buffer overflowed: {drops} events were dropped"
             f"{f' ({detail})' if detail else ''}; raise --ring-mb or reduce load")
    stats = summary.get("source_stats", {})
    if stats.get("otlp.unauthorized"):
        note(f"otlp: {stats['otlp.unauthorized']} request(s) refused for a missing or wrong bearer token")
    if stats.get("otlp.foreign_pid"):
        note(f"otlp: {stats['otlp.foreign_pid']} span event(s) named a process outside their sender's cgroup or "
             "pid namespace; stored unattributed")
    for name, bad in summary.get("malformed", {}).items():
        first = f"; first: {bad['first']}" if bad.get("first") else ""
        note(f"{name}: {bad['count']} malformed message(s) ignored{first}")
    faults = summary.get("faults")
    if faults:
        parts = [f"stage {k} failed on {v} batch(es)" for k, v in faults["stage_errors"].items()]
        parts += [f"{k} lost {v} event(s)" for k, v in faults["lost"].items()]
        parts += [f"{faults['poll_errors']} failed poll(s)"] if faults["poll_errors"] else []
        note(f"pipeline faults: {'; '.join(parts)}; first: {faults['first_error']}")
    _store_notes(store)
    for line in output_lines(summary):
        note(line)
    if summary.get("failure"):
        note(f"error: {summary['failure']}")
    for err in summary.get("errors", []):
        note(err)
    reason = lost_events(summary)
    if reason:
        note(f"error: {reason}")


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Signals that end ``run`` (forwarded to CMD) and ``watch`` (drain, flush, summary)."""


class _Stopped(Exception):
    """A stop signal came while the session was starting."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _exit_status(rc: int) -> int:
    return 128 - rc if rc < 0 else rc


@click.command(context_settings={"ignore_unknown_options": False, "allow_interspersed_args": False})
@_source_options
@policy_options
@click.argument("command", nargs=-1, required=True, metavar="-- CMD [ARGS]...")
def run(command: tuple[str, ...], db: str, events_out: str | None, lake: str | None, source: str, ring_mb: int,
        verbose: bool, sdk_socket: str, no_sdk: bool, rules: tuple[str, ...], no_rules: bool,
        alerts_out: str | None, otlp_listen: tuple[str, int] | None, otlp_export: str | None,
        spool_events: int, spool_mb: int, otlp_token_file: str | None, policy: tuple[str, ...], mode: str | None,
        control_socket: str, metrics_listen: tuple[str, int] | None, metrics_allow_remote: bool,
        retain: int | None, retain_mb: int | None, **kube: Any) -> None:
    """Run CMD under the sensor and watch its whole process subtree.

    Containers CMD starts (runc, podman) are followed too. When CMD exits, runwatch drains
    the sensor, flushes the store, prints a summary and exits with CMD's exit code.

    With --policy, CMD runs in its own cgroup under the policy selected for its executable,
    each container it starts gets the policy selected by its name or labels before its
    entrypoint runs (under fail: closed the kernel holds the container's first exec until
    the policy is bound; fail: open binds it as soon as the runtime records it), tool calls
    are decided on the policy socket next to the SDK socket
    (RUNWATCH_POLICY_SOCKET is set for CMD), and every decision is stored and the denying
    ones printed live.

    Example: runwatch run --db demo.db --policy agent.yaml --mode enforce -- runc run -b bundle ctr1
    """
    counter = _Counter()
    opts = SessionOptions(db=db, events_out=events_out, lake=lake, source=source, ring_bytes=ring_bytes(ring_mb),
                          track_self=True, live=TextOutput() if verbose else None, extra_sinks=[counter],
                          detach_wait=False,  # the command exits right after: a child finishes the detach
                          sdk_socket=None if no_sdk else sdk_socket, rules=rule_paths(rules, no_rules),
                          alerts_out=alerts_out, otlp_listen=otlp_listen, otlp_export=otlp_export,
                          otlp_token=otlp_token(otlp_listen, otlp_token_file), own_cgroup=True, notice=note,
                          spool=SpoolLimits(spool_events, spool_mb << 20),
                          retention=retention_from(retain, retain_mb))
    opts.metrics_listen = _metrics(metrics_listen, metrics_allow_remote)
    _with_policy(opts, policy, mode, control_socket)
    with_nats(opts, kube)
    with_kube(opts, kube)
    with_outputs(opts, kube)  # the outputs' options come with the other ** options
    early: list[int] = []  # a signal during start-up: CMD is not started, the session closes cleanly
    before = {s: signal.signal(s, lambda signum, _frame: early.append(signum)) for s in STOP_SIGNALS}
    session = _open(opts, list(command))
    rc = 0
    try:
        try:
            if early:
                raise _Stopped(early[0])
            child = session.spawn(command)
        except _Stopped as stopped:
            rc = 128 + stopped.signum
        except FileNotFoundError:
            err_console.print(f"runwatch: {command[0]}: command not found", highlight=False, markup=False)
            rc = 127
        except PermissionError:
            err_console.print(f"runwatch: {command[0]}: permission denied", highlight=False, markup=False)
            rc = 126
        except EnforcementError as exc:
            err_console.print(f"runwatch: error: {exc}; {command[0]} was not started", highlight=False, markup=False)
            rc = 1
        else:
            def forward(signum: int, _frame: Any) -> None:
                # The terminal already signals CMD's process group; forward when sent to us alone.
                if child.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child.pid, signum)

            old = {s: signal.signal(s, forward) for s in STOP_SIGNALS}
            try:
                while True:
                    try:
                        rc = _exit_status(child.wait())
                        break
                    except KeyboardInterrupt:
                        continue
            finally:
                for s, h in old.items():
                    signal.signal(s, h)
        session.exit_code = rc
    finally:
        summary = session.close()
        for s, h in before.items():
            signal.signal(s, h)
    _print_summary(summary, counter, db)
    nats_lost = report_nats(opts)
    sys.exit(rc if rc or not (summary.get("failure") or lost_events(summary) or nats_lost) else 1)


def _console_args(listen: str | None, token_file: str | None) -> tuple[str, int, str] | None:
    """``--console``'s host, port and token, checked before anything starts (exit 2 when unusable)."""
    if listen is None:
        if token_file is not None:
            fail("--console-token-file needs --console HOST:PORT", code=2)
        return None
    from runwatch.console.auth import TokenError
    from runwatch.console.serve import ListenError, prepare_live

    try:
        return prepare_live(listen, token_file)
    except (ListenError, TokenError) as exc:
        fail(str(exc).replace("--listen", "--console"), code=2)


def _serve_console(session: Session, db: str, control_socket: str, args: tuple[str, int, str] | None,
                   token_file: str | None) -> Any:
    """Start the console over the session's store (None without --console)."""
    if args is None:
        return None
    from runwatch.console.serve import ListenError, serve_live

    host, port, token = args
    try:
        served = serve_live(db, control_socket, host, port, token,
                            live=session.collector.collect if session.collector is not None else None)
    except ListenError as exc:
        session.close()
        fail(str(exc))
    note(f"console on {served.url}; token {'from ' + token_file if token_file else token}")
    return served


@click.command()
@_source_options
@click.option("--container", "containers", multiple=True, metavar="ID",
              help="Keep only events of this container (id, id prefix or name); repeatable.")
@click.option("--duration", type=click.FloatRange(min=0.1), metavar="SECONDS",
              help="Stop after this many seconds (default: until SIGINT/SIGTERM).")
@click.option("--stats-json", metavar="FILE", help="On exit, write the run summary (events, drops, hooks) "
              "as JSON to FILE.")
@click.option("--console", "console_listen", metavar="HOST:PORT",
              help="Serve the web console (runwatch console) on HOST:PORT while watching; loopback only unless "
              "--console-token-file is given.")
@click.option("--console-token-file", metavar="FILE", help="The console's access token (default: a random one, "
              "printed at start).")
@policy_options
def watch(db: str, events_out: str | None, lake: str | None, source: str, ring_mb: int, verbose: bool,
          sdk_socket: str, no_sdk: bool, rules: tuple[str, ...], no_rules: bool, alerts_out: str | None,
          otlp_listen: tuple[str, int] | None, otlp_export: str | None, spool_events: int, spool_mb: int,
          otlp_token_file: str | None, containers: tuple[str, ...], duration: float | None, stats_json: str | None,
          console_listen: str | None, console_token_file: str | None,
          policy: tuple[str, ...], mode: str | None, control_socket: str,
          metrics_listen: tuple[str, int] | None, metrics_allow_remote: bool, retain: int | None,
          retain_mb: int | None, **kube: Any) -> None:
    """Watch the whole host (or the given containers) until SIGINT/SIGTERM.

    On stop it drains the sensor, flushes the store and prints a summary with drops.
    With --policy, every container (running or appearing) gets the policy its name or
    labels select, and tool calls are decided on the policy socket next to the SDK socket.
    """
    counter = _Counter()
    opts = SessionOptions(db=db, events_out=events_out, lake=lake, source=source, ring_bytes=ring_bytes(ring_mb),
                          containers=containers, live=TextOutput() if verbose else None, extra_sinks=[counter],
                          detach_wait=False,  # the command exits right after: a child finishes the detach
                          sdk_socket=None if no_sdk else sdk_socket, rules=rule_paths(rules, no_rules),
                          alerts_out=alerts_out, otlp_listen=otlp_listen, otlp_export=otlp_export,
                          otlp_token=otlp_token(otlp_listen, otlp_token_file), notice=note,
                          spool=SpoolLimits(spool_events, spool_mb << 20),
                          retention=retention_from(retain, retain_mb))
    opts.metrics_listen = _metrics(metrics_listen, metrics_allow_remote)
    _with_policy(opts, policy, mode, control_socket)
    with_nats(opts, kube)
    with_kube(opts, kube)
    with_outputs(opts, kube)  # the outputs' options come with the other ** options
    live_console = _console_args(console_listen, console_token_file)
    opts.live_metrics = live_console is not None  # the console's Health page shows the session's metrics
    stop = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    # Installed before anything starts: a signal during start-up stops it cleanly as well.
    for s in STOP_SIGNALS:  # SIGHUP too: a closed terminal stops it cleanly
        signal.signal(s, on_signal)
    session = _open(opts, ["watch", *containers])
    if session.policies is not None:
        note(f"{len(session.policies)} policy(ies) loaded; applied to containers as they appear")
    deadline = time.monotonic() + duration if duration else None
    served = _serve_console(session, db, control_socket, live_console, console_token_file)
    try:
        tty = sys.stderr.isatty()
        with err_console.status("watching...", spinner="dots") if tty else contextlib.nullcontext() as status:
            while not stop.wait(0.5):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if session.pipeline is not None and session.pipeline.failure is not None:
                    break  # said in the summary; the exit status is 1
                if status is not None:
                    now = session.summary()
                    status.update(f"watching: {now['events']} events, {now['drops']} drops (Ctrl-C to stop)")
    finally:
        if served is not None:
            served.stop()
        summary = session.close()
    if stats_json:
        summary["by_kind"] = dict(counter.kinds)
        with open(stats_json, "w") as fh:
            json.dump(summary, fh, indent=2, default=str)
    _print_summary(summary, counter, db)
    if report_nats(opts) or summary.get("failure") or lost_events(summary):
        sys.exit(1)


