"""An agent in a real runc container fetches its SVID from the fake SPIRE agent through a bind-mounted
Workload API socket; the live pipeline (kernel sensor + SDK collector + enrichment) attests it on
the container the kernel puts the sender in, and the container's later events, alerts and policy
selection carry the attested identity."""

from __future__ import annotations

import json
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

import runwatch.rules
from runwatch.containers.oci import Bind
from runwatch.events import to_json
from runwatch.policy.loader import load_policies
from runwatch.rules import Engine, load_rules
from runwatch.svid.attest import is_svid_event
from runwatch.svid.bundles import TrustBundles
from runwatch.testing.capture import LiveCapture
from runwatch.testing.spire import FakeSpireAgent, TestCA, self_signed_svid

pytestmark = pytest.mark.kernel

TD = "prod.example"
AGENT_ID = f"spiffe://{TD}/ns/shop/sa/planner"
SDK_DIR, SPIRE_DIR = "/run/runwatch-sdk", "/run/spire"

AGENT = textwrap.dedent("""
    import time
    from runwatch import sdk
    from runwatch.sdk import identity
    print(identity.report_svid() or identity.last_error, flush=True)
    sdk.flush(2.0)
    time.sleep(1.5)  # alive while the collector checks the sender against /proc
    open("/run/secrets/api_key").read()
""")


def default_engine() -> Engine:
    return Engine(load_rules([Path(runwatch.rules.__file__).parent / "default"]))


@pytest.fixture
def spire() -> Iterator[tuple[FakeSpireAgent, TestCA]]:
    d = Path(tempfile.mkdtemp(prefix="rw-spire-", dir="/tmp"))
    d.chmod(0o755)
    ca = TestCA(TD)
    with FakeSpireAgent(d / "agent.sock", ca) as agent:
        yield agent, ca
    d.rmdir()


@pytest.fixture
def attesting(live_sensor: LiveCapture, spire: tuple[FakeSpireAgent, TestCA]) -> Iterator[LiveCapture]:
    attestor = live_sensor.enrich.attestor
    attestor.bundles = TrustBundles(socket=spire[0].endpoint)
    live_sensor.reset(quiet=0.5, limit=15.0)
    yield live_sensor
    attestor.bundles = None


def run_agent(runc_container, live: LiveCapture, agent: FakeSpireAgent, name: str):  # type: ignore[no-untyped-def]
    assert live.collector is not None
    c = runc_container(name=name, secrets={"api_key": b"sk-static-23"},
                       binds=[Bind(live.collector.path.parent, SDK_DIR, False),
                              Bind(agent.socket_path.parent, SPIRE_DIR, False)],
                       env={"RUNWATCH_SOCKET": f"{SDK_DIR}/{live.collector.path.name}",
                            "SPIFFE_ENDPOINT_SOCKET": f"unix://{SPIRE_DIR}/{agent.socket_path.name}"})
    res = c.run([sys.executable, "-c", AGENT])
    assert res.returncode == 0, res.stderr
    return c, res.stdout.decode().strip()


def test_the_containers_svid_is_attested_and_carried_by_its_events_alerts_and_policy(
        attesting: LiveCapture, runc_container, spire: tuple[FakeSpireAgent, TestCA], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    agent, ca = spire
    agent.set_svids([ca.issue(AGENT_ID)])
    c, said = run_agent(runc_container, attesting, agent, "planner-23")
    assert said == AGENT_ID
    events = [e for e in attesting.settle() if e.container is not None and e.container.id == c.id]
    svids = [e for e in events if is_svid_event(e)]
    assert len(svids) == 1 and svids[0].attrs is not None and svids[0].attrs["svid"] == "attested"
    reads = [e for e in events if e.kind == "file.open" and e.file is not None
             and e.file.path == "/run/secrets/api_key"]
    assert len(reads) == 1
    doc = json.loads(to_json(reads[0]))
    assert (doc["container"]["id"], doc["container"]["spiffe_id"], doc["container"]["spiffe_source"]) == (
        c.id, AGENT_ID, "attested")
    alerts = [json.loads(msgspec.json.encode(a)) for a in default_engine().process_batch(reads)]
    nhi7 = [a for a in alerts if a["rule"] == "static_secret_with_spiffe_identity"]
    assert len(nhi7) == 1
    assert (nhi7[0]["workload"]["id"], nhi7[0]["workload"]["spiffe_id"], nhi7[0]["workload"]["attested"]) == (
        c.id, AGENT_ID, True)
    path = tmp_path / "p.yaml"
    path.write_text(f"- id: planner\n  selector: {{identity: [{AGENT_ID}]}}\n  tools: {{deny: [run_shell]}}\n")
    chosen = load_policies(str(path)).for_container(reads[0].container)  # type: ignore[arg-type]
    assert chosen is not None and chosen.id == "planner"


def test_a_forged_svid_from_a_container_is_rejected_and_never_attested(
        attesting: LiveCapture, runc_container, spire: tuple[FakeSpireAgent, TestCA]) -> None:  # type: ignore[no-untyped-def]
    agent, _ = spire
    agent.set_svids([self_signed_svid(AGENT_ID)])
    before = attesting.enrich.attestor.stats()["rejected"]
    c, said = run_agent(runc_container, attesting, agent, "forger-23")
    assert said == AGENT_ID
    events = [e for e in attesting.settle() if e.container is not None and e.container.id == c.id]
    svids = [e for e in events if is_svid_event(e)]
    assert len(svids) == 1 and svids[0].attrs is not None
    assert svids[0].attrs["svid"] == "rejected" and str(svids[0].attrs["svid_reason"]).startswith("untrusted: ")
    assert attesting.enrich.attestor.stats()["rejected"] == before + 1
    assert all(e.container is not None and e.container.spiffe_id is None for e in events)
    alerts = default_engine().process_batch(events)
    assert [a.rule for a in alerts if a.rule.startswith("spiffe_") or a.rule == "static_secret_with_spiffe_identity"
            ] == ["spiffe_svid_rejected"]
