"""``runwatch watch`` killed with SIGKILL under a fail-closed policy, then started again.

The killed watch's links stay pinned, so the container is still refused what its policy
denies, and once the heartbeat is stale nothing of it may run; the next watch applies its
policies to the running container, adopts (releases) the pins and says so; a clean stop of
that watch leaves nothing pinned.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runwatch.bpf.pins import ROOT as PIN_ROOT
from runwatch.containers.rootfs import build_rootfs
from runwatch.containers.runc import ContainerError, RuncContainer

pytestmark = pytest.mark.kernel

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))
CONNECT = ("import socket, sys\ns = socket.socket()\n"
           "try:\n    s.connect(('127.0.0.1', int(sys.argv[1]))); print(0)\n"
           "except OSError as e:\n    print(e.errno)\n")


@pytest.fixture
def port() -> Iterator[int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    yield srv.getsockname()[1]
    srv.close()


def start_watch(tmp: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp / f"{name}.log"
    args = [RUNWATCH, "watch", "--db", str(tmp / f"{name}.db"), "--no-rules", "--sdk-socket",
            str(tmp / "sock" / "sdk.sock"), "--control-socket", str(tmp / "control.sock"),
            "--policy", str(tmp / "policy.yaml"), "--duration", "120"]
    with open(log, "w") as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
    return proc, log


def wait_for(log: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while needle not in log.read_text():
        assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
        time.sleep(0.05)


def test_a_killed_watch_keeps_a_fail_closed_policy_until_the_next_one_adopts_it(tmp_path, port, pin_adoption):  # type: ignore[no-untyped-def]
    (tmp_path / "policy.yaml").write_text(
        "id: crash-23\nselector: {container: [e2e-crash]}\nmode: enforce\nfail: closed\negress:\n  allow: []\n")
    rootfs = build_rootfs()
    py = str(rootfs.python)
    first, log1 = start_watch(tmp_path, "first")
    second = None
    try:
        wait_for(log1, "1 policy(ies) loaded", first)
        with RuncContainer(rootfs, name="e2e-crash") as c:
            c.start()
            wait_for(log1, f"policy crash-23 (enforce) applied to container e2e-crash ({c.id})", first)
            assert c.exec([py, "-c", CONNECT, str(port)]).stdout == b"1\n"
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            assert len(list(PIN_ROOT.glob(f"{first.pid}-*"))) == 1
            time.sleep(2.5)  # the heartbeat is stale: the container may do nothing now
            with pytest.raises(ContainerError):
                res = c.exec([py, "-c", CONNECT, str(port)], timeout=20)
                if res.returncode != 0 and res.stdout == b"":
                    raise ContainerError("killed")
            second, log2 = start_watch(tmp_path, "second")
            wait_for(log2, f"adopted the enforcement a crashed runwatch (pid {first.pid}) left pinned on 1 cgroup(s)",
                     second)
            assert f"policy crash-23 (enforce) applied to container e2e-crash ({c.id})" in log2.read_text()
            assert list(PIN_ROOT.glob(f"{first.pid}-*")) == []
            assert c.exec([py, "-c", CONNECT, str(port)]).stdout == b"1\n"  # governed by the second watch
            second.send_signal(signal.SIGINT)
            second.wait(timeout=30)
            assert second.returncode == 0, log2.read_text()
            assert list(PIN_ROOT.glob(f"{second.pid}-*")) == []  # a clean stop leaves nothing pinned
            assert c.exec([py, "-c", CONNECT, str(port)]).stdout == b"0\n"
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
