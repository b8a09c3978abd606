"""Write intent read from ``/proc/<tid>/syscall`` of a real process blocked in a syscall."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runwatch.policy.enforce.intent import OpenIntent, open_intent

if sys.platform != "linux" or os.uname().machine != "x86_64":
    pytest.skip("syscall numbers checked here are x86-64's", allow_module_level=True)

# Opening a FIFO blocks until the other end opens: the child stays in its open call.
OPEN = "import os, sys; os.open(sys.argv[1], int(sys.argv[2]))"
OPENAT2 = """
import ctypes, os, struct, sys
how = ctypes.create_string_buffer(struct.pack("=QQQ", int(sys.argv[2]), 0, 0), 24)
ctypes.CDLL(None).syscall(437, -100, sys.argv[1].encode(), how, 24)
"""


@pytest.fixture
def blocked(tmp_path: Path) -> Iterator[object]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(code: str, *args: str) -> int:
        proc = subprocess.Popen([sys.executable, "-c", code, *args])
        procs.append(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(f"/proc/{proc.pid}/wchan") as f:
                if f.read() not in ("0", ""):
                    with open(f"/proc/{proc.pid}/syscall") as s:
                        nr = s.read().split()[0]
                    if nr in ("2", "257", "437", "230", "35"):
                        return proc.pid
            time.sleep(0.01)
        raise AssertionError("the child never blocked")

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(("code", "flags", "expected"), [
    (OPEN, os.O_WRONLY, OpenIntent(True, "openat")),
    (OPEN, os.O_RDONLY, OpenIntent(False, "openat")),
    (OPEN, os.O_RDONLY | os.O_TRUNC, OpenIntent(True, "openat")),
    (OPENAT2, os.O_WRONLY, OpenIntent(True, "openat2")),
    (OPENAT2, os.O_RDONLY, OpenIntent(False, "openat2")),
])
def test_open_calls_give_their_flags(blocked, tmp_path: Path, code: str, flags: int, expected: OpenIntent) -> None:  # type: ignore[no-untyped-def]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert open_intent(blocked(code, str(fifo), str(flags))) == expected


def test_any_other_call_is_unknown(blocked) -> None:  # type: ignore[no-untyped-def]
    pid = blocked("import time; time.sleep(30)")
    assert open_intent(pid) in (OpenIntent(None, "syscall 230"), OpenIntent(None, "syscall 35"))


def test_a_thread_that_is_gone_is_unknown() -> None:
    assert open_intent(2**22 + 7) == OpenIntent(None, "unreadable")


def test_a_thread_caught_on_the_cpu_is_asked_again_then_left_unknown() -> None:
    """``/proc/<tid>/syscall`` says ``running`` for a thread on the CPU: asked again a few
    times, then the intent is unknown ("unreadable"), never taken as a read."""
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        # on the CPU at every try ("running"), or caught between two time slices in no
        # syscall at all: unknown either way
        assert open_intent(spin.pid) in (OpenIntent(None, "unreadable"), OpenIntent(None, "no syscall"))
    finally:
        spin.kill()
        spin.wait()
