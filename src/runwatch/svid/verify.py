"""One reported X.509-SVID checked, as the SPIFFE X.509-SVID standard and the SDK's proof require.

:func:`verify_svid` accepts an SVID only when every check passes, in this order (the first that
fails names the rejection, as ``code: detail``):

``malformed``      a certificate is not base64 DER
``bad_spiffe_id``  the leaf has not exactly one URI SAN, or it is no valid SPIFFE ID of a workload
``claim_mismatch`` the message claims another SPIFFE ID than the leaf names
``not_yet_valid`` / ``expired``  ``now`` is outside the leaf's validity period
``no_bundle``      no trust bundle for the leaf's trust domain (the SVID is *unverified*, not rejected)
``untrusted``      the chain does not verify to the trust domain's roots (forged, self-signed, another
                   CA, an intermediate that is no CA, ...): checked with ``cryptography``'s X.509 path
                   validation (RFC 5280 / CA/B profile, client certificate) at ``now``
``bad_proof``      the signature is not the leaf key's over :func:`runwatch.sdk.wire.svid_proof` of the
                   sending process's pid, pid namespace and message time: the chain alone is public,
                   the proof shows the sender holds the key
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runwatch.sdk.wire import svid_proof

if TYPE_CHECKING:  # cryptography loads on the first SVID checked, not with every session
    from cryptography import x509

_SPIFFE_ID = re.compile(r"^spiffe://([a-z0-9._-]+)(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+$")

Bundles = Callable[[str], "Sequence[x509.Certificate] | None"]
"""The roots of a trust domain, or None when none is known."""


class SvidRejected(ValueError):
    """An SVID that fails a check; ``code`` is the reason code, the message ``code: detail``."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code


@dataclass(frozen=True, slots=True)
class VerifiedSvid:
    """What a verified SVID proves."""

    spiffe_id: str
    trust_domain: str
    not_before_ns: int
    not_after_ns: int
    sha256: str  # of the leaf's DER


def _ns(t: dt.datetime) -> int:
    return int(t.timestamp()) * 1_000_000_000


def _certs(x5c: Sequence[str]) -> list[tuple[bytes, x509.Certificate]]:
    from cryptography import x509

    out = []
    for i, text in enumerate(x5c):
        try:
            der = base64.b64decode(text, validate=True)
            out.append((der, x509.load_der_x509_certificate(der)))
        except (binascii.Error, ValueError) as exc:
            why = " ".join(str(exc).split())[:120]
            raise SvidRejected("malformed", f"certificate {i} of the chain: {why}") from None
    if not out:
        raise SvidRejected("malformed", "empty certificate chain")
    return out


def spiffe_id_of(leaf: x509.Certificate) -> tuple[str, str]:
    """The leaf's SPIFFE ID and trust domain; raises :class:`SvidRejected` (``bad_spiffe_id``)."""
    from cryptography import x509

    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise SvidRejected("bad_spiffe_id", "the leaf has no subject alternative name") from None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise SvidRejected("bad_spiffe_id", f"the leaf has {len(uris)} URI SANs (exactly 1 required)")
    m = _SPIFFE_ID.match(uris[0])
    if m is None:
        raise SvidRejected("bad_spiffe_id", f"{uris[0][:200]!r} is no SPIFFE ID of a workload")
    return uris[0], m.group(1)


def _check_proof(leaf: x509.Certificate, sig: str, data: bytes) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    try:
        raw = base64.b64decode(sig, validate=True)
    except binascii.Error:
        raise SvidRejected("bad_proof", "the signature is not base64") from None
    key = leaf.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(raw, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(raw, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(raw, data)
        else:
            raise SvidRejected("bad_proof", f"unsupported leaf key type {type(key).__name__}")
    except InvalidSignature:
        raise SvidRejected("bad_proof", "the signature is not the leaf key's over this sender's proof") from None


def verify_svid(x5c: Sequence[str], sig: str, claim: str, *, pid: int, ns: int, mono: int, bundles: Bundles,
                now: dt.datetime) -> VerifiedSvid:
    """Check one SVID (see the module); ``pid``/``ns``/``mono`` are the sender's as the collector verified them."""
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

    chain = _certs(x5c)
    leaf_der, leaf = chain[0]
    spiffe_id, td = spiffe_id_of(leaf)
    if claim != spiffe_id:
        raise SvidRejected("claim_mismatch", f"the message claims {claim[:200]!r}, the leaf names {spiffe_id!r}")
    if now < leaf.not_valid_before_utc:
        raise SvidRejected("not_yet_valid", f"valid from {leaf.not_valid_before_utc.isoformat()}")
    if now > leaf.not_valid_after_utc:
        raise SvidRejected("expired", f"expired at {leaf.not_valid_after_utc.isoformat()}")
    roots = bundles(td)
    if not roots:
        raise SvidRejected("no_bundle", f"no trust bundle for trust domain {td}")
    try:
        verifier = PolicyBuilder().store(Store(list(roots))).time(now).build_client_verifier()
        verifier.verify(leaf, [c for _, c in chain[1:]])
    except VerificationError as exc:
        raise SvidRejected("untrusted", f"the chain does not verify to the {td} bundle: "
                           f"{' '.join(str(exc).split())[:160]}") from None
    _check_proof(leaf, sig, svid_proof(pid, ns, mono, leaf_der))
    return VerifiedSvid(spiffe_id=spiffe_id, trust_domain=td, not_before_ns=_ns(leaf.not_valid_before_utc),
                        not_after_ns=_ns(leaf.not_valid_after_utc), sha256=hashlib.sha256(leaf_der).hexdigest())


def leaf_pem(cert: x509.Certificate) -> str:
    """PEM text of a certificate (for bundle files and messages)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.PEM).decode()
