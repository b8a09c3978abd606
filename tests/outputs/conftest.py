"""Fixtures of the output tests: 23 alerts (severities, tags and owners in a fixed pattern), a test PKI."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import pytest

from runwatch.alerts.model import Alert, AlertProcess, AlertToolCall, Workload
from runwatch.testing.receivers import make_pki

SEVERITIES = ("info", "low", "medium", "high", "critical")
T0 = 1_764_000_000_123_456_789


def make_alerts(n: int = 23) -> list[Alert]:
    """``n`` alerts: alert i has severity SEVERITIES[i % 5], tag ``exfil`` when i % 3 == 0, owner
    ``team-pay`` when i % 4 == 0 (else ``team-ml``), a tool call when i is odd."""
    out = []
    for i in range(n):
        out.append(Alert(
            id=f"al-{i:02d}", time=T0 + i * 1_000_000, rule=f"rule_{i % 7}", severity=SEVERITIES[i % 5],
            output=f"alert number {i} from /usr/bin/tool-{i}", attack=["T1059", "T1041"] if i % 2 else ["T1552.001"],
            workload=Workload(id=f"{i:02d}" + "c" * 62, name=f"agent-{i}", runtime="runc", pod="p", namespace="ns",
                              owner="team-pay" if i % 4 == 0 else "team-ml"),
            process=AlertProcess(pid=1000 + i, exe=f"/usr/bin/tool-{i}", cmdline=f"tool-{i} --x", ancestry=["/bin/sh"]),
            tool_call=AlertToolCall("run_shell", f"call-{i}", "planner") if i % 2 else None,
            tags=["exfil"] if i % 3 == 0 else ["shell"], first_time=T0 + i * 1_000_000))
    return out


@pytest.fixture
def alerts() -> list[Alert]:
    """The 23 alerts of :func:`make_alerts`."""
    return make_alerts()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A test CA with a server certificate for 127.0.0.1 and a client certificate (paths by name)."""
    return make_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def tls_server(pki: dict[str, str]) -> Callable[[bool], ssl.SSLContext]:
    """Server SSL contexts over :func:`pki`: ``tls_server(True)`` requires a client certificate of the CA."""
    def make(client_cert: bool) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki["server_cert"], pki["server_key"])
        if client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(pki["ca"])
        return ctx
    return make
