"""Serving the console: the listen address, the loopback rule and the uvicorn server thread.

The console binds loopback unless a token file is given: a token printed on a terminal is
fine for a local browser, not for a network. :class:`ConsoleServer` runs uvicorn in a daemon
thread (``runwatch console`` waits on it; a test or a live session serves alongside).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time

import uvicorn

from runwatch.console.app import ConsoleConfig, create_app

DEFAULT_LISTEN = "127.0.0.1:8080"


class ListenError(ValueError):
    """A ``--listen`` address that cannot be used (one-line message)."""


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as (host, port)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ListenError(f"--listen {text!r}: give HOST:PORT (127.0.0.1:8080, [::1]:8080)")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token_file: str | None) -> None:
    """Refuse a non-loopback address unless the token comes from a file."""
    if not is_loopback(host) and token_file is None:
        raise ListenError(f"refusing to serve the console on {host} (not loopback) without --token-file")


class ConsoleServer:
    """The console over ``cfg`` on ``host:port`` (port 0: any free port), in a daemon thread."""

    def __init__(self, cfg: ConsoleConfig, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.sock.listen(64)
        self.host, self.port = host, self.sock.getsockname()[1]
        config = uvicorn.Config(create_app(cfg), log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="runwatch-console", daemon=True)

    @property
    def url(self) -> str:
        """The console's address."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> ConsoleServer:
        """Start serving; returns once uvicorn has started."""
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop serving (open streams are cut) and close the socket."""
        self.server.should_exit = True
        self.server.force_exit = True
        self.thread.join(timeout=5)
        self.sock.close()

    def __enter__(self) -> ConsoleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def prepare_live(listen: str, token_file: str | None) -> tuple[str, int, str]:
    """Check ``runwatch watch --console`` before anything starts: (host, port, token).
    Raises :class:`ListenError` or :class:`~runwatch.console.auth.TokenError` (one line)."""
    from runwatch.console.auth import new_token, read_token

    host, port = parse_listen(listen)
    check_exposure(host, token_file)
    return host, port, read_token(token_file) if token_file is not None else new_token()


def serve_live(db: str, control_socket: str, host: str, port: int, token: str) -> ConsoleServer:
    """The console over a live session's store (acknowledgements beside it), started."""
    from runwatch.console.acks import default_path

    cfg = ConsoleConfig(db=db, token=token, acks=str(default_path(db)), control_socket=control_socket)
    return ConsoleServer(cfg, host, port).start()
