"""Tests of the proc-connector fallback source: wire decoding, /proc reads, live kernel events.

Live tests start a real process paused on a stdin read, point the source at its pid,
then release it, so the source is listening before the process does anything.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runwatch.events import Event
from runwatch.host import cgroup_v2_if_any, find_cgroup_v2
from runwatch.sensors.base import source_factory
from runwatch.sensors.proc import cnproc
from runwatch.sensors.proc.source import (
    ProcConnectorSource,
    ProcConnectorUnavailable,
    ProcReader,
)


def cgroup2_root(mountinfo: str | None = None) -> str | None:
    found = cgroup_v2_if_any() if mountinfo is None else find_cgroup_v2(mountinfo)
    return str(found.root) if found is not None else None


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the proc connector tests run as root")
SLEEP_EXE = os.path.realpath("/usr/bin/sleep")
# The fallback reads exe/argv/cwd from /proc after the kernel's message, so a process that
# exits at once can win that race (the event then says ``exe_unread``). Workloads whose exe
# the tests check therefore live 50 ms: long enough that the read cannot lose.
LINGER = "0.05"
SH_EXE = os.path.realpath("/bin/sh")


# -- wire format (no privileges needed) ---------------------------------------------------


def _datagram(what: int, data: bytes, *, cpu: int = 1, seq: int = 40, ack: int = 0, ts: int = 123) -> bytes:
    event = struct.pack("=IIQ", what, cpu, ts) + data.ljust(cnproc.EVENT_DATA_SIZE, b"\0")
    cn = struct.pack("=IIIIHH", cnproc.CN_IDX_PROC, cnproc.CN_VAL_PROC, seq, ack, len(event), 0) + event
    return struct.pack("=IHHII", 16 + len(cn), cnproc.NLMSG_DONE, 0, seq, 0) + cn


def test_decode_each_event_type() -> None:
    fork, = cnproc.decode_datagram(_datagram(0x1, struct.pack("=4i", 101, 100, 2003, 2003), seq=41))
    assert fork == cnproc.ForkRecord(1, 41, 123, 101, 100, 2003, 2003)
    exe, = cnproc.decode_datagram(_datagram(0x2, struct.pack("=2i", 2003, 2003)))
    assert exe == cnproc.ExecRecord(1, 40, 123, 2003, 2003)
    uid, = cnproc.decode_datagram(_datagram(0x4, struct.pack("=2i2I", 7, 5, 65534, 4294967295)))
    assert uid == cnproc.IdRecord(1, 40, 123, 7, 5, "uid", 65534, 4294967295)
    gid, = cnproc.decode_datagram(_datagram(0x40, struct.pack("=2i2I", 5, 5, 29, 31)))
    assert gid == cnproc.IdRecord(1, 40, 123, 5, 5, "gid", 29, 31)
    ptr, = cnproc.decode_datagram(_datagram(0x100, struct.pack("=4i", 9, 9, 3, 2)))
    assert ptr == cnproc.PtraceRecord(1, 40, 123, 9, 9, 3, 2)
    comm, = cnproc.decode_datagram(_datagram(0x200, struct.pack("=2i", 9, 9) + b"worker-17\0junk"))
    assert comm == cnproc.CommRecord(1, 40, 123, 9, 9, "worker-17")
    ext, = cnproc.decode_datagram(_datagram(0x80000000, struct.pack("=6i", 9, 9, 7 << 8, 17, 3, 3)))
    assert ext == cnproc.ExitRecord(1, 40, 123, 9, 9, 7 << 8, 17, 3, 3)
    ack, = cnproc.decode_datagram(_datagram(0, struct.pack("=I", 1), cpu=0xFFFFFFFF, ack=5003))
    assert ack == cnproc.AckRecord(0xFFFFFFFF, 40, 123, 1, 5003)
    unknown, = cnproc.decode_datagram(_datagram(0x10000, b""))
    assert unknown == cnproc.UnknownRecord(1, 40, 123, 0x10000)


def test_decode_two_messages_in_one_datagram_and_skip_other_connectors() -> None:
    other = bytearray(_datagram(0x2, struct.pack("=2i", 1, 1)))
    struct.pack_into("=I", other, 16, 11)  # a different connector index
    first, last = _datagram(0x2, struct.pack("=2i", 3, 3), seq=1), _datagram(0x2, struct.pack("=2i", 5, 5))
    data = first + bytes(other) + last
    records = cnproc.decode_datagram(data)
    assert [(r.seq, r.pid) for r in records if isinstance(r, cnproc.ExecRecord)] == [(1, 3), (40, 5)]
    assert len(records) == 2


@pytest.mark.parametrize(("data", "message"), [
    (_datagram(0x2, b"")[:40], "overruns"),
    (struct.pack("=IHHII", 36, cnproc.NLMSG_DONE, 0, 0, 0) + struct.pack("=IIIIHH", 1, 1, 0, 0, 200, 0),
     "exceeds"),
    (struct.pack("=IHHIIi", 20, cnproc.NLMSG_ERROR, 0, 0, 0, -1), "errno 1"),
])
def test_decode_rejects_bad_input_with_one_line(data: bytes, message: str) -> None:
    with pytest.raises(cnproc.CnProcDecodeError, match=message) as info:
        cnproc.decode_datagram(data)
    assert "\n" not in str(info.value)


def test_wait_status_and_mcast_message() -> None:
    assert cnproc.decode_wait_status(7 << 8) == (7, None, False)
    assert cnproc.decode_wait_status(9) == (0, 9, False)
    assert cnproc.decode_wait_status(0x80 | 11) == (0, 11, True)
    msg = cnproc.mcast_message(cnproc.PROC_CN_MCAST_LISTEN, 4001)
    assert len(msg) == 40
    assert struct.unpack_from("=IHHII", msg) == (40, cnproc.NLMSG_DONE, 0, 4001, 0)
    assert struct.unpack_from("=IIIIHHI", msg, 16) == (1, 1, 4001, 4001, 4, 0, 1)
    with pytest.raises(ValueError, match="unknown proc connector multicast op 3"):
        cnproc.mcast_message(3, 1)


def test_registered_and_declares_what_it_cannot_see() -> None:
    assert source_factory("proc") is ProcConnectorSource
    assert ProcConnectorSource.name == "proc"
    lost = " ".join(ProcConnectorSource.LOST)
    for word in ("connect", "DNS", "secrets", "capset", "mount", "unshare", "setns", "memfd",
                 "exact executable", "container attribution"):
        assert word in lost
    with pytest.raises(ValueError, match="root_pid must be a positive pid, got 0"):
        ProcConnectorSource(root_pid=0)
    with pytest.raises(RuntimeError, match="before start"):
        ProcConnectorSource().poll(0)


def test_proc_reader_reads_self_and_counts_misses(tmp_path: Path) -> None:
    reader = ProcReader(cgroups=cgroup_v2_if_any())
    info = reader.read(os.getpid())
    assert info.exe == os.path.realpath(sys.executable)
    with open("/proc/self/cmdline", "rb") as fh:
        assert info.argv == fh.read().decode().split("\0")[:-1]
    assert (info.cwd, info.ppid) == (os.getcwd(), os.getppid())
    assert (info.uid, info.euid) == (os.getuid(), os.geteuid())
    assert info.pidns == os.stat("/proc/self/ns/pid").st_ino
    assert reader.misses == 0
    gone = int(Path("/proc/sys/kernel/pid_max").read_text())  # pids stay below pid_max
    empty = reader.read(gone)
    assert (empty.exe, empty.argv, empty.cwd, empty.comm, empty.pidns) == ("", None, None, None, None)
    assert reader.misses == 6  # status, exe, cmdline, cwd, cgroup, ns/pid
    mounts = tmp_path / "mounts"
    mounts.write_text("30 24 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
                      "31 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n")
    assert cgroup2_root(str(mounts)) == "/sys/fs/cgroup"
    assert cgroup2_root(str(tmp_path / "missing")) is None


_FD_EXEC = """
import ctypes, os, sys
if sys.argv[1] == "memfd":
    fd = os.memfd_create("sleeper-23", 0)
    with open("/usr/bin/sleep", "rb") as fh:
        os.write(fd, fh.read())
elif sys.argv[1] == "detached":  # what runc init does: a detached bind mount of the binary
    fd = ctypes.CDLL(None, use_errno=True).syscall(428, -100, b"/usr/bin/sleep", 1)  # open_tree, CLONE
    assert fd >= 0, ctypes.get_errno()
else:
    fd = os.open(sys.argv[1], os.O_RDONLY)
    os.unlink(sys.argv[1])
st = os.fstat(fd)
print(st.st_ino, st.st_dev, flush=True)
os.execve(fd, ["sleep", "5"], {})
"""


@contextlib.contextmanager
def _running_from_fd(what: str) -> Iterator[tuple[int, int, int]]:
    """A child running a program from an fd (a memfd, a detached mount of /usr/bin/sleep, or
    ``what`` opened then unlinked): (pid, st_ino, st_dev of the file)."""
    proc = subprocess.Popen([sys.executable, "-c", _FD_EXEC, what], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ino, dev = (int(x) for x in proc.stdout.readline().split())
        deadline = time.monotonic() + 5
        # the exe link changes before the new image's arguments are in place: wait for both
        while (os.readlink(f"/proc/{proc.pid}/exe") == os.path.realpath(sys.executable)
               or Path(f"/proc/{proc.pid}/cmdline").read_bytes() != b"sleep\x005\x00"):
            assert time.monotonic() < deadline, "the child never executed its file"
            time.sleep(0.005)
        yield proc.pid, ino, dev
    finally:
        proc.kill()
        proc.wait()


def test_proc_reader_exe_is_the_executed_file_memfd_and_deleted(tmp_path: Path) -> None:
    reader = ProcReader()
    me = reader.read(os.getpid())
    assert (me.exe, me.exe_ino, me.exe_dev, me.exe_deleted) == (
        os.path.realpath(sys.executable), os.stat(sys.executable).st_ino, os.stat(sys.executable).st_dev, None)
    with _running_from_fd("memfd") as (pid, ino, dev):
        info = reader.read(pid)
        assert (info.exe, info.exe_ino, info.exe_dev, info.exe_deleted) == ("memfd:sleeper-23", ino, dev, True)
    victim = tmp_path / "victim-23"
    shutil.copy2("/usr/bin/sleep", victim)
    with _running_from_fd(str(victim)) as (pid, ino, dev):
        info = reader.read(pid)
        assert (info.exe, info.exe_ino, info.exe_dev, info.exe_deleted) == (f"{victim} (deleted)", ino, dev, True)
    with _running_from_fd("detached") as (pid, ino, dev):
        assert os.readlink(f"/proc/{pid}/exe") == "/"  # the link names the detached mount's root
        info = reader.read(pid)
        assert (info.exe, info.exe_ino, info.exe_dev, info.exe_deleted, info.exe_detached) == (
            os.path.realpath("/usr/bin/sleep"), ino, dev, None, True)
    assert reader.misses == 0


# -- live kernel events (root) ------------------------------------------------------------


def _cgroup_path(pid: int) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise AssertionError("no cgroup v2 line")


def _wait_blocked(pid: int, exe: str) -> None:
    """Wait until ``pid`` runs ``exe`` and sleeps (e.g. in its stdin read). Popen returns while
    exec may still be in progress; once the new program sleeps, its exec was reported,
    so a source started afterwards sees only what the test triggers."""
    for _ in range(10_000):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            if os.readlink(f"/proc/{pid}/exe") == exe and stat[stat.rindex(")") + 2] == "S":
                return
        time.sleep(0.001)
    raise AssertionError(f"pid {pid} never blocked in {exe}")


@contextlib.contextmanager
def _paused(argv: list[str], cwd: Path, **source_args: object) -> Iterator[tuple[subprocess.Popen[bytes],
                                                                              ProcConnectorSource]]:
    """Start ``argv`` (which must first read a line from stdin) and a source on its pid."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=cwd)
    source = ProcConnectorSource(root_pid=proc.pid, **source_args)  # type: ignore[arg-type]
    try:
        _wait_blocked(proc.pid, os.path.realpath(argv[0]))
        source.start()
        yield proc, source
    finally:
        source.stop()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def _release_and_collect(proc: subprocess.Popen[bytes], source: ProcConnectorSource,
                         busy_s: float = 0.0) -> list[Event]:
    """Let the paused process go and gather events until its own exit event arrives.
    ``busy_s``: CPU time burnt after each poll, like a consumer running rules and storage."""
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    proc.stdin.close()
    events: list[Event] = []
    deadline = time.monotonic() + 60  # a guard against hanging, not a timing assertion
    while time.monotonic() < deadline:
        batch = source.poll(0.2)
        assert batch is not None
        events.extend(batch)
        spin_until = time.perf_counter() + busy_s
        while time.perf_counter() < spin_until:
            pass
        if any(e.kind == "process.exit" and e.pid == proc.pid for e in batch):
            proc.wait(timeout=30)
            return events
    pytest.fail(f"no exit event for pid {proc.pid}; got {len(events)} events")


@pytest.mark.kernel
@needs_root
@pytest.mark.parametrize("busy_s", [0.0, 0.02], ids=["idle-consumer", "busy-consumer"])
def test_twenty_three_execs_in_a_cgroup(tmp_path: Path, busy_s: float) -> None:
    root = cgroup2_root()
    assert root is not None
    cg_rel = f"/runwatch-test-{uuid.uuid4().hex[:12]}"
    cg_dir = Path(root + cg_rel)
    cg_dir.mkdir()
    cg_ino = os.stat(cg_dir).st_ino
    try:
        t0 = time.time_ns()
        script = f"read x; i=0; while [ $i -lt 23 ]; do /usr/bin/sleep {LINGER}; i=$((i+1)); done"
        with _paused(["/bin/sh", "-c", script], tmp_path) as (proc, source):
            (cg_dir / "cgroup.procs").write_text(str(proc.pid))
            events = _release_and_collect(proc, source, busy_s)
            stats = source.stats()
        t1 = time.time_ns()
    finally:
        cg_dir.rmdir()  # every process in it has exited and been reaped by now
    shell = proc.pid
    assert all(e.source == "proc" and t0 <= e.time <= t1 for e in events)
    execs = [e for e in events if e.kind == "process.exec"]
    assert collections.Counter(e.exe for e in execs) == {SLEEP_EXE: 23}
    trues = [e for e in execs if e.exe == SLEEP_EXE]
    pidns = os.stat("/proc/self/ns/pid").st_ino
    for e in trues:
        assert (e.argv, e.cmdline, e.cwd, e.comm) == (
            ["/usr/bin/sleep", LINGER], f"/usr/bin/sleep {LINGER}", str(tmp_path), "sleep")
        assert (e.ppid, e.tid, e.vpid, e.pidns, e.uid) == (shell, e.pid, e.pid, pidns, 0)
        assert e.ancestry[0] == SH_EXE
        assert e.attrs == {"cgroup": cg_rel}
    assert {e.cgroup_id for e in execs} == {cg_ino}
    forks = [e for e in events if e.kind == "process.fork"]
    assert {e.pid for e in forks} == {shell}
    assert sorted(e.child_pid or 0 for e in forks) == sorted(e.pid for e in execs)
    exits = {e.pid: e for e in events if e.kind == "process.exit"}
    assert set(exits) == {shell} | {e.pid for e in execs}
    assert all((x.exit_code, x.signal) == (0, None) for x in exits.values())
    assert exits[shell].exe == SH_EXE
    assert sorted(exits[e.pid].exe for e in trues) == [SLEEP_EXE] * 23
    assert (stats["drops"], stats["lost"], stats["malformed"]) == (0, 0, 0)


@pytest.mark.kernel
@needs_root
def test_cgroup_id_is_the_inode_of_the_cgroup_dir(tmp_path: Path) -> None:
    root = cgroup2_root()
    assert root is not None
    cg_dir = Path(f"{root}/runwatch-test-{uuid.uuid4().hex[:12]}")
    cg_dir.mkdir()
    try:
        inode = os.stat(cg_dir).st_ino
        with _paused(["/bin/sh", "-c", f"read x; exec /usr/bin/sleep {LINGER}"], tmp_path) as (proc, source):
            (cg_dir / "cgroup.procs").write_text(str(proc.pid))
            events = _release_and_collect(proc, source)
    finally:
        cg_dir.rmdir()
    assert [(e.kind, e.pid) for e in events] == [("process.exec", proc.pid), ("process.exit", proc.pid)]
    assert (events[0].exe, events[0].cgroup_id, events[1].cgroup_id) == (SLEEP_EXE, inode, inode)


@pytest.mark.kernel
@needs_root
def test_exit_code_seven(tmp_path: Path) -> None:
    with _paused(["/bin/sh", "-c", "read x; exit 7"], tmp_path) as (proc, source):
        events = _release_and_collect(proc, source)
    assert proc.returncode == 7
    assert [(e.kind, e.pid, e.exit_code, e.signal, e.exe) for e in events] == [
        ("process.exit", proc.pid, 7, None, SH_EXE)]


@pytest.mark.kernel
@needs_root
def test_killed_by_sigkill(tmp_path: Path) -> None:
    sleep_exe = os.path.realpath(shutil.which("sleep") or "/usr/bin/sleep")
    sleeper = subprocess.Popen(["sleep", "1000"], cwd=tmp_path)
    source = ProcConnectorSource(root_pid=sleeper.pid)
    try:
        _wait_blocked(sleeper.pid, sleep_exe)
        source.start()
        sleeper.kill()
        sleeper.wait()
        events: list[Event] = []
        deadline = time.monotonic() + 60
        while not any(e.kind == "process.exit" for e in events) and time.monotonic() < deadline:
            events.extend(source.poll(0.2) or [])
    finally:
        source.stop()
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
    assert sleeper.returncode == -signal.SIGKILL
    assert [(e.kind, e.pid, e.signal, e.exit_code, e.exe) for e in events] == [
        ("process.exit", sleeper.pid, 9, 0, sleep_exe)]


_SETID_CHILD = """
import os, sys
sys.stdin.readline()
pid = os.fork()
if pid == 0:
    os.setgid(65534)
    os.setuid(65534)
    os._exit(0)
os.waitpid(pid, 0)
print(pid, flush=True)
"""


@pytest.mark.kernel
@needs_root
def test_fork_setgid_setuid(tmp_path: Path) -> None:
    with _paused([sys.executable, "-c", _SETID_CHILD], tmp_path) as (proc, source):
        events = _release_and_collect(proc, source)
        assert proc.stdout is not None
        child = int(proc.stdout.read())
        stats = source.stats()
    parent = proc.pid
    assert [(e.kind, e.pid) for e in events] == [
        ("process.fork", parent), ("priv.setgid", child), ("priv.setuid", child),
        ("process.exit", child), ("process.exit", parent)]
    fork, setgid, setuid, child_exit, _ = events
    assert (fork.child_pid, fork.exe) == (child, os.path.realpath(sys.executable))
    assert setgid.priv is not None and setuid.priv is not None
    assert (setgid.priv.op, setgid.priv.gid, setgid.priv.egid) == ("setgid", 65534, 65534)
    assert (setuid.priv.op, setuid.priv.uid, setuid.priv.euid) == ("setuid", 65534, 65534)
    assert (setuid.uid, setuid.euid, setuid.ppid) == (0, 0, parent)  # ids before the change
    assert (child_exit.uid, child_exit.euid, child_exit.gid, child_exit.exit_code) == (65534, 65534, 65534, 0)
    assert stats["drops"] == 0


_PTRACE_CHILD = """
import ctypes, os, signal, sys, time
sys.stdin.readline()
pid = os.fork()
if pid == 0:
    time.sleep(60)
    os._exit(0)
libc = ctypes.CDLL(None, use_errno=True)
if libc.ptrace(16, pid, None, None) != 0:  # PTRACE_ATTACH
    sys.exit(f"ptrace failed: {os.strerror(ctypes.get_errno())}")
os.waitpid(pid, 0)
os.kill(pid, signal.SIGKILL)
libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
os.waitpid(pid, 0)
print(pid, flush=True)
"""


@pytest.mark.kernel
@needs_root
def test_ptrace_attach_names_the_target(tmp_path: Path) -> None:
    with _paused([sys.executable, "-c", _PTRACE_CHILD], tmp_path) as (proc, source):
        events = _release_and_collect(proc, source)
        assert proc.stdout is not None
        child = int(proc.stdout.read())
    assert proc.returncode == 0
    ptrace = [e for e in events if e.kind == "priv.ptrace"]
    assert len(ptrace) == 1 and ptrace[0].priv is not None
    assert (ptrace[0].pid, ptrace[0].priv.target_pid, ptrace[0].priv.request) == (proc.pid, child, 16)
    child_exit = [e for e in events if e.kind == "process.exit" and e.pid == child]
    assert [(e.signal, e.exit_code) for e in child_exit] == [(9, 0)]


@pytest.mark.kernel
@needs_root
def test_watching_itself_sees_its_children_but_not_the_reader(tmp_path: Path) -> None:
    source = ProcConnectorSource(root_pid=os.getpid())  # how `runwatch run` uses it
    try:
        source.start()
        children = [subprocess.run(["/usr/bin/sleep", LINGER], cwd=tmp_path, check=True) for _ in range(7)]
        events: list[Event] = []
        deadline = time.monotonic() + 60
        while sum(e.kind == "process.exit" for e in events) < 7 and time.monotonic() < deadline:
            events.extend(source.poll(0.2) or [])
        assert source._child is not None
        reader = source._child.pid
    finally:
        source.stop()
    assert len(children) == 7
    execs = [e for e in events if e.kind == "process.exec"]
    assert [(e.exe, e.ppid, e.cwd) for e in execs] == [(SLEEP_EXE, os.getpid(), str(tmp_path))] * 7
    assert [e.exit_code for e in events if e.kind == "process.exit"] == [0] * 7
    assert reader not in {e.pid for e in events}


@pytest.mark.kernel
@needs_root
def test_stop_is_idempotent_and_poll_after_stop_ends() -> None:
    source = ProcConnectorSource()
    source.start()
    with pytest.raises(RuntimeError, match="called twice"):
        source.start()
    source.stop()
    source.stop()
    for _ in range(1000):  # host-wide: events queued before stop are still handed out first
        if source.poll(0.05) is None:
            break
    assert source.poll(0.05) is None
    assert source.stats()["rcvbuf_bytes"] >= 1 << 20


@pytest.mark.kernel
@needs_root
def test_missing_root_pid_is_one_line_error() -> None:
    gone = int(Path("/proc/sys/kernel/pid_max").read_text())
    with pytest.raises(ProcessLookupError, match=f"root pid {gone} does not exist"):
        ProcConnectorSource(root_pid=gone).start()


@pytest.mark.kernel
@needs_root
def test_refused_outside_the_initial_user_namespace() -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) not installed")
    code = ("from runwatch.sensors.proc.source import ProcConnectorSource as S\n"
            "from runwatch.sensors.proc.source import ProcConnectorUnavailable as U\n"
            "try:\n    S(ack_timeout=0.5).start()\nexcept U as exc:\n    print(exc)\n")
    src = str(Path(__file__).resolve().parents[2] / "src")
    out = subprocess.run(["unshare", "--user", "--map-root-user", sys.executable, "-c", code],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": src})
    # Some kernels take the bind and never answer the subscription; others refuse
    # the bind itself. Either way one line says why.
    assert out.stdout in ("proc connector did not acknowledge the subscription within 0.5 s "
                          "(runwatch must run in the host's initial user and pid namespaces)\n",
                          "proc connector needs CAP_NET_ADMIN: joining the CN_PROC group was refused "
                          "([Errno 1] Operation not permitted)\n")
    assert issubclass(ProcConnectorUnavailable, OSError)
