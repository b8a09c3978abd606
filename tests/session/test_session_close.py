"""After ``Session.close()`` nothing of the session remains, for every combination of sources.

Checked in this process, against a snapshot taken just before the session starts: BPF file
descriptors (programs, maps, links), sockets (and the socket files and OTLP port it bound),
threads, child processes, the command's run cgroup, and every BPF program the session loaded is gone from the kernel
(so none is left attached to a cgroup either).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from runwatch.session import Session, SessionOptions
from runwatch.testing.pytest_plugin import turns

BPFTOOL = "bpftool"


@dataclass(frozen=True)
class Held:
    """What this process holds at one instant."""

    bpf_fds: tuple[str, ...]
    sockets: int
    threads: frozenset[int]
    children: frozenset[int]


def held() -> Held:
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue  # the descriptor of the listing itself
    children: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            children.update(int(p) for p in Path(f"/proc/self/task/{task}/children").read_text().split())
        except OSError:
            continue
    return Held(bpf_fds=tuple(sorted(link for link in links if link.startswith("anon_inode:bpf"))),
                sockets=sum(link.startswith("socket:") for link in links),
                threads=frozenset(t.ident for t in threading.enumerate() if t.ident is not None),
                children=frozenset(children))


def our_programs() -> set[int]:
    """Ids of the BPF programs this process holds, through program or link descriptors (fdinfo)."""
    ids: set[int] = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            info = Path(f"/proc/self/fdinfo/{fd}").read_text()
        except OSError:
            continue
        for line in info.splitlines():
            key, _, value = line.partition(":")
            if key == "prog_id":
                ids.add(int(value))
    return ids


def loaded_programs() -> set[int]:
    out = subprocess.run([BPFTOOL, "-j", "prog", "show"], capture_output=True, text=True, check=True).stdout
    return {p["id"] for p in json.loads(out)}


def cgroup_attached() -> set[int]:
    out = subprocess.run([BPFTOOL, "-j", "cgroup", "tree"], capture_output=True, text=True, check=True).stdout
    ids: set[int] = set()
    for entry in json.loads(out or "[]"):
        for prog in entry.get("programs", []):
            ids.add(prog["id"])
    return ids


def refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


SYSTEMS = ("kernel", "proc")
COMBOS = [(system, sdk, otlp, policy) for system in SYSTEMS
          for sdk, otlp, policy in itertools.product((False, True), repeat=3)]


def _id(combo: tuple[str, bool, bool, bool]) -> str:
    system, sdk, otlp, policy = combo
    return "+".join([system] + [n for n, on in (("sdk", sdk), ("otlp", otlp), ("policy", policy)) if on])


@pytest.mark.kernel
@pytest.mark.parametrize("combo", COMBOS, ids=[_id(c) for c in COMBOS])
def test_close_leaves_nothing_behind(tmp_path: Path, combo: tuple[str, bool, bool, bool]) -> None:
    system, sdk, otlp, policy = combo
    sock_dir = tmp_path / "run"
    opts = SessionOptions(db=str(tmp_path / "close.db"), source=system, track_self=True, live_alerts=False,
                          sdk_socket=str(sock_dir / "sdk.sock") if sdk else None,
                          otlp_listen=("127.0.0.1", 0) if otlp else None,
                          control_socket=str(sock_dir / "control.sock"), own_cgroup=policy)
    if policy:
        pfile = tmp_path / "p.yaml"
        pfile.write_text("id: close-23\nselector: {process: ['*']}\nmode: enforce\n"
                         "egress:\n  allow: ['127.0.0.23:9']\nexec:\n  deny: ['/usr/bin/nc*']\n")
        opts.policy_paths = (str(pfile),)
    with contextlib.ExitStack() as stack:
        if policy and not sdk:  # the decide socket's default path: one such session on the machine at a time
            stack.enter_context(turns("/run/runwatch-tests-default-decide.lock"))
        _close_leaves_nothing_behind(tmp_path, sock_dir, system, sdk, otlp, policy, opts)


def _close_leaves_nothing_behind(tmp_path: Path, sock_dir: Path, system: str, sdk: bool, otlp: bool, policy: bool,
                                 opts: SessionOptions) -> None:
    before = held()
    # programs this worker already holds (the live sensor shared by earlier tests) are not the session's
    held_before = our_programs()
    session = Session(opts).start(["close-test"])
    try:
        chosen = session.summary()["source"]
        assert chosen.split("+")[0] == system
        assert chosen.split("+")[1:] == [n for n, on in (("sdk", sdk), ("otlp", otlp), ("policy", policy)) if on]
        assert session.spawn(["/bin/true"]).wait() == 0
        progs = our_programs() - held_before
        if system == "kernel":
            assert len(progs) >= 11, progs  # the sensor's programs are really loaded
        run_cgroup = None
        if policy and session.policy is not None and session.policy.cmd_cgroup is not None:
            assert progs & cgroup_attached(), "the policy's programs were never attached to the command's cgroup"
            run_cgroup = session.policy.cmd_cgroup.dir
            assert run_cgroup.is_dir()
        endpoint = session.sources.otlp_endpoint if session.sources is not None else None
        during = held()
        assert during.bpf_fds != before.bpf_fds or (system == "proc" and not policy)
    finally:
        summary = session.close()
    assert "errors" not in summary, summary["errors"]
    after = held()
    assert after.bpf_fds == before.bpf_fds, "BPF descriptors left open"
    assert after.sockets == before.sockets, "sockets left open"
    assert after.threads == before.threads, f"threads left: {[t.name for t in threading.enumerate()]}"
    assert after.children == before.children, "child processes left"
    assert not (sock_dir / "sdk.sock").exists() and not (sock_dir / "policy.sock").exists()
    assert not (sock_dir / "control.sock").exists()
    assert run_cgroup is None or not run_cgroup.exists(), f"run cgroup {run_cgroup} left behind"
    if endpoint is not None:
        assert refused(int(endpoint.rsplit(":", 1)[1])), f"{endpoint} still accepts connections"
    deadline = time.monotonic() + 5.0  # programs are freed after an RCU grace period
    while progs & loaded_programs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not progs & loaded_programs(), "BPF programs of the session are still loaded"
    assert not progs & cgroup_attached()
