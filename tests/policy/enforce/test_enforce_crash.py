"""A SIGKILLed enforcer leaves nothing enforced."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.kernel

HOLDER = """
import json, sys, time
from pathlib import Path
from runwatch.policy import load_policy_texts
from runwatch.policy.enforce import Enforcers
spec = json.loads(sys.argv[1])

class T:
    id = spec["id"]
    cgroup_dir = Path(spec["cgroup_dir"])
    cgroup_id = spec["cgroup_id"]
    init_pid = spec["init_pid"]

pol = next(iter(load_policy_texts([(spec["policy"], "p.yaml")])))
enf = Enforcers().start()
print(json.dumps(enf.apply(T(), pol)), flush=True)
time.sleep(600)
"""

CONNECT = ("import socket, sys\ns = socket.socket()\n"
           "try:\n    s.connect(('127.0.0.1', int(sys.argv[1]))); print(0)\n"
           "except OSError as e:\n    print(e.errno)\n")


def test_sigkill_of_the_enforcer_leaves_nothing_enforced(runc_container, tcp_port):  # type: ignore[no-untyped-def]
    c = runc_container(name="crash", secrets={"token": b"crash-23"})
    c.start()
    py = str(c.rootfs.python)
    text = ("id: crash\nselector: {container: [crash]}\nmode: enforce\negress:\n  allow: []\n"
            "files:\n  protect: [{path: /run/secrets/token}]\nexec:\n  deny: [/usr/bin/env]\n  action: kill\n")
    spec = {"id": c.id, "cgroup_dir": str(c.cgroup_dir), "cgroup_id": c.cgroup_id, "init_pid": c.init_pid,
            "policy": text}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, json.dumps(spec)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        assert holder.stdout is not None
        assert json.loads(holder.stdout.readline() or b"null") == [], holder.stderr.read1() if holder.stderr else b""
        assert c.exec([py, "-c", CONNECT, str(tcp_port)]).stdout == b"1\n"
        assert c.exec(["/bin/busybox", "cat", "/run/secrets/token"]).returncode == 1
        assert c.exec(["/usr/bin/env", "true"]).returncode == 137
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and c.exec([py, "-c", CONNECT, str(tcp_port)]).stdout != b"0\n":
        time.sleep(0.05)  # link release is asynchronous in the kernel
    assert c.exec([py, "-c", CONNECT, str(tcp_port)]).stdout == b"0\n"
    assert c.exec(["/bin/busybox", "cat", "/run/secrets/token"]).stdout == b"crash-23"
    assert c.exec(["/usr/bin/env", "true"]).returncode == 0
