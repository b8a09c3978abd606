"""The trust bundle runwatch verifies SVIDs against: a configured PEM file, or the SPIFFE Workload API.

``TrustBundles(file=PATH, trust_domain=TD)``: the PEM certificates in ``PATH`` are the roots of
trust domain ``TD`` and of no other (read once; a bad file is a one-line ``ValueError``).

``TrustBundles(socket=ENDPOINT)``: runwatch fetches the X.509 bundles of every trust domain
(its own and federated ones) with ``FetchX509Bundles`` from the Workload API at ``ENDPOINT``
(``unix:///path``; default ``$SPIFFE_ENDPOINT_SOCKET``) the first time one is needed, again after
``refresh_s`` seconds, and again (at most every ``retry_s`` seconds) when a trust domain is
unknown or a fetch failed. runwatch must itself be a workload the SPIRE agent issues an
identity to, or the agent refuses the bundles. A file, when given, wins.

Thread safety: :meth:`TrustBundles.__call__` takes a lock.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded with the first bundle read
    from cryptography import x509


class TrustBundles:
    """Roots per trust domain (see the module); call with a trust domain."""

    def __init__(self, *, file: str | os.PathLike[str] | None = None, trust_domain: str | None = None,
                 socket: str | None = None, refresh_s: float = 300.0, retry_s: float = 30.0, timeout: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.socket = socket if socket is not None else os.environ.get("SPIFFE_ENDPOINT_SOCKET")
        self.refresh_s, self.retry_s, self.timeout, self.clock = refresh_s, retry_s, timeout, clock
        self.last_error: str | None = None
        self.fetches = 0
        self._roots: dict[str, list[x509.Certificate]] = {}
        self._fetched: float | None = None
        self._tried: float | None = None
        self._lock = threading.Lock()
        self.file = Path(file) if file is not None else None
        if self.file is not None:
            if not trust_domain:
                raise ValueError("a trust bundle file needs the trust domain it is for")
            self._roots = {trust_domain: self._read(self.file)}

    @property
    def source(self) -> str:
        """Where the roots come from, in words (for the run summary and the docs)."""
        if self.file is not None:
            return f"file {self.file}"
        return f"workload api {self.socket}" if self.socket else "none"

    @staticmethod
    def _read(path: Path) -> list[x509.Certificate]:
        from cryptography import x509

        try:
            certs = x509.load_pem_x509_certificates(path.read_bytes())
        except OSError as exc:
            raise ValueError(f"trust bundle {path}: {exc.strerror or exc}") from None
        except ValueError:
            raise ValueError(f"trust bundle {path}: no PEM certificates") from None
        return certs

    def __call__(self, trust_domain: str) -> list[x509.Certificate] | None:
        with self._lock:
            if self.file is None and self.socket:
                now = self.clock()
                stale = self._fetched is None or now - self._fetched > self.refresh_s or trust_domain not in self._roots
                if stale and (self._tried is None or now - self._tried > self.retry_s):
                    self._tried = now
                    self._fetch(now)
            return self._roots.get(trust_domain)

    def _fetch(self, now: float) -> None:
        self.fetches += 1
        try:
            from spiffe import WorkloadApiClient

            with WorkloadApiClient(self.socket, default_timeout=self.timeout) as client:
                found = client.fetch_x509_bundles()
            self._roots = {str(b.trust_domain): list(b.x509_authorities) for b in found.bundles}
            self._fetched = now
            self.last_error = None
        except Exception as exc:  # an unreachable agent leaves SVIDs unverified, never stops the pipeline
            self.last_error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def trust_bundles(file: str | None, trust_domain: str, socket: str | None) -> TrustBundles | None:
    """The bundle source the options name: ``file`` (roots of ``trust_domain``), else the Workload API
    at ``socket`` or ``$SPIFFE_ENDPOINT_SOCKET``; None when neither is given (SVIDs stay unverified).
    A bad file raises a one-line ``ValueError``."""
    if file:
        return TrustBundles(file=file, trust_domain=trust_domain)
    endpoint = socket or os.environ.get("SPIFFE_ENDPOINT_SOCKET")
    return TrustBundles(socket=endpoint) if endpoint else None
