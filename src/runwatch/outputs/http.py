"""One HTTP(S) POST per payload: the transport of the webhook, Slack and OTLP outputs.

:class:`HttpTransport` posts a payload with a content type, optional gzip compression
(``Content-Encoding: gzip``), extra headers (for example ``Authorization``), an optional
HMAC-SHA256 signature of the body as sent (``X-Runwatch-Signature: sha256=<hex>``), TLS
options (:class:`TlsOptions`: a CA file, a client certificate and key, or ``insecure`` to
skip verifying the server's certificate) and a timeout per request. 2xx is success; 408, 429
and 5xx, and every connection or timeout error, raise a retryable
:class:`~runwatch.outputs.delivery.DeliveryError`; any other status raises one that is not.

Header files (:func:`read_headers`) hold one ``Name: value`` per line; blank lines and lines
starting with ``#`` are skipped. Thread safety: one sender thread per transport.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import http.client
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from runwatch.outputs.delivery import DeliveryError

SIGNATURE_HEADER = "X-Runwatch-Signature"
_RETRY_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True)
class TlsOptions:
    """TLS settings of an https endpoint: trusted CA file, client certificate and key, or no verification."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False

    def context(self) -> ssl.SSLContext:
        """An SSL context for these options; ValueError (one line naming the file) when one does not load."""
        try:
            ctx = ssl.create_default_context(cafile=self.ca_file)
        except OSError as exc:
            raise ValueError(f"cannot load CA file {self.ca_file}: {_tls_reason(exc)}") from None
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file:
            try:
                ctx.load_cert_chain(self.cert_file, self.key_file)
            except OSError as exc:
                key = f" with key {self.key_file}" if self.key_file else ""
                raise ValueError(f"cannot load client certificate {self.cert_file}{key}: {_tls_reason(exc)}") from None
        return ctx


def _tls_reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        text = f"{exc.reason or ''} {exc}"
        if any(mark in text for mark in ("PEM lib", "NO_START_LINE", "no certificate or crl found")):
            return "not a PEM certificate (and key)"
        if "KEY_VALUES_MISMATCH" in text:
            return "the key does not belong to the certificate"
        return str(exc.reason or exc)
    return exc.strerror or str(exc)


def check_url(url: str, what: str = "endpoint") -> str:
    """``url`` when it is an http:// or https:// URL with a host, else ValueError (one line)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an http:// or https:// URL, got {url[:100]!r}")
    return url


def read_headers(path: str) -> dict[str, str]:
    """``Name: value`` lines of ``path`` as headers; ValueError ``path:line: reason`` for a bad line."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read(1 << 16).splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"cannot read headers file {path}: {why}") from None
    out: dict[str, str] = {}
    for lineno, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        name, sep, value = text.partition(":")
        if not sep or not name.strip() or any(c in name for c in " \t"):
            raise ValueError(f"{path}:{lineno}: expected 'Name: value'")
        out[name.strip()] = value.strip()
    return out


def sign(secret: bytes, body: bytes) -> str:
    """The signature header value of ``body``: ``sha256=`` and the hex HMAC-SHA256 under ``secret``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class HttpTransport:
    """POSTs each payload to ``url`` (see the module docstring)."""

    def __init__(self, url: str, *, content_type: str = "application/json", gzip_body: bool = False,
                 headers: dict[str, str] | None = None, secret: bytes | None = None, timeout: float = 5.0,
                 tls: TlsOptions | None = None) -> None:
        parts = urlsplit(check_url(url))
        self.url = url
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.content_type, self.gzip_body = content_type, gzip_body
        self.headers = dict(headers or {})
        self.secret, self.timeout = secret, timeout
        self._ctx = (tls or TlsOptions()).context() if self.https else None

    def send(self, payload: bytes) -> None:
        """POST ``payload``; raises DeliveryError (retryable or not) unless the answer is 2xx."""
        body = gzip.compress(payload, mtime=0) if self.gzip_body else payload
        headers = {"Content-Type": self.content_type, "Content-Length": str(len(body)),
                   "User-Agent": "runwatch", **self.headers}
        if self.gzip_body:
            headers["Content-Encoding"] = "gzip"
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        conn: http.client.HTTPConnection
        if self.https:
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self._ctx)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request("POST", self.path, body=body, headers=headers)
            resp = conn.getresponse()
            status = resp.status
            resp.read(1 << 16)
        except (OSError, http.client.HTTPException) as exc:
            raise DeliveryError(f"POST {self.url}: {_reason(exc)}") from None
        finally:
            conn.close()
        if 200 <= status < 300:
            return
        retryable = status in _RETRY_STATUS or status >= 500
        raise DeliveryError(f"POST {self.url}: HTTP {status}", retryable=retryable)

    def close(self) -> None:
        """Nothing is held between requests."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
