"""Who may use the console: one token, as a bearer header or a login cookie, and CSRF rules.

Every page but the login form needs the token: ``Authorization: Bearer TOKEN``, or the
``runwatch_console`` cookie the login form sets (HttpOnly, SameSite=Strict; its value is
derived from the token, never the token itself). A state-changing POST made with the cookie
must also carry the CSRF value (a form field ``csrf`` or the ``X-CSRF-Token`` header, both
derived from the token) and, when the browser sends one, an ``Origin`` of this very host. A
POST with the bearer header needs neither: browsers never add that header on their own.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path
from urllib.parse import urlsplit

COOKIE = "runwatch_console"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
MIN_TOKEN = 16
"""Shortest token a token file may hold."""


class TokenError(Exception):
    """The token file cannot be used (one-line message)."""


def new_token() -> str:
    """A fresh random token (32 URL-safe characters)."""
    return secrets.token_urlsafe(24)


def read_token(path: str | os.PathLike[str]) -> str:
    """The token in ``path`` (its first line, stripped); at least :data:`MIN_TOKEN` characters."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(f"cannot read token file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not stat.S_ISREG(mode):
        raise TokenError(f"token file {path} is not a regular file")
    token = text.strip().splitlines()[0].strip() if text.strip() else ""
    if len(token) < MIN_TOKEN:
        raise TokenError(f"token file {path} holds no token of at least {MIN_TOKEN} characters")
    return token


def _derive(token: str, what: str) -> str:
    return hmac.new(token.encode(), what.encode(), hashlib.sha256).hexdigest()


class Gate:
    """Checks requests against one token."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.cookie_value = _derive(token, "cookie")
        self.csrf = _derive(token, "csrf")

    def token_ok(self, given: str) -> bool:
        """Whether ``given`` is the token (constant time)."""
        return hmac.compare_digest(given.encode(), self.token.encode())

    def bearer(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries the token."""
        if not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        return scheme.lower() == "bearer" and self.token_ok(value.strip())

    def cookie(self, value: str | None) -> bool:
        """Whether a login cookie value is this token's."""
        return value is not None and hmac.compare_digest(value.encode(), self.cookie_value.encode())

    def csrf_ok(self, given: str | None) -> bool:
        """Whether a form field or header carries the CSRF value."""
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


def same_origin(origin: str | None, host: str | None) -> bool:
    """Whether an ``Origin`` header (when the browser sent one) names the ``Host`` served."""
    if origin is None:
        return True
    if origin == "null" or host is None:
        return False
    return urlsplit(origin).netloc == host


def safe_next(target: str | None) -> str:
    """A local path to go to after logging in (anything else: the start page)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
