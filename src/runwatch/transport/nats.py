"""The NATS JetStream publisher: an output of events, decisions and alerts (registered ``nats``).

:class:`NatsOutput` never blocks the pipeline: ``write``/``write_alerts`` encode the batch and
append it to a bounded in-memory queue (past ``queue_max`` messages a message is counted under
``queue_full``). A thread of its own runs an asyncio loop with the NATS connection; it
publishes in order, each message with ``Nats-Msg-Id`` (see :mod:`runwatch.transport.subjects`)
and waits for JetStream's acks. While NATS is unreachable, or a publish is not acked, the
message and everything after it go to the disk spool
(:class:`~runwatch.transport.spool.MessageSpool` over the outputs' disk spool, bounded,
counted); once NATS answers again the spool is published first, oldest first, and new
messages wait behind it, so a node's messages reach the stream in the order it saw them. A
message published twice (a lost ack, a re-sent spool batch) carries the same id: JetStream drops
the copy inside its duplicate window, sinks after it. Detection and enforcement on the node do
not wait for any of this.

Lifecycle: ``open`` starts the thread (it does not wait for NATS), ``flush`` is a no-op (the
thread publishes as fast as acks come), :meth:`drain` waits (bounded) until nothing is pending,
``close`` drains for ``close_timeout`` s (when connected), moves whatever is still pending to the disk spool (sent
by the next start) and stops. Thread safety: ``write*`` from the pipeline thread, ``stats`` from
any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from runwatch.alerts.model import Alert
from runwatch.alerts.render import to_json as alert_json
from runwatch.events import Event, to_json
from runwatch.outputs.base import register_output
from runwatch.store.spool import SpoolLimits
from runwatch.transport.spool import Message, MessageSpool
from runwatch.transport.subjects import (
    DEFAULT_PARTITIONS,
    DEFAULT_PREFIX,
    HEADER_CLUSTER,
    HEADER_NODE,
    Subjects,
    event_class,
    stream_subjects,
    workload_key,
)

DEFAULT_STREAM = "RUNWATCH"
BATCH = 256  # messages in flight per round of publishes
CONNECT_TIMEOUT_S = 3.0  # one connection attempt; then the queue goes to the spool and it tries again


async def ensure_stream(js: Any, stream: str = DEFAULT_STREAM, prefix: str = DEFAULT_PREFIX,
                        duplicate_window_s: float = 600.0) -> None:
    """Create the fleet stream (file storage, every fleet subject) unless it exists."""
    from nats.js.api import StorageType, StreamConfig
    from nats.js.errors import NotFoundError

    try:
        await js.stream_info(stream)
    except NotFoundError:
        await js.add_stream(StreamConfig(name=stream, subjects=stream_subjects(prefix), storage=StorageType.FILE,
                                         duplicate_window=duplicate_window_s))


async def connect(url: str, name: str, on_error: Callable[[str, BaseException], None]) -> Any:
    """A NATS connection that reconnects for ever and reports errors to ``on_error`` (the
    client's own handlers would print tracebacks)."""
    import nats

    async def error_cb(exc: Exception) -> None:
        on_error("nats", exc)

    return await nats.connect(url, connect_timeout=2, reconnect_time_wait=0.5, max_reconnect_attempts=-1,
                              allow_reconnect=True, name=name, error_cb=error_cb)


def alert_key(alert: Alert, node: str) -> str:
    """The workload key of an alert (as :func:`~runwatch.transport.subjects.workload_key`)."""
    w = alert.workload
    return w.spiffe_id or w.pod_uid or w.id or f"host:{node}"


class NatsOutput:
    """Publishes events, decisions and alerts of this node to the fleet stream (see the module).

    ``spool_path`` is the disk spool's directory (None: messages that cannot be published are
    counted under ``no_spool``); ``spool`` bounds it.
    """

    name = "nats"

    def __init__(self, url: str, *, cluster: str, node: str, partitions: int = DEFAULT_PARTITIONS,
                 spool_path: str | None = None, spool: SpoolLimits | None = None, stream: str = DEFAULT_STREAM,
                 prefix: str = DEFAULT_PREFIX, queue_max: int = 100_000, publish_timeout: float = 2.0,
                 close_timeout: float = 5.0) -> None:
        self.url = url
        self.subjects = Subjects(cluster, node, partitions, prefix)
        self.stream = stream
        self.spool_path = spool_path
        self.spool_limits = spool
        self.queue_max = queue_max
        self.publish_timeout = publish_timeout
        self.close_timeout = close_timeout
        self._queue: deque[Message] = deque()
        self._lock = threading.Lock()
        self._inflight = 0
        self._spool: MessageSpool | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._headers = {HEADER_NODE: node, HEADER_CLUSTER: cluster}
        self.connected = False
        self.published = 0  # messages acked by JetStream
        self.duplicates = 0  # acked as a duplicate of a message already stored
        self.lost: dict[str, int] = {}  # messages given up, per reason
        self.outages = 0  # times NATS became unreachable (or never answered at the start)
        self.first_error: str | None = None

    # -- the pipeline side ----------------------------------------------------------------

    def open(self) -> None:
        """Open the disk spool and start the publisher thread (NATS may be down: it spools)."""
        if self._thread is not None:
            return
        if self.spool_path is not None:
            self._spool = MessageSpool(self.spool_path, self.spool_limits)
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="runwatch-nats", daemon=True)
        self._thread.start()
        ready.wait(5)

    def write(self, events: Sequence[Event]) -> None:
        """Queue events and decisions for publishing (never waits for NATS)."""
        s, node = self.subjects, self.subjects.node
        self._enqueue([(s.subject(event_class(e), workload_key(e, node)), s.msg_id(e.id), to_json(e))
                       for e in events])

    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        """Queue alerts for publishing (never waits for NATS)."""
        s, node = self.subjects, self.subjects.node
        self._enqueue([(s.subject("alert", alert_key(a, node)), s.msg_id(a.id), alert_json(a)) for a in alerts])

    def _enqueue(self, messages: list[Message]) -> None:
        if not messages:
            return
        with self._lock:
            room = max(0, self.queue_max - len(self._queue))
            if room < len(messages):
                self._count_lost("queue_full", len(messages) - room)
                messages = messages[:room]
            self._queue.extend(messages)
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not wake.is_set():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(wake.set)

    def flush(self) -> None:
        """Nothing to do here: the publisher thread sends as acks come (see :meth:`drain`)."""

    def pending(self) -> int:
        """Messages not yet acked by JetStream: queued, in flight and spooled."""
        with self._lock:
            return len(self._queue) + self._inflight + (len(self._spool) if self._spool is not None else 0)

    def drain(self, timeout: float) -> bool:
        """Wait until nothing is pending (True) or ``timeout`` seconds passed (False)."""
        deadline = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() >= deadline or self._thread is None or not self._thread.is_alive():
                return False
            time.sleep(0.02)
        return True

    def close(self) -> None:
        """Drain for ``close_timeout`` s, keep the rest in the disk spool, stop. Idempotent."""
        if self._thread is None:
            return
        if self.connected:  # NATS away: what is pending stays in the spool, no point in waiting
            self.drain(self.close_timeout)
        self._stopping = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)
        self._thread.join(timeout=self.publish_timeout + 5)
        self._thread = None
        with self._lock:
            rest = list(self._queue)
            self._queue.clear()
        if rest:
            self._to_spool(rest)
        if self._spool is not None:
            self._spool.close()

    def stats(self) -> dict[str, Any]:
        """Published, duplicates, lost per reason, pending, outages, the spool's counters."""
        return {"url": self.url, "connected": self.connected, "published": self.published,
                "duplicates": self.duplicates, "lost": sum(self.lost.values()), "lost_by_reason": dict(self.lost),
                "pending": self.pending(), "outages": self.outages, "first_error": self.first_error,
                "spool": self._spool.stats() if self._spool is not None else None}

    # -- the publisher thread -------------------------------------------------------------

    def _count_lost(self, reason: str, n: int) -> None:
        self.lost[reason] = self.lost.get(reason, 0) + n

    def _to_spool(self, messages: list[Message]) -> None:
        if self._spool is None:
            self._count_lost("no_spool", len(messages))
            return
        lost = self._spool.add(messages)
        if lost:
            self._count_lost("spool_full", lost)

    def _error(self, what: str, exc: BaseException) -> None:
        if self.first_error is None:
            self.first_error = f"{what}: {type(exc).__name__}: {exc}"[:300]

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._wake = asyncio.Event()
        ready.set()
        try:
            loop.run_until_complete(self._main())
        except Exception as exc:  # the node goes on; what could not be sent is in the spool
            self._error("publisher stopped", exc)
        finally:
            self._loop = None
            loop.close()

    async def _main(self) -> None:
        nc: Any = None
        try:
            while not self._stopping:
                if nc is None or nc.is_closed:
                    try:
                        nc = await asyncio.wait_for(connect(self.url, f"runwatch-agent-{self.subjects.node}",
                                                            self._error), CONNECT_TIMEOUT_S)
                        await ensure_stream(nc.jetstream(), self.stream, self.subjects.prefix)
                    except Exception as exc:  # TimeoutError included: NATS is not there (yet)
                        self._error("connect", exc)
                        self._down()
                        if nc is not None:
                            with contextlib.suppress(Exception, asyncio.CancelledError):
                                await nc.close()
                        nc = None
                        while batch := self._take():  # everything queued waits on disk, in order
                            self._to_spool(batch)
                            self._release(len(batch))
                        await self._idle(1.0)
                        continue
                js = nc.jetstream(timeout=self.publish_timeout)
                if nc.is_connected:
                    self.connected = True
                    await self._send_spool(js)
                batch = self._take()
                if batch:
                    if nc.is_connected and not (self._spool is not None and len(self._spool)):
                        await self._send(js, batch)
                    else:
                        self._down()
                        self._to_spool(batch)
                        self._release(len(batch))
                elif not self._queue:
                    await self._idle(0.5)
        finally:
            if nc is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):  # nats-py, closing while reconnecting
                    await nc.close()

    def _down(self) -> None:
        if self.connected or self.outages == 0:
            self.outages += 1
        self.connected = False

    async def _idle(self, seconds: float) -> None:
        assert self._wake is not None
        self._wake.clear()
        if self._queue or self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _take(self) -> list[Message]:
        with self._lock:
            n = min(BATCH, len(self._queue))
            out = [self._queue.popleft() for _ in range(n)]
            self._inflight += n
            return out

    def _release(self, n: int) -> None:
        with self._lock:
            self._inflight -= n

    async def _publish(self, js: Any, batch: Sequence[Message]) -> int:
        """Publish in order; the number acked before the first failure."""
        results = await asyncio.gather(
            *(js.publish(subj, payload, headers={**self._headers, "Nats-Msg-Id": mid}) for subj, mid, payload in batch),
            return_exceptions=True)
        for i, r in enumerate(results):
            if isinstance(r, BaseException):
                self._error("publish", r)
                return i
            if getattr(r, "duplicate", False):
                self.duplicates += 1
        return len(results)

    async def _send(self, js: Any, batch: list[Message]) -> None:
        try:
            acked = await self._publish(js, batch)
            self.published += acked
            if acked < len(batch):
                self._down()
                self._to_spool(batch[acked:])  # in order, ahead of everything queued later
        finally:
            self._release(len(batch))

    async def _send_spool(self, js: Any) -> None:
        """Publish the disk spool, oldest batch first, while NATS acks; a batch acked in part is
        sent again whole (its acked messages are duplicates JetStream drops by id)."""
        spool = self._spool
        while spool is not None and len(spool) and not self._stopping:
            head = spool.head()
            if head is None:
                return
            seq, batch = head
            acked = await self._publish(js, batch)
            self.published += acked
            if acked < len(batch):
                self._down()
                return
            spool.remove(seq)


def nats_output(url: str, **kwargs: Any) -> NatsOutput:
    """Factory registered as ``nats`` (see :class:`NatsOutput` for the keyword arguments)."""
    return NatsOutput(url, **kwargs)


register_output("nats", nats_output)
