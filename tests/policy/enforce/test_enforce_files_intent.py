"""Write intent of opens of ``files.immutable`` paths: known from open syscalls, unknown otherwise.

An io_uring ``IORING_OP_OPENAT`` blocks in ``io_uring_enter`` (inline) or in an io-wq worker
that is in no syscall: its flags cannot be read, so ``fail: closed`` counts it as a write.
"""

from __future__ import annotations

import inspect
import os

import pytest

from runwatch.testing import uring

pytestmark = pytest.mark.kernel

CONFIG = "/tmp/config"
URING_OPENS = inspect.getsource(uring) + """
import os, sys
ring = Ring()
for name, flags, sqe in (("write", os.O_WRONLY, 0), ("write-async", os.O_WRONLY | os.O_TRUNC, IOSQE_ASYNC),
                         ("read", os.O_RDONLY, 0)):
    res = ring.openat(sys.argv[1], flags, sqe_flags=sqe)
    print(name, "opened" if res >= 0 else f"errno {-res}")
"""
PLAIN_OPENS = """
import os, sys
for name, flags in (("write", os.O_WRONLY), ("rdwr", os.O_RDWR), ("trunc", os.O_RDONLY | os.O_TRUNC),
                    ("read", os.O_RDONLY)):
    try:
        os.close(os.open(sys.argv[1], flags))
        print(name, "opened")
    except OSError as e:
        print(name, "errno", e.errno)
"""


def _immutable(mode: str, fail: str) -> str:
    return f"id: imm-uring\nmode: {mode}\nfail: {fail}\nfiles:\n  immutable: ['{CONFIG}']\n"


def _start(runc_container, name: str):  # type: ignore[no-untyped-def]
    c = runc_container(name=name)
    c.start()
    assert c.exec(["/bin/busybox", "sh", "-c", f"printf kept-37 > {CONFIG}"]).returncode == 0
    return c


def _unknown(via: str) -> str:
    return f"open of an immutable path whose write intent is unknown ({via}); fail: closed counts it as a write"


# inline, forced to an io-wq worker (IOSQE_ASYNC), inline
UNKNOWN = [_unknown("io_uring_enter"), _unknown("an io_uring worker"), _unknown("io_uring_enter")]


def test_io_uring_opens_of_an_immutable_path_are_denied_under_fail_closed(  # type: ignore[no-untyped-def]
        runc_container, enforcers, decisions, policy):
    c = _start(runc_container, "imm-uring")
    enforcers.apply(c, policy(_immutable("enforce", "closed")))
    out = c.exec([str(c.rootfs.python), "-c", URING_OPENS, CONFIG])
    assert out.stdout.decode().splitlines() == ["write errno 1", "write-async errno 1", "read errno 1"], out.stderr
    assert c.exec(["/bin/busybox", "cat", CONFIG]).stdout == b"kept-37"
    got = decisions.wait(lambda d: d.layer == "file", 3)
    assert [(d.verdict, d.rule, d.target, d.write) for d in got] == [
        ("deny", f"files.immutable:{CONFIG}", CONFIG, None)] * 3
    assert [d.reason for d in got] == UNKNOWN
    assert {d.exe for d in got} == {os.path.realpath(c.rootfs.python)}


def test_io_uring_opens_monitor_fail_closed_record_would_deny(runc_container, enforcers, decisions, policy):  # type: ignore[no-untyped-def]
    c = _start(runc_container, "imm-uring-mon")
    enforcers.apply(c, policy(_immutable("monitor", "closed")))
    out = c.exec([str(c.rootfs.python), "-c", URING_OPENS, CONFIG])
    assert out.stdout.decode().splitlines() == ["write opened", "write-async opened", "read opened"], out.stderr
    got = decisions.wait(lambda d: d.layer == "file", 3)
    assert [(d.verdict, d.reason) for d in got] == [("would_deny", r) for r in UNKNOWN]


def test_io_uring_opens_under_fail_open_are_allowed(runc_container, enforcers, decisions, policy):  # type: ignore[no-untyped-def]
    c = _start(runc_container, "imm-uring-open")
    enforcers.apply(c, policy(_immutable("enforce", "open")))
    out = c.exec([str(c.rootfs.python), "-c", URING_OPENS, CONFIG])
    assert out.stdout.decode().splitlines() == ["write opened", "write-async opened", "read opened"], out.stderr
    assert decisions.wait(lambda d: d.layer == "file", 1, timeout=0.5) == []


@pytest.mark.parametrize("fail", ["closed", "open"])
def test_plain_opens_are_judged_by_their_flags(runc_container, enforcers, decisions, policy, fail):  # type: ignore[no-untyped-def]
    c = _start(runc_container, f"imm-flags-{fail}")
    enforcers.apply(c, policy(_immutable("enforce", fail)))
    out = c.exec([str(c.rootfs.python), "-c", PLAIN_OPENS, CONFIG])
    assert out.stdout.decode().splitlines() == ["write errno 1", "rdwr errno 1", "trunc errno 1", "read opened"]
    got = decisions.wait(lambda d: d.layer == "file", 3)
    assert [(d.verdict, d.write, d.reason) for d in got] == [
        ("deny", True, "open for writing of an immutable path")] * 3
