"""Raw IP and AF_PACKET sockets under an egress policy, in real runc containers on the live kernel.

Destination checks (cgroup connect/sendmsg) never see a raw or packet socket's traffic, so
the policy decides on the socket itself: raw IP sockets are refused at creation
(cgroup/sock_create, EPERM), AF_PACKET sockets, which no cgroup hook sees, kill the process
that asks for one (by socket(), or an io_uring IORING_OP_SOCKET).
"""

from __future__ import annotations

import inspect
import json

import pytest

from runwatch.policy.enforce import decision_event
from runwatch.testing import uring

pytestmark = pytest.mark.kernel

SOCKETS = """
import json, socket, sys
out = []
for fam, typ, proto, n in json.loads(sys.argv[1]):
    for _ in range(n):
        try:
            socket.socket(fam, typ, proto).close(); out.append(0)
        except OSError as e:
            out.append(e.errno)
print(json.dumps(out), flush=True)
"""

AF_INET, AF_INET6, AF_PACKET = 2, 10, 17
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW = 1, 2, 3
ICMP, ICMPV6, ETH_P_ALL = 1, 58, 0x0300  # ETH_P_ALL in network order, as socket() takes it
PLAN = [[AF_INET, SOCK_RAW, ICMP, 5], [AF_INET6, SOCK_RAW, ICMPV6, 3], [AF_INET, SOCK_STREAM, 0, 7],
        [AF_INET, SOCK_DGRAM, 0, 1]]


def sockets(container, plan):  # type: ignore[no-untyped-def]
    proc = container.exec([str(container.rootfs.python), "-c", SOCKETS, json.dumps(plan)])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_raw_sockets_are_refused_with_eperm_and_recorded(runc_container, enforcers, decisions, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="sock-raw")
    c.start()
    assert sockets(c, PLAN) == [0] * 16  # the container may open raw sockets (CAP_NET_RAW) ...
    enforcers.apply(c, policy("id: sk-23\nmode: enforce\negress:\n  allow: ['127.0.0.1']\n"))
    assert sockets(c, PLAN) == [1] * 8 + [0] * 8  # ... until the policy is applied (EPERM = 1)
    seen = decisions.wait(lambda d: d.rule == "egress.sockets", 8)
    assert [(d.verdict, d.target) for d in seen] == (
        [("deny", "socket(AF_INET, SOCK_RAW, 1)")] * 5 + [("deny", "socket(AF_INET6, SOCK_RAW, 58)")] * 3)
    first = seen[0]
    assert (first.policy_id, first.layer, first.mode, first.container_id, first.cgroup_id, first.comm) == (
        "sk-23", "egress", "enforce", c.id, c.cgroup_id, "python3")
    event = decision_event(first)
    assert event.decision is not None and (event.decision.verdict, event.decision.rule) == ("deny", "egress.sockets")


def test_monitor_lets_raw_sockets_open_and_records_would_deny(runc_container, enforcers, decisions, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="sock-mon")
    c.start()
    enforcers.apply(c, policy("id: sk-mon\nmode: monitor\negress:\n  allow: []\n"))
    assert sockets(c, PLAN) == [0] * 16
    seen = decisions.wait(lambda d: d.rule == "egress.sockets", 8)
    assert [d.verdict for d in seen] == ["would_deny"] * 8


def test_a_policy_may_allow_raw_sockets(runc_container, enforcers, decisions, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="sock-allow")
    c.start()
    enforcers.apply(c, policy("id: sk-ok\nmode: enforce\negress:\n  allow: []\n  sockets: [raw]\n"))
    assert sockets(c, PLAN) == [0] * 16
    assert decisions.wait(lambda d: d.rule == "egress.sockets", 1, timeout=0.5) == []


PACKET = """
import socket
print("before", flush=True)
s = socket.socket(17, socket.SOCK_RAW, 0x0300)
print("survived", flush=True)
"""

URING_PACKET = inspect.getsource(uring) + """
ring = Ring()
print("before", flush=True)
res = ring.submit(45, 17, 0, off=3, length=0x0300)  # IORING_OP_SOCKET: fd=domain, off=type, len=protocol
print("survived", res, flush=True)
"""


@pytest.mark.parametrize("how", ["socket", "io_uring"])
def test_an_af_packet_socket_kills_the_process_that_asks(runc_container, enforcers, decisions, policy, how):  # type: ignore[no-untyped-def]
    c = runc_container(name=f"sock-pkt-{how.replace('_', '')}")
    c.start()
    code = PACKET if how == "socket" else URING_PACKET
    free = c.exec([str(c.rootfs.python), "-c", code])
    assert free.returncode == 0 and free.stdout.split()[:2] == [b"before", b"survived"], free.stderr
    enforcers.apply(c, policy("id: sk-pkt\nmode: enforce\negress:\n  allow: []\n"))
    killed = c.exec([str(c.rootfs.python), "-c", code])
    assert killed.returncode in (-9, 137) and killed.stdout == b"before\n", (killed.returncode, killed.stderr)
    seen = decisions.wait(lambda d: d.rule == "egress.sockets", 1)
    assert [(d.verdict, d.target, d.proto) for d in seen] == [("kill", "socket(AF_PACKET, SOCK_RAW, 768)", "packet")]


def test_af_packet_allowed_or_monitored_is_not_killed(runc_container, enforcers, decisions, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="sock-pkt-ok")
    c.start()
    enforcers.apply(c, policy("id: sk-pm\nmode: monitor\negress:\n  allow: []\n"))
    for _ in range(3):
        res = c.exec([str(c.rootfs.python), "-c", PACKET])
        assert res.returncode == 0 and res.stdout == b"before\nsurvived\n", res.stderr
    assert [d.verdict for d in decisions.wait(lambda d: d.rule == "egress.sockets", 3)] == ["would_deny"] * 3
    enforcers.apply(c, policy("id: sk-pa\nmode: enforce\negress:\n  allow: []\n  sockets: [packet]\n"))
    res = c.exec([str(c.rootfs.python), "-c", PACKET])
    assert res.returncode == 0 and res.stdout == b"before\nsurvived\n", res.stderr
