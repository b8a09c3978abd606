"""ProcessTree: seeding from the real /proc and synthetic fork/exec/exit sequences."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from runwatch.enrich.proctree import ProcessTree, read_proc_record
from runwatch.events import Event, new_id

SEC = 1_000_000_000
T0 = 1_800_000_000 * SEC


def ev(kind: str, pid: int, t: int, **kw: object) -> Event:
    return Event(id=new_id(t), time=t, kind=kind, pid=pid, **kw)  # type: ignore[arg-type]


def proc_walk(pid: int) -> list[str]:
    """Independent ancestry from /proc: exe (or comm for kernel threads) of each parent."""
    out: list[str] = []
    while True:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        if ppid <= 0:
            return out
        try:
            label = os.readlink(f"/proc/{ppid}/exe")
        except OSError:
            with open(f"/proc/{ppid}/comm") as f:
                label = f.read().rstrip("\n")
        out.append(label)
        pid = ppid


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_seeded_ancestry_matches_proc(sleeper: subprocess.Popen[bytes]) -> None:
    tree = ProcessTree()
    assert tree.seed_from_proc() >= 3
    me = os.getpid()
    assert tree.ancestry(me) == proc_walk(me)
    assert tree.ancestry(sleeper.pid) == [os.readlink("/proc/self/exe"), *proc_walk(me)]
    rec = tree.get(sleeper.pid)
    assert rec is not None
    assert (rec.pid, rec.ppid, rec.argv, rec.cmdline) == (sleeper.pid, me, ("sleep", "30"), "sleep 30")
    assert rec.exe == os.readlink(f"/proc/{sleeper.pid}/exe")
    assert tree.stats()["proc_reads"] == 0  # everything came from the seed


def test_enrich_falls_back_to_proc_and_records_it() -> None:
    tree = ProcessTree()
    me = os.getpid()
    e = tree.enrich(ev("file.open", me, T0, comm="python"))
    assert e.ppid == os.getppid()
    assert e.exe == os.readlink("/proc/self/exe")
    assert e.argv == sys.orig_argv
    assert e.ancestry == proc_walk(me)
    assert tree.stats()["proc_reads"] == 1 + len(proc_walk(me))
    rec = tree.get(me)
    assert rec is not None and rec.from_proc
    tree.enrich(ev("file.open", me, T0))
    assert tree.stats()["proc_reads"] == 1 + len(proc_walk(me))  # now cached


def test_read_proc_record_of_missing_pid_is_none() -> None:
    assert read_proc_record(2**22 + 17) is None


def build_chain(tree: ProcessTree) -> None:
    """init(1) -> sshd(101) -> bash(202) -> python3(303) -> forked child 404 (no exec)."""
    seq = [
        ev("process.exec", 1, T0, exe="/sbin/init", cmdline="/sbin/init", argv=["/sbin/init"]),
        ev("process.fork", 1, T0 + 1, child_pid=101),
        ev("process.exec", 101, T0 + 2, ppid=1, exe="/usr/sbin/sshd", cmdline="sshd -D"),
        ev("process.fork", 101, T0 + 3, child_pid=202),
        ev("process.exec", 202, T0 + 4, exe="/bin/bash", cmdline="-bash", argv=["-bash"]),
        ev("process.fork", 202, T0 + 5, child_pid=303),
        ev("process.exec", 303, T0 + 6, exe="/usr/bin/python3", cmdline="python3 agent.py",
           argv=["python3", "agent.py"]),
        ev("process.fork", 303, T0 + 7, child_pid=303),  # a thread: same tgid
        ev("process.fork", 303, T0 + 8, child_pid=404),
    ]
    for e in seq:
        tree.apply(e)


def test_synthetic_fork_exec_sequence() -> None:
    tree = ProcessTree(proc_fallback=False)
    build_chain(tree)
    assert tree.ancestry(404) == ["/usr/bin/python3", "/bin/bash", "/usr/sbin/sshd", "/sbin/init"]
    assert tree.ancestry(1) == []
    child = tree.get(404)
    assert child is not None
    assert (child.ppid, child.exe, child.cmdline, child.argv, child.start_time) == (
        303, "/usr/bin/python3", "python3 agent.py", ("python3", "agent.py"), T0 + 8)
    e = tree.enrich(ev("net.connect", 404, T0 + 9, comm="python3"))
    assert (e.ppid, e.exe, e.cmdline, e.argv) == (303, "/usr/bin/python3", "python3 agent.py",
                                                  ["python3", "agent.py"])
    assert e.ancestry == ["/usr/bin/python3", "/bin/bash", "/usr/sbin/sshd", "/sbin/init"]
    kept = tree.enrich(ev("process.exec", 404, T0 + 10, exe="/usr/bin/curl", cmdline="curl x", ppid=303))
    assert (kept.exe, kept.cmdline) == ("/usr/bin/curl", "curl x")  # the event's own values win
    st = tree.stats()
    assert (st["forks"], st["execs"], st["threads_ignored"], st["entries"]) == (4, 4, 1, 5)


def test_exec_replaces_image_keeping_parent() -> None:
    tree = ProcessTree(proc_fallback=False)
    build_chain(tree)
    tree.apply(ev("process.exec", 404, T0 + 20, exe="/usr/bin/curl", cmdline="curl -s http://x",
                  argv=["curl", "-s", "http://x"]))
    rec = tree.get(404)
    assert rec is not None
    assert (rec.ppid, rec.exe, rec.argv, rec.comm, rec.start_time) == (
        303, "/usr/bin/curl", ("curl", "-s", "http://x"), "curl", T0 + 8)
    assert tree.ancestry(404) == ["/usr/bin/python3", "/bin/bash", "/usr/sbin/sshd", "/sbin/init"]


def test_exit_grace_then_removal_and_pid_reuse() -> None:
    grace = 5 * SEC
    tree = ProcessTree(proc_fallback=False, exit_grace_ns=grace)
    build_chain(tree)
    tree.apply(ev("process.exit", 303, T0 + 10, exit_code=0))
    rec = tree.get(303)
    assert rec is not None and rec.exit_time == T0 + 10
    # late events of the exited pid and of its orphan still resolve during the grace
    late = tree.enrich(ev("file.open", 303, T0 + 11))
    assert (late.exe, late.ancestry) == ("/usr/bin/python3", ["/bin/bash", "/usr/sbin/sshd", "/sbin/init"])
    assert tree.ancestry(404) == ["/usr/bin/python3", "/bin/bash", "/usr/sbin/sshd", "/sbin/init"]
    tree.apply(ev("process.exit", 303, T0 + 12))  # duplicate exit
    tree.apply(ev("process.fork", 1, T0 + 10 + grace - 1, child_pid=505))
    assert tree.get(303) is not None
    tree.apply(ev("process.fork", 1, T0 + 10 + grace, child_pid=506))
    assert tree.get(303) is None
    assert tree.ancestry(404) == []  # its parent is gone and /proc is not consulted
    # the pid comes back as a different program under bash
    tree.apply(ev("process.fork", 202, T0 + 30 * SEC, child_pid=303))
    tree.apply(ev("process.exec", 303, T0 + 30 * SEC + 1, exe="/usr/bin/curl", cmdline="curl"))
    assert tree.ancestry(303) == ["/bin/bash", "/usr/sbin/sshd", "/sbin/init"]
    st = tree.stats()
    assert (st["exits"], st["exits_unknown"], st["expired"], st["exited_pending"]) == (1, 1, 1, 0)


def test_fork_onto_live_pid_counts_reuse() -> None:
    tree = ProcessTree(proc_fallback=False)
    build_chain(tree)
    tree.apply(ev("process.fork", 101, T0 + 50, child_pid=404))
    assert tree.ancestry(404) == ["/usr/sbin/sshd", "/sbin/init"]
    assert tree.stats()["pid_reused"] == 1


def test_ancestry_is_cycle_safe_and_depth_capped() -> None:
    tree = ProcessTree(proc_fallback=False)
    tree.apply(ev("process.exec", 7001, T0, ppid=7002, exe="/bin/a", cmdline="a"))
    tree.apply(ev("process.exec", 7002, T0, ppid=7001, exe="/bin/b", cmdline="b"))
    assert tree.ancestry(7001) == ["/bin/b"]
    assert tree.ancestry(7002) == ["/bin/a"]
    deep = ProcessTree(proc_fallback=False)
    deep.apply(ev("process.exec", 10_000, T0, exe="/bin/sh0", cmdline="sh0"))
    for i in range(1, 101):
        deep.apply(ev("process.fork", 10_000 + i - 1, T0 + i, child_pid=10_000 + i))
    chain = deep.ancestry(10_100)
    assert len(chain) == 64 and set(chain) == {"/bin/sh0"}


def test_reused_parent_pid_in_proc_is_not_an_ancestor() -> None:
    tree = ProcessTree()
    # a process that started at the epoch cannot be the child of this (younger) test process
    tree.apply(ev("process.exec", 2**22 + 29, 1, ppid=os.getpid(), exe="/bin/old", cmdline="old"))
    assert tree.ancestry(2**22 + 29) == []
    assert tree.stats()["proc_misses"] == 2  # the unknown pid itself, then the young "parent"


def test_eviction_bound_prefers_exited_records() -> None:
    tree = ProcessTree(proc_fallback=False, max_entries=23, exit_grace_ns=3600 * SEC)
    tree.apply(ev("process.exec", 1, T0, exe="/sbin/init", cmdline="init"))
    for i in range(2, 24):  # 22 children: tree now holds exactly 23
        tree.apply(ev("process.fork", 1, T0 + i, child_pid=i))
    for i in range(2, 9):  # 7 of them exit
        tree.apply(ev("process.exit", i, T0 + 100 + i))
    for i in range(24, 31):  # 7 new forks push out the 7 exited ones, oldest exit first
        tree.apply(ev("process.fork", 1, T0 + 200 + i, child_pid=i))
    assert tree.stats()["entries"] == 23
    assert [p for p in range(1, 31) if tree.get(p) is None] == list(range(2, 9))
    for i in range(31, 42):  # 11 more: only live records left, least recently used go
        tree.apply(ev("process.fork", 1, T0 + 300 + i, child_pid=i))
    st = tree.stats()
    assert (st["entries"], st["evicted"], st["exited_pending"]) == (23, 18, 0)
    assert tree.get(1) is not None  # init is used by every fork, so it stays
    assert [p for p in range(9, 42) if tree.get(p) is None] == list(range(9, 20))


def test_bad_arguments_are_one_line_errors(tmp_path: os.PathLike[str]) -> None:
    with pytest.raises(ValueError, match="max_entries must be at least 2, got 1"):
        ProcessTree(max_entries=1)
    with pytest.raises(RuntimeError, match="cannot list"):
        ProcessTree(proc_root=os.path.join(tmp_path, "nope")).seed_from_proc()


def test_enrich_before_apply_gives_the_same_answers() -> None:
    """The pipeline stage enriches each event and then applies it; both orders agree."""
    tree = ProcessTree(proc_fallback=False)
    build_chain(tree)
    seq = [
        ev("process.exec", 404, T0 + 20, exe="/bin/sh", cmdline="sh -c id", ppid=303),
        ev("process.fork", 404, T0 + 21, child_pid=405),
        ev("process.exec", 405, T0 + 22, exe="/usr/bin/id", cmdline="id"),
        ev("process.exit", 405, T0 + 23, exit_code=0),
    ]
    out = []
    for e in seq:
        tree.enrich(e)
        tree.apply(e)
        out.append((e.kind, e.pid, e.ppid, e.exe, e.ancestry))
    up = ["/usr/bin/python3", "/bin/bash", "/usr/sbin/sshd", "/sbin/init"]
    assert out == [
        ("process.exec", 404, 303, "/bin/sh", up),
        ("process.fork", 404, 303, "/bin/sh", up),
        ("process.exec", 405, 404, "/usr/bin/id", ["/bin/sh", *up]),
        ("process.exit", 405, 404, "/usr/bin/id", ["/bin/sh", *up]),
    ]


def test_enrich_fills_the_parents_command_line() -> None:
    tree = ProcessTree(proc_fallback=False)
    build_chain(tree)
    tree.apply(ev("process.exec", 404, T0 + 20, exe="/usr/bin/curl", cmdline="curl -s http://x", ppid=303))
    e = tree.enrich(ev("process.exec", 404, T0 + 20, exe="/usr/bin/curl", cmdline="curl -s http://x", ppid=303))
    assert e.pcmdline == "python3 agent.py"  # 303's command line, not the child's
    assert tree.enrich(ev("file.open", 303, T0 + 21)).pcmdline == "-bash"
    assert tree.enrich(ev("file.open", 1, T0 + 22)).pcmdline is None  # init has no parent
    assert tree.enrich(ev("file.open", 404, T0 + 23, pcmdline="as sent")).pcmdline == "as sent"  # kept


def test_parent_command_line_of_a_real_process(sleeper: subprocess.Popen[bytes]) -> None:
    tree = ProcessTree()
    e = tree.enrich(ev("file.open", sleeper.pid, T0))
    with open(f"/proc/{os.getpid()}/cmdline", "rb") as f:
        mine = " ".join(a.decode() for a in f.read().split(b"\0")[:-1])
    assert e.pcmdline == mine


def test_ancestry_follows_an_exec_a_reused_pid_and_an_expired_parent_between_events() -> None:
    """Ancestry and the parent's command line are kept per process while the tree is unchanged;
    an exec, a reused pid or an expired ancestor shows in the very next event."""
    tree = ProcessTree(proc_fallback=False, exit_grace_ns=5 * SEC)
    tree.apply(ev("process.exec", 401, T0, ppid=1, exe="/usr/bin/agent", cmdline="agent --serve"))
    tree.apply(ev("process.fork", 401, T0 + 1, child_pid=413))
    tree.apply(ev("process.exec", 413, T0 + 2, ppid=401, exe="/usr/bin/python3", cmdline="python3 tool.py"))
    tree.apply(ev("process.fork", 413, T0 + 3, child_pid=419))
    seen = []
    for i in range(23):
        e = tree.enrich(ev("file.open", 419, T0 + 10 + i))
        seen.append((tuple(e.ancestry or ()), e.pcmdline))
    assert set(seen) == {(("/usr/bin/python3", "/usr/bin/agent"), "python3 tool.py")}
    tree.apply(ev("process.exec", 413, T0 + 40, ppid=401, exe="/bin/sh", cmdline="sh -c x"))  # the parent execs
    e = tree.enrich(ev("file.open", 419, T0 + 41))
    assert (e.ancestry, e.pcmdline) == (["/bin/sh", "/usr/bin/agent"], "sh -c x")
    tree.apply(ev("process.exit", 401, T0 + 50))
    tree.apply(ev("process.exit", 413, T0 + 51))
    tree.expire(T0 + 51 + 6 * SEC)  # the grandparent and parent are gone for good
    e = tree.enrich(ev("file.open", 419, T0 + 52 + 6 * SEC))
    assert (e.ancestry, e.pcmdline) == ([], None)
    tree.apply(ev("process.fork", 401, T0 + 60 * SEC, child_pid=419))  # 419 reused by a new child of a new 401
    tree.apply(ev("process.exec", 401, T0 + 60 * SEC, ppid=1, exe="/usr/sbin/cron", cmdline="cron"))
    e = tree.enrich(ev("file.open", 419, T0 + 61 * SEC))
    assert e.ancestry == ["/usr/sbin/cron"]
