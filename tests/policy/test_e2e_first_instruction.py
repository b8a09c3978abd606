"""A container's policy is in force from its entrypoint's first instruction.

``runwatch run --policy`` over a driver that starts runc containers one after another,
each of whose entrypoint tries every denied action at once: read the protected secret,
run the denied shell, send UDP to a denied address. The kernel holds each new container
at its first exec until its policy is bound, so every attempt is denied and recorded;
in monitor mode every attempt runs and is recorded as ``would_deny``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.kernel

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))

ENTRY = """
import json, socket, subprocess
out = {}
try:
    open('/run/secrets/token').read(); out['secret'] = 'read'
except OSError as e:
    out['secret'] = e.errno
try:
    out['shell'] = subprocess.run(['/bin/sh', '-c', 'true']).returncode
except OSError as e:
    out['shell'] = 'errno %d' % e.errno
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.sendto(b'x', ('127.0.0.29', 9)); out['udp'] = 'sent'
except OSError as e:
    out['udp'] = e.errno
print(json.dumps(out))
"""

DRIVER = """
import json, sys
from runwatch.containers.rootfs import build_rootfs
from runwatch.containers.runc import RuncContainer
rootfs = build_rootfs()
out = []
for i in range(int(sys.argv[2])):
    with RuncContainer(rootfs, name=f"{sys.argv[1]}-{i}", secrets={"token": b"t-23"}) as c:
        res = c.run([str(rootfs.python), "-c", sys.argv[3]], timeout=30)
        out.append([c.id, res.returncode, res.stdout.decode().strip(), res.stderr.decode()[-300:]])
print(json.dumps(out))
"""

POLICY = """
id: first-23
selector: {container: ["early-*"]}
mode: enforce
fail: closed
egress:
  allow: ['127.0.0.23:9']
files:
  protect:
    - path: /run/secrets/token
      readers: [/usr/bin/true]
exec:
  deny: [/bin/sh]
"""


def run_starts(tmp: Path, prefix: str, n: int, *mode: str) -> tuple[list[list[Any]], str, list[dict[str, Any]]]:
    (tmp / "policy.yaml").write_text(POLICY)
    db = tmp / "first.db"
    args = [RUNWATCH, "run", "--db", str(db), "--no-rules", "--sdk-socket", str(tmp / "sock" / "sdk.sock"),
            "--control-socket", str(tmp / "control.sock"), "--policy", str(tmp / "policy.yaml"), *mode,
            "--", sys.executable, "-c", DRIVER, prefix, str(n), ENTRY]
    with open(tmp / "runwatch.log", "w") as err:
        proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=err, text=True, timeout=300, check=False)
    log = (tmp / "runwatch.log").read_text()
    assert proc.returncode == 0, log
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    ev = subprocess.run([RUNWATCH, "events", "--db", str(db), "--kind", "policy.decision", "--format", "json"],
                        capture_output=True, text=True, timeout=60, check=True)
    return got, log, [json.loads(line) for line in ev.stdout.splitlines()]


def test_fifty_one_container_starts_are_denied_from_the_first_instruction(tmp_path):  # type: ignore[no-untyped-def]
    n = 51
    got, log, decisions = run_starts(tmp_path, "early", n)
    results = [json.loads(out) if out else {"rc": rc, "err": err} for _cid, rc, out, err in got]
    assert results == [{"secret": 1, "shell": "errno 1", "udp": 1}] * n, log
    ids = [cid for cid, *_ in got]
    per_container: dict[str, set[tuple[str, str]]] = {cid: set() for cid in ids}
    for d in decisions:
        cid = d.get("container", {}).get("id")
        if cid in per_container and d["decision"]["verdict"] == "deny":
            per_container[cid].add((d["decision"]["layer"], d["decision"]["rule"]))
    want = {("file", "files.protect:/run/secrets/token"), ("exec", "exec.deny:/bin/sh"),
            ("egress", "egress.default")}
    assert {cid: rules for cid, rules in per_container.items() if rules != want} == {}
    assert log.count("(enforce) applied to container early-") == n


def test_monitor_mode_records_what_the_entrypoint_does_first(tmp_path):  # type: ignore[no-untyped-def]
    n = 7
    got, log, decisions = run_starts(tmp_path, "early", n, "--mode", "monitor")
    assert [json.loads(out) for _cid, _rc, out, _err in got] == [{"secret": "read", "shell": 0, "udp": "sent"}] * n
    ids = {cid for cid, *_ in got}
    seen: dict[str, set[str]] = {}
    for d in decisions:
        cid = d.get("container", {}).get("id")
        if cid in ids and d["decision"]["verdict"] == "would_deny":
            seen.setdefault(cid, set()).add(d["decision"]["layer"])
    assert seen == {cid: {"file", "exec", "egress"} for cid in ids}, log


def test_a_denied_entrypoint_is_killed_before_its_first_instruction(tmp_path):  # type: ignore[no-untyped-def]
    n = 3
    shell = "import subprocess, sys; sys.exit(subprocess.run(['/bin/sh', '-c', 'echo shell-ran']).returncode)"
    # the driver's entrypoint is python; make the container's init the shell itself
    entry_driver = DRIVER.replace('[str(rootfs.python), "-c", sys.argv[3]]', '["/bin/sh", "-c", "echo ran-23"]')
    (tmp_path / "policy.yaml").write_text(POLICY)
    db = tmp_path / "first.db"
    args = [RUNWATCH, "run", "--db", str(db), "--no-rules", "--sdk-socket", str(tmp_path / "sock" / "sdk.sock"),
            "--control-socket", str(tmp_path / "control.sock"), "--policy", str(tmp_path / "policy.yaml"),
            "--", sys.executable, "-c", entry_driver, "early", str(n), shell]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [(rc, out) for _cid, rc, out, _err in got] == [(137, "")] * n, proc.stderr
    ev = subprocess.run([RUNWATCH, "events", "--db", str(db), "--kind", "policy.decision", "--format", "json"],
                        capture_output=True, text=True, timeout=60, check=True)
    kills = [json.loads(line) for line in ev.stdout.splitlines()]
    assert sorted((d["container"]["id"], d["decision"]["verdict"], d["decision"]["rule"]) for d in kills) == sorted(
        (cid, "kill", "exec.deny:/bin/sh") for cid, *_ in got)
    assert {d["decision"]["reason"] for d in kills} == {
        "the container's first program is not allowed by the exec policy (it was executed before the policy was "
        "bound); killed before its first instruction"}


def test_containers_no_policy_selects_run_untouched_while_others_are_held(tmp_path):  # type: ignore[no-untyped-def]
    n = 5
    got, log, decisions = run_starts(tmp_path, "other", n)
    assert [json.loads(out) for _cid, _rc, out, _err in got] == [{"secret": "read", "shell": 0, "udp": "sent"}] * n
    assert decisions == [] and "applied to container" not in log
