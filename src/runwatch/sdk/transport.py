"""Non-blocking delivery of SDK messages to the collector over a unix datagram socket.

Contract:

* :meth:`Transport.submit` is what instrumented code pays for: one bounded ``deque``
  append and, when the flusher sleeps, one event set. It never blocks on I/O and never raises.
* A daemon flusher thread encodes messages as JSON lines, packs several into one datagram
  (at most :data:`~runwatch.sdk.wire.MAX_DATAGRAM` bytes) and sends without blocking.
  When the collector's queue is full it keeps the messages and retries with a short
  back-off; messages are dropped (and counted) only when the in-process buffer is full or
  no collector is listening.
* After ``fork()`` the child starts with an empty buffer, no thread and zeroed counters
  (messages buffered by the parent are the parent's to send).
* A process's first message is sent from the caller's thread (non-blocking; a full queue or
  no collector leaves it to the flusher), so it is in the collector's queue before anything
  the caller does next: the tool-call join starts waiting for the process's kernel events
  from that message on, and needs it before those events.
* At interpreter exit what is buffered is sent for at most :attr:`Transport.exit_flush_s`.

Thread safety: ``submit`` and ``stats`` from any thread; the flusher is the only sender.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import errno
import itertools
import json
import os
import socket
import threading
import time
from typing import Any

from runwatch.sdk.wire import DEFAULT_SOCKET, ENV_SOCKET, MAX_DATAGRAM, WIRE_VERSION

Item = tuple[str, int, int, str, "dict[str, Any] | None"]
"""A queued message: (kind, monotonic ns, thread id, pre-encoded JSON members, extra members)."""

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

_NO_COLLECTOR = (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTCONN, errno.EDESTADDRREQ, errno.ENOTDIR,
                 errno.EACCES, errno.EPERM, errno.EPIPE)


class Transport:
    """One process's bounded buffer and flusher thread for SDK messages."""

    def __init__(self, path: str | None = None, capacity: int = 8192, retry_s: float = 0.5,
                 exit_flush_s: float = 0.25, batch_delay_s: float = 0.002) -> None:
        self.path = path if path is not None else os.environ.get(ENV_SOCKET, DEFAULT_SOCKET)
        self.capacity = capacity
        self.retry_s = retry_s
        self.exit_flush_s = exit_flush_s
        self.batch_delay_s = batch_delay_s
        self._reset()

    def _reset(self) -> None:
        self.pid = os.getpid()
        try:
            self.ns = os.stat("/proc/self/ns/pid").st_ino
        except OSError:
            self.ns = 0
        self._buf: collections.deque[Item] = collections.deque()
        self._wake = threading.Event()
        self._closing = False
        self._lock = threading.Lock()  # guards thread start only
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._next_connect = 0.0
        # Caller-side counters are itertools.count objects: next() is atomic under the GIL,
        # so concurrent submits never lose a count. Flusher-side counters are plain ints.
        self._submitted = itertools.count()
        self._full = itertools.count()
        self._caller_errors = itertools.count()
        self.counters: dict[str, int] = {
            "sent": 0, "datagrams": 0, "dropped_no_collector": 0, "dropped_oversize": 0,
            "socket_full_retries": 0, "errors": 0,
        }

    # -- caller side ------------------------------------------------------------------------

    def submit(self, msg: Item) -> None:
        """Queue ``msg`` for sending; drops it (counted) if the buffer is full. Never raises.

        ``msg`` is ``(kind, monotonic ns, thread id, fragment, extra)``: ``fragment`` is
        pre-encoded JSON members (``',"sid":1,"name":"t"'`` or ``""``), ``extra`` a dict
        encoded by the flusher, or None. The flusher adds version, pid and namespace.
        """
        try:
            if len(self._buf) >= self.capacity:
                next(self._full)
                return
            self._buf.append(msg)
            next(self._submitted)
            if self._thread is None:
                self._start_thread()
            if not self._wake.is_set():
                self._wake.set()
        except Exception:  # the agent must never see an SDK failure
            next(self._caller_errors)

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._send_first()
            thread = threading.Thread(target=self._run, name="runwatch-sdk-flusher", daemon=True)
            thread.start()
            self._thread = thread

    def stats(self) -> dict[str, int]:
        """Counters: submitted, sent, datagrams, the drop reasons, retries, errors, buffered."""
        out = dict(self.counters)
        out["submitted"] = _peek(self._submitted)
        out["dropped_buffer_full"] = _peek(self._full)
        out["errors"] += _peek(self._caller_errors)
        out["buffered"] = len(self._buf)
        out["dropped"] = out["dropped_buffer_full"] + out["dropped_no_collector"] + out["dropped_oversize"]
        return out

    def flush(self, timeout: float = 1.0) -> bool:
        """Wait until the buffer is empty (sent or dropped), up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while self._buf and time.monotonic() < deadline:
            if self._thread is None or not self._thread.is_alive():
                self._drain_once(deadline)
            else:
                time.sleep(0.0005)
        return not self._buf

    def close(self) -> None:
        """Send what is buffered (for at most ``exit_flush_s``) and stop the flusher."""
        try:
            self.flush(self.exit_flush_s)
            self._closing = True
            self._wake.set()
            thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=self.exit_flush_s)
            left = len(self._buf)
            self._buf.clear()
            self.counters["dropped_no_collector"] += left  # could not be delivered in time
            with contextlib.suppress(OSError):
                if self._sock is not None:
                    self._sock.close()
        except Exception:
            self.counters["errors"] += 1

    def _send_first(self) -> None:
        """Send the oldest buffered message now, without blocking (no flusher runs yet)."""
        try:
            sock = self._connect()
            if sock is None or not self._buf:
                return
            line = self._line(self._buf[0])
            if len(line) > MAX_DATAGRAM:
                return  # the flusher drops it, counted
            sock.send(line)
        except OSError:
            return  # still buffered: the flusher retries, or counts why it could not
        self._buf.popleft()
        self.counters["sent"] += 1
        self.counters["datagrams"] += 1

    # -- flusher side -----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._closing:
            if not self._wake.wait(1.0):
                continue
            # Let messages gather so one wake-up and one datagram carry many (the caller's
            # thread does not pay for a thread switch per message); the wake stays set
            # meanwhile, so submit() skips the event entirely.
            time.sleep(self.batch_delay_s)
            self._wake.clear()
            try:
                self._drain_once(None)
            except Exception:
                self.counters["errors"] += 1

    def _connect(self) -> socket.socket | None:
        if self._sock is not None:
            return self._sock
        now = time.monotonic()
        if now < self._next_connect:
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            self._next_connect = now + self.retry_s
            return None
        self._sock = sock
        return sock

    def _line(self, msg: Item) -> bytes:
        """One message as its JSON line."""
        kind, mono, tid, frag, extra = msg
        head = f'{{"v":{WIRE_VERSION},"k":"{kind}","m":{mono},"pid":{self.pid},"tid":{tid},"ns":{self.ns}{frag}'
        tail = "," + _dumps(extra)[1:] if extra else "}"
        return (head + tail + "\n").encode()

    def _take_datagram(self) -> tuple[bytes, int]:
        """Pop messages off the buffer into one datagram; returns (payload, message count)."""
        parts: list[bytes] = []
        size = 0
        buf = self._buf
        while buf:
            line = self._line(buf[0])
            if len(line) > MAX_DATAGRAM:
                buf.popleft()
                self.counters["dropped_oversize"] += 1
                continue
            if size + len(line) > MAX_DATAGRAM:
                break
            buf.popleft()
            parts.append(line)
            size += len(line)
        return b"".join(parts), len(parts)

    def _drain_once(self, deadline: float | None) -> None:
        """Send until the buffer is empty, the collector is gone, or (with a deadline) time is up."""
        backoff = 0.0005
        pending: tuple[bytes, int] | None = None
        while self._buf or pending is not None:
            if pending is None and self._connect() is None:
                n = len(self._buf)  # nobody listens: drop without encoding
                for _ in range(n):
                    self._buf.popleft()
                self.counters["dropped_no_collector"] += n
                continue
            if pending is None:
                pending = self._take_datagram()
                if pending[1] == 0:
                    pending = None
                    continue
            payload, count = pending
            sock = self._connect()
            if sock is None:
                self.counters["dropped_no_collector"] += count
                pending = None
                continue
            try:
                sock.send(payload)
            except BlockingIOError:
                # The collector's queue is full: keep the datagram, back off, retry.
                self.counters["socket_full_retries"] += 1
                if deadline is not None and time.monotonic() >= deadline:
                    self.counters["dropped_no_collector"] += count
                    return
                if self._closing and deadline is None:
                    self.counters["dropped_no_collector"] += count
                    return
                time.sleep(backoff)
                backoff = min(backoff * 2, 0.02)
                continue
            except OSError as exc:
                with contextlib.suppress(OSError):
                    sock.close()
                self._sock = None
                if exc.errno in _NO_COLLECTOR or exc.errno == errno.EMSGSIZE:
                    key = "dropped_oversize" if exc.errno == errno.EMSGSIZE else "dropped_no_collector"
                    self.counters[key] += count
                    self._next_connect = time.monotonic() + (0 if exc.errno == errno.EMSGSIZE else self.retry_s)
                else:
                    self.counters["errors"] += 1
                    self.counters["dropped_no_collector"] += count
                pending = None
                continue
            backoff = 0.0005
            self.counters["sent"] += count
            self.counters["datagrams"] += 1
            pending = None


def _peek(counter: itertools.count[int]) -> int:
    """Current value of an itertools.count without advancing it."""
    return int(repr(counter)[6:-1])


_transport: Transport | None = None
_transport_lock = threading.Lock()


def get_transport() -> Transport:
    """The process-wide transport (created on first use; reset in a forked child)."""
    global _transport
    t = _transport
    if t is None:
        with _transport_lock:
            if _transport is None:
                _transport = Transport()
            t = _transport
    return t


def set_transport(transport: Transport | None) -> Transport | None:
    """Replace the process-wide transport (tests, embedding); returns the previous one."""
    global _transport
    with _transport_lock:
        old, _transport = _transport, transport
    return old


def _after_fork_in_child() -> None:
    global _transport, _transport_lock
    _transport_lock = threading.Lock()
    if _transport is not None:
        _transport._reset()


def _at_exit() -> None:
    t = _transport
    if t is not None:
        t.close()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
