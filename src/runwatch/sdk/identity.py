"""An agent reports its attested workload identity: its X.509-SVID from the SPIFFE Workload API.

    from runwatch.sdk import identity
    spiffe_id = identity.report_svid()  # None when no Workload API answered

:func:`report_svid` fetches the process's default X.509-SVID with the ``spiffe`` package's
``WorkloadApiClient`` at ``SPIFFE_ENDPOINT_SOCKET`` (or the ``socket`` given) and sends one
``svid`` message: the certificate chain (public) and a signature, made with the SVID's private
key, of :func:`runwatch.sdk.wire.svid_proof` over this process's pid, pid namespace, the message
time and the leaf. The private key never leaves the process. runwatch verifies the chain against
its trust bundle, the signature against the leaf, and the sender against the kernel's credentials
of the datagram, before it records the identity as attested on the sender's container.

SPIRE rotates SVIDs before they expire: call :func:`report_svid` again after a rotation (or
periodically) so the attested identity does not lapse. The ``spiffe`` package is imported only
here, so the rest of the SDK stays stdlib only; like the rest, nothing here raises: failures are
returned as None and the reason kept in :data:`last_error`.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from typing import Any

from runwatch.sdk.transport import get_transport
from runwatch.sdk.wire import MAX_CHAIN, svid_proof

last_error: str | None = None
"""Why the last :func:`report_svid` returned None (one line), else None."""


def _sign(key: Any, data: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    raise TypeError(f"unsupported SVID key type {type(key).__name__}")


def report_svid(socket: str | None = None, timeout: float = 5.0) -> str | None:
    """Fetch this process's X.509-SVID and report it to runwatch; its SPIFFE ID, or None on failure."""
    global last_error
    try:
        from cryptography.hazmat.primitives.serialization import Encoding
        from spiffe import WorkloadApiClient

        with WorkloadApiClient(socket, default_timeout=timeout) as client:
            svid = client.fetch_x509_svid()
        chain = [c.public_bytes(Encoding.DER) for c in svid.cert_chain][:MAX_CHAIN]
        transport = get_transport()
        mono = time.monotonic_ns()
        sig = _sign(svid.private_key, svid_proof(transport.pid, transport.ns, mono, chain[0]))
        spiffe_id = str(svid.spiffe_id)
        transport.submit(("svid", mono, threading.get_native_id(), "", {
            "spiffe": spiffe_id, "x5c": [base64.b64encode(c).decode() for c in chain],
            "sig": base64.b64encode(sig).decode()}))
        last_error = None
        return spiffe_id
    except Exception as exc:  # the agent must never see an SDK failure
        last_error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        return None


def endpoint() -> str | None:
    """The Workload API socket the SDK would use (``SPIFFE_ENDPOINT_SOCKET``), if set."""
    return os.environ.get("SPIFFE_ENDPOINT_SOCKET")
