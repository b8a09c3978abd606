"""Real podman pods and containers for tests: a busybox image imported from a tarball (no registry
is reachable), ``podman kube play`` of a Kubernetes Pod manifest, and containers given extra
options (privileged, a device). Everything made is removed by the context managers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PODMAN = shutil.which("podman")
APPLETS: tuple[str, ...] = ("sh", "sleep", "cat", "true", "rm", "echo", "nc", "nslookup", "mknod", "ls")
"""The busybox applets the test image links (the selftest canaries need nc and nslookup)."""


def podman(*args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 120) -> str:
    """Run podman; its stdout (raises AssertionError with its stderr when it fails and ``check``)."""
    res = subprocess.run([PODMAN or "podman", *args], capture_output=True, text=True, timeout=timeout,
                         env=env if env is not None else podman_env())
    if check and res.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


def podman_env() -> dict[str, str]:
    """The environment with a ``containers.conf`` whose ulimits this VM allows: its hard
    RLIMIT_NPROC/NOFILE are below podman's defaults, which runc may not raise."""
    conf = Path(tempfile.gettempdir(), "runwatch-test-containers.conf")
    if not conf.exists():
        conf.write_text('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n')
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def build_image(tag: str, applets: Sequence[str] = APPLETS) -> str:
    """Import a busybox image as ``tag``; its digest."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp, "root")
        for d in ("bin", "etc", "dev", "proc", "sys", "tmp"):
            (root / d).mkdir(parents=True)
        shutil.copy2("/bin/busybox", root / "bin/busybox")
        for applet in applets:
            (root / "bin" / applet).symlink_to("busybox")
        tar = Path(tmp, "rootfs.tar")
        # the same bytes every run, so a re-import is the same image, not one more dangling copy
        subprocess.run(["tar", "-C", str(root), "--sort=name", "--mtime=@0", "--owner=0", "--group=0",
                        "--numeric-owner", "-cf", str(tar), "."], check=True)
        podman("import", "--change", 'CMD ["/bin/sh"]', str(tar), tag)
    out = json.loads(podman("image", "inspect", tag))
    return str(out[0]["Digest"])


@dataclass(frozen=True)
class PlayedPod:
    """A pod ``podman kube play`` made: its name, id and container ids by Kubernetes name."""

    name: str
    pod_id: str
    containers: dict[str, str]


@contextmanager
def kube_play(manifest: str, name: str) -> Iterator[PlayedPod]:
    """Play the Pod manifest (whose ``metadata.name`` is ``name``); removes the pod afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "pod.yaml")
        path.write_text(manifest)
        podman("kube", "play", str(path))
    try:
        info = json.loads(podman("pod", "inspect", name))
        info = info[0] if isinstance(info, list) else info
        ids = {m["Name"].removeprefix(f"{name}-"): m["Id"] for m in info["Containers"]
               if m["Name"].startswith(f"{name}-")}
        yield PlayedPod(name, info["Id"], ids)
    finally:
        podman("pod", "rm", "-f", "-t", "0", name, check=False)


@contextmanager
def container(image: str, name: str, *options: str, command: Sequence[str] = ("/bin/sleep", "600")) -> Iterator[str]:
    """``podman run -d`` of ``image`` with ``options``; its id. Removed afterwards."""
    cid = podman("run", "-d", "--name", name, *options, image, *command).strip()
    try:
        yield cid
    finally:
        podman("rm", "-f", "-t", "0", cid, check=False)


def pid_of(cid: str) -> int:
    """The host pid of the container's first process."""
    return int(podman("inspect", "--format", "{{.State.Pid}}", cid).strip())
