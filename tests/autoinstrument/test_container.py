"""The sitecustomize switch inside a runc container (own pid namespace), reporting to a host collector."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from runwatch.containers.oci import Bind
from runwatch.events import ToolCall
from runwatch.sdk.autowrap import SITE_DIR
from runwatch.sensors.inproc.collector import SdkCollector

pytestmark = pytest.mark.kernel

SOCKET_DIR = "/run/runwatch-sdk"

AGENT = textwrap.dedent("""
    import subprocess, sys
    from runwatch import sdk
    with sdk.tool_call("run_shell", call_id="c-23", agent="boxed"):
        for _ in range(23):
            subprocess.run(["/usr/bin/true"], check=True)
    open("/run/secrets/token").read()
    print("done")
    sys.exit(5)
""")


def test_plain_python_in_a_container_is_instrumented_by_pythonpath(
        runc_container: Any, collector: SdkCollector, tmp_path: Path, helpers: Any) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "token").write_text("t0ken")
    c = runc_container(binds=[Bind(collector.path.parent, SOCKET_DIR, False), Bind(secrets, "/run/secrets", True)],
                       env={"RUNWATCH_SOCKET": f"{SOCKET_DIR}/sdk.sock", "PYTHONPATH": SITE_DIR,
                            "RUNWATCH_AGENT": "boxed"})
    res = c.run(["python3", "-c", AGENT])
    assert (res.returncode, res.stdout, res.stderr) == (5, b"done\n", b"")
    events = helpers.drain(collector)
    assert {e.vpid for e in events} == {1}
    assert {e.pidns for e in events} != {os.stat("/proc/self/ns/pid").st_ino}
    assert [e.kind for e in events if e.source == "sdk"] == ["sensor.notice", "tool.start", "tool.end"]
    execs = [e for e in events if e.source == "audit" and e.kind == "process.exec"]
    assert len(execs) == 23
    assert {(tuple(e.argv or ()), e.tool_call) for e in execs} == {
        (("/usr/bin/true",), ToolCall("run_shell", "c-23", "boxed"))}
    opens = [e for e in events if e.kind == "file.open"]
    assert [(e.file.path, e.file.intent, e.tool_call) for e in opens if e.file] == [
        ("/run/secrets/token", "read", None)]
    assert all(e.pid != 1 and e.pid > 0 for e in events)  # the host's view of the container's pid 1
