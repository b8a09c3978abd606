"""Syslog alert output: RFC 5424 messages over UDP (one datagram each) or TCP (octet counting, RFC 6587).

One alert is one message::

    <PRI>1 TIMESTAMP HOSTNAME runwatch PROCID alert [runwatch@32473 rule="..." severity="..."
        alert_id="..." workload="..." attack="..."] OUTPUT

``PRI`` is ``facility * 8 + severity`` with the alert's severity mapped to syslog's
(critical 2 crit, high 3 err, medium 4 warning, low 5 notice, info 6 informational) and the
facility ``local0`` unless configured. ``TIMESTAMP`` is the alert's time in UTC with
microseconds. The structured data element ``runwatch@32473`` (32473 is the enterprise number
RFC 5612 reserves for examples) carries the rule, severity, alert id, workload and ATT&CK ids;
``"``, ``\\`` and ``]`` in its values are escaped as RFC 5424 asks. The message text is the
alert's output with control characters shown escaped (one message cannot forge another).

Over TCP each message is framed as ``LEN SP MSG``; the connection is kept and made again after
an error or when the receiver closed it. Delivery (queue, spool, retries, counters) is that of
every network output (:mod:`runwatch.outputs.delivery`).
"""

from __future__ import annotations

import os
import select
import socket
import time
from urllib.parse import urlsplit

from runwatch.alerts.model import Alert
from runwatch.outputs.base import register_output
from runwatch.outputs.delivery import Delivery, DeliveryError, RetryPolicy
from runwatch.outputs.network import NetworkAlertOutput
from runwatch.store.spool import SpoolLimits
from runwatch.textsafe import printable

FACILITIES = {name: code for code, name in enumerate(
    ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
     "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4", "local5", "local6",
     "local7"))}
SEVERITY_CODE = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}
SD_ID = "runwatch@32473"


def _header_field(text: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most ``limit`` characters, ``-`` when empty."""
    out = "".join(c for c in text if 33 <= ord(c) <= 126)[:limit]
    return out or "-"


def _sd_value(text: str) -> str:
    return printable(text).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _timestamp(ns: int) -> str:
    secs, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{rest // 1000:06d}Z"


def rfc5424(a: Alert, *, hostname: str, facility: int = FACILITIES["local0"], app: str = "runwatch",
            procid: int | None = None) -> bytes:
    """Alert ``a`` as one RFC 5424 message (see the module docstring)."""
    pri = facility * 8 + SEVERITY_CODE.get(a.severity, 6)
    w = a.workload
    params = [("rule", a.rule), ("severity", a.severity), ("alert_id", a.id),
              ("workload", w.name or w.id or "host")]
    if w.owner:
        params.append(("owner", w.owner))
    if a.tool_call is not None:
        params.append(("tool", a.tool_call.name))
    if a.attack:
        params.append(("attack", ",".join(a.attack)))
    sd = "[" + SD_ID + "".join(f' {k}="{_sd_value(v)}"' for k, v in params) + "]"
    head = (f"<{pri}>1 {_timestamp(a.time)} {_header_field(hostname, 255)} {_header_field(app, 48)} "
            f"{procid if procid is not None else os.getpid()} alert {sd}")
    return f"{head} {printable(a.output)}".encode()


def parse_target(url: str) -> tuple[str, str, int]:
    """``udp://host:port`` or ``tcp://host:port`` as (protocol, host, port); ValueError (one line)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("udp", "tcp") or not parts.hostname or port is None:
        raise ValueError(f"syslog target must be udp://HOST:PORT or tcp://HOST:PORT, got {url[:100]!r}")
    return parts.scheme, parts.hostname, port


class UdpTransport:
    """One datagram per message."""

    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        self.address, self.timeout = (host, port), timeout
        self._sock: socket.socket | None = None

    def send(self, payload: bytes) -> None:
        """Send one datagram (a connected socket: a refusal reported by ICMP is an error here)."""
        try:
            if self._sock is None:
                family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
                self._sock = socket.socket(family, socket.SOCK_DGRAM)
                self._sock.settimeout(self.timeout)
                self._sock.connect(self.address)
            self._sock.send(payload)
        except OSError as exc:
            self.close()
            raise DeliveryError(f"syslog udp://{self.address[0]}:{self.address[1]}: "
                                f"{exc.strerror or exc}") from None

    def close(self) -> None:
        """Close the socket."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


class TcpTransport:
    """Octet-counted frames on one kept connection (made again after an error or a close)."""

    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._sock: socket.socket | None = None

    def _peer_closed(self, sock: socket.socket) -> bool:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def send(self, payload: bytes) -> None:
        """Send ``LEN SP MSG`` (connecting first when needed)."""
        try:
            if self._sock is not None and self._peer_closed(self._sock):
                self.close()
            if self._sock is None:
                self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            self._sock.sendall(str(len(payload)).encode() + b" " + payload)
        except OSError as exc:
            self.close()
            raise DeliveryError(f"syslog tcp://{self.host}:{self.port}: {exc.strerror or exc}") from None

    def close(self) -> None:
        """Close the connection."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def syslog_output(url: str, *, name: str = "syslog", facility: str = "local0", hostname: str | None = None,
                  timeout: float = 5.0, spool_dir: str | None = None, spool_limits: SpoolLimits | None = None,
                  queue_max: int = 1024, retry: RetryPolicy | None = None,
                  close_timeout: float = 5.0) -> NetworkAlertOutput:
    """An alert output sending RFC 5424 messages to ``url`` (``udp://`` or ``tcp://HOST:PORT``)."""
    proto, host, port = parse_target(url)
    if facility not in FACILITIES:
        raise ValueError(f"unknown syslog facility {facility!r} (one of {', '.join(FACILITIES)})")
    code, host_name, pid = FACILITIES[facility], hostname or socket.gethostname(), os.getpid()
    transport = UdpTransport(host, port, timeout) if proto == "udp" else TcpTransport(host, port, timeout)
    delivery = Delivery(name, transport, spool_dir=spool_dir, spool_limits=spool_limits, queue_max=queue_max,
                        retry=retry, close_timeout=close_timeout)

    def encode(a: Alert) -> bytes:
        return rfc5424(a, hostname=host_name, facility=code, procid=pid)

    return NetworkAlertOutput(name, delivery, encode)


register_output("syslog", syslog_output)
