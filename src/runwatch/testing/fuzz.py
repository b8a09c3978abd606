"""Random and crafted bad input for runwatch's listeners (the listener fuzz test).

:func:`http_inputs` gives whole client transmissions for an HTTP listener (the OTLP receiver,
the decide and control sockets): garbage, invalid UTF-8, lying or huge ``Content-Length``,
truncated bodies, deep nesting, gzip bombs, chunked bodies, header floods, bad request lines.
:func:`datagram_inputs` gives datagrams for the agent-SDK socket. :class:`Fuzzer` sends them
from a thread for a bounded time, and :func:`hold_slow` keeps connections idle or dribbling a
byte at a time. Everything is drawn from one seeded :class:`random.Random`, so a failing run
is repeated by its seed. Senders ignore every error of their own (refused, reset, timed out):
the listener's survival is what is tested, not its answers.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

Connect = Callable[[], socket.socket]



@functools.cache
def gzip_bomb() -> bytes:
    """About 40 KiB of gzip that inflates to 40 MiB of zeros."""
    return gzip.compress(b"\0" * (40 << 20), compresslevel=9)


def _garbage(rng: random.Random, n: int | None = None) -> bytes:
    return rng.randbytes(n if n is not None else rng.randint(1, 4096))


def _request(method: str, path: str, headers: dict[str, str], body: bytes, length: int | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: fuzz\r\n"
    for key, value in headers.items():
        head += f"{key}: {value}\r\n"
    head += f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
    return head.encode("latin-1") + body


def http_inputs(rng: random.Random, path: str, content_type: str) -> Iterator[bytes]:
    """Endless bad transmissions for an HTTP listener whose API is ``POST path`` of ``content_type``."""
    ct = {"Content-Type": content_type}
    deep = b"[" * 100_000 + b"]" * 100_000
    makers: list[Callable[[], bytes]] = [
        lambda: _garbage(rng),
        lambda: b"POST /v1/\xff\xfe\xc3\x28 HTTP/1.1\r\nHost: \xff\r\nContent-Length: 2\r\n\r\n\xc3\x28",
        lambda: _request("POST", path, ct, _garbage(rng, 10), length=100_000),  # lying: body never comes whole
        lambda: _request("POST", path, ct, b"", length=10**15),
        lambda: _request("POST", path, ct, b"x", length=-1),
        lambda: _request("POST", path, {**ct, "Content-Length": "12abc"}, b"")[:-4] + b"\r\n\r\n",
        lambda: _request("POST", path, {"Content-Type": "application/json"}, deep),
        lambda: _request("POST", path, {"Content-Type": "application/json"},
                         b'{"tool": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}"),
        lambda: _request("POST", path, ct, b"\xff\xfe" + _garbage(rng)),
        lambda: _request("POST", path, {**ct, "Content-Encoding": "gzip"}, gzip_bomb()),
        lambda: _request("POST", path, {**ct, "Content-Encoding": "gzip"}, gzip.compress(b"x" * 999)[:-9]),
        lambda: _request("POST", path, {**ct, "Content-Encoding": "br"}, b"abc"),
        lambda: _request("POST", path, {"Content-Type": "text/xml"}, b"<a/>"),
        lambda: (f"POST {path} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").encode(),
        lambda: (f"POST {path} HTTP/1.1\r\n" + "".join(f"X-{i}: {i}\r\n" for i in range(200)) + "\r\n").encode(),
        lambda: f"POST {path} HTTP/1.1\r\nX-Long: {'a' * 70_000}\r\n\r\n".encode(),
        lambda: b"GET /\r\n\r\n",
        lambda: b"\r\n" * 50 + b"BREW /coffee HTCPCP/1.0\r\n\r\n",
        lambda: _request(rng.choice(["PUT", "DELETE", "OPTIONS", "FOO"]), path, ct, b"{}"),
        lambda: _request("POST", "/" + "a/" * 2000, ct, b"{}"),
        lambda: _request("POST", path, {"Content-Type": "application/json"},
                         json.dumps({"resourceSpans": "x", "tool": [1], "args": {"k": "\ud800"}}).encode("utf-8",
                                                                                                     "surrogatepass")),
        lambda: _request("POST", path, ct, _garbage(rng))[: rng.randint(5, 60)],  # truncated head
    ]
    while True:
        yield rng.choice(makers)()


def datagram_inputs(rng: random.Random) -> Iterator[bytes]:
    """Endless bad datagrams for the agent-SDK socket."""
    good = json.dumps({"v": 1, "k": "tool.start", "m": 1, "pid": 1, "tid": 1, "ns": 1, "sid": 1,
                       "name": "fuzzed"}).encode()
    makers: list[Callable[[], bytes]] = [
        lambda: _garbage(rng),
        lambda: b"\xff\xfe\xc3\x28" + _garbage(rng, 64),
        lambda: b"[" * 30_000,
        lambda: b'{"v": 1, "k": ' + b'{"a": ' * 3000 + b"1" + b"}" * 3000 + b"}",
        lambda: good[: rng.randint(1, len(good) - 1)],
        lambda: json.dumps({"v": 1, "k": "tool.start", "m": "x", "pid": [], "tid": None, "ns": {}}).encode(),
        lambda: json.dumps({"v": 99, "k": "teleport", "m": 1, "pid": 1, "tid": 1, "ns": 1}).encode(),
        lambda: json.dumps({"v": 1, "k": "tool.start", "m": 1, "pid": 1, "tid": 1, "ns": 1, "sid": 1,
                            "name": "x" * 30_000}).encode(),
        lambda: b"",
    ]
    while True:
        yield rng.choice(makers)()


@dataclass
class Fuzzer:
    """Sends transmissions from ``inputs`` over fresh connections (or datagrams) until stopped."""

    name: str
    inputs: Iterator[bytes]
    send: Callable[[bytes], None]
    sent: int = 0
    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self, until: float) -> Fuzzer:
        """Run on a thread until :meth:`finish` or the monotonic time ``until``."""
        def loop() -> None:
            while not self.stop.is_set() and time.monotonic() < until:
                with contextlib.suppress(OSError):
                    self.send(next(self.inputs))
                self.sent += 1

        self.thread = threading.Thread(target=loop, name=f"fuzz-{self.name}", daemon=True)
        self.thread.start()
        return self

    def finish(self) -> int:
        """Stop and return how many transmissions were sent."""
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=30)
        return self.sent


def stream_sender(connect: Connect, read_s: float = 0.2) -> Callable[[bytes], None]:
    """A sender that writes one transmission on a fresh connection, reads briefly, then closes."""
    def send(data: bytes) -> None:
        with connect() as s:
            s.settimeout(read_s)
            with contextlib.suppress(OSError):
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):
                while s.recv(65536):
                    pass

    return send


def hold_slow(connect: Connect, n: int, stop: threading.Event, head: bytes) -> threading.Thread:
    """Keep ``n`` connections open until ``stop``: half idle, half sending ``head`` a byte per 0.5 s."""
    def run() -> None:
        held: list[socket.socket] = []
        with contextlib.suppress(OSError):
            held = [connect() for _ in range(n)]
        i = 0
        while not stop.wait(0.5):
            for s in held[n // 2:]:
                with contextlib.suppress(OSError):
                    s.send(head[i % len(head):i % len(head) + 1])
            i += 1
        for s in held:
            s.close()

    t = threading.Thread(target=run, name="fuzz-slow", daemon=True)
    t.start()
    return t
