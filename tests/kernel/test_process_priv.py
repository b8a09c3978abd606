"""Live sensor on host processes: privilege events, exit codes, ancestry, overload."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from runwatch.sensors.kernel.source import KernelSource

pytestmark = pytest.mark.kernel

PRIV_SCRIPT = textwrap.dedent("""
    import ctypes, os, signal, struct, sys, time
    libc = ctypes.CDLL(None, use_errno=True)
    mnt = sys.argv[1]
    # unshare(CLONE_NEWNS) so the mount stays private to this process
    assert libc.unshare(0x00020000) == 0, ctypes.get_errno()
    assert libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None) == 0, ctypes.get_errno()  # MS_REC|MS_PRIVATE
    assert libc.mount(b"rw-tmpfs", mnt.encode(), b"tmpfs", 0, None) == 0, ctypes.get_errno()
    fd = os.memfd_create("rw-memfd-23")
    os.close(fd)
    child = os.fork()
    if child == 0:
        time.sleep(5)
        os._exit(0)
    assert libc.ptrace(16, child, None, None) == 0, ctypes.get_errno()  # PTRACE_ATTACH
    os.waitpid(child, 0)
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    # capset: keep only CAP_SETUID (7) and CAP_SETGID (6), version 3 header
    hdr = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)((1 << 7) | (1 << 6), (1 << 7) | (1 << 6), 0, 0, 0, 0)
    assert libc.capset(hdr, data) == 0, ctypes.get_errno()
    os.setgid(1023)
    os.setuid(1023)
    print(child)
""")


def test_privilege_syscalls_each_produce_their_kind(capture):
    with tempfile.TemporaryDirectory() as mnt:
        res = subprocess.run([sys.executable, "-c", PRIV_SCRIPT, mnt], capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        traced = int(res.stdout.strip())
        events = capture.settle()
    mine = [e for e in events if e.exe == os.path.realpath(sys.executable) or e.comm == "python3"]
    by_kind: dict[str, list] = {}
    for e in mine:
        by_kind.setdefault(e.kind, []).append(e)
    assert [e.priv.ns_flags for e in by_kind["priv.unshare"]] == [0x00020000]
    mounts = [e.priv for e in by_kind["priv.mount"] if e.priv.fstype == "tmpfs"]
    assert [(m.source, m.target) for m in mounts] == [("rw-tmpfs", mnt)]
    assert [e.file.name for e in by_kind["file.memfd"]] == ["rw-memfd-23"]
    ptraces = [e.priv for e in by_kind["priv.ptrace"]]
    assert [(p.request, p.target_pid) for p in ptraces] == [(16, traced)]
    caps = [e.priv for e in by_kind["priv.capset"]]
    assert [(c.cap_effective, c.cap_permitted) for c in caps] == [(0xC0, 0xC0)]
    assert [(e.priv.op, e.priv.gid) for e in by_kind["priv.setgid"]] == [("setgid", 1023)]
    assert [(e.priv.op, e.priv.uid) for e in by_kind["priv.setuid"]] == [("setuid", 1023)]


def test_exit_codes_and_signals(capture):
    assert subprocess.run(["/bin/sh", "-c", "exit 7"]).returncode == 7
    p = subprocess.Popen(["/usr/bin/sleep", "30"])
    time.sleep(0.1)
    p.kill()
    assert p.wait() == -9
    exits = {e.pid: e for e in capture.settle() if e.kind == "process.exit"}
    assert exits[p.pid].signal == 9
    assert exits[p.pid].exe == "/usr/bin/sleep"
    sh_exits = [e for e in exits.values() if e.exe == "/usr/bin/dash"]  # /bin/sh's executed file
    assert [e.exit_code for e in sh_exits] == [7]
    assert sh_exits[0].signal is None


def test_process_started_before_the_sensor_gets_ancestry():
    if os.geteuid() != 0:
        pytest.skip("the eBPF sensor needs root")
    from runwatch.enrich.stage import Enrichment

    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; sys.stdin.readline(); subprocess.run(['/usr/bin/true'])"],
        stdin=subprocess.PIPE)
    try:
        parent_exe = os.readlink(f"/proc/{parent.pid}/exe")
        src = KernelSource(track_pids=[parent.pid])
        src.start()
        enrich = Enrichment()
        try:
            assert parent.stdin is not None
            parent.stdin.write(b"go\n")
            parent.stdin.close()
            assert parent.wait(timeout=10) == 0
            time.sleep(0.2)
            events = enrich(src.poll(0.2) or [])
        finally:
            src.stop()
    finally:
        parent.kill()
        parent.wait()
    execs = [e for e in events if e.kind == "process.exec" and e.exe == "/usr/bin/true"]
    assert len(execs) == 1
    assert execs[0].ppid == parent.pid
    assert execs[0].ancestry[0] == parent_exe
    assert execs[0].ancestry[1] == os.readlink("/proc/self/exe")  # the test runner started the parent


def test_tiny_ring_buffer_counts_drops_and_keeps_working():
    if os.geteuid() != 0:
        pytest.skip("the eBPF sensor needs root")
    src = KernelSource(track_pids=[os.getpid()], ring_bytes=4096, wakeup_bytes=1 << 30)
    src.start()
    try:
        # 3001 opens of a watched path while nobody drains: most cannot be queued.
        script = "for _ in range(3001):\n    open('/etc/shadow').close()\n"
        assert subprocess.run([sys.executable, "-c", script]).returncode == 0
        stats = src.stats()
        assert stats["drops"] > 0
        got = src.poll(0.05) or []
        opens = [e for e in got if e.kind == "file.open"]
        assert 0 < len(opens) < 3001
        assert len(opens) + stats["drops.open"] == 3001  # nothing vanishes uncounted
        # Still working after the overflow.
        subprocess.run(["/usr/bin/true"])
        time.sleep(0.1)
        assert any(e.kind == "process.exec" and e.exe == "/usr/bin/true" for e in src.poll(0.2) or [])
    finally:
        src.stop()
