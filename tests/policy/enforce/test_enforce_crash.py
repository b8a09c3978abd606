"""A SIGKILLed enforcer fails in the direction its policy declares.

``fail: open``: everything lifts with the process. ``fail: closed``: the links stay pinned
(egress is still refused), and once the heartbeat is 2 s old every task of the container
is killed at its next system call, so nothing runs unwatched; a new enforcer adopts the
pins (releases them after applying its own policy) and the container is governed again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from urllib.parse import quote

import pytest

from runwatch.bpf.pins import ROOT as PIN_ROOT
from runwatch.containers.runc import ContainerError

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


POLICY = ("id: crash\nselector: {{container: [crash]}}\nmode: enforce\nfail: {fail}\negress:\n  allow: []\n"
          "files:\n  protect: [{{path: /run/secrets/token}}]\nexec:\n  deny: [/usr/bin/env]\n  action: kill\n")


def enforce_then_sigkill(c, tcp_port, fail):  # type: ignore[no-untyped-def]
    """Apply the policy from a holder process, check it holds, SIGKILL the holder; returns its pid."""
    py = str(c.rootfs.python)
    spec = {"id": c.id, "cgroup_dir": str(c.cgroup_dir), "cgroup_id": c.cgroup_id, "init_pid": c.init_pid,
            "policy": POLICY.format(fail=fail)}
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
    return holder.pid


def test_sigkill_of_the_enforcer_lifts_a_fail_open_policy(runc_container, tcp_port, pin_adoption):  # type: ignore[no-untyped-def]
    c = runc_container(name="crash", secrets={"token": b"crash-23"})
    c.start()
    py = str(c.rootfs.python)
    pid = enforce_then_sigkill(c, tcp_port, "open")
    assert list(PIN_ROOT.glob(f"{pid}-*")) == []  # nothing was pinned
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and c.exec([py, "-c", CONNECT, str(tcp_port)]).stdout != b"0\n":
        time.sleep(0.05)  # link release is asynchronous in the kernel
    assert c.exec([py, "-c", CONNECT, str(tcp_port)]).stdout == b"0\n"
    assert c.exec(["/bin/busybox", "cat", "/run/secrets/token"]).stdout == b"crash-23"
    assert c.exec(["/usr/bin/env", "true"]).returncode == 0


def blocked(c, args):  # type: ignore[no-untyped-def]
    """Run ``args`` in the container; True when it was killed before doing anything."""
    try:
        res = c.exec(args, timeout=20)
    except ContainerError:
        return True  # runc's own init was killed on entering the container's cgroup
    return res.returncode != 0 and res.stdout == b""


def test_sigkill_of_the_enforcer_keeps_a_fail_closed_policy_until_adopted(runc_container, tcp_port, pin_adoption):  # type: ignore[no-untyped-def]
    from runwatch.policy import load_policy_texts
    from runwatch.policy.enforce import Enforcers

    c = runc_container(name="crash", secrets={"token": b"crash-23"})
    c.start()
    py = str(c.rootfs.python)
    pid = enforce_then_sigkill(c, tcp_port, "closed")
    pins = list(PIN_ROOT.glob(f"{pid}-*"))
    assert len(pins) == 1
    rel = quote(c.cgroup_path, safe="")
    names = sorted(p.name for p in pins[0].iterdir())
    assert {"enf_exec", "enf_sys_enter", f"cg={rel}=enf_connect4", f"cg={rel}=enf_sendmsg6"} <= set(names), names
    try:
        first = c.exec([py, "-c", CONNECT, str(tcp_port)]).stdout
    except ContainerError:
        first = b""
    assert first in (b"1\n", b"")  # refused by the pinned link, or already killed: never connected
    time.sleep(2.5)  # the heartbeat is stale now
    for args in ([py, "-c", CONNECT, str(tcp_port)], ["/bin/busybox", "cat", "/run/secrets/token"],
                 ["/usr/bin/env", "true"], ["/bin/busybox", "true"]):
        assert blocked(c, args), args
    enf = Enforcers().start()
    try:
        pol = next(iter(load_policy_texts([(POLICY.format(fail="closed"), "p.yaml")])))
        assert enf.apply(c, pol) == []
        adopted = enf.adopt()
        assert [(s.pid, s.cgroups()) for s in adopted] == [(pid, [c.cgroup_path])]
        assert not pins[0].exists()
        assert c.exec([py, "-c", CONNECT, str(tcp_port)]).stdout == b"1\n"  # governed by the new enforcer
        assert c.exec(["/bin/busybox", "cat", "/run/secrets/token"]).returncode == 1
        assert c.exec(["/usr/bin/env", "true"]).returncode == 137
        assert c.exec(["/bin/busybox", "true"]).returncode == 0
        mine = list(PIN_ROOT.glob(f"{os.getpid()}-*"))
        assert len(mine) == 1
    finally:
        enf.stop()
    assert not mine[0].exists()  # a clean stop leaves nothing pinned
    assert c.exec([py, "-c", CONNECT, str(tcp_port)]).stdout == b"0\n"
