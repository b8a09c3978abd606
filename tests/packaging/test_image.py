"""The container image: built here by scripts/image.sh, run the way the DaemonSet runs it, it sees
the host's processes with their host pids (hostPID, the chart's host mounts, privileged)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runwatch import __version__
from runwatch.testing.chart import render_chart

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]
TAG = "localhost/runwatch:selftest-image"
WATCH_S = 14.0
#: This machine's hard limits are below podman's defaults (as under some CI runners).
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096")


def _need_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("building and running the image needs root")
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (scripts/install.sh installs it)")


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    _need_tools()
    res = subprocess.run(["bash", str(ROOT / "scripts/image.sh"), TAG], capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"[image] ok: {TAG}" in res.stdout
    yield TAG
    subprocess.run(["podman", "rmi", "-f", TAG], capture_output=True, timeout=120)  # 400 MB each run


def _daemonset_flags() -> list[str]:
    """podman flags for what the chart's DaemonSet gives the agent container."""
    ds = next(o for o in render_chart(ROOT / "deploy/helm/runwatch") if o["kind"] == "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    (agent,) = pod["containers"]
    flags = ["--pid=host" if pod["hostPID"] else "--pid=private"]
    if agent["securityContext"].get("privileged"):
        flags.append("--privileged")
    host = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]}
    for m in agent["volumeMounts"]:
        src = host[m["name"]]
        if not os.path.isdir(src):
            continue  # a runtime this machine does not have (containerd, CRI-O)
        flags += ["-v", f"{src}:{m['mountPath']}:{'ro' if m.get('readOnly') else 'rw'}"]
    env = [e["name"] for e in agent["env"]]
    assert env == ["NODE_NAME"]
    return [*flags, "-e", "NODE_NAME=test-node", *ULIMITS]


def test_the_image_carries_this_version(image: str) -> None:
    res = subprocess.run(["podman", "run", "--rm", *ULIMITS, image, "--version"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"runwatch, version {__version__}"


def test_run_as_the_daemonset_runs_it_the_agent_sees_host_processes(image: str) -> None:
    marker = f"/tmp/rw-image-{uuid.uuid4().hex[:8]}"
    os.symlink("/usr/bin/true", marker)
    try:
        watcher = subprocess.Popen(
            ["podman", "run", "--rm", *_daemonset_flags(), image, "watch", "--no-sdk", "--no-rules",
             "--db", "/tmp/watch.db", "--duration", str(WATCH_S), "--events-out", "/dev/stdout"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started: list[int] = []
        deadline = time.monotonic() + WATCH_S + 30
        while watcher.poll() is None and time.monotonic() < deadline:
            started.append(subprocess.Popen([marker, "image-marker"]).pid)
            time.sleep(0.25)
        out, err = watcher.communicate(timeout=60)
    finally:
        os.unlink(marker)
    assert watcher.returncode == 0, err[-2000:]
    seen = [e["pid"] for line in out.splitlines() if line.startswith("{")
            for e in [json.loads(line)] if e["kind"] == "process.exec" and e.get("argv") == [marker, "image-marker"]]
    assert seen, f"no marker exec seen; stderr: {err[-1000:]}"
    assert len(seen) == len(set(seen))
    # from the first marker seen to the last, every one is seen, under its host pid
    first, last = started.index(seen[0]), started.index(seen[-1])
    assert seen == started[first:last + 1]
    assert len(seen) >= 9, f"only {len(seen)} of {len(started)} markers seen"
