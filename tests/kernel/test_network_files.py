"""Live sensor: listen/bind/accept/connect (IPv4 and IPv6) and file writes, renames, unlinks."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from runwatch.sensors.kernel.layout import WatchFlag
from runwatch.sensors.kernel.source import KernelSource
from runwatch.sensors.kernel.watchlist import Watch

pytestmark = pytest.mark.kernel

NET_SCRIPT = textwrap.dedent("""
    import socket, sys
    fam = socket.AF_INET6 if sys.argv[1] == "6" else socket.AF_INET
    host = "::1" if fam == socket.AF_INET6 else "127.0.0.1"
    srv = socket.socket(fam, socket.SOCK_STREAM)
    srv.bind((host, 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    cli = socket.socket(fam, socket.SOCK_STREAM)
    cli.connect((host, port))
    conn, peer = srv.accept()
    print(port, cli.getsockname()[1])
    for s in (conn, cli, srv):
        s.close()
    refused = socket.socket(fam, socket.SOCK_STREAM)
    try:
        refused.connect((host, 1))
    except ConnectionRefusedError:
        pass
""")


@pytest.mark.parametrize("family", ["4", "6"])
def test_bind_listen_connect_accept(capture, family):
    res = subprocess.run([sys.executable, "-c", NET_SCRIPT, family], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    port, client_port = map(int, res.stdout.split())
    host = "::1" if family == "6" else "127.0.0.1"
    fam = "ipv6" if family == "6" else "ipv4"
    events = [e for e in capture.settle() if e.kind.startswith("net.")]
    binds = [e.net for e in events if e.kind == "net.bind"]
    assert [(b.src_ip, b.src_port, b.result, b.family) for b in binds] == [(host, 0, 0, fam)]
    listens = [e.net for e in events if e.kind == "net.listen"]
    assert [(x.src_ip, x.src_port, x.proto) for x in listens] == [(host, port, "tcp")]
    conns = [e.net for e in events if e.kind == "net.connect"]
    assert [(c.dst_ip, c.dst_port, c.result, c.proto) for c in conns] == [
        (host, port, 0, "tcp"), (host, 1, -111, "tcp")]  # the second is ECONNREFUSED
    assert conns[0].src_port == client_port
    accepts = [e.net for e in events if e.kind == "net.accept"]
    assert [(a.src_ip, a.src_port, a.dst_ip, a.dst_port) for a in accepts] == [(host, client_port, host, port)]


FILE_SCRIPT = textwrap.dedent("""
    import os, sys
    d = sys.argv[1]
    with open(os.path.join(d, "id_rsa"), "w") as f:
        f.write("key")
    open(os.path.join(d, "id_rsa")).close()
    os.rename(os.path.join(d, "id_rsa"), os.path.join(d, "id_rsa.old"))
    os.unlink(os.path.join(d, "id_rsa.old"))
    open("/tmp/not-watched-23", "w").close()
    os.unlink("/tmp/not-watched-23")
""")


def test_writes_renames_and_unlinks_under_a_watched_dir():
    if os.geteuid() != 0:
        pytest.skip("the eBPF sensor needs root")
    with tempfile.TemporaryDirectory() as d:
        src = KernelSource(track_pids=[os.getpid()], watches=[Watch(d + "/", WatchFlag.READ | WatchFlag.WRITE)])
        src.start()
        try:
            res = subprocess.run([sys.executable, "-c", FILE_SCRIPT, d], capture_output=True, text=True, timeout=30)
            assert res.returncode == 0, res.stderr
            time.sleep(0.2)
            events = [e for e in src.poll(0.2) or [] if e.kind.startswith("file.")]
        finally:
            src.stop()
    got = [(e.kind, e.file.path, e.file.intent, e.file.new_path) for e in events]
    assert got == [
        ("file.open", f"{d}/id_rsa", "write", None),
        ("file.open", f"{d}/id_rsa", "read", None),
        ("file.rename", f"{d}/id_rsa", "write", f"{d}/id_rsa.old"),
        ("file.unlink", f"{d}/id_rsa.old", "write", None),
    ]


def test_writes_below_binary_dirs_are_reported_reads_are_not(capture):
    script = ("import os\n"
              "open('/usr/bin/env', 'rb').close()\n"
              "try:\n"
              "    os.close(os.open('/usr/bin/rw-test-missing/x', os.O_WRONLY | os.O_CREAT))\n"
              "except OSError:\n"
              "    pass\n")
    assert subprocess.run([sys.executable, "-c", script], timeout=30).returncode == 0
    opens = [e for e in capture.settle() if e.kind == "file.open" and e.file.path.startswith("/usr/bin/")]
    assert [(e.file.path, e.file.intent) for e in opens] == [("/usr/bin/rw-test-missing/x", "write")]
