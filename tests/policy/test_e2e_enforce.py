"""End to end through the real CLI: ``runwatch run --policy ... -- driver`` where the driver
starts a runc container; the policy is applied as the container appears and enforced by
the kernel (egress, protected secret, exec deny), every decision stored and printed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.kernel

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))
DRIVER = str(Path(__file__).with_name("e2e_driver.py"))
SECRET = "token-value-23\n"


def rw(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUNWATCH, *args], capture_output=True, text=True, timeout=timeout, check=False)


def run_policy(tmp: Path, policy: str, cfg: dict[str, Any], *, mode: str | None = "enforce",
               cmd: list[str] | None = None, rules: bool = False,
               ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], str]:
    """``runwatch run --policy`` over the driver (or ``cmd``); returns (process, driver JSON, stderr)."""
    (tmp / "policy.yaml").write_text(policy)
    log = tmp / "runwatch.log"
    cfg = {**cfg, "wait_log": str(log)}
    args = [RUNWATCH, "run", "--db", str(tmp / "e2e.db"), *(() if rules else ("--no-rules",)),
            "--sdk-socket", str(tmp / "sock" / "sdk.sock"),
            "--control-socket", str(tmp / "control.sock"), "--policy", str(tmp / "policy.yaml")]
    if mode:
        args += ["--mode", mode]
    args += ["--", *(cmd or [sys.executable, DRIVER, json.dumps(cfg)])]
    with open(log, "w") as err:
        proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=err, text=True, timeout=120, check=False)
    lines = proc.stdout.strip().splitlines()
    out = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    return proc, out, log.read_text()


def decisions(db: Path) -> list[dict[str, Any]]:
    res = rw("events", "--db", str(db), "--kind", "policy.decision", "--format", "json")
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


@pytest.fixture(scope="module")
def listeners() -> Iterator[dict[str, int]]:
    """TCP listeners on 127.0.0.23 (to be allowed) and 127.0.0.29 (not allowed)."""
    socks = []
    ports = {}
    for ip in ("127.0.0.23", "127.0.0.29"):
        s = socket.socket()
        s.bind((ip, 0))
        s.listen(64)
        socks.append(s)
        ports[ip] = s.getsockname()[1]
    yield ports
    for s in socks:
        s.close()


PROBE = """
import socket, sys
for ip, port in ((sys.argv[1], int(sys.argv[2])), (sys.argv[3], int(sys.argv[4]))):
    s = socket.socket()
    try:
        s.connect((ip, port)); print(ip, "connected")
    except OSError as e:
        print(ip, "errno", e.errno)
    s.close()
"""


def test_egress_enforced_in_a_container_started_by_the_command(tmp_path, listeners):  # type: ignore[no-untyped-def]
    ok, bad = listeners["127.0.0.23"], listeners["127.0.0.29"]
    policy = (f"id: net-23\nselector: {{container: [e2e-net]}}\nmode: monitor\n"
              f"egress:\n  allow: ['127.0.0.23:{ok}']\n")
    steps = [["{python}", "-c", PROBE, "127.0.0.23", str(ok), "127.0.0.29", str(bad)]]
    proc, out, log = run_policy(tmp_path, policy, {"name": "e2e-net", "steps": steps})
    assert proc.returncode == 0, log
    assert out["applied"] is True, log
    assert out["steps"][0]["out"] == "127.0.0.23 connected\n127.0.0.29 errno 1\n"
    cid = out["id"]
    assert f"policy net-23 (enforce) applied to container e2e-net ({cid})" in log
    assert f"POLICY DENY [egress] 127.0.0.29:{bad} policy=net-23 rule=egress.default container=e2e-net" in log
    got = decisions(tmp_path / "e2e.db")
    assert [(d["decision"]["verdict"], d["decision"]["target"], d["decision"]["mode"], d["container"]["name"],
             d["container"]["id"]) for d in got] == [("deny", f"127.0.0.29:{bad}", "enforce", "e2e-net", cid)]
    assert got[0]["net"]["dst_port"] == bad and got[0]["net"]["result"] == -1
    # Everything is gone: the command's cgroup and the container's.
    assert not Path(f"/sys/fs/cgroup/unified/runwatch/{cid}").exists()
    assert not any(Path("/sys/fs/cgroup/unified/runwatch-run").glob(f"{os.getpid()}*"))


READ = "import sys; sys.stdout.write(open('/run/secrets/token').read())"


def test_protected_secret_only_for_the_listed_reader(tmp_path):  # type: ignore[no-untyped-def]
    from runwatch.containers.rootfs import build_rootfs

    py = str(build_rootfs().python)
    policy = ("id: sec-23\nselector: {container: [e2e-secret]}\nmode: enforce\n"
              f"files:\n  protect:\n    - path: /run/secrets/token\n      readers: ['{py}']\n")
    steps = [["/bin/busybox", "cat", "/run/secrets/token"], ["{python}", "-c", READ]]
    proc, out, log = run_policy(tmp_path, policy, {"name": "e2e-secret", "secrets": {"token": SECRET},
                                                    "steps": steps}, mode=None)
    assert proc.returncode == 0, log
    assert out["applied"] is True, log
    cat, reader = out["steps"]
    assert (cat["rc"], cat["out"]) == (1, "") and "Operation not permitted" in cat["err"]
    assert (reader["rc"], reader["out"]) == (0, SECRET)
    got = decisions(tmp_path / "e2e.db")
    assert [(d["decision"]["verdict"], d["decision"]["rule"], d["exe"], d["container"]["name"]) for d in got] == [
        ("deny", "files.protect:/run/secrets/token", "/bin/busybox", "e2e-secret"),
        # the reader's exe is the executed file: the rootfs's python3 is a symlink to python3.11
        ("allow", "files.protect:/run/secrets/token", os.path.realpath(py), "e2e-secret"),
    ]
    assert os.path.realpath(py) != py


SPAWN = """
import subprocess
try:
    p = subprocess.run(['/bin/sh', '-c', 'echo shell-ran-23'], capture_output=True)
    print(p.returncode, p.stdout.decode().strip())
except OSError as e:
    print('errno', e.errno)
"""

EXEC_POLICY = "id: ex-23\nselector: {container: [e2e-exec]}\nmode: monitor\nexec:\n  deny: [/bin/sh]\n"


def test_exec_deny_of_sh_stops_the_shell_in_enforce_mode(tmp_path):  # type: ignore[no-untyped-def]
    proc, out, log = run_policy(tmp_path, EXEC_POLICY, {"name": "e2e-exec", "steps": [["{python}", "-c", SPAWN]]})
    assert proc.returncode == 0, log
    assert out["applied"] is True, log
    assert out["steps"][0]["out"] == "errno 1\n"
    got = decisions(tmp_path / "e2e.db")
    assert [(d["decision"]["verdict"], d["decision"]["rule"], d["decision"]["mode"]) for d in got] == [
        ("deny", "exec.deny:/bin/sh", "enforce")]
    assert "POLICY DENY [exec]" in log


def test_exec_deny_of_sh_runs_in_monitor_mode_and_records_would_deny(tmp_path):  # type: ignore[no-untyped-def]
    proc, out, log = run_policy(tmp_path, EXEC_POLICY, {"name": "e2e-exec", "steps": [["{python}", "-c", SPAWN]]},
                                mode="monitor")
    assert proc.returncode == 0, log
    assert out["applied"] is True, log
    assert out["steps"][0]["out"] == "0 shell-ran-23\n"
    got = decisions(tmp_path / "e2e.db")
    assert [(d["decision"]["verdict"], d["decision"]["rule"], d["decision"]["mode"]) for d in got] == [
        ("would_deny", "exec.deny:/bin/sh", "monitor")]
    assert "POLICY WOULD_DENY [exec]" in log


ROLE_POLICY = "id: role-23\nselector: {{container: [e2e-role]}}\n{role}tools:\n  allow: [read_file]\n"


@pytest.mark.parametrize(("role", "alerts"), [("model-server", 1), (None, 0)])
def test_the_selecting_policy_declares_the_role_rules_key_on(tmp_path, role, alerts):  # type: ignore[no-untyped-def]
    """A container without a role label is a model server because its policy says so."""
    policy = ROLE_POLICY.format(role=f"role: {role}\n" if role else "")
    proc, out, log = run_policy(tmp_path, policy, {"name": "e2e-role", "steps": [["{python}", "-c", SPAWN]]},
                                mode=None, rules=True)
    assert proc.returncode == 0, log
    assert out["steps"][0]["out"] == "0 shell-ran-23\n"
    res = rw("alerts", "--db", str(tmp_path / "e2e.db"), "--format", "json")
    got = [json.loads(line) for line in res.stdout.splitlines()]
    shells = [a for a in got if a["rule"] == "shell_spawned_by_model_server"]
    assert len(shells) == alerts, got
    assert [a["workload"].get("role") for a in shells] == ([role] if alerts else [])
    assert [a["workload"].get("name") for a in shells] == (["e2e-role"] if alerts else [])


HOST = """
import socket, sys
print(open('/proc/self/cgroup').read().strip().splitlines()[-1])
for port in (int(sys.argv[1]), int(sys.argv[2])):
    s = socket.socket()
    try:
        s.connect(('127.0.0.23' if port == int(sys.argv[1]) else '127.0.0.29', port)); print(port, 'connected')
    except OSError as e:
        print(port, 'errno', e.errno)
sys.exit(23)
"""


def test_command_runs_in_its_own_cgroup_under_its_policy(tmp_path, listeners):  # type: ignore[no-untyped-def]
    ok, bad = listeners["127.0.0.23"], listeners["127.0.0.29"]
    policy = f"id: cmd-23\nselector: {{process: ['*']}}\nmode: monitor\negress:\n  allow: ['127.0.0.23:{ok}']\n"
    proc, _out, log = run_policy(tmp_path, policy, {}, cmd=[sys.executable, "-c", HOST, str(ok), str(bad)])
    assert proc.returncode == 23, log
    first, *rest = proc.stdout.splitlines()
    assert first.startswith("0::/runwatch-run/") and first.split("/")[-1].isdigit()
    assert rest == [f"{ok} connected", f"{bad} errno 1"]
    assert not Path("/sys/fs/cgroup/unified" + first[3:]).exists()
    got = decisions(tmp_path / "e2e.db")
    assert [(d["decision"]["verdict"], d["decision"]["target"], d.get("container")) for d in got] == [
        ("deny", f"127.0.0.29:{bad}", None)]


def test_policy_errors_are_located_and_nothing_starts(tmp_path):  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nselector: {container: [a]}\nmode: sometimes\negress:\n  allow: ['10.0.0.1/8']\n")
    marker = tmp_path / "ran"
    res = rw("run", "--db", str(tmp_path / "x.db"), "--policy", str(bad), "--", "/usr/bin/touch", str(marker))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert all(line.startswith(f"{bad}:") for line in lines[:-1]) and len(lines) == 3
    assert lines[-1] == "runwatch: error: 2 error(s) in the policies; nothing was started"
    assert not marker.exists()


KILL_RULE = """
- rule: sleeper_23
  desc: a sleep that must not be left running
  condition: kind = process.exec and proc.exe = /usr/bin/sleep and proc.cmdline contains "2.3"
  output: "sleep %proc.cmdline"
  severity: high
  attack: [T1059]
  action: kill
- rule: tee_23
  desc: a tee that should be denied
  condition: kind = process.exec and proc.exe = /usr/bin/tee
  output: "tee %proc.cmdline"
  severity: medium
  attack: [T1059]
  action: deny
"""


@pytest.mark.parametrize("mode", ["enforce", "monitor"])
def test_rule_actions_kill_in_enforce_and_are_recorded(tmp_path, mode):  # type: ignore[no-untyped-def]
    (tmp_path / "rules.yaml").write_text(KILL_RULE)
    (tmp_path / "policy.yaml").write_text("id: host-23\nselector: {process: ['*']}\ntools: {deny: [x]}\n")
    script = "echo hi | /usr/bin/tee /dev/null >/dev/null; /usr/bin/sleep 2.3; echo rc=$?"
    res = subprocess.run([RUNWATCH, "run", "--db", str(tmp_path / "k.db"), "--rules", str(tmp_path / "rules.yaml"),
                          "--sdk-socket", str(tmp_path / "sock" / "sdk.sock"), "--control-socket",
                          str(tmp_path / "control.sock"), "--policy", str(tmp_path / "policy.yaml"), "--mode", mode,
                          "--", "/bin/sh", "-c", script], capture_output=True, text=True, timeout=90, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ("rc=137\n" if mode == "enforce" else "rc=0\n")
    got = decisions(tmp_path / "k.db")
    assert [(d["decision"]["verdict"], d["decision"]["rule"], d["exe"]) for d in got] == [
        ("would_deny", "rule:tee_23", "/usr/bin/tee"),
        ("kill" if mode == "enforce" else "would_deny", "rule:sleeper_23", "/usr/bin/sleep"),
    ]


def test_watch_applies_policies_to_containers_as_they_appear(tmp_path, listeners):  # type: ignore[no-untyped-def]
    import signal
    import time

    from runwatch.containers.rootfs import build_rootfs
    from runwatch.containers.runc import RuncContainer

    ok, bad = listeners["127.0.0.23"], listeners["127.0.0.29"]
    pdir = tmp_path / "policies"
    pdir.mkdir()
    (pdir / "a-net.yaml").write_text(f"id: watch-23\nselector: {{container: [e2e-watch]}}\nmode: enforce\n"
                                     f"egress:\n  allow: ['127.0.0.23:{ok}']\n")
    (pdir / "b-other.yaml").write_text("id: other\nselector: {container: [someone-else]}\nexec: {deny: [/bin/sh]}\n")
    log = tmp_path / "watch.log"
    args = [RUNWATCH, "watch", "--db", str(tmp_path / "w.db"), "--no-rules", "--sdk-socket",
            str(tmp_path / "sock" / "sdk.sock"), "--control-socket", str(tmp_path / "control.sock"),
            "--policy", str(pdir), "--duration", "60"]
    rootfs = build_rootfs()
    with open(log, "w") as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 20
        while "2 policy(ies) loaded" not in log.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            time.sleep(0.05)
        with RuncContainer(rootfs, name="e2e-watch") as c:
            c.start()
            applied = f"policy watch-23 (enforce) applied to container e2e-watch ({c.id})"
            deadline = time.monotonic() + 15
            while applied not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert applied in log.read_text(), log.read_text()
            probe = c.exec([str(rootfs.python), "-c", PROBE, "127.0.0.23", str(ok), "127.0.0.29", str(bad)])
            assert probe.stdout.decode() == "127.0.0.23 connected\n127.0.0.29 errno 1\n"
            cid = c.id
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0, log.read_text()
    got = decisions(tmp_path / "w.db")
    assert [(d["decision"]["verdict"], d["decision"]["target"], d["container"]["id"]) for d in got] == [
        ("deny", f"127.0.0.29:{bad}", cid)]
