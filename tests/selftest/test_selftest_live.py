"""``runwatch selftest`` against real containers under the real sensor: a podman pod of an app and a
sidecar, a privileged container, a container given a character device with the NVIDIA major
number (195); then the same with one container's
events dropped by the session's container filter, which the self-test must name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runwatch.testing.podman import PODMAN, build_image, container, kube_play

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(PODMAN is None or os.geteuid() != 0, reason="needs root and podman")]
RUNWATCH = str(Path(sys.executable).with_name("runwatch"))
IMAGE = "localhost/runwatch-selftest-busybox:1"
NVIDIA_MAJOR = 195

MANIFEST = """\
apiVersion: v1
kind: Pod
metadata:
  name: {pod}
spec:
  containers:
  - name: app
    image: {image}
    imagePullPolicy: Never
    command: ["/bin/sleep", "600"]
  - name: proxy
    image: {image}
    imagePullPolicy: Never
    command: ["/bin/sleep", "601"]
"""


@dataclass
class Fleet:
    pod: str
    app: str
    proxy: str
    priv: str
    priv_name: str
    gpu: str
    gpu_name: str


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    build_image(IMAGE)
    tag = uuid.uuid4().hex[:8]
    pod = f"st-{tag}"
    with tempfile.TemporaryDirectory() as tmp, kube_play(MANIFEST.format(pod=pod, image=IMAGE), pod) as played:
        dev = Path(tmp, "nvidia-fake0")
        os.mknod(dev, 0o600 | 0o020000, os.makedev(NVIDIA_MAJOR, 0))  # S_IFCHR
        with container(IMAGE, f"st-priv-{tag}", "--privileged") as priv, \
                container(IMAGE, f"st-gpu-{tag}", "--device", f"{dev}:/dev/nvidia0") as gpu:
            yield Fleet(pod, played.containers["app"], played.containers["proxy"], priv, f"st-priv-{tag}",
                        gpu, f"st-gpu-{tag}")


def selftest(*args: str) -> tuple[int, dict[str, Any], str]:
    res = subprocess.run([RUNWATCH, "selftest", "--format", "json", "--timeout", "5", *args],
                         capture_output=True, text=True, timeout=300)
    return res.returncode, json.loads(res.stdout) if res.stdout.strip() else {}, res.stderr


def rows(report: dict[str, Any], ids: set[str]) -> dict[str, dict[str, Any]]:
    """The report's rows of ``ids``, each canary as (kind, status), delays checked and left out."""
    out = {}
    for row in report["containers"]:
        if row["id"] not in ids:
            continue
        canaries = {}
        for name, c in row["canaries"].items():
            if c["status"] == "seen":
                assert isinstance(c["delay_ms"], int) and 0 <= c["delay_ms"] < 60_000, c
            canaries[name] = (c["kind"], c["status"])
        out[row["id"]] = {**row, "canaries": canaries}
    return out


SEEN_ALL = {"exec": ("process.exec", "seen"), "file": ("file.open", "seen"), "connect": ("net.connect", "seen"),
            "dns": ("dns.query", "seen")}


def expected(f: Fleet, missed: str | None = None) -> dict[str, dict[str, Any]]:
    def row(cid: str, name: str, pod: str | None, privileged: bool, devices: list[str], gpu: int | None = None,
            canaries: dict[str, tuple[str, str]] = SEEN_ALL) -> dict[str, Any]:
        result = "ok"
        if cid == missed:
            canaries = {k: (kind, "missed") for k, (kind, _) in canaries.items()}
            result = "blind"
        return {"id": cid, "name": name, "pod": pod, "runtime": "podman", "privileged": privileged,
                "devices": devices, "gpu": gpu, "canaries": canaries, "result": result}
    return {f.app: row(f.app, "app", f.pod, False, []),
            f.proxy: row(f.proxy, "proxy", f.pod, False, []),
            f.priv: row(f.priv, f.priv_name, None, True, []),
            f.gpu: row(f.gpu, f.gpu_name, None, False, ["/dev/nvidia0"], 1)}


def test_selftest_all_sees_every_container_of_the_pod_the_privileged_and_the_gpu_one(fleet: Fleet) -> None:
    ids = {fleet.app, fleet.proxy, fleet.priv, fleet.gpu}
    rc, report, err = selftest("--all")
    assert rows(report, ids) == expected(fleet), err
    others = [r for r in report["containers"] if r["id"] not in ids]
    if not [r for r in others if r["result"] != "ok"]:  # other containers of this machine may come and go
        assert (rc, report["blind"]) == (0, []), err
    scope = report["scope"]
    assert scope["source"] == "kernel" and scope["hooks_active"] > 0
    assert set(scope["kinds_not_seen"]) == _lost(set(scope["hooks_refused"]))


def _lost(refused: set[str]) -> set[str]:
    """The kinds no program outside ``refused`` provides."""
    from runwatch.sensors.kernel.loader import PROGRAMS, LoadReport

    return LoadReport(active={p.name: p.hook for p in PROGRAMS if p.name not in refused}).kinds_lost()


def test_a_container_whose_events_are_dropped_is_named_blind_and_the_exit_is_1(fleet: Fleet) -> None:
    scope = ["--pod", fleet.pod, "--container", fleet.priv_name, "--container", fleet.gpu[:12]]
    rc, report, err = selftest(*scope, "--drop-container", fleet.proxy[:12])
    assert rc == 1, err
    assert rows(report, set(expected(fleet))) == expected(fleet, missed=fleet.proxy)
    assert report["blind"] == [f"{fleet.pod}/proxy ({fleet.proxy[:12]})"]
    text = subprocess.run([RUNWATCH, "selftest", *scope, "--drop-container", fleet.proxy[:12], "--timeout", "3"],
                          capture_output=True, text=True, timeout=300)
    assert text.returncode == 1
    lines = text.stdout.splitlines()
    assert lines[-1] == f"selftest FAILED: blind or partly blind: {fleet.pod}/proxy ({fleet.proxy[:12]})"
    assert lines[0].startswith("sources on: kernel (") and lines[2].startswith("event kinds not seen on this host: ")
    proxy_row = next(line for line in lines if line.startswith(f"proxy ({fleet.proxy[:12]})"))
    assert proxy_row.split()[-5:] == ["missed", "missed", "missed", "missed", "blind"]
    gpu_row = next(line for line in lines if line.startswith(f"{fleet.gpu_name} "))
    assert "[devices=/dev/nvidia0]" in gpu_row and gpu_row.endswith("ok")


def test_nothing_in_scope_is_a_usage_error_in_one_line() -> None:
    res = subprocess.run([RUNWATCH, "selftest", "--pod", f"no-such-{uuid.uuid4().hex[:6]}"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "no running container in scope" in res.stderr
    res = subprocess.run([RUNWATCH, "selftest"], capture_output=True, text=True, timeout=60)
    assert (res.returncode, res.stderr.strip()) == (
        2, "runwatch: error: name the containers to test: --pod P, --container C or --all")
