"""procfs readers, from a written /proc tree and from this live process."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from runwatch.host import cgroup_v2, procfs

STATUS = (
    b"Name:\tpython3\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4111\nPPid:\t4099\n"
    b"Uid:\t1000\t1001\t1001\t1001\nGid:\t23\t23\t23\t23\nNSpid:\t4111\t231\t7\n"
    b"CapBnd:\t000001ffffffffff\n"
)


def _proc(tmp_path: Path) -> str:
    root = tmp_path / "proc"
    (root / "4111" / "task" / "4113").mkdir(parents=True)
    (root / "4111" / "status").write_bytes(STATUS)
    (root / "4111" / "task" / "4113" / "status").write_bytes(b"Name:\tworker\nNSpid:\t4113\t233\t9\n")
    (root / "4111" / "cgroup").write_bytes(
        b"9:name=systemd:/kubepods/pod1/cri-containerd-abc.scope\n4:memory:/runwatch/abc\n"
        b"0::/runwatch/abc (deleted)\n")
    (root / "4127").mkdir()
    (root / "4127" / "cgroup").write_bytes(b"4:memory:/x\n1:cpu:/x\n")  # v1 only
    (root / "4127" / "status").write_bytes(b"Name:\tbad\nPPid:\tnot-a-number\nNSpid:\n")
    return str(root)


def test_status_fields(tmp_path: Path) -> None:
    proc = _proc(tmp_path)
    st = procfs.status(4111, proc=proc)
    assert st == procfs.Status(comm="python3", ppid=4099, uid=1000, euid=1001, gid=23, nspid=[4111, 231, 7],
                               cap_bnd=0x1FFFFFFFFFF)
    assert procfs.ns_pid(4111, proc=proc) == 7
    assert procfs.ns_pid(4111, 4113, proc) == 9
    assert procfs.host_tid(4111, 9, proc) == 4113
    assert procfs.host_tid(4111, 8, proc) is None
    assert procfs.status(4127, proc=proc) == procfs.Status(comm="bad")  # malformed fields are skipped
    assert procfs.status(4133, proc=proc) is None and procfs.ns_pid(4133, proc=proc) is None


def test_cgroup_reads(tmp_path: Path) -> None:
    proc = _proc(tmp_path)
    assert procfs.cgroup_path(4111, proc) == "/runwatch/abc"
    assert procfs.cgroup_paths(4111, proc) == ["/kubepods/pod1/cri-containerd-abc.scope", "/runwatch/abc",
                                               "/runwatch/abc"]
    assert procfs.cgroup_path(4127, proc) is None
    assert procfs.cgroup_paths(4127, proc) == ["/x", "/x"]
    assert procfs.cgroup_path(4133, proc) is None and procfs.cgroup_paths(4133, proc) is None
    assert procfs.clean_cgroup_path(" //a/b/ ") == "/a/b" and procfs.clean_cgroup_path("/") == "/"


def test_live_process_agrees_with_the_kernel() -> None:
    me = os.getpid()
    ready, done = threading.Event(), threading.Event()
    tids: list[int] = []

    def thread() -> None:
        tids.append(threading.get_native_id())
        ready.set()
        done.wait(5)

    t = threading.Thread(target=thread)
    t.start()
    try:
        ready.wait(5)
        assert procfs.host_tid(me, tids[0]) == tids[0]  # same pid namespace: the ids agree
    finally:
        done.set()
        t.join()
    with open(f"/proc/{me}/cgroup") as f:
        line = next(ln for ln in f if ln.startswith("0::"))
    assert procfs.cgroup_path(me) == "/" + line[3:].strip().strip("/")
    assert cgroup_v2().id_of_pid(me) == os.stat(cgroup_v2().dir_of(line[3:].strip())).st_ino
    assert procfs.ns_view(me) == (os.stat("/proc/self/ns/pid").st_ino, me)
    assert procfs.pidns("self") == os.stat("/proc/self/ns/pid").st_ino
    assert procfs.start_ticks(me) == int(Path(f"/proc/{me}/stat").read_text().rpartition(")")[2].split()[19])
    assert procfs.start_ticks(int(Path("/proc/sys/kernel/pid_max").read_text())) is None


def test_stat_with_an_awkward_comm_and_boot_time(tmp_path: Path) -> None:
    fields = " ".join(str(n) for n in range(3, 53))  # field 3 (state) .. 52; ppid is 4, start 22
    line = f"4111 (a) b (c d) {fields}\n".replace(" 3 4 ", " S 4099 ", 1)
    root = tmp_path / "proc"
    (root / "4111").mkdir(parents=True)
    (root / "4111" / "stat").write_text(line)
    (root / "4127").mkdir()
    (root / "4127" / "stat").write_text("4127 (no close paren 1 2 3\n")
    (root / "stat").write_text("cpu  1 2 3\nbtime 1764723000\nprocesses 23\n")
    assert procfs.stat(4111, str(root)) == procfs.Stat("a) b (c d", 4099, 22, 7)  # field 7: tty_nr
    assert procfs.start_ticks(4111, str(root)) == 22
    assert procfs.stat(4127, str(root)) is None and procfs.stat(4133, str(root)) is None
    assert procfs.boot_time_ns(str(root)) == 1764723000 * 1_000_000_000
    assert procfs.boot_time_ns(str(tmp_path / "none")) == 0
    with open("/proc/stat") as f:
        btime = next(int(ln.split()[1]) for ln in f if ln.startswith("btime "))
    assert procfs.boot_time_ns() == btime * 1_000_000_000
    assert procfs.stat(os.getpid()) == procfs.Stat(Path("/proc/self/comm").read_text().strip(), os.getppid(),
                                                  procfs.start_ticks(os.getpid()) or -1)
