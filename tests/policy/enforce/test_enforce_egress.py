"""Egress enforcement in real runc containers: cgroup connect/sendmsg programs on the live kernel."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runwatch.host import cgroup_v2, procfs
from runwatch.policy.enforce import EnforcementError, decision_event

pytestmark = pytest.mark.kernel

CONNECT = """
import json, socket, sys
out = []
for host, port, n in json.loads(sys.argv[1]):
    for _ in range(n):
        s = socket.socket()
        try:
            s.connect((host, port)); out.append(0)
        except OSError as e:
            out.append(e.errno)
        finally:
            s.close()
print(json.dumps(out))
"""


def connects(container, plan):  # type: ignore[no-untyped-def]
    proc = container.exec([str(container.rootfs.python), "-c", CONNECT, json.dumps(plan)])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_enforce_denies_unlisted_destination_with_eperm(runc_container, enforcers, decisions, tcp_port, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="egress-enforce")
    c.start()
    enforcers.apply(c, policy(f"id: eg-23\nmode: enforce\negress:\n  allow: ['127.0.0.1:{tcp_port}']\n"))
    result = connects(c, [["127.0.0.1", tcp_port, 3], ["127.0.0.2", tcp_port, 23], ["127.0.0.1", tcp_port + 1, 1]])
    assert result == [0] * 3 + [1] * 23 + [1]  # EPERM = 1
    denied = decisions.wait(lambda d: d.layer == "egress", 24)
    assert len(denied) == 24
    assert sorted({(d.dst_ip, d.dst_port) for d in denied}) == [("127.0.0.1", tcp_port + 1), ("127.0.0.2", tcp_port)]
    first = next(d for d in denied if d.dst_ip == "127.0.0.2")
    assert (first.verdict, first.policy_id, first.rule, first.mode, first.container_id, first.proto) == (
        "deny", "eg-23", "egress.default", "enforce", c.id, "tcp")
    assert first.cgroup_id == c.cgroup_id and first.comm == "python3"
    event = decision_event(first)
    assert event.kind == "policy.decision" and event.decision is not None
    assert (event.decision.verdict, event.decision.layer, event.decision.target) == (
        "deny", "egress", f"127.0.0.2:{tcp_port}")
    assert event.net is not None and (event.net.dst_ip, event.net.dst_port) == ("127.0.0.2", tcp_port)


def test_monitor_allows_and_records_would_deny(runc_container, enforcers, decisions, tcp_port, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="egress-monitor")
    c.start()
    enforcers.apply(c, policy(f"id: eg-mon\nmode: monitor\negress:\n  allow: ['127.0.0.0/31:{tcp_port}']\n"))
    assert connects(c, [["127.0.0.1", tcp_port, 5], ["127.0.0.9", tcp_port, 23]]) == [0] * 28
    seen = decisions.wait(lambda d: d.layer == "egress", 23)
    assert [(d.verdict, d.dst_ip) for d in seen] == [("would_deny", "127.0.0.9")] * 23


def test_udp_sendmsg_to_unlisted_destination_denied(runc_container, enforcers, decisions, udp_sink, policy):  # type: ignore[no-untyped-def]
    port = udp_sink.getsockname()[1]
    c = runc_container(name="egress-udp")
    c.start()
    enforcers.apply(c, policy(f"id: eg-udp\nmode: enforce\negress:\n  allow: ['127.0.0.1:{port}']\n"))
    code = (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"s.sendto(b'allowed-23', ('127.0.0.1', {port}))\n"
        "try:\n"
        f"    s.sendto(b'denied', ('127.0.0.1', {port + 1})); print('sent')\n"
        "except OSError as e:\n"
        "    print(e.errno)\n"
    )
    proc = c.exec([str(c.rootfs.python), "-c", code])
    assert proc.stdout == b"1\n", proc.stderr
    assert udp_sink.recvfrom(64)[0] == b"allowed-23"
    seen = decisions.wait(lambda d: d.layer == "egress", 1)
    assert [(d.verdict, d.proto, d.dst_port) for d in seen] == [("deny", "udp", port + 1)]


def test_host_names_resolve_and_learned_answers_allow(runc_container, enforcers, decisions, tcp_port, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="egress-hosts")
    c.start()
    enforcers.apply(c, policy(
        f"id: eg-host\nmode: enforce\negress:\n  allow: ['localhost:{tcp_port}', '*.example.test:{tcp_port}']\n"))
    assert connects(c, [["127.0.0.1", tcp_port, 1], ["127.0.0.5", tcp_port, 1]]) == [0, 1]
    assert enforcers.learn_dns("API.example.test.", ["127.0.0.5"]) == 1
    assert connects(c, [["127.0.0.5", tcp_port, 1], ["127.0.0.6", tcp_port, 1]]) == [0, 1]


def test_remove_restores_connectivity(runc_container, enforcers, tcp_port, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="egress-remove")
    c.start()
    enforcers.apply(c, policy("id: eg-none\nmode: enforce\negress:\n  allow: []\n"))
    assert connects(c, [["127.0.0.1", tcp_port, 1]]) == [1]
    enforcers.remove(c.id)
    assert connects(c, [["127.0.0.1", tcp_port, 1]]) == [0]
    assert enforcers.applied() == {}


def test_refuses_runwatch_own_cgroup(enforcers, policy):  # type: ignore[no-untyped-def]
    own = procfs.cgroup_path(os.getpid())
    assert own is not None

    class Own:
        id = "self"
        cgroup_dir = cgroup_v2().dir_of(own)
        cgroup_id = Path(cgroup_dir).stat().st_ino
        init_pid = os.getpid()

    with pytest.raises(EnforcementError, match="runwatch itself runs in"):
        enforcers.apply(Own(), policy("id: eg-self\nmode: enforce\negress:\n  allow: []\n"))
    assert enforcers.applied() == {}
