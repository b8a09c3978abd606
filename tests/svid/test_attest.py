"""Attested SPIFFE identity: an agent process fetches its X.509-SVID from a fake SPIRE agent that
serves the real Workload API over gRPC, reports it through the SDK, and runwatch verifies it
against the trust bundle, checks the sender, and records it (or rejects, counts and alerts)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

import runwatch.rules
from runwatch.alerts.model import Alert
from runwatch.enrich.workload import PodmanFacts, WorkloadJoin
from runwatch.events import Container, Event, FileInfo, new_id, to_json
from runwatch.policy.decide import Decider, ProcWorkloads
from runwatch.policy.loader import load_policies
from runwatch.rules import Engine, load_rules
from runwatch.sensors.inproc.collector import SdkCollector
from runwatch.svid.attest import Attestor, is_svid_event
from runwatch.svid.bundles import TrustBundles
from runwatch.testing.spire import FakeSpireAgent, Svid, TestCA, self_signed_svid

TD = "prod.example"
AGENT_ID = f"spiffe://{TD}/ns/shop/sa/planner"
CONTAINER = Container(id="ab" * 32, runtime="runc", name="planner")

AGENT = textwrap.dedent("""
    import sys
    from runwatch import sdk
    from runwatch.sdk import identity
    got = identity.report_svid()
    sdk.flush(2.0)
    print(got or "failed: " + str(identity.last_error), flush=True)
    sys.stdin.readline()  # stay alive until the collector has read the datagram
""")


@pytest.fixture
def short_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="rw-spire-", dir="/tmp"))
    yield d
    for p in sorted(d.rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    d.rmdir()


@pytest.fixture
def ca() -> TestCA:
    return TestCA(TD)


@pytest.fixture
def collector(short_dir: Path) -> Iterator[SdkCollector]:
    col = SdkCollector(short_dir / "sdk" / "sdk.sock")
    col.start()
    yield col
    col.stop()


def report(agent: FakeSpireAgent, collector: SdkCollector) -> tuple[str, list[Event]]:
    """Run a real agent process that reports its SVID; what it printed and the SVID events collected."""
    env = {**os.environ, "SPIFFE_ENDPOINT_SOCKET": agent.endpoint, "RUNWATCH_SOCKET": str(collector.path)}
    proc = subprocess.Popen([sys.executable, "-c", AGENT], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        said = proc.stdout.readline().strip()
        events: list[Event] = []
        deadline = time.monotonic() + 5
        while not events and time.monotonic() < deadline and not said.startswith("failed"):
            events = [e for e in collector.poll(0.1) or [] if is_svid_event(e)]
    finally:
        proc.communicate("\n", timeout=10)
    return said, events


def default_engine() -> Engine:
    return Engine(load_rules([Path(runwatch.rules.__file__).parent / "default"]))


def alerts_json(engine: Engine, events: list[Event]) -> list[dict[str, object]]:
    out: list[Alert] = engine.process_batch(events)
    return [json.loads(msgspec.json.encode(a)) for a in out]


def in_container(e: Event, c: Container = CONTAINER) -> Event:
    e.container = c  # what the enrichment stage's cgroup resolution gives the sender
    return e


def test_the_agent_fetches_its_svid_and_runwatch_records_it_as_attested(
        short_dir: Path, ca: TestCA, collector: SdkCollector) -> None:
    with FakeSpireAgent(short_dir / "spire" / "agent.sock", ca, [ca.issue(AGENT_ID)]) as agent:
        said, events = report(agent, collector)
        attestor = Attestor(TrustBundles(socket=agent.endpoint))
        assert said == AGENT_ID
        assert len(events) == 1
        e = in_container(events[0])
        attestor(e, e.container)
    assert e.pid > 0 and e.vpid is not None  # the kernel's credentials named the sender
    assert e.attrs is not None and (e.attrs["svid"], e.attrs["svid_spiffe_id"]) == ("attested", AGENT_ID)
    assert not {"svid_chain", "svid_sig", "svid_mono"} & set(e.attrs)  # checked, then dropped
    assert e.container == msgspec.structs.replace(CONTAINER, spiffe_id=AGENT_ID, spiffe_source="attested")
    assert attestor.stats() == {"reported": 1, "attested": 1, "rejected": 0, "unverified": 0, "unbound": 0,
                                "mismatch": 0}
    assert attestor.bundles is not None and attestor.bundles.fetches == 1  # type: ignore[attr-defined]
    # every header the agent saw carried workload.spiffe.io: true (SVID by the SDK, bundle by runwatch)
    assert [h for _, h in agent.calls] == ["true", "true"]

    # later events of the container carry the attested id (over a derived one), in the event and alert JSON
    join = WorkloadJoin(podman=PodmanFacts(podman="/nonexistent"), attested=attestor.ids)
    k8s = msgspec.structs.replace(CONTAINER, namespace="shop", service_account="planner-v1")
    t = time.time_ns()
    read = Event(id=new_id(t), time=t, kind="file.open", pid=e.pid, exe="/usr/bin/python3",
                 file=FileInfo(path="/run/secrets/openai_api_key", intent="read"), container=join(k8s))
    doc = json.loads(to_json(read))
    assert (doc["container"]["spiffe_id"], doc["container"]["spiffe_source"]) == (AGENT_ID, "attested")
    alerts = alerts_json(default_engine(), [read])
    assert [a["rule"] for a in alerts] == ["static_secret_with_spiffe_identity"]
    assert (alerts[0]["workload"]["spiffe_id"], alerts[0]["workload"]["attested"]) == (AGENT_ID, True)
    assert alerts[0]["output"] == (
        f"planner ({AGENT_ID}) used static secret /run/secrets/openai_api_key (/usr/bin/python3)")
    # without the attestation the same container has the derived id, and the NHI7 check stays quiet
    plain = WorkloadJoin(podman=PodmanFacts(podman="/nonexistent"))(k8s)
    assert (plain.spiffe_id, plain.spiffe_source) == ("spiffe://cluster.local/ns/shop/sa/planner-v1", "derived")
    read.container = plain
    assert alerts_json(default_engine(), [read]) == []


def test_a_policy_selects_the_workload_by_its_attested_id(
        short_dir: Path, ca: TestCA, collector: SdkCollector) -> None:
    path = short_dir / "p.yaml"
    path.write_text("policies:\n"
                    "  - id: planner\n"
                    "    mode: enforce\n"
                    "    selector:\n"
                    f"      identity: [{AGENT_ID}]\n"
                    "    tools: {deny: [run_shell]}\n")
    policies = load_policies(str(path))
    join = WorkloadJoin(podman=PodmanFacts(podman="/nonexistent"))
    before = join(CONTAINER)
    assert policies.for_container(before) is None
    with FakeSpireAgent(short_dir / "spire" / "agent.sock", ca, [ca.issue(AGENT_ID)]) as agent:
        _, events = report(agent, collector)
    bundle = ca.write_bundle(short_dir / "bundle.pem")
    attestor = Attestor(TrustBundles(file=bundle, trust_domain=TD))
    join.attested = attestor.ids
    attestor(in_container(events[0]), join.facts(CONTAINER))
    chosen = policies.for_container(join(CONTAINER))
    assert chosen is not None and chosen.id == "planner"
    other = Container(id="cd" * 32, runtime="runc", name="planner")
    assert policies.for_container(join(other)) is None  # the same name, no SVID: not selected
    # the tool-call decisions of the session see the attested id of the asking process's container
    resolver = type("OneContainer", (), {"resolve_pid": staticmethod(lambda pid: CONTAINER)})()
    asked = ProcWorkloads(workload=join)
    asked._resolver = resolver
    decider = Decider(policies, emit=lambda e: None, workloads=asked)
    verdict = decider.decide(decider.workload_of(os.getpid()), "run_shell")
    assert (verdict.verdict, verdict.policy) == ("deny", "planner")
    plain = ProcWorkloads(workload=WorkloadJoin(podman=PodmanFacts(podman="/nonexistent")))
    plain._resolver = resolver
    decider = Decider(policies, emit=lambda e: None, workloads=plain)
    assert decider.decide(decider.workload_of(os.getpid()), "run_shell").rule == "no_policy"


@pytest.mark.parametrize(("make", "code"), [
    (lambda ca: self_signed_svid(AGENT_ID), "untrusted"),
    (lambda ca: TestCA(TD).issue(AGENT_ID), "untrusted"),  # a CA of the same name that is not in the bundle
    (lambda ca: ca.issue(AGENT_ID, not_before=dt.datetime.now(dt.UTC) - dt.timedelta(hours=3),
                         not_after=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)), "expired"),
    (lambda ca: ca.issue(AGENT_ID, not_before=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
                         not_after=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)), "not_yet_valid"),
])
def test_a_forged_or_expired_svid_is_rejected_counted_and_alerted_never_recorded(
        short_dir: Path, ca: TestCA, collector: SdkCollector, make: object, code: str) -> None:
    svid: Svid = make(ca)  # type: ignore[operator]
    with FakeSpireAgent(short_dir / "spire" / "agent.sock", ca, [svid]) as agent:
        said, events = report(agent, collector)
        attestor = Attestor(TrustBundles(socket=agent.endpoint))
        assert said == AGENT_ID  # the spiffe client hands the agent what the Workload API served
        e = in_container(events[0])
        attestor(e, e.container)
    assert e.attrs is not None and e.attrs["svid"] == "rejected"
    assert str(e.attrs["svid_reason"]).startswith(f"{code}: ")
    assert e.container == CONTAINER
    assert len(attestor.ids) == 0
    assert (attestor.stats()["rejected"], attestor.stats()["attested"], attestor.rejected_by) == (1, 0, {code: 1})
    alerts = alerts_json(default_engine(), [e])
    assert [a["rule"] for a in alerts] == ["spiffe_svid_rejected"]


def test_a_replayed_proof_from_another_process_is_rejected_and_a_host_sender_is_left_unbound(
        short_dir: Path, ca: TestCA, collector: SdkCollector) -> None:
    with FakeSpireAgent(short_dir / "spire" / "agent.sock", ca, [ca.issue(AGENT_ID)]) as agent:
        _, events = report(agent, collector)
        _, second = report(agent, collector)
        _, third = report(agent, collector)
    bundles = TrustBundles(file=ca.write_bundle(short_dir / "b.pem"), trust_domain=TD)
    attestor = Attestor(bundles)
    replay = in_container(events[0])
    assert replay.vpid is not None
    replay.vpid += 1  # the same chain and signature, sent by another process
    attestor(replay, replay.container)
    host = second[0]  # the sender's cgroup is no container's: valid, but nothing to record it on
    attestor(host, None)
    old = in_container(third[0])
    Attestor(bundles, clock=lambda: old.time + 301 * 10**9)(old, old.container)
    assert replay.attrs is not None and str(replay.attrs["svid_reason"]).startswith("bad_proof: ")
    assert host.attrs is not None and host.attrs["svid"] == "unbound"
    assert str(host.attrs["svid_reason"]).startswith("no_container: ")
    assert old.attrs is not None and str(old.attrs["svid_reason"]).startswith("stale: ")
    assert attestor.rejected_by == {"bad_proof": 1}
    assert (attestor.stats()["rejected"], attestor.stats()["unbound"], len(attestor.ids)) == (1, 1, 0)
    assert [a["rule"] for a in alerts_json(default_engine(), [replay, host])] == ["spiffe_svid_rejected"]


def test_without_a_trust_bundle_the_svid_stays_unverified_and_quiet(
        short_dir: Path, ca: TestCA, collector: SdkCollector) -> None:
    with FakeSpireAgent(short_dir / "spire" / "agent.sock", ca, [ca.issue(AGENT_ID)]) as agent:
        _, events = report(agent, collector)
    attestor = Attestor(None)
    e = in_container(events[0])
    attestor(e, e.container)
    assert e.attrs is not None and e.attrs["svid"] == "unverified"
    assert attestor.stats() == {"reported": 1, "attested": 0, "rejected": 0, "unverified": 1, "unbound": 0,
                                "mismatch": 0}
    assert alerts_json(default_engine(), [e]) == []


def test_an_attested_id_that_differs_from_the_derived_one_is_alerted_and_wins(
        short_dir: Path, ca: TestCA, collector: SdkCollector) -> None:
    with FakeSpireAgent(short_dir / "spire" / "agent.sock", ca, [ca.issue(AGENT_ID)]) as agent:
        _, events = report(agent, collector)
    attestor = Attestor(TrustBundles(file=ca.write_bundle(short_dir / "b.pem"), trust_domain=TD))
    join = WorkloadJoin(podman=PodmanFacts(podman="/nonexistent"), attested=attestor.ids)
    k8s = msgspec.structs.replace(CONTAINER, namespace="batch", service_account="etl")
    e = in_container(events[0], join(k8s))
    attestor(e, join.facts(k8s))
    assert e.attrs is not None
    assert (e.attrs["svid_mismatch"], e.attrs["derived_spiffe_id"]) == (True, "spiffe://cluster.local/ns/batch/sa/etl")
    assert (join(k8s).spiffe_id, join(k8s).spiffe_source) == (AGENT_ID, "attested")
    assert [a["rule"] for a in alerts_json(default_engine(), [e])] == ["spiffe_attested_mismatch"]
    assert attestor.stats()["mismatch"] == 1


def test_the_workload_api_refuses_calls_without_the_security_header(short_dir: Path, ca: TestCA) -> None:
    import grpc
    from spiffe._proto import workload_pb2, workload_pb2_grpc

    with FakeSpireAgent(short_dir / "spire" / "agent.sock", ca, [ca.issue(AGENT_ID)]) as agent:
        with grpc.insecure_channel(f"unix:{agent.socket_path}") as channel:
            stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                next(stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), timeout=5))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            got = next(stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), timeout=5,
                                          metadata=[("workload.spiffe.io", "true")]))
            assert [s.spiffe_id for s in got.svids] == [AGENT_ID]
        agent.set_svids([])
        from spiffe import WorkloadApiClient
        from spiffe.workloadapi.errors import FetchX509SvidError

        with WorkloadApiClient(agent.endpoint, default_timeout=5) as client, pytest.raises(FetchX509SvidError):
            client.fetch_x509_svid()


def test_a_bad_bundle_file_is_one_clear_line(short_dir: Path) -> None:
    bad = short_dir / "bad.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ValueError, match=r"^trust bundle .*bad.pem: no PEM certificates"):
        TrustBundles(file=bad, trust_domain=TD)
    with pytest.raises(ValueError, match=r"^trust bundle .*missing.pem: No such file"):
        TrustBundles(file=short_dir / "missing.pem", trust_domain=TD)


def test_the_bundle_options_fail_with_one_line(short_dir: Path) -> None:
    bad = short_dir / "bad.pem"
    bad.write_text("junk\n")
    runwatch = str(Path(sys.executable).parent / "runwatch")
    for args, line in (
            (["--spiffe-bundle", str(bad)], f"runwatch: error: trust bundle {bad}: no PEM certificates"),
            (["--spiffe-bundle", str(bad), "--spiffe-socket", "unix:///x"],
             "runwatch: error: --spiffe-bundle and --spiffe-socket exclude each other")):
        res = subprocess.run([runwatch, "watch", *args], capture_output=True, text=True, timeout=60)
        assert res.returncode == 2
        assert res.stderr.splitlines() == [f"{line} (see `runwatch watch --help`)"]


def test_the_session_verifies_against_the_configured_bundle(short_dir: Path, ca: TestCA) -> None:
    from runwatch.session import Session, SessionOptions

    bundle = ca.write_bundle(short_dir / "b.pem")
    s = Session(SessionOptions(spiffe_bundle=str(bundle), trust_domain=TD))
    bundles = s.enrichment.attestor.bundles
    assert isinstance(bundles, TrustBundles) and bundles.source == f"file {bundle}"
    assert bundles(TD) == [ca.cert] and bundles("other.example") is None
    assert s.enrichment.workload.attested is s.enrichment.attestor.ids
    env = os.environ.pop("SPIFFE_ENDPOINT_SOCKET", None)
    try:
        assert Session(SessionOptions()).enrichment.attestor.bundles is None
        os.environ["SPIFFE_ENDPOINT_SOCKET"] = "unix:///run/spire/agent.sock"
        found = Session(SessionOptions()).enrichment.attestor.bundles
        assert isinstance(found, TrustBundles) and found.source == "workload api unix:///run/spire/agent.sock"
    finally:
        os.environ.pop("SPIFFE_ENDPOINT_SOCKET", None)
        if env is not None:
            os.environ["SPIFFE_ENDPOINT_SOCKET"] = env


def test_report_svid_never_raises_and_says_why_it_failed(short_dir: Path, ca: TestCA) -> None:
    from runwatch.sdk import identity

    env = os.environ.pop("SPIFFE_ENDPOINT_SOCKET", None)
    try:
        assert identity.report_svid() is None
        assert identity.last_error is not None and identity.last_error.startswith("ArgumentError: ")
        assert identity.report_svid(f"unix://{short_dir}/none.sock", timeout=1) is None
        assert identity.last_error is not None and "does not exist" in identity.last_error
        with FakeSpireAgent(short_dir / "spire" / "agent.sock", ca, []) as agent:  # no identity for this caller
            assert identity.report_svid(agent.endpoint, timeout=5) is None
            assert identity.last_error is not None and "no identity issued" in identity.last_error
    finally:
        if env is not None:
            os.environ["SPIFFE_ENDPOINT_SOCKET"] = env
