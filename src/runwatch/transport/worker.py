"""A detector worker: consumes the fleet stream by partition, detects, stores, then acknowledges.

Workers that share a ``durable`` name share the partitions' durable pull consumers; the
partitions are spread among the live workers by leases (:mod:`runwatch.transport.leases`), so
all messages of one workload (one partition) meet in one worker at a time, whichever node sent
them. Per fetched batch of a partition the worker

1. checks every message: a fleet subject (:func:`~runwatch.transport.subjects.parse_subject`), a
   ``Nats-Msg-Id`` of ``<node>:<id>`` matching the payload's id, a payload that decodes as an
   event (``event``/``decision``) or alert (``alert``). A message failing any check is counted
   under its reason (:attr:`Worker.malformed`) and terminated (never redelivered); it never stops
   the worker;
2. fills ``container.node`` from the subject where the event's container has none;
3. runs the rule engine (rules and sequences, cross-node ones included) over the events;
4. writes events, the nodes' alerts and its own alerts to the sink and flushes it (durable);
5. only then acknowledges the batch. If the sink cannot make it durable the batch is not
   acknowledged and JetStream redelivers it after ``ack_wait``.

At-least-once with de-duplication: a worker killed between 4 and 5 leaves the batch to be
redelivered, and the sink keeps one copy per id (a sink that keeps known ids in memory, the
lake, is told to ``refresh`` them before a batch holding a redelivered message and after the
worker takes partitions over, since another worker may have written them); its own alerts get ids derived from the rule
and the evidence (:func:`stable_alert_id`), so a re-raised alert replaces itself.

Ordering: JetStream keeps a partition's messages in publish order; events of different nodes
are ordered by when they reached the stream. Engine state (sequence partials) lives in the
worker's memory; a worker taking a partition over first replays the history its last owner
acknowledged into its engine (:mod:`runwatch.transport.warmup`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from runwatch.alerts.model import Alert
from runwatch.alerts.render import from_json as alert_from_json
from runwatch.events import Event, from_json, upgrade
from runwatch.rules.engine import Engine
from runwatch.transport.leases import Leases, lease_bucket
from runwatch.transport.nats import DEFAULT_STREAM, connect, ensure_stream
from runwatch.transport.sink import FleetSink, SinkError
from runwatch.transport.subjects import DEFAULT_PARTITIONS, DEFAULT_PREFIX, parse_subject, partition_filter

FETCH_WAIT_S = 0.05
"""How long one round of fetches waits for a partition with nothing new."""

MAX_PAYLOAD = 1 << 20
"""Bytes a message may have; a bigger one is malformed (``too_large``)."""


@dataclass
class WorkerOptions:
    """How a worker connects and consumes (see the module)."""

    url: str
    durable: str = "runwatch-workers"
    stream: str = DEFAULT_STREAM
    prefix: str = DEFAULT_PREFIX
    partitions: int = DEFAULT_PARTITIONS
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    lease_s: float = 10.0
    ack_wait_s: float = 30.0
    batch: int = 256
    warm_up: bool = True  # replay a partition's recent history into the engine when taking it over
    connect_timeout_s: float = 10.0  # the first connection; after it, reconnects never give up
    ack_delay_s: float = 0.0  # fault injection (tests): wait this long between the durable write and the ack


def stable_alert_id(alert: Alert) -> str:
    """An id for a worker's alert that is the same each time its evidence raises it."""
    h = hashlib.blake2b(digest_size=12)
    h.update(alert.rule.encode())
    for ident in alert.evidence:
        h.update(b"\0" + ident.encode())
    return f"fleet-{h.hexdigest()}"


class Worker:
    """One detector worker (see the module). ``engine`` may be None (store only).

    ``on_alerts`` is called with the worker's own alerts of each batch once they are durable.
    """

    def __init__(self, opts: WorkerOptions, sink: FleetSink, engine: Engine | None = None,
                 on_alerts: Callable[[Sequence[Alert]], None] | None = None) -> None:
        self.opts = opts
        self.sink = sink
        self.engine = engine
        self.on_alerts = on_alerts
        self.consumed = 0  # messages acknowledged after a durable write
        self.events = 0
        self.node_alerts = 0
        self.alerts = 0  # raised here
        self.redelivered = 0
        self.malformed: dict[str, int] = {}
        self.first_malformed: str | None = None
        self.sink_errors = 0
        self.warmed = 0  # events replayed into the engine for partitions taken over
        self.warm_up_cut = 0  # partitions whose replay hit its bound
        self.warm_up_errors = 0
        self.nats_errors = 0  # connection errors (NATS away, reconnecting)
        self.first_error: str | None = None
        self.partitions: set[int] = set()
        self.leases: Leases | None = None
        self._subs: dict[int, Any] = {}
        self._stale_ids = False  # partitions were taken over: the sink's known ids may be stale

    # -- one batch ------------------------------------------------------------------------

    def _bad(self, reason: str, msg: Any, detail: str = "") -> None:
        self.malformed[reason] = self.malformed.get(reason, 0) + 1
        if self.first_malformed is None:
            self.first_malformed = f"{reason} on {msg.subject[:120]}{': ' + detail[:160] if detail else ''}"

    def _decode(self, msg: Any) -> Event | Alert | tuple[str, str]:
        """The message's event or alert, or ``(reason, detail)`` when it is malformed."""
        parsed = parse_subject(msg.subject, self.opts.prefix)
        if parsed is None:
            return "subject", ""
        mid = (msg.headers or {}).get("Nats-Msg-Id")
        if not mid:
            return "no_msg_id", ""
        if len(msg.data) > MAX_PAYLOAD:
            return "too_large", ""
        obj: Event | Alert
        try:
            obj = alert_from_json(msg.data) if parsed.cls == "alert" else upgrade(from_json(msg.data))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError) as exc:
            return "payload", str(exc)
        if mid != f"{parsed.node}:{obj.id}":
            return "msg_id_mismatch", mid
        if isinstance(obj, Event):
            if (obj.kind == "policy.decision") != (parsed.cls == "decision"):
                return "class_mismatch", obj.kind
            c = obj.container
            if c is not None and c.node is None:
                obj = msgspec.structs.replace(obj, container=msgspec.structs.replace(c, node=parsed.node))
        return obj

    def _check(self, msg: Any) -> Event | Alert | None:
        """The message's event or alert, or None (counted) when it is malformed."""
        obj = self._decode(msg)
        if isinstance(obj, tuple):
            self._bad(obj[0], msg, obj[1])
            return None
        return obj

    async def handle(self, msgs: Sequence[Any]) -> None:
        """Check, detect, store durably, acknowledge (see the module)."""
        good: list[Any] = []
        events: list[Event] = []
        alerts: list[Alert] = []
        stale = self._stale_ids
        for m in msgs:
            obj = self._check(m)
            if obj is None:
                with contextlib.suppress(Exception):
                    await m.term()
                continue
            good.append(m)
            with contextlib.suppress(Exception):
                if m.metadata.num_delivered > 1:
                    self.redelivered += 1
                    stale = True
            (events if isinstance(obj, Event) else alerts).append(obj)  # type: ignore[arg-type]
        raised: list[Alert] = []
        if self.engine is not None and events:
            raised = [msgspec.structs.replace(a, id=stable_alert_id(a)) for a in self.engine.process_batch(events)]
        if not good:
            return
        try:
            await asyncio.to_thread(self._store, events, alerts + raised, stale)
        except SinkError as exc:
            self.sink_errors += 1
            if self.first_error is None:
                self.first_error = str(exc)
            return  # not acknowledged: redelivered after ack_wait
        if stale:
            self._stale_ids = False
        if self.opts.ack_delay_s:
            await asyncio.sleep(self.opts.ack_delay_s)
        await asyncio.gather(*(m.ack() for m in good), return_exceptions=True)
        self.consumed += len(good)
        self.events += len(events)
        self.node_alerts += len(alerts)
        self.alerts += len(raised)
        if raised and self.on_alerts is not None:
            self.on_alerts(raised)

    def _store(self, events: list[Event], alerts: list[Alert], stale: bool) -> None:
        refresh = getattr(self.sink, "refresh", None)
        if stale and callable(refresh):
            refresh()
        self.sink.write(events, alerts)
        self.sink.flush()

    # -- the loop -------------------------------------------------------------------------

    async def _bind(self, js: Any, p: int) -> Any:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        name = f"{self.opts.durable}-p{p}"
        cfg = ConsumerConfig(durable_name=name, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                             filter_subject=partition_filter(p, self.opts.prefix), ack_wait=self.opts.ack_wait_s,
                             max_ack_pending=max(1024, self.opts.batch * 4))
        await js.add_consumer(self.opts.stream, cfg)  # idempotent for an unchanged config
        return await js.pull_subscribe_bind(durable=name, stream=self.opts.stream)

    async def _rebalance(self, js: Any) -> None:
        assert self.leases is not None
        held = await self.leases.tick()
        for p in set(self._subs) - held:
            sub = self._subs.pop(p)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        for p in sorted(held - set(self._subs)):
            self._subs[p] = await self._bind(js, p)
            self._stale_ids = True
            await self._warm_up(js, p)
        self.partitions = set(self._subs)

    async def _warm_up(self, js: Any, p: int) -> None:
        """Rebuild the sequence state of partition ``p`` from what its last owner processed."""
        engine = self.engine
        window = max((m.seq.within_ns for m in engine.matchers), default=0) if engine is not None else 0
        if engine is None or not window or not self.opts.warm_up:
            return
        from runwatch.transport.warmup import warm_up

        def check(msg: Any) -> Event | Alert | None:
            obj = self._decode(msg)
            return None if isinstance(obj, tuple) else obj

        try:
            fed, cut = await warm_up(js, self.opts.stream, f"{self.opts.durable}-p{p}",
                                     partition_filter(p, self.opts.prefix), window,
                                     lambda events: engine.process_batch(events), check)
        except Exception as exc:  # NATS away: the partition goes on without its history
            self.warm_up_errors += 1
            if self.first_error is None:
                self.first_error = f"warm-up p{p}: {type(exc).__name__}: {exc}"
            return
        self.warmed += fed
        self.warm_up_cut += int(cut)

    async def run(self, stop: asyncio.Event, ready: Callable[[], None] | None = None) -> None:
        """Consume until ``stop`` is set; then give the leases back and close the connection."""
        from nats.errors import TimeoutError as NatsTimeout

        try:
            nc = await asyncio.wait_for(connect(self.opts.url, f"runwatch-worker-{self.opts.worker_id}",
                                                self._nats_error), self.opts.connect_timeout_s)
        except TimeoutError:
            raise ConnectionError(f"no answer within {self.opts.connect_timeout_s:g} s") from None
        try:
            js = nc.jetstream()
            await ensure_stream(js, self.opts.stream, self.opts.prefix)
            self.leases = Leases(await lease_bucket(js, self.opts.durable, self.opts.lease_s),
                                 self.opts.worker_id, self.opts.partitions)
            next_tick = 0.0
            announced = False
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_tick:
                    try:
                        await self._rebalance(js)
                        next_tick = now + self.opts.lease_s / 3
                    except Exception as exc:  # NATS away: keep what is held, retry soon
                        if self.first_error is None:
                            self.first_error = f"leases: {type(exc).__name__}: {exc}"
                        next_tick = now + 0.5
                    if not announced and ready is not None:
                        announced = True
                        ready()
                if not self._subs:
                    await asyncio.sleep(0.1)
                    continue
                await self.handle(await self._fetch_round(NatsTimeout))
            if self.leases is not None:
                with contextlib.suppress(Exception):
                    await self.leases.release_all()
        finally:
            with contextlib.suppress(Exception, asyncio.CancelledError):  # nats-py, closing while reconnecting
                await nc.close()

    async def _fetch_round(self, timeout_error: type[BaseException]) -> list[Any]:
        """One fetch from every held partition at once; the messages in partition order (each
        partition's in stream order), so one sink write and flush covers the whole round."""
        parts = sorted(self._subs)

        async def one(p: int) -> list[Any]:
            try:
                return list(await self._subs[p].fetch(self.opts.batch, timeout=FETCH_WAIT_S))
            except (TimeoutError, timeout_error):
                return []
            except Exception as exc:
                if self.first_error is None:
                    self.first_error = f"fetch p{p}: {type(exc).__name__}: {exc}"
                await asyncio.sleep(0.1)
                return []

        rounds = await asyncio.gather(*(one(p) for p in parts))
        return [m for msgs in rounds for m in msgs]

    def _nats_error(self, what: str, exc: BaseException) -> None:
        self.nats_errors += 1
        if self.first_error is None:
            self.first_error = f"{what}: {type(exc).__name__}: {exc}"[:300]

    def stats(self) -> dict[str, Any]:
        """Consumed, events, alerts (nodes' and own), redelivered, malformed, sink errors, partitions."""
        out: dict[str, Any] = {
            "worker_id": self.opts.worker_id, "consumed": self.consumed, "events": self.events,
            "node_alerts": self.node_alerts, "alerts": self.alerts, "redelivered": self.redelivered,
            "malformed": sum(self.malformed.values()), "malformed_by_reason": dict(self.malformed),
            "first_malformed": self.first_malformed, "sink_errors": self.sink_errors, "nats_errors": self.nats_errors,
            "warmed": self.warmed, "warm_up_cut": self.warm_up_cut, "warm_up_errors": self.warm_up_errors,
            "first_error": self.first_error,
            "partitions": sorted(self.partitions),
        }
        sink_stats = getattr(self.sink, "stats", None)
        if callable(sink_stats):
            out["sink"] = {k: v for k, v in sink_stats().items() if isinstance(v, int | str | None)}
        if self.leases is not None:
            out["leases"] = {"live_workers": self.leases.live, "taken": self.leases.taken,
                             "given_back": self.leases.given_back, "lost": self.leases.lost}
        return out
