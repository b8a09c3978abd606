"""Local peers for the demo: a TCP sink and a DNS stub resolver on 127.0.0.1."""

from __future__ import annotations

import socket
import threading


class TcpSink:
    """Accepts connections on 127.0.0.1 and counts the bytes received (discarding them)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    while chunk := conn.recv(65536):
                        self.received += len(chunk)
                except OSError:
                    pass

    def __enter__(self) -> TcpSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


class DnsStub:
    """Answers every query on 127.0.0.1:53 with NXDOMAIN. ``available`` is False if 53 is taken."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.available = True
        try:
            self.sock.bind(("127.0.0.1", 53))
        except OSError:
            self.available = False
        self.sock.settimeout(0.2)
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(2048)
            except OSError:
                continue
            if len(data) < 12:
                continue
            self.queries += 1
            reply = data[:2] + b"\x81\x83" + data[4:6] + b"\x00" * 6 + data[12:]
            self.sock.sendto(reply, addr)

    def __enter__(self) -> DnsStub:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.available:
            self._thread.join(timeout=5)
        self.sock.close()
