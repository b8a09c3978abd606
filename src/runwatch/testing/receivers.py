"""Real local receivers for the output tests: an HTTP endpoint that records POSTs, and syslog listeners.

:class:`HttpReceiver` serves on 127.0.0.1 (a kernel-chosen port, or a given one: a test can
reserve a port with :func:`free_port`, send while nothing listens there, then start the
receiver on it). It records every POST (path, headers, raw and decoded body), checks the
``X-Runwatch-Signature`` HMAC when given a secret (a bad one is answered 401 and counted
in ``bad_signatures``) and answers ``status`` (200 unless told otherwise); given an SSL
context (``tls``) it serves HTTPS. :func:`make_pki` writes a CA, a server certificate for
127.0.0.1 and a client certificate with the ``openssl`` command.

:class:`SyslogListener` receives RFC 5424 messages over UDP (one per datagram) or TCP
(octet-counted frames) and parses each with :func:`parse_rfc5424` into a
:class:`SyslogMessage`. Both run on their own threads; use them as context managers.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import os
import re
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    """A loopback TCP port nothing listens on now (connections to it are refused until one does)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def make_pki(directory: str) -> dict[str, str]:
    """A test CA, a server certificate for IP 127.0.0.1 and a client certificate, made with ``openssl``
    in ``directory``; their paths by name: ca, server_cert, server_key, client_cert, client_key."""
    paths = {name: os.path.join(directory, file) for name, file in (
        ("ca", "ca.pem"), ("ca_key", "ca.key"), ("server_cert", "server.pem"), ("server_key", "server.key"),
        ("client_cert", "client.pem"), ("client_key", "client.key"))}
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", *ec, "-keyout", paths["ca_key"], "-out", paths["ca"], "-days", "2", "-subj",
            "/CN=runwatch test CA")
    for who, san in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        csr, ext = os.path.join(directory, f"{who}.csr"), os.path.join(directory, f"{who}.ext")
        with open(ext, "w") as fh:
            fh.write(san + "\n")
        openssl("req", *ec, "-keyout", paths[f"{who}_key"], "-out", csr, "-subj", f"/CN={who}")
        openssl("x509", "-req", "-in", csr, "-CA", paths["ca"], "-CAkey", paths["ca_key"], "-CAcreateserial",
                "-out", paths[f"{who}_cert"], "-days", "2", "-extfile", ext)
    return paths


@dataclass
class Request:
    """One recorded POST."""

    path: str
    headers: dict[str, str]
    raw: bytes  # as received
    body: bytes  # decompressed when Content-Encoding was gzip


class HttpReceiver:
    """Records POSTs on 127.0.0.1:``port`` (see the module docstring)."""

    def __init__(self, port: int = 0, *, secret: bytes | None = None, status: int = 200,
                 tls: ssl.SSLContext | None = None) -> None:
        self.port, self.secret, self.status, self.tls = port, secret, status, tls
        self.requests: list[Request] = []
        self.bad_signatures = 0
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The receiver's base URL."""
        return f"{'https' if self.tls is not None else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> HttpReceiver:
        """Listen and serve on a thread."""
        rx = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = rx.status
                if rx.secret is not None:
                    want = "sha256=" + hmac.new(rx.secret, raw, hashlib.sha256).hexdigest()
                    if not hmac.compare_digest(headers.get("x-runwatch-signature", ""), want):
                        with rx.lock:
                            rx.bad_signatures += 1
                        status = 401
                if status == 200:
                    body = gzip.decompress(raw) if headers.get("content-encoding") == "gzip" else raw
                    with rx.lock:
                        rx.requests.append(Request(self.path, headers, raw, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def bodies(self) -> list[bytes]:
        """Every recorded body, in arrival order."""
        with self.lock:
            return [r.body for r in self.requests]

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until ``count`` requests were recorded."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if len(self.requests) >= count:
                    return True
            time.sleep(0.02)
        return False

    def __enter__(self) -> HttpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_RFC5424 = re.compile(rb"^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|(?:\[.*?(?<!\\)\])+) ?(.*)$", re.S)
_SD_ELEMENT = re.compile(rb'\[([^ \]]+)((?: [^= \]"]+="(?:[^"\\]|\\.)*")*)\]')
_SD_PARAM = re.compile(rb'([^= \]"]+)="((?:[^"\\]|\\.)*)"')


@dataclass
class SyslogMessage:
    """One parsed RFC 5424 message."""

    pri: int
    timestamp: str
    hostname: str
    app: str
    procid: str
    msgid: str
    sd: dict[str, dict[str, str]] = field(default_factory=dict)
    msg: str = ""

    @property
    def facility(self) -> int:
        """PRI // 8."""
        return self.pri // 8

    @property
    def severity(self) -> int:
        """PRI % 8."""
        return self.pri % 8


def parse_rfc5424(data: bytes) -> SyslogMessage:
    """Parse one message (ValueError when it is not RFC 5424); SD values are unescaped."""
    m = _RFC5424.match(data)
    if m is None:
        raise ValueError(f"not an RFC 5424 message: {data[:80]!r}")
    sd: dict[str, dict[str, str]] = {}
    if m.group(7) != b"-":
        for element in _SD_ELEMENT.finditer(m.group(7)):
            sd[element.group(1).decode()] = {
                k.decode(): re.sub(rb'\\(["\\\]])', rb"\1", v).decode() for k, v in _SD_PARAM.findall(element.group(2))}
    ts, host, app, procid, msgid = (g.decode() for g in m.groups()[1:6])
    return SyslogMessage(int(m.group(1)), ts, host, app, procid, msgid, sd=sd, msg=m.group(8).decode())


class SyslogListener:
    """RFC 5424 over ``proto`` (``udp`` or ``tcp``) on 127.0.0.1:``port``; ``messages`` in arrival order."""

    def __init__(self, proto: str, port: int = 0) -> None:
        self.proto, self.port = proto, port
        self.messages: list[SyslogMessage] = []
        self.frames: list[bytes] = []  # raw messages
        self.lock = threading.Lock()
        self._server: socketserver.BaseServer | None = None

    @property
    def url(self) -> str:
        """``udp://127.0.0.1:PORT`` or ``tcp://...``."""
        return f"{self.proto}://127.0.0.1:{self.port}"

    def _add(self, frame: bytes) -> None:
        with self.lock:
            self.frames.append(frame)
            self.messages.append(parse_rfc5424(frame))

    def start(self) -> SyslogListener:
        """Listen and serve on a thread."""
        rx = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                rx._add(self.request[0])

        class Tcp(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while True:
                    digits = b""
                    while (ch := self.rfile.read(1)) not in (b" ", b""):
                        digits += ch
                    if not digits:
                        return
                    rx._add(self.rfile.read(int(digits)))

        server: socketserver.BaseServer
        if self.proto == "udp":
            server = socketserver.ThreadingUDPServer(("127.0.0.1", self.port), Udp)
        else:
            socketserver.ThreadingTCPServer.allow_reuse_address = True
            server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Tcp)
            server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until ``count`` messages arrived."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if len(self.messages) >= count:
                    return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SyslogListener:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
