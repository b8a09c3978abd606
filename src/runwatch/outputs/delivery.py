"""Delivery of encoded payloads to one network endpoint: a sender thread, a bounded queue, a disk spool.

Every network output (webhook, Slack, syslog, OTLP) encodes what it is given into byte
payloads and hands them to its :class:`Delivery` with :meth:`Delivery.submit`, which never
waits on the network: the payload joins a bounded in-memory queue, or, when the queue is full
(or the spool already holds something, so that order is kept), the on-disk spool
(:class:`~runwatch.store.spool.DiskSpool`). One sender thread takes the oldest payload
(queue first, then spool: everything queued is older than everything spooled) and sends it
through the output's :class:`Transport`; a failure that may pass (connection refused, a
timeout, HTTP 5xx/429) is retried with exponential backoff, and nothing behind it is sent
meanwhile, so payloads arrive once each and in submission order. A payload the endpoint
refuses for good (HTTP 4xx) is dropped and counted.

:meth:`Delivery.close` gives the sender ``close_timeout`` seconds to send what is left while
the endpoint answers (no backoff waits: the first failure ends it), then writes what is still
queued into the spool, in order; the next session with the same spool directory sends it
first. Without a spool directory, what overflows the queue or is left at close is dropped.

Counters (:meth:`Delivery.stats`): ``sent``, ``retried`` (attempts after a failure),
``spooled`` (payloads written to disk), ``dropped`` (by reason: ``spool_full``,
``queue_full``, ``rejected``, ``not_sent``), ``recovered`` (found in the spool at start),
``pending`` (in the spool now), ``failures`` and the first and last error as one line each.

Thread safety: :meth:`submit` from any one thread (the pipeline); :meth:`open`,
:meth:`flush`, :meth:`close` from the owner; :meth:`stats` from any thread.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from runwatch.outputs.jsonl import OutputError
from runwatch.store.spool import DiskSpool, SpoolLimits


class DeliveryError(Exception):
    """A send failed; ``retryable`` says whether trying again may help (one-line message)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Transport(Protocol):
    """Sends one payload to the endpoint or raises :class:`DeliveryError`; bounded by its own timeout."""

    def send(self, payload: bytes) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff between attempts on one payload: ``initial_s``, times ``factor`` each time, at most ``max_s``."""

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        return float(min(self.max_s, self.initial_s * self.factor ** (attempt - 1)))


class Delivery:
    """Queue, spool and sender thread of one output named ``name`` (see the module docstring)."""

    def __init__(self, name: str, transport: Transport, *, spool_dir: str | None = None,
                 spool_limits: SpoolLimits | None = None, queue_max: int = 1024,
                 retry: RetryPolicy | None = None, close_timeout: float = 5.0) -> None:
        if queue_max < 1:
            raise ValueError(f"queue_max must be at least 1, got {queue_max}")
        self.name = name
        self.transport = transport
        self.spool = DiskSpool(spool_dir, spool_limits) if spool_dir else None
        self.queue_max = queue_max
        self.retry = retry or RetryPolicy()
        self.close_timeout = close_timeout
        self._queue: collections.deque[tuple[int, bytes]] = collections.deque()
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._deadline = 0.0
        self._thread: threading.Thread | None = None
        self._busy = False  # the sender holds a payload it has not finished with
        self._seq = 0
        self.counters: dict[str, int] = {"submitted": 0, "sent": 0, "retried": 0, "spooled": 0, "failures": 0}
        self.dropped: dict[str, int] = {}
        self.first_error: str | None = None
        self.last_error: str | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Take in what the spool holds and start the sender (OutputError names the spool directory)."""
        if self._thread is not None:
            return
        if self.spool is not None:
            try:
                self.spool.open()
            except OSError as exc:
                raise OutputError(f"output {self.name}: cannot open spool {self.spool.directory}: "
                                  f"{exc.strerror or exc}") from None
            self._seq = self.spool.next_seq
        self._thread = threading.Thread(target=self._run, name=f"runwatch-out-{self.name}", daemon=True)
        self._thread.start()

    def submit(self, payload: bytes) -> None:
        """Queue ``payload`` for sending (never waits on the network)."""
        with self._cv:
            self.counters["submitted"] += 1
            seq, self._seq = self._seq, self._seq + 1
            if self._closed:
                self._drop("not_sent")
                return
            if len(self._queue) < self.queue_max and not (self.spool is not None and len(self.spool)):
                self._queue.append((seq, payload))
                self._cv.notify()
                return
            self._to_spool(seq, payload, "queue_full")
            self._cv.notify()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` s for everything queued and spooled to be sent; True if it was."""
        end = time.monotonic() + timeout
        with self._cv:
            while self._queue or self._busy or (self.spool is not None and len(self.spool)):
                left = end - time.monotonic()
                if left <= 0 or self._thread is None:
                    return False
                self._cv.wait(min(left, 0.05))
        return True

    def close(self) -> None:
        """Send what is left while the endpoint answers (``close_timeout``), spool the rest. Idempotent."""
        with self._cv:
            if self._closed:
                return
            self._closed = True
            self._deadline = time.monotonic() + self.close_timeout
            self._stop.set()
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(self.close_timeout + 30.0)  # the transport's own timeout bounds one send
        with self._cv:
            left, self._queue = list(self._queue), collections.deque()
            for seq, payload in left:
                self._to_spool(seq, payload, "not_sent")
        self.transport.close()

    # -- counters ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The counters (see the module docstring) as plain builtins."""
        with self._cv:
            out: dict[str, Any] = {k: v for k, v in self.counters.items() if k != "submitted"}
            out["dropped"] = sum(self.dropped.values())
            out["dropped_by_reason"] = dict(self.dropped)
            out["queued"] = len(self._queue)
            out["recovered"] = self.spool.recovered if self.spool is not None else 0
            out["pending"] = len(self.spool) if self.spool is not None else 0
            out["spool"] = self.spool.directory if self.spool is not None else None
            out["first_error"], out["last_error"] = self.first_error, self.last_error
        return out

    # -- internals (callers hold self._cv) ---------------------------------------------------

    def _drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def _to_spool(self, seq: int, payload: bytes, reason: str) -> None:
        if self.spool is None:
            self._drop(reason)
            return
        try:
            kept = self.spool.put(seq, payload)
        except OSError as exc:
            self._error(f"cannot write spool {self.spool.directory}: {exc.strerror or exc}")
            kept = False
        if kept:
            self.counters["spooled"] += 1
        else:
            self._drop("spool_full")

    def _error(self, line: str) -> None:
        if self.first_error is None:
            self.first_error = line
        self.last_error = line

    def _take(self) -> tuple[int, bytes, bool] | None:
        """The oldest payload (seq, data, from the spool), waiting for one; None to end the sender."""
        with self._cv:
            while True:
                if self._stop.is_set() and time.monotonic() >= self._deadline:
                    return None
                if self._queue:
                    seq, data = self._queue[0]
                    self._busy = True
                    return seq, data, False
                head = self.spool.head() if self.spool is not None else None
                if head is not None:
                    self._busy = True
                    return head[0], head[1], True
                if self._stop.is_set():
                    return None
                self._cv.wait(0.5)

    def _done(self, seq: int, from_spool: bool) -> None:
        with self._cv:
            if from_spool:
                assert self.spool is not None
                self.spool.remove(seq)
            elif self._queue and self._queue[0][0] == seq:
                self._queue.popleft()
            self._busy = False
            self._cv.notify_all()

    def _run(self) -> None:
        while True:
            item = self._take()
            if item is None:
                break
            seq, data, from_spool = item
            attempt = 0
            while True:
                try:
                    self.transport.send(data)
                except DeliveryError as exc:
                    with self._cv:
                        self.counters["failures"] += 1
                        self._error(str(exc))
                        if not exc.retryable:
                            self._drop("rejected")
                    if not exc.retryable:
                        self._done(seq, from_spool)
                        break
                    if self._stop.is_set():  # closing: no backoff, leave it (and the rest) to the spool
                        with self._cv:
                            self._busy = False
                            self._cv.notify_all()
                        return
                    attempt += 1
                    if self._stop.wait(self.retry.delay(attempt)) and time.monotonic() >= self._deadline:
                        with self._cv:
                            self._busy = False
                        return
                    with self._cv:
                        self.counters["retried"] += 1
                    continue
                with self._cv:
                    self.counters["sent"] += 1
                self._done(seq, from_spool)
                break
