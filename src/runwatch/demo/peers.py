"""The demo's peers on this machine: a mock HTTP service, a DNS responder, an "external" host.

Everything here runs in the ``runwatch demo`` process itself (not under the sensor's
tracking), so the workloads' containers are the only things watched.

* :class:`HttpService`: a threaded HTTP/1.1 server that answers every GET and POST with a
  small JSON body and counts requests and body bytes per path prefix (the "allowed local
  service", the plugin's backend, the AgentDojo mock APIs, the exfiltration sink).
* :class:`DnsResponder`: answers A queries for a fixed table, NXDOMAIN for other names.
* :class:`ExternalHost`: two network namespaces joined by a veth pair: the agent's
  (``10.23.0.1/24``, the exfil container joins it) and the "external" host's
  (``10.23.0.2/24``) where an :class:`HttpService` sink listens on port 8080. A DNS
  responder in the agent's namespace resolves :data:`SINK_NAME` to the sink. Traffic never
  leaves the machine. :meth:`ExternalHost.close` always deletes both namespaces (the veth
  pair goes with them).

Sockets are created inside a namespace by a short-lived thread that ``setns``es into it
(network namespaces are per thread); the socket stays in that namespace when served from
any other thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import socket
import struct
import subprocess
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
NETNS_PREFIX = "rwdemo-"
AGENT_IP = "10.23.0.1"
SINK_IP = "10.23.0.2"
SINK_PORT = 8080
SINK_NAME = "sink.external.example"


class PeerError(RuntimeError):
    """A peer could not be set up; the message is one line."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length", "0") or 0)
        body = self.rfile.read(length) if length else b""
        key = "/" + self.path.lstrip("/").split("?", 1)[0].split("/", 1)[0]
        self.server.record(self.command, key, len(body))
        data = json.dumps({"ok": True, "path": self.path.split("?", 1)[0], "received": len(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = _serve
    do_POST = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int]) -> None:
        super().__init__(addr, _Handler)
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.body_bytes = 0

    def record(self, method: str, key: str, nbytes: int) -> None:
        with self.lock:
            self.requests[f"{method} {key}"] += 1
            self.body_bytes += nbytes


class HttpService:
    """A JSON-answering HTTP server on ``host:port`` (port 0: any free port).

    Thread safe: counters are read under the server's lock. Use as a context manager or call
    :meth:`start` and :meth:`close`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, netns: str | None = None) -> None:
        try:
            self._server = in_netns(netns, lambda: _Server((host, port))) if netns else _Server((host, port))
        except OSError as exc:
            raise PeerError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"demo-http-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> dict[str, int]:
        """Requests so far by ``"<METHOD> /<first path segment>"``."""
        with self._server.lock:
            return dict(self._server.requests)

    @property
    def body_bytes(self) -> int:
        """Request body bytes received so far."""
        with self._server.lock:
            return self._server.body_bytes

    def start(self) -> HttpService:
        """Serve in a daemon thread."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> HttpService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _dns_reply(query: bytes, records: dict[str, str]) -> bytes | None:
    """The answer to one DNS query packet (A records from ``records``), or None if malformed."""
    if len(query) < 12:
        return None
    pos, labels = 12, []
    while pos < len(query) and query[pos] != 0:
        n = query[pos]
        labels.append(query[pos + 1:pos + 1 + n].decode(errors="replace"))
        pos += 1 + n
    end = pos + 5
    if end > len(query):
        return None
    qtype = struct.unpack("!H", query[pos + 1:pos + 3])[0]
    question = query[12:end]
    addr = records.get(".".join(labels).lower())
    if addr is None:
        return query[:2] + b"\x81\x83" + b"\x00\x01\x00\x00\x00\x00\x00\x00" + question
    if qtype != 1:  # the name exists but has no such record: NODATA
        return query[:2] + b"\x81\x80" + b"\x00\x01\x00\x00\x00\x00\x00\x00" + question
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + socket.inet_aton(addr)
    return query[:2] + b"\x81\x80" + b"\x00\x01\x00\x01\x00\x00\x00\x00" + question + answer


class DnsResponder:
    """Answers A queries on ``host:53`` from ``records`` (name -> IPv4), NXDOMAIN otherwise.

    ``available`` is False when the port is taken (the workloads then fall back to
    addresses they were given). Counts queries in ``queries``.
    """

    def __init__(self, records: dict[str, str], host: str = "127.0.0.1", port: int = 53,
                 netns: str | None = None) -> None:
        self.records = {k.lower(): v for k, v in records.items()}
        self.queries = 0
        self.available = True

        def make() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind((host, port))
            except OSError:
                s.close()
                raise
            return s

        try:
            self.sock: socket.socket | None = in_netns(netns, make) if netns else make()
            self.sock.settimeout(0.1)
        except OSError:
            self.sock, self.available = None, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="demo-dns", daemon=True)

    def _serve(self) -> None:
        assert self.sock is not None
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(2048)
            except OSError:
                continue
            reply = _dns_reply(data, self.records)
            if reply is not None:
                self.queries += 1
                with contextlib.suppress(OSError):
                    self.sock.sendto(reply, addr)

    def start(self) -> DnsResponder:
        """Answer in a daemon thread (no-op when unavailable)."""
        if self.available:
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop and close (idempotent)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> DnsResponder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def in_netns(path: str | os.PathLike[str] | None, fn: Callable[[], T]) -> T:
    """Call ``fn`` in a helper thread that has joined network namespace ``path``; return its result."""
    if path is None:
        return fn()
    libc = ctypes.CDLL(None, use_errno=True)
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {path}: {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    t = threading.Thread(target=run, name="demo-netns")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PeerError(f"ip {' '.join(args)} failed: {done.stderr.strip() or done.returncode}")


def demo_netns_left(pid: int | None = None) -> list[str]:
    """Names of demo network namespaces that exist now (those made by process ``pid`` if given)."""
    if not NETNS_DIR.is_dir():
        return []
    prefix = NETNS_PREFIX if pid is None else f"{NETNS_PREFIX}{pid}-"
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))


def demo_links_left(pid: int | None = None) -> list[str]:
    """Names of demo veth interfaces in this network namespace (made by process ``pid`` if given)."""
    prefix = "rwd" if pid is None else f"rwd{pid}"
    return sorted(n for n in os.listdir("/sys/class/net") if n.startswith(prefix))


def sweep_stale() -> list[str]:
    """Delete demo namespaces whose creating process is gone; returns their names."""
    removed = []
    for name in demo_netns_left():
        try:
            pid = int(name[len(NETNS_PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
            removed.append(name)
    return removed


class ExternalHost:
    """The agent's network namespace and the "external" sink's, joined by a veth pair.

    ``agent_netns`` is the path a container joins (``/run/netns/rwdemo-<pid>-agent``).
    The sink (:attr:`sink`, an :class:`HttpService` on 10.23.0.2:8080) counts bytes only.
    Not thread safe; :meth:`close` is idempotent and runs even after a partial start.
    """

    def __init__(self) -> None:
        tag = f"{os.getpid()}"
        self.agent_name = f"{NETNS_PREFIX}{tag}-agent"
        self.ext_name = f"{NETNS_PREFIX}{tag}-ext"
        self.veth_agent = f"rwd{tag}a"
        self.veth_ext = f"rwd{tag}b"
        self.sink: HttpService | None = None
        self.dns: DnsResponder | None = None

    @property
    def agent_netns(self) -> str:
        """Path of the agent's namespace (for a container's ``netns`` option)."""
        return str(NETNS_DIR / self.agent_name)

    @property
    def sink_url(self) -> str:
        """The sink's upload URL by name (resolved by the responder in the agent's namespace)."""
        return f"http://{SINK_NAME}:{SINK_PORT}/upload"

    def start(self) -> ExternalHost:
        """Create namespaces, veth, addresses, the sink and the DNS responder."""
        try:
            sweep_stale()
            _ip("netns", "add", self.agent_name)
            _ip("netns", "add", self.ext_name)
            _ip("link", "add", self.veth_agent, "type", "veth", "peer", "name", self.veth_ext)
            _ip("link", "set", self.veth_agent, "netns", self.agent_name)
            _ip("link", "set", self.veth_ext, "netns", self.ext_name)
            ends = ((self.agent_name, self.veth_agent, AGENT_IP), (self.ext_name, self.veth_ext, SINK_IP))
            for ns, dev, addr in ends:
                _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
                _ip("-n", ns, "link", "set", dev, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
            self.sink = HttpService(SINK_IP, SINK_PORT, netns=str(NETNS_DIR / self.ext_name)).start()
            self.dns = DnsResponder({SINK_NAME: SINK_IP}, netns=self.agent_netns).start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop the peers, delete both namespaces (and with them the veth pair)."""
        for peer in (self.sink, self.dns):
            if peer is not None:
                peer.close()
        for name in (self.agent_name, self.ext_name):
            if (NETNS_DIR / name).exists():
                subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        if self.veth_agent in os.listdir("/sys/class/net"):
            subprocess.run(["ip", "link", "del", self.veth_agent], capture_output=True, check=False)

    def __enter__(self) -> ExternalHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
