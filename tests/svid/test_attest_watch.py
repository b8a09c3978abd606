"""`runwatch watch --spiffe-socket`: the events and alerts JSON of a runc container whose agent
reported its SVID carry the attested SPIFFE id; the run summary counts the verdicts."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from runwatch.containers.oci import Bind
from runwatch.containers.rootfs import build_rootfs
from runwatch.containers.runc import RuncContainer
from runwatch.testing.spire import FakeSpireAgent, TestCA

pytestmark = pytest.mark.kernel

RUNWATCH = str(Path(sys.executable).parent / "runwatch")
TD = "prod.example"
AGENT_ID = f"spiffe://{TD}/ns/shop/sa/planner"
AGENT = """
import time
from runwatch import sdk
from runwatch.sdk import identity
print(identity.report_svid() or identity.last_error, flush=True)
sdk.flush(2.0)
time.sleep(1.5)
open("/run/secrets/api_key").read()
"""


def test_watch_attests_the_agents_svid_on_its_container_in_events_alerts_and_summary(tmp_path: Path) -> None:
    short = Path(tempfile.mkdtemp(prefix="rw-w-", dir="/tmp"))
    short.chmod(0o755)
    ca = TestCA(TD)
    events, alerts, stats, log = (tmp_path / n for n in ("ev.jsonl", "al.jsonl", "stats.json", "watch.log"))
    sdk = short / "sdk" / "sdk.sock"
    try:
        with FakeSpireAgent(short / "spire" / "agent.sock", ca, [ca.issue(AGENT_ID)]) as spire:
            args = [RUNWATCH, "watch", "--db", str(tmp_path / "w.db"), "--events-out", str(events),
                    "--alerts-out", str(alerts), "--stats-json", str(stats), "--sdk-socket", str(sdk),
                    "--spiffe-socket", spire.endpoint, "--duration", "60"]
            with open(log, "w") as err:
                proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
            try:
                deadline = time.monotonic() + 30
                while not (sdk.exists() and events.exists()):
                    assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
                    time.sleep(0.05)
                time.sleep(0.5)
                with RuncContainer(build_rootfs(), name="planner-23", secrets={"api_key": b"sk-static-23"},
                                   binds=[Bind(sdk.parent, "/run/rw-sdk", False),
                                          Bind(spire.socket_path.parent, "/run/spire", False)],
                                   env={"RUNWATCH_SOCKET": "/run/rw-sdk/sdk.sock",
                                        "SPIFFE_ENDPOINT_SOCKET": "unix:///run/spire/agent.sock"}) as c:
                    res = c.run([sys.executable, "-c", AGENT])
                    cid = c.id
                assert res.returncode == 0 and res.stdout.decode().strip() == AGENT_ID, res.stderr
                time.sleep(1.0)
            finally:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=30)
        assert proc.returncode == 0, log.read_text()
    finally:
        shutil.rmtree(short, ignore_errors=True)
    mine = [e for e in map(json.loads, events.read_text().splitlines()) if (e.get("container") or {}).get("id") == cid]
    svid = [e for e in mine if (e.get("attrs") or {}).get("notice") == "identity.svid"]
    assert [e["attrs"]["svid"] for e in svid] == ["attested"]
    reads = [e for e in mine if e["kind"] == "file.open" and e["file"]["path"] == "/run/secrets/api_key"]
    assert len(reads) == 1
    assert (reads[0]["container"]["spiffe_id"], reads[0]["container"]["spiffe_source"]) == (AGENT_ID, "attested")
    got = [a for a in map(json.loads, alerts.read_text().splitlines()) if a["workload"]["id"] == cid]
    nhi7 = [a for a in got if a["rule"] == "static_secret_with_spiffe_identity"]
    assert len(nhi7) == 1 and (nhi7[0]["workload"]["spiffe_id"], nhi7[0]["workload"]["attested"]) == (AGENT_ID, True)
    summary = json.loads(stats.read_text())
    assert (summary["svid"]["attested"], summary["svid"]["rejected"]) == (1, 0)
    assert summary["svid"]["bundle"] == f"workload api unix://{short}/spire/agent.sock"
