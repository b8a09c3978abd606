"""Policy from behaviour, end to end: the demo's benign workloads recorded with ``runwatch run``,
``runwatch policy suggest`` writes their envelope, the same benign workload under that policy
in enforce mode is not disturbed, and the attack twins are blocked by it.

The demo's scenario driver (``python -m runwatch.demo.scenarios CONFIG``) is the command;
its peers (mock service, plugin backend, DNS responder, the "external" host with the exfil
sink) are started here so every run talks to the same ports."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.kernel

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))
BLOCKING = {"deny", "would_deny", "kill"}


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Peers and a workspace shared by every run of this module."""
    from runwatch.demo.peers import DnsResponder, ExternalHost, HttpService
    from runwatch.demo.runner import PLUGIN_HOST
    from runwatch.demo.scenarios import unpin_all, write_workspace

    root = tmp_path_factory.mktemp("demo")
    root.chmod(0o755)
    write_workspace(root / "workspace")
    (root / "pins").mkdir()
    closers = []
    try:
        service = HttpService().start()
        closers.append(service.close)
        plugin = HttpService().start()
        closers.append(plugin.close)
        dns = DnsResponder({PLUGIN_HOST: "127.0.0.1"}).start()
        closers.append(dns.close)
        ext = ExternalHost()
        closers.append(ext.close)
        ext.start()
        yield {"root": root, "service": service, "plugin": plugin, "ext": ext}
    finally:
        for close in reversed(closers):
            close()
        unpin_all(root / "pins")


def drive(env: dict[str, Any], scenario: str, tag: str, policy: Path | None = None) -> tuple[dict[str, Any], Path, str]:
    """One scenario under ``runwatch run`` (enforcing ``policy`` when given): (driver result, db, stderr)."""
    from runwatch.demo.scenarios import DriveConfig

    root: Path = env["root"]
    sock = root / f"sock-{tag}"
    sock.mkdir(mode=0o755)
    cfg = DriveConfig(scenario=scenario, sock_dir=str(sock), workspace=str(root / "workspace"),
                      service_url=env["service"].url, plugin_port=env["plugin"].port,
                      agent_netns=env["ext"].agent_netns, sink_url=env["ext"].sink_url, pin_dir=str(root / "pins"))
    db = root / f"{tag}.db"
    args = [RUNWATCH, "run", "--db", str(db), "--no-rules", "--sdk-socket", str(sock / "sdk.sock"),
            "--control-socket", str(root / f"control-{tag}.sock")]
    if policy is not None:
        args += ["--policy", str(policy), "--mode", "enforce"]
    args += ["--", sys.executable, "-m", "runwatch.demo.scenarios", json.dumps(asdict(cfg))]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == result["rc"], proc.stderr
    return result, db, proc.stderr


def decisions(db: Path) -> list[dict[str, Any]]:
    res = subprocess.run([RUNWATCH, "events", "--db", str(db), "--kind", "policy.decision", "--format", "json"],
                         capture_output=True, text=True, timeout=30, check=True)
    return [json.loads(line) for line in res.stdout.splitlines()]


def suggest(db: Path, container: str, out: Path) -> str:
    res = subprocess.run([RUNWATCH, "policy", "suggest", "--db", str(db), "--container", container, "-o", str(out)],
                         capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 0, res.stderr
    check = subprocess.run([RUNWATCH, "policy", "check", str(out)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0 and check.stdout.strip() == f"ok: {out}", check.stderr
    return out.read_text()


def learned(env: dict[str, Any], benign: str, attack: str) -> tuple[dict[str, Any], Path, Path]:
    """Record ``benign``, suggest its policy; return (recorded result, benign policy, same for attack)."""
    root: Path = env["root"]
    rec, db, _ = drive(env, benign, f"{benign}-rec")
    assert rec["rc"] == 0 and rec["error"] is None
    text = suggest(db, f"demo-{benign}", root / f"{benign}.yaml")
    for_attack = root / f"{attack}.yaml"
    for_attack.write_text(text.replace(f'"demo-{benign}"', f'"demo-{attack}"'))
    return rec, root / f"{benign}.yaml", for_attack


def assert_undisturbed(env: dict[str, Any], benign: str, rec: dict[str, Any], policy: Path) -> None:
    """The benign workload under its suggested policy, enforced: same outcome, nothing blocked."""
    again, db, log = drive(env, benign, f"{benign}-enforced", policy)
    assert (again["rc"], again["error"], again["details"]) == (0, None, rec["details"]), log
    got = decisions(db)
    assert [d["decision"] for d in got if d["decision"]["verdict"] in BLOCKING] == []
    assert f"applied to container demo-{benign}" in log


def test_model_server_envelope_keeps_benign_and_blocks_the_shell(demo_env):  # type: ignore[no-untyped-def]
    rec, benign_policy, attack_policy = learned(demo_env, "model-server-benign", "model-server")
    assert rec["details"]["answers"][-1]["route"] == "completions/chat"
    assert_undisturbed(demo_env, "model-server-benign", rec, benign_policy)
    res, db, log = drive(demo_env, "model-server", "model-server-enforced", attack_policy)
    crafted = res["details"]["answers"][-1]
    assert (crafted["shell_output"], crafted["secret_leaked"]) == (False, False)
    denied = [d for d in decisions(db) if d["decision"]["verdict"] == "deny"]
    assert [(d["decision"]["layer"], d["decision"]["rule"], d["decision"]["target"], d["container"]["name"])
            for d in denied] == [("exec", "exec.default", "/bin/busybox", "demo-model-server")]
    assert "POLICY DENY [exec]" in log


def test_plugin_agent_envelope_keeps_benign_and_blocks_the_new_endpoint(demo_env):  # type: ignore[no-untyped-def]
    rec, benign_policy, attack_policy = learned(demo_env, "plugin-agent-benign", "plugin-agent")
    assert_undisturbed(demo_env, "plugin-agent-benign", rec, benign_policy)
    before = dict(demo_env["plugin"].requests)
    # As suggested: the first step outside the envelope (run_shell's /bin/sh) is refused.
    res, db, log = drive(demo_env, "plugin-agent", "plugin-agent-enforced", attack_policy)
    assert res["rc"] != 0
    denied = [d for d in decisions(db) if d["decision"]["verdict"] == "deny"]
    assert [(d["decision"]["layer"], d["decision"]["rule"], d["decision"]["target"]) for d in denied] == [
        ("exec", "exec.default", "/bin/busybox")], log
    # Even with the shell admitted by a reviewer, the plugin's new endpoint stays out of reach.
    text = attack_policy.read_text()
    shell_ok = attack_policy.with_name("plugin-agent-shell.yaml")
    allow = "    exec:\n      allow:\n"
    shell_ok.write_text(text.replace(allow, allow + '        - "/bin/busybox"\n'))
    res, db, log = drive(demo_env, "plugin-agent", "plugin-agent-shell", shell_ok)
    assert res["rc"] != 0
    assert dict(demo_env["plugin"].requests) == before  # the plugin's backend was never reached
    denied = [d for d in decisions(db) if d["decision"]["verdict"] == "deny"]
    port = demo_env["plugin"].port
    assert {(d["decision"]["layer"], d["decision"]["rule"], d["decision"]["target"]) for d in denied} == {
        ("egress", "egress.default", "127.0.0.1:53"), ("egress", "egress.default", f"127.0.0.1:{port}")}, log
    calls = res["details"]["calls"]
    assert [c.split(" ", 2)[1] for c in calls if "error" in c] == ["weather.forecast"], calls


def test_exfil_agent_envelope_keeps_benign_and_keeps_the_secret_from_the_sink(demo_env):  # type: ignore[no-untyped-def]
    from runwatch.demo.scenarios import SECRET_NAME, SECRET_VALUE

    rec, benign_policy, attack_policy = learned(demo_env, "exfil-agent-benign", "exfil-agent")
    # The sink's name is served by a resolver inside the agent's network namespace: the host
    # cannot resolve it, the policy is resolved as the container resolves it.
    assert '"sink.external.example:8080"' in benign_policy.read_text()
    assert_undisturbed(demo_env, "exfil-agent-benign", rec, benign_policy)
    sink = demo_env["ext"].sink
    before = sink.body_bytes
    res, db, _ = drive(demo_env, "exfil-agent", "exfil-agent-suggested", attack_policy)
    unreviewed = sink.body_bytes - before  # the secret and the summary
    assert (res["rc"], [d for d in decisions(db) if d["decision"]["verdict"] in BLOCKING]) == (0, [])
    # The attack stays inside the recorded envelope (same tools, same destination) except for
    # reading a mounted secret the benign run never opened, which a recording cannot list.
    # The reviewer pins it: no reader at all.
    reviewed = attack_policy.with_name("exfil-agent-reviewed.yaml")
    reviewed.write_text(attack_policy.read_text().replace(
        "      protect: []  # no secret read was recorded\n",
        f"      protect:\n        - path: /run/secrets/{SECRET_NAME}\n          readers: []\n"))
    before = sink.body_bytes
    res, db, log = drive(demo_env, "exfil-agent", "exfil-agent-enforced", reviewed)
    error = f"error: cannot read /run/secrets/{SECRET_NAME}: Operation not permitted"
    assert res["details"]["calls"] == ["rx-1 read_file ok", f"rx-2 read_file {error}", "rx-3 http_post ok",
                                       "rx-4 http_post ok"]
    # What reached the sink: the error text instead of the secret, then the summary.
    assert sink.body_bytes - before == unreviewed - len(SECRET_VALUE) + len(error)
    got = decisions(db)
    assert [(d["decision"]["verdict"], d["decision"]["rule"], d["container"]["name"]) for d in got] == [
        ("deny", f"files.protect:/run/secrets/{SECRET_NAME}", "demo-exfil-agent")]
    assert "POLICY DENY [file]" in log
