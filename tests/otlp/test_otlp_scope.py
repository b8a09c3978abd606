"""A span may name only processes of its sender: real sender processes in real cgroups, real HTTP.

The receiver finds the process holding the other end of each connection (``/proc/net/tcp``
inode -> ``/proc/*/fd``); a ``process.pid`` outside that process's cgroup subtree or pid
namespace is dropped and counted as ``foreign_pid``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from runwatch.host import cgroup_v2_if_any, procfs
from runwatch.host.sockets import tcp_peer_pids
from runwatch.sensors.ingest.otlp import OtlpReceiver
from runwatch.testing.sources import drain

FIXTURES = Path(__file__).parent / "fixtures"

#: Posts each body file named on a stdin line to the receiver, printing each status.
SENDER = r"""
import http.client, sys
port = int(sys.argv[1])
for line in sys.stdin:
    body = open(line.strip(), "rb").read()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/v1/traces", body=body,
                 headers={"Content-Type": "application/x-protobuf", "Content-Length": str(len(body))})
    resp = conn.getresponse()
    resp.read()
    print(resp.status, flush=True)
    conn.close()
"""


def naming(pid: int) -> bytes:
    request = ExportTraceServiceRequest.FromString((FIXTURES / "agent_trace.pb").read_bytes())
    for rs in request.resource_spans:
        attrs = [kv for kv in rs.resource.attributes if kv.key not in ("process.pid", "container.id")]
        del rs.resource.attributes[:]
        rs.resource.attributes.extend(attrs)
        rs.resource.attributes.append(KeyValue(key="process.pid", value=AnyValue(int_value=pid)))
    return request.SerializeToString()  # type: ignore[no-any-return]


class Cgroups:
    """Child cgroups of one test, made under the v2 root and removed (processes moved back) after."""

    def __init__(self) -> None:
        found = cgroup_v2_if_any()
        if found is None:
            pytest.skip("no cgroup v2 hierarchy")
        self.v2 = found
        self.top = found.dir_of(f"/runwatch-otlp-scope-{os.getpid()}")
        self.made: list[Path] = []

    def make(self, rel: str) -> Path:
        d = self.top
        for part in ["", *rel.split("/")]:
            d = d / part if part else d
            if not d.exists():
                d.mkdir()
                self.made.append(d)
        return d

    def move(self, pid: int, cgroup_dir: Path) -> None:
        (cgroup_dir / "cgroup.procs").write_text(str(pid))

    def remove(self) -> None:
        home = self.v2.dir_of(procfs.cgroup_path(os.getpid()) or "/") / "cgroup.procs"
        for d in reversed(self.made):
            with contextlib.suppress(OSError):
                for pid in (d / "cgroup.procs").read_text().split():
                    home.write_text(pid)
            with contextlib.suppress(OSError):
                d.rmdir()


@pytest.fixture
def cgroups() -> Iterator[Cgroups]:
    cg = Cgroups()
    try:
        yield cg
    finally:
        cg.remove()


#: Connects to (host, port) of argv, then half-closes after the first stdin line and waits for EOF.
CLIENT = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
print("connected", flush=True)
sys.stdin.readline()
s.shutdown(socket.SHUT_WR)
print("half-closed", flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize(("listen", "connect"), [("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("::", "127.0.0.1")])
def test_peer_of_a_loopback_connection_is_the_process_holding_it(listen: str, connect: str) -> None:
    if ":" in listen and not socket.has_ipv6:
        pytest.skip("no IPv6")
    server = socket.create_server((listen, 0), family=socket.AF_INET6 if ":" in listen else socket.AF_INET,
                                  dualstack_ipv6=listen == "::")
    child = subprocess.Popen([sys.executable, "-c", CLIENT, connect, str(server.getsockname()[1])],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline() == "connected\n"
        conn, addr = server.accept()
        local = conn.getsockname()
        assert tcp_peer_pids(local, addr) == [child.pid]
        assert tcp_peer_pids(local, (addr[0], 1)) == []
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline() == "half-closed\n"
        assert tcp_peer_pids(local, addr) == [child.pid]  # a client that half-closed is still the peer
        conn.close()
    finally:
        child.communicate("", timeout=10)
        server.close()


def test_span_naming_a_process_in_another_cgroup_is_not_attributed(cgroups: Cgroups, tmp_path: Path) -> None:
    rx = OtlpReceiver("127.0.0.1", 0)
    rx.start()
    own, inner, other = cgroups.make("agent"), cgroups.make("agent/tool"), cgroups.make("host-job")
    victim = subprocess.Popen(["sleep", "60"])
    helper = subprocess.Popen(["sleep", "60"])
    sender = subprocess.Popen([sys.executable, "-c", SENDER, str(rx.port)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        cgroups.move(victim.pid, other)
        cgroups.move(helper.pid, inner)
        cgroups.move(sender.pid, own)
        bodies = []
        for i, pid in enumerate((victim.pid, sender.pid, helper.pid)):
            path = tmp_path / f"{i}.pb"
            path.write_bytes(naming(pid))
            bodies.append(str(path))
        out, _ = sender.communicate("\n".join(bodies) + "\n", timeout=30)
        assert out.split() == ["200", "200", "200"]
        events = drain(rx)
        assert len(events) == 27
        foreign, mine, below = events[:9], events[9:18], events[18:]
        for e in foreign:
            assert (e.pid, e.vpid, e.pidns, e.cgroup_id, e.container) == (0, victim.pid, None, None, None)
            assert e.attrs is not None and e.attrs["foreign_pid"] is True
            assert e.attrs["pid_unresolved"] == (
                f"process {victim.pid} is outside the sender's cgroup "
                f"{cgroups.v2.rel(own)} (it runs in {cgroups.v2.rel(other)})")
        for e, pid, cg in [(e, sender.pid, own) for e in mine] + [(e, helper.pid, inner) for e in below]:
            assert (e.pid, e.vpid, e.cgroup_id) == (pid, pid, os.stat(cg).st_ino)
            assert e.attrs is not None and "foreign_pid" not in e.attrs and "pid_unresolved" not in e.attrs
        stats = rx.stats()
        assert (stats["requests"], stats["foreign_pid"], stats["pid_unresolved"]) == (3, 9, 9)
    finally:
        for p in (victim, helper, sender):
            p.kill()
            p.wait()
        rx.stop()


def test_a_host_sender_still_names_its_own_processes() -> None:
    rx = OtlpReceiver("127.0.0.1", 0)
    rx.start()
    try:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", rx.port, timeout=10)
        body = naming(os.getpid())
        conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf",
                                                               "Content-Length": str(len(body))})
        assert conn.getresponse().status == 200
        conn.close()
        events = drain(rx)
        assert {e.pid for e in events} == {os.getpid()} and len(events) == 9
        assert rx.stats()["foreign_pid"] == 0
    finally:
        rx.stop()


@pytest.fixture
def netns() -> Iterator[tuple[str, str, str]]:
    """A network namespace joined to this one by a veth pair: (name, host address, namespace address)."""
    tag = f"{os.getpid() % 100000}"
    name, host_if, ns_if = f"rwotlp-{tag}", f"rwo{tag}a", f"rwo{tag}b"
    host_ip, ns_ip = "10.231.23.1", "10.231.23.2"
    steps = [["ip", "netns", "add", name],
             ["ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if],
             ["ip", "link", "set", ns_if, "netns", name],
             ["ip", "addr", "add", f"{host_ip}/30", "dev", host_if], ["ip", "link", "set", host_if, "up"],
             ["ip", "netns", "exec", name, "ip", "addr", "add", f"{ns_ip}/30", "dev", ns_if],
             ["ip", "netns", "exec", name, "ip", "link", "set", ns_if, "up"],
             ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"]]
    try:
        for step in steps:
            res = subprocess.run(step, capture_output=True, text=True, timeout=10)
            if res.returncode != 0:
                pytest.skip(f"cannot set up a network namespace: {' '.join(step)}: {res.stderr.strip()}")
        yield name, host_ip, ns_ip
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


#: Posts each body file named on a stdin line with a bearer token, printing each status.
TOKEN_SENDER = SENDER.replace('"Content-Length": str(len(body))}', '"Content-Length": str(len(body)), '
                              '"Authorization": "Bearer " + sys.argv[3]}').replace(
    'HTTPConnection("127.0.0.1", port', 'HTTPConnection(sys.argv[2], port')


def test_a_sender_in_another_network_namespace_is_found(netns: tuple[str, str, str], cgroups: Cgroups,
                                                        tmp_path: Path) -> None:
    name, host_ip, _ = netns
    rx = OtlpReceiver(host_ip, 0, token="bridge-token-23")
    rx.start()
    own = cgroups.make("bridged-agent")
    sender = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", TOKEN_SENDER, str(rx.port),
                               host_ip, "bridge-token-23"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        # `ip netns exec` execs the interpreter in place: the pid is the sender's.
        cgroups.move(sender.pid, own)
        mine, host = tmp_path / "mine.pb", tmp_path / "host.pb"
        mine.write_bytes(naming(sender.pid))
        host.write_bytes(naming(os.getpid()))
        out, _ = sender.communicate(f"{mine}\n{host}\n", timeout=30)
        assert out.split() == ["200", "200"]
        events = drain(rx)
        assert len(events) == 18
        assert {e.pid for e in events[:9]} == {sender.pid}
        assert {(e.pid, bool(e.attrs and e.attrs.get("foreign_pid"))) for e in events[9:]} == {(0, True)}
        assert rx.stats()["foreign_pid"] == 9
    finally:
        sender.kill()
        sender.wait()
        rx.stop()


#: Posts each body file named on a stdin line over the unix socket argv[1], printing each status.
UNIX_SENDER = r"""
import http.client, socket, sys

class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(sys.argv[1])

for line in sys.stdin:
    body = open(line.strip(), "rb").read()
    conn = Unix("localhost", timeout=10)
    conn.request("POST", "/v1/traces", body=body,
                 headers={"Content-Type": "application/x-protobuf", "Content-Length": str(len(body))})
    resp = conn.getresponse()
    resp.read()
    print(resp.status, flush=True)
    conn.close()
"""


def test_unix_socket_receiver_knows_its_sender_from_the_kernel(cgroups: Cgroups, tmp_path: Path) -> None:
    path = tmp_path / "otlp" / "otlp.sock"
    rx = OtlpReceiver(f"unix:{path}", 0)
    assert rx.endpoint == f"unix:{path}"
    rx.start()
    own, other = cgroups.make("unix-agent"), cgroups.make("unix-other")
    victim = subprocess.Popen(["sleep", "60"])
    sender = subprocess.Popen([sys.executable, "-c", UNIX_SENDER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert oct(path.stat().st_mode & 0o777) == "0o666"
        cgroups.move(victim.pid, other)
        cgroups.move(sender.pid, own)
        mine, foreign = tmp_path / "mine.pb", tmp_path / "foreign.pb"
        mine.write_bytes(naming(sender.pid))
        foreign.write_bytes(naming(victim.pid))
        out, _ = sender.communicate(f"{mine}\n{foreign}\n", timeout=30)
        assert out.split() == ["200", "200"]
        events = drain(rx)
        assert len(events) == 18
        assert {(e.pid, e.cgroup_id) for e in events[:9]} == {(sender.pid, os.stat(own).st_ino)}
        assert {(e.pid, bool(e.attrs and e.attrs.get("foreign_pid"))) for e in events[9:]} == {(0, True)}
        assert rx.stats()["foreign_pid"] == 9
    finally:
        for p in (victim, sender):
            p.kill()
            p.wait()
        rx.stop()
    assert not path.exists()


#: Prints its pid, then posts the body file argv[2] naming it over the unix socket argv[1].
UNIX_AGENT = UNIX_SENDER.replace("for line in sys.stdin:", "print(__import__('os').getpid(), flush=True)\n"
                                 "for line in [sys.argv[2]]:")


@pytest.mark.kernel
def test_run_receives_spans_on_a_unix_socket(tmp_path: Path) -> None:
    sock = tmp_path / "sdk" / "otlp.sock"
    db = tmp_path / "u.db"
    body = tmp_path / "self.pb"
    runwatch = str(Path(sys.executable).with_name("runwatch"))
    # The agent names its own pid, which it only knows once running: the body is written by a wrapper.
    wrapper = ("import os, subprocess, sys\n"
               "from pathlib import Path\n"
               f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
               "from test_otlp_scope import naming\n"
               f"Path({str(body)!r}).write_bytes(naming(os.getpid()))\n"
               f"os.execv(sys.executable, [sys.executable, '-c', {UNIX_AGENT!r}, {str(sock)!r}, {str(body)!r}])\n")
    res = subprocess.run([runwatch, "run", "--db", str(db), "--no-rules", "--no-sdk", "--otlp-listen", f"unix:{sock}",
                          "--", sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    pid_text, status = res.stdout.split()
    assert status == "200"
    listed = subprocess.run([runwatch, "events", "--db", str(db), "--format", "json"], capture_output=True,
                            text=True, timeout=60)
    spans = [e for e in map(json.loads, listed.stdout.splitlines()) if e.get("source") == "otlp"]
    assert len(spans) == 9 and {e["pid"] for e in spans} == {int(pid_text)}
    assert not sock.exists()
