"""TLS options of the HTTP outputs against a real HTTPS receiver: a private CA, a client certificate, insecure."""

from __future__ import annotations

import ssl
from collections.abc import Callable

from runwatch.alerts.model import Alert
from runwatch.outputs.delivery import RetryPolicy
from runwatch.outputs.http import TlsOptions
from runwatch.outputs.webhook import webhook_output
from runwatch.testing.receivers import HttpReceiver

FAST = RetryPolicy(initial_s=0.02, max_s=0.1)


def send(url: str, tls: TlsOptions, alerts: list[Alert]) -> dict[str, object]:
    out = webhook_output(url, tls=tls, retry=FAST, close_timeout=0.3, timeout=2.0)
    out.open()
    out.write_alerts(alerts)
    out.flush(1)
    out.close()
    return out.output_stats()


Server = Callable[[bool], ssl.SSLContext]


def test_a_private_ca_and_a_client_certificate(pki: dict[str, str], tls_server: Server, alerts: list[Alert]) -> None:
    with HttpReceiver(tls=tls_server(True)) as rx:
        good = send(rx.url, TlsOptions(ca_file=pki["ca"], cert_file=pki["client_cert"], key_file=pki["client_key"]),
                    alerts[:5])
        assert len(rx.bodies()) == 5
        no_cert = send(rx.url, TlsOptions(ca_file=pki["ca"]), alerts[5:8])
        assert len(rx.bodies()) == 5
    assert (good["sent"], good["failures"]) == (5, 0)
    assert no_cert["sent"] == 0 and no_cert["failures"] >= 1 and no_cert["dropped_by_reason"] == {"not_sent": 3}


def test_an_unknown_ca_is_refused_unless_insecure(tls_server: Server, alerts: list[Alert]) -> None:
    with HttpReceiver(tls=tls_server(False)) as rx:
        refused = send(rx.url, TlsOptions(), alerts[:3])
        insecure = send(rx.url, TlsOptions(insecure=True), alerts[3:10])
        assert len(rx.bodies()) == 7
    assert refused["sent"] == 0 and "TLS: CERTIFICATE_VERIFY_FAILED" in str(refused["last_error"])
    assert (insecure["sent"], insecure["failures"]) == (7, 0)
