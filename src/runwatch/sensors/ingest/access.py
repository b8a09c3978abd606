"""Who may reach the OTLP receiver: where it may listen, and the bearer token it may require.

Without a token the receiver listens only where nothing but this host reaches it: a loopback
address (``127.0.0.0/8``, ``::1``, ``localhost``) or a unix socket (``unix:PATH``, whose senders
the kernel names). Anywhere else needs a token, and then every request must carry
``Authorization: Bearer <token>`` (:class:`BearerToken`).
"""

from __future__ import annotations

import hmac
import ipaddress
import re

TOKEN_CHARS = re.compile(r"^[A-Za-z0-9._~+/=-]+$")
"""What a bearer token may hold (RFC 6750 ``b64token``)."""
UNIX = "unix:"
"""Prefix of a listen address that is a unix socket path (``unix:/run/runwatch/sdk/otlp.sock``)."""
UNIX_MODE = 0o666
"""Mode of the receiver's unix socket: who may reach its directory may send (each sender is known)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, ``localhost`` or a ``unix:`` path) is reachable from this host only."""
    if host == "localhost" or host.startswith(UNIX):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_listen(host: str, token: str | None) -> None:
    """Raise ``ValueError`` (one line) when listening on ``host`` with ``token`` is not allowed:
    an empty or malformed token, or a non-loopback address without a token."""
    if token is not None:
        if not token:
            raise ValueError("an empty OTLP token is no token")
        if not TOKEN_CHARS.match(token):
            raise ValueError("an OTLP token may hold only letters, digits and -._~+/=")
        return
    if not is_loopback(host):
        raise ValueError(f"OTLP listen address {host} is not a loopback address: give a token "
                         "(--otlp-token-file) to listen there")


class BearerToken:
    """A bearer token a request must present (scheme case insensitive, compared in constant time)."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def admits(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries this token."""
        scheme, _, credential = (authorization or "").strip().partition(" ")
        given = credential.strip().encode("latin-1", "replace")
        return scheme.lower() == "bearer" and hmac.compare_digest(given, self._token)
