"""The exec record's process facts: controlling terminal, audit login uid, effective and permitted capabilities.

A host child sets each up before it execs a program under a unique name (a symlink to
``/bin/true``), so the exec event can be found and every value compared exactly with what the
kernel says of it (the terminal's device, ``loginuid``, ``CapEff``).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runwatch.events import Event

pytestmark = pytest.mark.kernel

CHILD = textwrap.dedent("""
    import ctypes, fcntl, os, sys, termios
    libc = ctypes.CDLL(None, use_errno=True)
    prog, tty, loginuid, drop = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), [int(c) for c in sys.argv[4:]]
    os.setsid()
    if tty:
        master, slave = os.openpty()
        os.set_inheritable(master, True)  # held across the exec: a closed master hangs the terminal up
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        rdev = os.fstat(slave).st_rdev
        major, minor = os.major(rdev), os.minor(rdev)
        print((minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12), flush=True)  # stat's tty_nr encoding
    else:
        print(0, flush=True)
    if loginuid >= 0:
        with open("/proc/self/loginuid", "w") as f:
            f.write(str(loginuid))
    for cap in drop:
        assert libc.prctl(24, cap, 0, 0, 0) == 0  # PR_CAPBSET_DROP: the exec cannot get it back
    os.execv(prog, [prog])
""")


def _run(tmp_path: Path, name: str, *args: str) -> str:
    prog = tmp_path / name
    prog.symlink_to("/bin/true")
    out = subprocess.run([sys.executable, "-c", CHILD, str(prog), *args], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return out.strip()


def _exec_of(capture, prog: Path) -> Event:  # type: ignore[no-untyped-def]
    (e,) = capture.where(lambda e: e.kind == "process.exec" and e.exec_name == str(prog))
    return e


def _own_cap(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no {key}")


def _own_cap_eff() -> int:
    return _own_cap("CapEff")


def test_terminal_login_uid_and_capabilities_at_exec(capture, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tty_nr = int(_run(tmp_path, "rw-creds-a", "1", "1023", "16", "13"))
    assert int(_run(tmp_path, "rw-creds-b", "0", "-1")) == 0
    with_all, plain = _exec_of(capture, tmp_path / "rw-creds-a"), _exec_of(capture, tmp_path / "rw-creds-b")
    assert with_all.tty == tty_nr and tty_nr >> 8 == 136  # a Unix98 pseudo-terminal
    assert with_all.loginuid == 1023
    assert with_all.cap_effective == _own_cap_eff() & ~(1 << 16 | 1 << 13)
    assert with_all.cap_permitted == _own_cap("CapPrm") & ~(1 << 16 | 1 << 13)
    own_loginuid = int(Path("/proc/self/loginuid").read_text())
    assert (plain.tty, plain.loginuid, plain.cap_effective, plain.cap_permitted) == (
        0, own_loginuid, _own_cap_eff(), _own_cap("CapPrm"))
    assert with_all.exe_upper_layer is None and plain.exe_upper_layer is None  # not on an overlay
