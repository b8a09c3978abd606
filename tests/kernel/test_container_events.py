"""Live sensor + real runc containers: execs, connects, DNS and secret reads, attributed."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.kernel


def _odd_free_port() -> int:
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port % 2:
            return int(port)
    raise RuntimeError("no free odd port")


def test_23_execs_in_a_container_carry_its_id_and_ancestry(capture, runc_container):
    c = runc_container(name="exec-loop")
    script = "import subprocess\nfor _ in range(23):\n    subprocess.run(['/bin/true'], check=True)\n"
    res = c.run(["python3", "-c", script])
    assert res.returncode == 0, res.stderr
    execs = capture.where(lambda e: e.kind == "process.exec" and e.exec_name == "/bin/true")
    assert len(execs) == 23
    assert {e.exe for e in execs} == {"/bin/busybox"}  # the rootfs's /bin/true is a busybox applet link
    init = capture.where(lambda e: e.kind == "process.exec" and e.vpid == 1
                         and e.container is not None and e.container.id == c.id)
    assert len(init) == 1, "the container's init exec is seen once"
    for e in execs:
        assert e.container is not None
        assert e.container.id == c.id
        assert e.container.runtime == "runc"
        assert e.container.name == "exec-loop"
        assert e.ancestry[0] == init[0].exe  # the parent is the container's init (python)
        assert e.pidns == init[0].pidns
        assert e.vpid != e.pid  # a pid inside the container's own namespace


@pytest.fixture
def listener() -> Iterator[int]:
    port = _odd_free_port()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(8)
    srv.settimeout(10)

    def accept_one() -> None:
        try:
            conn, _ = srv.accept()
            conn.close()
        except OSError:
            pass

    t = threading.Thread(target=accept_one, daemon=True)
    t.start()
    yield port
    srv.close()
    t.join(timeout=5)


def test_connect_from_container_to_host_listener(capture, runc_container, listener):
    c = runc_container(name="net")
    res = c.run(["python3", "-c", f"import socket; socket.create_connection(('127.0.0.1', {listener})).close()"])
    assert res.returncode == 0, res.stderr
    conns = capture.where(lambda e: e.kind == "net.connect" and e.net is not None and e.net.dst_port == listener)
    assert len(conns) == 1
    e = conns[0]
    assert e.net.dst_ip == "127.0.0.1"
    assert e.net.proto == "tcp"
    assert e.net.result == 0
    assert e.container is not None and e.container.id == c.id
    assert e.exe.endswith("python3") or "python3" in e.exe


@pytest.fixture
def stub_resolver() -> Iterator[list[bytes]]:
    """A DNS stub on 127.0.0.1:53 answering NXDOMAIN; yields the questions it saw."""
    seen: list[bytes] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 53))
    except OSError as exc:
        pytest.skip(f"cannot bind 127.0.0.1:53 for the stub resolver: {exc}")
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(2048)
            except OSError:
                continue
            seen.append(data)
            flags = b"\x81\x83"  # response, recursion desired/available, NXDOMAIN
            sock.sendto(data[:2] + flags + data[4:6] + b"\x00\x00\x00\x00\x00\x00" + data[12:], addr)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield seen
    stop.set()
    t.join(timeout=5)
    sock.close()


def test_dns_query_from_container_has_the_exact_name(capture, runc_container, stub_resolver):
    name = "weights-23.models.example.internal"
    c = runc_container(name="dns")
    script = f"import socket\ntry:\n    socket.getaddrinfo('{name}', 443)\nexcept socket.gaierror:\n    pass\n"
    res = c.run(["python3", "-c", script])
    assert res.returncode == 0, res.stderr
    assert stub_resolver, "the stub resolver received the query"
    queries = capture.where(lambda e: e.kind == "dns.query" and e.container is not None and e.container.id == c.id)
    assert queries, "dns.query events were reported"
    assert {q.dns.name for q in queries} == {name}
    assert {q.dns.server_ip for q in queries} == {"127.0.0.1"}
    assert {q.dns.server_port for q in queries} == {53}
    assert {q.dns.qtype for q in queries} <= {"A", "AAAA"}


def test_secret_read_is_one_file_open_and_unwatched_reads_are_silent(capture, runc_container):
    c = runc_container(name="secret", secrets={"token": b"hunter2-not-stored"})
    assert c.run(["/bin/cat", "/run/secrets/token"]).stdout == b"hunter2-not-stored"
    assert c.run(["/bin/cat", "/etc/hostname"]).returncode == 0
    opens = capture.where(lambda e: e.kind == "file.open" and e.container is not None and e.container.id == c.id)
    assert [(e.file.path, e.file.intent) for e in opens] == [("/run/secrets/token", "read")]
    assert opens[0].exe == "/bin/busybox"  # cat is a busybox applet: exe is the executed file
    # The secret's contents are never part of any event.
    assert all(b"hunter2" not in repr(e).encode() for e in capture.events)


def test_exec_into_long_lived_container_carries_its_cgroup(capture, runc_container):
    c = runc_container(name="long")
    init_pid = c.start()
    cgid = c.cgroup_id
    res = c.exec(["/usr/bin/true"])
    assert res.returncode == 0
    execs = capture.where(lambda e: e.kind == "process.exec" and e.exe == "/usr/bin/true")
    assert len(execs) == 1
    e = execs[0]
    assert e.cgroup_id == cgid
    assert e.container is not None and e.container.id == c.id and e.container.name == "long"
    assert e.pid != init_pid
    c.stop(grace=0)


def test_relative_opens_of_the_secret_are_resolved(capture, runc_container):
    c = runc_container(name="relative", secrets={"token": b"x"})
    script = ("import os\n"
              "os.chdir('/run/secrets')\n"
              "open('token').close()\n"
              "d = os.open('/run', os.O_RDONLY | os.O_DIRECTORY)\n"
              "os.close(os.open('secrets/token', os.O_RDONLY, dir_fd=d))\n"
              "os.chdir('/')\n"
              "open('run/secrets/token').close()\n"
              "open('etc/hostname').close()\n")
    res = c.run(["python3", "-c", script])
    assert res.returncode == 0, res.stderr
    opens = capture.where(lambda e: e.kind == "file.open" and e.container is not None and e.container.id == c.id)
    assert [e.file.path for e in opens] == ["/run/secrets/token"] * 3
