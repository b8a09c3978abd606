"""An agent in a runc container behaves identically with no collector or a full socket."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from runwatch.containers.oci import Bind
from runwatch.sensors.inproc.collector import SdkCollector

pytestmark = pytest.mark.kernel

SOCKET_DIR = "/run/runwatch-sdk"

AGENT = textwrap.dedent("""
    import contextlib, json, subprocess, sys
    instrumented = sys.argv[1] == "1"
    calls = int(sys.argv[2])
    if instrumented:
        from runwatch import sdk
        def call(name, i):
            return sdk.tool_call(name, call_id=str(i), args={"i": i})
    else:
        def call(name, i):
            return contextlib.nullcontext()
    total = 0
    for i in range(calls):
        with call("calc", i):
            total += i * i
    with call("shell", -1):
        out = subprocess.run(["/usr/bin/printf", "hi-%s", "23"], capture_output=True).stdout.decode()
    print(total, out)
    if instrumented:
        sdk.flush(0.3)
        print(json.dumps(sdk.stats()), file=sys.stderr)
    sys.exit(3)
""")


def _run(runc_container, sock_dir: Path, instrumented: bool, calls: int):  # type: ignore[no-untyped-def]
    c = runc_container(binds=[Bind(sock_dir, SOCKET_DIR, False)], env={"RUNWATCH_SOCKET": f"{SOCKET_DIR}/sdk.sock"})
    return c.run(["python3", "-c", AGENT, "1" if instrumented else "0", str(calls)])


@pytest.fixture
def sock_dir(tmp_path: Path) -> Path:
    d = tmp_path / "sock"
    d.mkdir(mode=0o755)
    return d


def test_no_collector_leaves_output_and_exit_code_unchanged(runc_container, sock_dir: Path) -> None:  # type: ignore[no-untyped-def]
    bare = _run(runc_container, sock_dir, False, 23)
    inst = _run(runc_container, sock_dir, True, 23)
    assert bare.returncode == inst.returncode == 3
    assert inst.stdout == bare.stdout == f"{sum(i * i for i in range(23))} hi-23\n".encode()
    stats = json.loads(inst.stderr.decode().strip().splitlines()[-1])
    assert stats["submitted"] == 48  # 24 calls, start and end each
    assert stats["dropped_no_collector"] == 48
    assert stats["sent"] == 0


def test_full_socket_leaves_output_and_exit_code_unchanged(runc_container, sock_dir: Path) -> None:  # type: ignore[no-untyped-def]
    collector = SdkCollector(sock_dir / "sdk.sock")
    collector.start()  # listening but never read: the socket fills up
    try:
        bare = _run(runc_container, sock_dir, False, 20011)
        inst = _run(runc_container, sock_dir, True, 20011)
        assert bare.returncode == inst.returncode == 3
        assert inst.stdout == bare.stdout
        stats = json.loads(inst.stderr.decode().strip().splitlines()[-1])
        assert stats["socket_full_retries"] > 0
        assert stats["dropped_buffer_full"] > 0
        assert stats["submitted"] + stats["dropped_buffer_full"] == 2 * 20012
        # What was sent is exactly what the collector can now read.
        got = 0
        while True:
            batch = collector.poll(0.05)
            if not batch:
                break
            got += len(batch)
        assert got == stats["sent"]
        assert collector.stats()["malformed"] == 0
    finally:
        collector.stop()
