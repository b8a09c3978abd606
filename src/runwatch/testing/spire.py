"""A fake SPIRE agent: the real SPIFFE Workload API over gRPC on a unix socket, with certificates made here.

:class:`FakeSpireAgent` serves ``SpiffeWorkloadAPI.FetchX509SVID`` and ``FetchX509Bundles`` (the
server streams of ``workload.proto``, with the message classes the ``spiffe`` package ships) to
any caller that sends the ``workload.spiffe.io: true`` metadata header, as SPIRE's agent does;
without the header a call fails with ``INVALID_ARGUMENT``, and with no SVID configured with
``PERMISSION_DENIED`` (SPIRE's answer to a workload it did not attest). Each stream sends its
current answer once and stays open until the client cancels it or the agent stops.

:class:`TestCA` makes a trust domain's root and the X.509-SVIDs it signs (P-256 keys, the SPIFFE
X.509-SVID profile: one URI SAN, ``CA:false``, digitalSignature, server and client auth);
:func:`self_signed_svid` makes a forged one with no trust behind it.

Thread safety: :meth:`FakeSpireAgent.set_svids` and :meth:`FakeSpireAgent.set_bundles` from any
thread; gRPC serves calls on its own pool.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from spiffe._proto import workload_pb2, workload_pb2_grpc

HEADER_KEY = "workload.spiffe.io"
"""The metadata header every Workload API call must carry (value ``true``)."""

_EPOCH = dt.UTC


def _now() -> dt.datetime:
    return dt.datetime.now(_EPOCH)


@dataclass(frozen=True)
class Svid:
    """An X.509-SVID as the Workload API hands it out: the chain (leaf first) and the leaf's key."""

    spiffe_id: str
    chain: tuple[x509.Certificate, ...]
    key: ec.EllipticCurvePrivateKey

    @property
    def chain_der(self) -> bytes:
        """The chain as concatenated DER certificates (``X509SVID.x509_svid``)."""
        return b"".join(c.public_bytes(serialization.Encoding.DER) for c in self.chain)

    @property
    def key_der(self) -> bytes:
        """The key as PKCS#8 DER (``X509SVID.x509_svid_key``)."""
        return self.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


class TestCA:
    """A trust domain's signing authority: a self-signed root (``bundle``) that issues SVIDs."""

    __test__ = False  # not a pytest test class

    def __init__(self, trust_domain: str, *, not_after: dt.datetime | None = None) -> None:
        self.trust_domain = trust_domain
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SPIFFE"),
                          x509.NameAttribute(NameOID.COMMON_NAME, f"{trust_domain} root")])
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(not_after or now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]),
                           critical=False)
            .sign(self.key, hashes.SHA256()))

    @property
    def bundle_der(self) -> bytes:
        """The trust bundle as DER (``X509BundlesResponse.bundles`` value)."""
        return self.cert.public_bytes(serialization.Encoding.DER)

    def write_bundle(self, path: Path) -> Path:
        """Write the bundle as a PEM file (for ``--spiffe-bundle``); returns ``path``."""
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def issue(self, spiffe_id: str, *, not_before: dt.datetime | None = None,
              not_after: dt.datetime | None = None) -> Svid:
        """An X.509-SVID for ``spiffe_id`` signed by this root (valid from an hour ago for an hour)."""
        now = _now()
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _leaf(spiffe_id, key, issuer=self.cert.subject, signer=self.key,
                     not_before=not_before or now - dt.timedelta(hours=1),
                     not_after=not_after or now + dt.timedelta(hours=1),
                     aki=x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()))
        return Svid(spiffe_id, (cert,), key)


def self_signed_svid(spiffe_id: str) -> Svid:
    """A forged SVID: the right shape and SPIFFE ID, signed by its own key, chained to nothing."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SPIFFE")])
    cert = _leaf(spiffe_id, key, issuer=name, signer=key, not_before=now - dt.timedelta(hours=1),
                 not_after=now + dt.timedelta(hours=1), aki=None)
    return Svid(spiffe_id, (cert,), key)


def _leaf(spiffe_id: str, key: ec.EllipticCurvePrivateKey, *, issuer: x509.Name, signer: ec.EllipticCurvePrivateKey,
          not_before: dt.datetime, not_after: dt.datetime, aki: x509.AuthorityKeyIdentifier | None) -> x509.Certificate:
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SPIRE")]))
         .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(not_before).not_valid_after(not_after)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                      data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
                                      encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                        critical=False)
         .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), critical=False)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if aki is not None:
        b = b.add_extension(aki, critical=False)
    return b.sign(signer, hashes.SHA256())


class _Servicer(workload_pb2_grpc.SpiffeWorkloadAPIServicer):
    def __init__(self, agent: FakeSpireAgent) -> None:
        self.agent = agent

    def _check(self, context: Any) -> None:
        meta = dict(context.invocation_metadata())
        self.agent.calls.append((context.peer(), meta.get(HEADER_KEY)))
        if meta.get(HEADER_KEY) != "true":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "security header missing from request")

    def _hold(self, context: Any) -> None:
        while context.is_active() and not self.agent.stopping.wait(0.05):
            pass

    def FetchX509SVID(self, request: Any, context: Any) -> Iterator[Any]:
        self._check(context)
        svids, bundle_td = self.agent.current()
        if not svids:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "no identity issued")
        bundles = self.agent.bundles()
        yield workload_pb2.X509SVIDResponse(svids=[
            workload_pb2.X509SVID(spiffe_id=s.spiffe_id, x509_svid=s.chain_der, x509_svid_key=s.key_der,
                                  bundle=bundles.get(bundle_td, b"")) for s in svids])
        self._hold(context)

    def FetchX509Bundles(self, request: Any, context: Any) -> Iterator[Any]:
        self._check(context)
        bundles = self.agent.bundles()
        if not bundles:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "no identity issued")
        yield workload_pb2.X509BundlesResponse(bundles=bundles)
        self._hold(context)


class FakeSpireAgent:
    """Serves the SPIFFE Workload API on ``socket_path`` (see the module). A context manager."""

    def __init__(self, socket_path: Path, ca: TestCA, svids: Sequence[Svid] = ()) -> None:
        self.socket_path = Path(socket_path)
        self.ca = ca
        self._svids: tuple[Svid, ...] = tuple(svids)
        self._bundles: dict[str, bytes] = {ca.trust_domain: ca.bundle_der}
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self.calls: list[tuple[str, str | None]] = []  # (peer, header value) of every call
        self._server: Any = None

    @property
    def endpoint(self) -> str:
        """The ``SPIFFE_ENDPOINT_SOCKET`` value that reaches this agent."""
        return f"unix://{self.socket_path}"

    def set_svids(self, svids: Sequence[Svid]) -> None:
        with self._lock:
            self._svids = tuple(svids)

    def set_bundles(self, bundles: dict[str, bytes]) -> None:
        with self._lock:
            self._bundles = dict(bundles)

    def current(self) -> tuple[tuple[Svid, ...], str]:
        with self._lock:
            return self._svids, self.ca.trust_domain

    def bundles(self) -> dict[str, bytes]:
        with self._lock:
            return dict(self._bundles)

    def start(self) -> FakeSpireAgent:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        workload_pb2_grpc.add_SpiffeWorkloadAPIServicer_to_server(_Servicer(self), server)  # type: ignore[no-untyped-call]
        server.add_insecure_port(f"unix:{self.socket_path}")
        server.start()
        self.socket_path.chmod(0o666)
        self._server = server
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.stop(grace=0.5).wait(2)
            self._server = None
        self.socket_path.unlink(missing_ok=True)

    def __enter__(self) -> FakeSpireAgent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
