"""Fleet mode on NATS JetStream: the agent options of ``run``/``watch`` and ``runwatch worker``.

A node agent is ``runwatch watch --nats URL --cluster NAME [--node NAME]``: the usual sensor,
local rules, policy and store, plus the ``nats`` output publishing its events, decisions and
alerts (spooled to disk while NATS is away). ``runwatch worker --nats URL`` consumes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from typing import Any

import click

from runwatch.alerts.model import Alert
from runwatch.cli.common import config_problems, db_option, fail, note
from runwatch.store.spool import SpoolLimits
from runwatch.transport.subjects import DEFAULT_PARTITIONS, check_name

NATS_PARAMS: tuple[str, ...] = ("nats", "cluster", "nats_spool", "nats_spool_mb", "partitions")
_PUBLISHERS: dict[int, Any] = {}  # id(SessionOptions) -> its NatsOutput (for the summary)


def _partitions_option(f: Any) -> Any:
    return click.option("--partitions", type=click.IntRange(1, 4096), default=DEFAULT_PARTITIONS, show_default=True,
                        help="Partitions of the fleet stream (agents and workers must agree).")(f)


def nats_options(f: Any) -> Any:
    """Adds the agent options named in :data:`NATS_PARAMS` (``--node`` is the Kubernetes one)."""
    f = click.option("--nats", metavar="URL", help="Also publish events, decisions and alerts to NATS JetStream "
                     "at URL (fleet mode; e.g. nats://nats:4222).")(f)
    f = click.option("--cluster", metavar="NAME", default=lambda: os.environ.get("RUNWATCH_CLUSTER", "default"),
                     show_default="$RUNWATCH_CLUSTER or default", help="Cluster name in the NATS subjects.")(f)
    f = click.option("--nats-spool", metavar="DIR", default="runwatch-nats-spool", show_default=True,
                     help="Disk spool directory of what NATS could not take yet (published first when it "
                     "answers).")(f)
    f = click.option("--nats-spool-mb", type=click.IntRange(1), default=256, show_default=True, metavar="MIB",
                     help="Bound of the disk spool; beyond it messages are counted as lost.")(f)
    return _partitions_option(f)


def with_nats(opts: Any, values: dict[str, Any]) -> None:
    """Take the NATS options out of ``values`` and, with ``--nats``, add the publisher to ``opts``.

    The node name is ``--node`` (then not only a Kubernetes option), else ``$NODE_NAME``, else
    the host name.
    """
    got = {k: values.pop(k, None) for k in NATS_PARAMS}
    if not got["nats"]:
        return
    from runwatch.outputs.base import output_factory

    node = values.get("node") or os.environ.get("NODE_NAME") or socket.gethostname().split(".")[0]
    if not any(values.get(n) for n in ("kube_api", "kubeconfig", "in_cluster")):
        values["node"] = None  # the node name is the fleet's here, not a pod filter
    try:
        check_name("--cluster", got["cluster"])
        check_name("node name (--node)", node)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    out = output_factory("nats")(got["nats"], cluster=got["cluster"], node=node, partitions=got["partitions"],
                                 spool_path=got["nats_spool"],
                                 spool=SpoolLimits(events=10_000_000, bytes=got["nats_spool_mb"] << 20))
    opts.extra_sinks.append(out)
    _PUBLISHERS[id(opts)] = out


def report_nats(opts: Any) -> bool:
    """One line on what the publisher sent, spooled and lost; True when it lost something."""
    out = _PUBLISHERS.pop(id(opts), None)
    if out is None:
        return False
    st = out.stats()
    spool = st["spool"] or {}
    line = (f"nats {st['url']}: published {st['published']} message(s) as node {out.subjects.node}; "
            f"{spool.get('held', 0)} kept in the spool {out.spool_path} for the next start")
    if st["lost"]:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(st["lost_by_reason"].items()))
        line += f"; lost {st['lost']} ({reasons})"
    if st["outages"]:
        line += f"; unreachable {st['outages']} time(s) (first: {st['first_error']})"
    note(line)
    return bool(st["lost"])


def _print_alerts(alerts: Sequence[Alert]) -> None:
    from runwatch.alerts.render import render_text

    for a in alerts:
        sys.stderr.write(render_text(a) + "\n")
    sys.stderr.flush()


@click.command()
@click.option("--nats", "url", metavar="URL", required=True, help="NATS server with JetStream (nats://HOST:PORT).")
@click.option("--durable", default="runwatch-workers", show_default=True, metavar="NAME",
              help="Consumer group: workers with the same name share the partitions.")
@_partitions_option
@db_option()
@click.option("--sink", default="sqlite", show_default=True, metavar="NAME",
              help="Where consumed events and alerts go (a registered worker sink).")
@click.option("--out", metavar="PATH", help="What the sink writes (default: --db; the sqlite sink's database; "
              "the lake sink's directory, required with --sink lake).")
@click.option("--rules", "rules", multiple=True, metavar="PATH",
              help="Rule file or directory; repeatable (default: the built-in pack and the fleet pack).")
@click.option("--no-rules", is_flag=True, help="Store only; run no detections.")
@click.option("--no-warm-up", is_flag=True, help="Do not replay a partition's recent history into the sequences "
              "when taking it over from another worker.")
@click.option("--alerts-out", metavar="FILE", help="Also append the worker's alerts as JSON lines to FILE.")
@click.option("--lease-s", type=click.FloatRange(0.5, 600), default=10.0, show_default=True, metavar="S",
              help="Partition lease: a worker that stops renewing loses its partitions after S seconds.")
@click.option("--ack-wait-s", type=click.FloatRange(1, 3600), default=30.0, show_default=True, metavar="S",
              help="Unacknowledged messages are redelivered after S seconds.")
@click.option("--connect-timeout-s", type=click.FloatRange(0.1, 3600), default=10.0, show_default=True, metavar="S",
              help="Give up when NATS does not answer the first connection within S seconds.")
@click.option("--batch", type=click.IntRange(1, 10_000), default=256, show_default=True, help="Messages per fetch.")
@click.option("--worker-id", metavar="ID", help="This worker's name in the leases (default: host-pid).")
@click.option("--duration", type=click.FloatRange(min=0.1), metavar="SECONDS", help="Stop after this long.")
@click.option("--stats-json", metavar="FILE", help="On exit (and every second while running), write the "
              "worker's counters as JSON to FILE.")
@click.option("-q", "--quiet", is_flag=True, help="Do not print alerts to stderr.")
@click.option("--ack-delay-s", type=click.FloatRange(0, 60), default=0.0, hidden=True,
              help="Fault injection for tests: wait between the durable write and the acknowledgement.")
def worker(url: str, durable: str, partitions: int, db: str, sink: str, out: str | None, rules: tuple[str, ...],
           no_rules: bool, no_warm_up: bool, alerts_out: str | None, lease_s: float, ack_wait_s: float, batch: int,
           worker_id: str | None, duration: float | None, stats_json: str | None, quiet: bool, ack_delay_s: float,
           connect_timeout_s: float) -> None:
    """Consume the fleet stream as one of N detector workers until SIGINT/SIGTERM.

    Workers sharing --durable split the partitions by lease; each runs the rules and
    sequences (the fleet pack's cross-node ones included) over its partitions' events, writes
    events and alerts to the sink and acknowledges only once they are durable.

    Example: runwatch worker --nats nats://nats:4222 --db fleet.db
    """
    from runwatch.rules import Engine, load_rules
    from runwatch.rules.diagnostics import RuleLoadError
    from runwatch.store.sqlite import StoreError
    from runwatch.transport.sink import SINKS, SinkError
    from runwatch.transport.worker import Worker, WorkerOptions

    try:
        check_name("--durable", durable)
        factory = SINKS.get(sink)
    except (ValueError, KeyError) as exc:
        raise click.UsageError(str(exc).strip('"')) from None
    if sink == "lake" and not out:
        raise click.UsageError("--sink lake needs --out DIR (the lake directory)")
    engine = None
    if not no_rules:
        try:
            engine = Engine(load_rules(list(rules) or _default_rules()))
        except RuleLoadError as exc:
            config_problems(exc.errors)
            fail(f"{len(exc.errors)} error(s) in the rules; nothing was started")
    the_sink = factory(out or db)
    try:
        the_sink.open()
    except (StoreError, SinkError, OSError) as exc:
        fail(str(exc))
    alert_file = open(alerts_out, "ab") if alerts_out else None  # noqa: SIM115 - closed below

    def on_alerts(alerts: Sequence[Alert]) -> None:
        if not quiet:
            _print_alerts(alerts)
        if alert_file is not None:
            from runwatch.alerts.render import to_json

            alert_file.write(b"".join(to_json(a) + b"\n" for a in alerts))
            alert_file.flush()

    opts = WorkerOptions(url=url, durable=durable, partitions=partitions, lease_s=lease_s, ack_wait_s=ack_wait_s,
                         batch=batch, ack_delay_s=ack_delay_s, connect_timeout_s=connect_timeout_s,
                         warm_up=not no_warm_up)
    if worker_id:
        opts.worker_id = worker_id
    w = Worker(opts, the_sink, engine, on_alerts=on_alerts)
    error: str | None = None
    import asyncio  # here: run and watch import this module and need no event loop

    try:
        asyncio.run(_serve(w, duration, stats_json))
    except (TimeoutError, OSError, ConnectionError) as exc:
        error = f"cannot reach NATS at {url}: {exc or type(exc).__name__}"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        st = w.stats()
        if stats_json:
            _write_stats(w, stats_json)
        with contextlib.suppress(Exception):
            the_sink.close()
        if alert_file is not None:
            alert_file.close()
    if error is not None and not st["consumed"]:
        fail(error)
    note(f"worker {opts.worker_id}: {st['consumed']} message(s) stored and acknowledged ({st['events']} events, "
         f"{st['node_alerts']} node alerts), {st['alerts']} alert(s) raised, {st['redelivered']} redelivered")
    if st["malformed"]:
        note(f"{st['malformed']} malformed message(s) dropped ({json.dumps(st['malformed_by_reason'])}); "
             f"first: {st['first_malformed']}")
    if error is not None:
        fail(error)


def _default_rules() -> list[str]:
    from runwatch.rules.default import default_rule_paths
    from runwatch.rules.fleet import fleet_rule_paths

    return [str(p) for p in (*default_rule_paths(), *fleet_rule_paths())]


def _write_stats(w: Any, path: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(w.stats(), fh)
    os.replace(tmp, path)


async def _serve(w: Any, duration: float | None, stats_json: str | None) -> None:
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(s, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    ready = threading.Event()

    async def report() -> None:
        while not stop.is_set():
            if stats_json and ready.is_set():
                _write_stats(w, stats_json)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    task = asyncio.create_task(report())
    try:
        await w.run(stop, ready=ready.set)
    finally:
        stop.set()
        await task
