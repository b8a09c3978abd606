"""Node agents without a kernel, for fleet tests and the fleet benchmark.

:func:`node_events` makes a node's synthetic events (unique ids, workloads with SPIFFE ids,
pods and this node's name); ``python -m runwatch.testing.fleet agent ...`` is one node agent as
a process of its own: the project's :class:`~runwatch.pipeline.Pipeline` over a replayed
recording (paced with ``--rate``), optionally the local rules, and the registered ``nats``
output. It exits once the recording is published (0) or the drain timeout passed with messages
still pending (1), after writing its counters as JSON to ``--stats``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator

from runwatch.events import Container, Event, FileInfo, NetInfo
from runwatch.pipeline import Pipeline, Stage
from runwatch.sensors.replay import ReplaySource, read_recording

BASE_NS = 1_790_000_000_000_000_000


def workload(name: str, node: str, namespace: str = "ai") -> Container:
    """A pod's container of workload ``name`` on ``node`` with a derived SPIFFE id."""
    return Container(id=f"{name}-{node}-0123456789abcdef", runtime="containerd", name=name, pod=f"{name}-{node}",
                     pod_uid=f"uid-{name}-{node}", namespace=namespace, service_account=name,
                     spiffe_id=f"spiffe://cluster.local/ns/{namespace}/sa/{name}", spiffe_source="derived")


def event(node: str, i: int, kind: str, c: Container | None, t: int, **extra: object) -> Event:
    """One synthetic event of ``node`` with the id ``<time>-<node>-<i>``."""
    return Event(id=f"{t:016x}-{node}-{i:x}", time=t, kind=kind, source="kernel", pid=4000 + i % 97, ppid=1,
                 exe="/usr/bin/python3", cmdline="python3 serve.py", container=c, **extra)  # type: ignore[arg-type]


def node_events(node: str, n: int, workloads: int = 7, start_ns: int = BASE_NS) -> list[Event]:
    """``n`` benign events of ``node``: execs, internal connects and file opens of ``workloads``
    workloads (never a secret read), each with a unique id."""
    out: list[Event] = []
    for i in range(n):
        c = workload(f"svc{i % workloads}", node)
        t = start_ns + i * 1000
        r = i % 3
        if r == 0:
            out.append(event(node, i, "process.exec", c, t))
        elif r == 1:
            out.append(event(node, i, "file.open", c, t, file=FileInfo(path=f"/app/data/{i % 11}.bin", intent="read")))
        else:
            out.append(event(node, i, "net.connect", c, t,
                             net=NetInfo(proto="tcp", family="ipv4", dst_ip="10.0.0.7", dst_port=8080, result=0)))
    return out


def secret_read(node: str, i: int, c: Container, t: int) -> Event:
    """A read of the workload's mounted token."""
    return event(node, i, "file.open", c, t, file=FileInfo(path="/run/secrets/api-token", intent="read"))


def egress(node: str, i: int, c: Container, t: int, ip: str = "93.184.215.14") -> Event:
    """A connect to an external address."""
    return event(node, i, "net.connect", c, t, net=NetInfo(proto="tcp", family="ipv4", dst_ip=ip, dst_port=443,
                                                           result=0))


class PacedSource:
    """A replay source handing out ``batch`` events every ``batch / rate`` seconds (rate 0: at once)."""

    name = "replay"

    def __init__(self, events: list[Event], rate: float, batch: int = 32) -> None:
        self.inner = ReplaySource(events=events, batch=batch)
        self.interval = batch / rate if rate > 0 else 0.0
        self._next = 0.0

    def start(self) -> None:
        """Start the replay."""
        self.inner.start()
        self._next = time.monotonic()

    def poll(self, timeout: float) -> list[Event] | None:
        """The next batch when its time has come."""
        if self.interval:
            wait = self._next - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, timeout))
                if self._next > time.monotonic():
                    return []
            self._next += self.interval
        return self.inner.poll(timeout)

    def stats(self) -> dict[str, int]:
        """The replay's counters."""
        return self.inner.stats()

    def stop(self) -> None:
        """Stop the replay."""
        self.inner.stop()


def _stamp(events: list[Event]) -> Iterator[Event]:
    """Events with their publish time in ``attrs.published_ns`` (the benchmark's latency)."""
    import msgspec

    for e in events:
        yield msgspec.structs.replace(e, attrs={**(e.attrs or {}), "published_ns": time.time_ns()})


def main(argv: list[str] | None = None) -> int:
    """``agent --nats URL --node N --events FILE [--cluster C] [--rate R] [--spool PATH] [--stats FILE]``."""
    ap = argparse.ArgumentParser(prog="python -m runwatch.testing.fleet")
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("agent")
    a.add_argument("--nats", required=True)
    a.add_argument("--node", required=True)
    a.add_argument("--cluster", default="test")
    a.add_argument("--events", required=True)
    a.add_argument("--rate", type=float, default=0.0)
    a.add_argument("--batch", type=int, default=32)
    a.add_argument("--partitions", type=int, default=16)
    a.add_argument("--spool")
    a.add_argument("--stats")
    a.add_argument("--rules", action="append", default=[])
    a.add_argument("--stamp", action="store_true", help="put the publish time into attrs.published_ns")
    a.add_argument("--drain-timeout", type=float, default=120.0)
    args = ap.parse_args(argv)
    from runwatch.outputs.base import output_factory
    from runwatch.transport.nats import NatsOutput

    out = output_factory("nats")(args.nats, cluster=args.cluster, node=args.node, partitions=args.partitions,
                                 spool_path=args.spool)
    assert isinstance(out, NatsOutput)
    events = read_recording(args.events)
    stages: list[Stage] = []
    if args.stamp:
        stages.append(lambda batch: list(_stamp(batch)))
    if args.rules:
        from runwatch.rules import DetectionStage, Engine, load_rules

        stages.append(DetectionStage(Engine(load_rules(args.rules)), out.write_alerts))
    source = PacedSource(events, args.rate, args.batch)
    out.open()
    source.start()
    started = time.monotonic()
    pipeline = Pipeline(source, stages, [out])
    pipeline.run()
    handed = time.monotonic() - started
    drained = out.drain(args.drain_timeout)
    stats = {"node": args.node, "events": pipeline.events, "handed_s": handed,
             "total_s": time.monotonic() - started, "drained": drained, **out.stats()}
    out.close()
    if args.stats:
        with open(args.stats, "w") as fh:
            json.dump(stats, fh)
    return 0 if drained else 1


if __name__ == "__main__":
    sys.exit(main())
