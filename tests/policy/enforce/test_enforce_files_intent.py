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


WAYS = inspect.getsource(uring) + """
import ctypes, os, struct, sys
path = sys.argv[1]
os.symlink(path, "/tmp/link")
os.link(path, "/tmp/hard")

def openat2(p, flags):
    how = ctypes.create_string_buffer(struct.pack("=QQQ", flags, 0, 0), 24)
    fd = ctypes.CDLL(None, use_errno=True).syscall(437, -100, p.encode(), how, 24)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "openat2")
    return fd

def uring_openat2(p, flags):
    ring = Ring()
    buf = ctypes.create_string_buffer(p.encode())
    how = ctypes.create_string_buffer(struct.pack("=QQQ", flags, 0, 0), 24)
    res = ring.submit(OP_OPENAT2, AT_FDCWD, ctypes.addressof(buf), length=24, off=ctypes.addressof(how))
    if res < 0:
        raise OSError(-res, "io_uring openat2")
    return res

ways = {
    "symlink": lambda f: os.open("/tmp/link", f),
    "hard-link": lambda f: os.open("/tmp/hard", f),
    "dotdot": lambda f: os.open("/tmp/../tmp/./config", f),
    "proc-root": lambda f: os.open("/proc/self/root" + path, f),
    "o-path-reopen": lambda f: os.open(f"/proc/self/fd/{os.open(path, os.O_PATH)}", f),
    "openat2": lambda f: openat2(path, f),
    "io_uring-openat2": lambda f: uring_openat2(path, f),
}
for name, way in ways.items():
    for mode, flags in (("write", os.O_WRONLY), ("read", os.O_RDONLY)):
        try:
            os.close(way(flags))
            print(name, mode, "opened")
        except OSError as e:
            print(name, mode, "errno", e.errno)
"""


def test_other_ways_to_write_an_immutable_file_are_denied(runc_container, enforcers, decisions, policy):  # type: ignore[no-untyped-def]
    c = _start(runc_container, "imm-ways")
    enforcers.apply(c, policy(_immutable("enforce", "closed")))
    out = c.exec([str(c.rootfs.python), "-c", WAYS, CONFIG])
    names = ["symlink", "hard-link", "dotdot", "proc-root", "o-path-reopen", "openat2"]
    assert out.stdout.decode().splitlines() == [
        *[line for n in names for line in (f"{n} write errno 1", f"{n} read opened")],
        "io_uring-openat2 write errno 1", "io_uring-openat2 read errno 1"], out.stderr
    assert c.exec(["/bin/busybox", "cat", CONFIG]).stdout == b"kept-37"
    got = decisions.wait(lambda d: d.layer == "file", 8)
    assert [(d.verdict, d.write, d.target) for d in got] == [
        ("deny", True, CONFIG), ("deny", True, "/tmp/hard"), *[("deny", True, CONFIG)] * 4,
        ("deny", None, CONFIG), ("deny", None, CONFIG)]
