"""PolicyRuntime: load, serve, hand decisions to the session's source, stop cleanly."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from runwatch.policy import PolicyLoadError
from runwatch.policy.runtime import PolicyRuntime, decide_socket_beside
from runwatch.policy.source import DecisionBus
from runwatch.sdk import policy as sdk_policy
from runwatch.sensors.base import source_factory


def test_runtime_serves_and_its_source_delivers_decisions(tmp_path: Path) -> None:
    exe = os.readlink("/proc/self/exe")
    f = tmp_path / "p.yaml"
    f.write_text(f"- id: rt\n  selector: {{process: {json.dumps(exe)}}}\n  fail: open\n  tools: {{allow: [a]}}\n")
    d = tempfile.mkdtemp(prefix="rwrt")
    bus = DecisionBus()
    rt = PolicyRuntime([str(f)], mode="enforce", decide_socket=f"{d}/policy.sock", control_socket=f"{d}/c.sock",
                       bus=bus)
    try:
        rt.start()
        assert rt.env() == {"RUNWATCH_POLICY_SOCKET": f"{d}/policy.sock", "RUNWATCH_POLICY_FAIL": "open"}
        sdk_policy.configure(rt.env()["RUNWATCH_POLICY_SOCKET"])
        verdicts = [sdk_policy.decide(t).verdict for t in ("a", "b", "a")]
        assert verdicts == ["allow", "deny", "allow"]
        rt.source.start()
        batch = rt.source.poll(0.5)
        assert batch is not None
        assert [(e.decision.verdict, e.decision.mode) for e in batch if e.decision] == [
            ("allow", "enforce"), ("deny", "enforce"), ("allow", "enforce")]
        assert rt.stats()["allow"] == 2 and rt.stats()["bus_recorded"] == 3
    finally:
        sdk_policy.configure(None)
        rt.stop()
        shutil.rmtree(d, ignore_errors=True)
    assert not os.path.exists(f"{d}/policy.sock")
    rt.source.stop()
    assert rt.source.poll(0) is None


def test_runtime_refuses_bad_policies_before_binding(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("- id: x\n  selector: {container: a}\n  mode: sometimes\n")
    rt = PolicyRuntime([str(f)], decide_socket=str(tmp_path / "p.sock"), control_socket=None)
    with pytest.raises(PolicyLoadError, match=r"bad.yaml:3: policy 'x': mode must be monitor or enforce"):
        rt.start()
    assert not (tmp_path / "p.sock").exists()


def test_policy_source_is_registered_and_socket_sits_beside_the_sdk() -> None:
    assert source_factory("policy")().name == "policy"
    assert decide_socket_beside("/run/runwatch/sdk/sdk.sock") == "/run/runwatch/sdk/policy.sock"
