"""Where ``/metrics`` may listen, and the HTTP server that answers scrapes.

Without ``allow_remote`` the server listens only where nothing but this host reaches it: a
loopback address (``127.0.0.0/8``, ``::1``, ``localhost``; the same test as the OTLP
receiver's, :func:`runwatch.sensors.ingest.access.is_loopback`). The metrics carry rule names,
workload kinds and counts, so any other address must be asked for (``--metrics-allow-remote``).

The server is prometheus-client's WSGI application on its own registry (the session's
collector and the process collector of this process: CPU, memory, descriptors), served by a
``wsgiref`` server bounded like every other runwatch listener
(:class:`runwatch.listeners.BoundedThreads`: at most ``MAX_CONNECTIONS`` connections, one thread
each, every read waiting at most ``IDLE_TIMEOUT_S``). It serves the text format (and
OpenMetrics when asked) on ``/metrics``; requests are not logged.
"""

from __future__ import annotations

import socket
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app
from prometheus_client.registry import Collector

from runwatch.listeners import BoundedThreads
from runwatch.sensors.ingest.access import UNIX, is_loopback


class MetricsError(Exception):
    """The metrics endpoint cannot listen where asked (one line naming the address)."""


def check_metrics_listen(host: str, allow_remote: bool) -> None:
    """Raise ``ValueError`` (one line) when ``/metrics`` may not listen on ``host``."""
    if host.startswith(UNIX):
        raise ValueError("metrics listen on TCP only (HOST:PORT), not on a unix socket")
    if not allow_remote and not is_loopback(host):
        raise ValueError(f"metrics listen address {host} is not a loopback address: give "
                         "--metrics-allow-remote to listen there")


class _Quiet(WSGIRequestHandler):
    """No line on stderr per request."""

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged."""


class _Server4(BoundedThreads, WSGIServer):
    daemon_threads = True
    address_family = socket.AF_INET


class _Server6(_Server4):
    address_family = socket.AF_INET6


def _server_class(host: str, port: int) -> type[WSGIServer]:
    """The server class of ``host``'s address family (a name is resolved; the first answer wins)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    return _Server6 if infos[0][0] == socket.AF_INET6 else _Server4


class MetricsServer:
    """Serves ``collector`` on ``host:port`` (port 0: any free port, see :attr:`port`)."""

    def __init__(self, collector: Collector, host: str = "127.0.0.1", port: int = 9464) -> None:
        self.host, self.requested_port = host, port
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        ProcessCollector(registry=self.registry)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port listened on (the requested one before :meth:`start`)."""
        return int(self._server.server_port) if self._server is not None else self.requested_port

    @property
    def url(self) -> str:
        """The scrape URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> None:
        """Bind and serve on a daemon thread; :class:`MetricsError` when the address cannot be bound."""
        if self._server is not None:
            return
        try:
            self._server = make_server(self.host, self.requested_port, make_wsgi_app(self.registry),
                                       _server_class(self.host, self.requested_port), handler_class=_Quiet)
        except OSError as exc:
            raise MetricsError(f"cannot serve metrics on {self.host}:{self.requested_port}: "
                               f"{exc.strerror or exc}") from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="runwatch-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket; idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
