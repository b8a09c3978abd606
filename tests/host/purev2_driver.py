"""Run inside a private mount namespace whose ``/sys/fs/cgroup`` is a cgroup2 mount (pure v2).

Argument: ``process`` or ``runc``. ``process`` creates ``/runwatch/<id>`` under that root and
moves a host process into it; ``runc`` starts a real runc container (runc sees a pure v2
host too). Then it applies an egress deny and an exec kill policy through
:class:`~runwatch.policy.enforce.Enforcers`, runs connects and execs in the workload,
resolves the workload's container, reads its cgroup id the ways the proc fallback and the
SDK collector do (``process`` only), and prints one JSON object with what happened.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from runwatch.containers.rootfs import build_rootfs
from runwatch.containers.runc import RuncContainer
from runwatch.enrich.containers import ContainerResolver
from runwatch.host import cgroup_v2_if_any
from runwatch.policy import load_policy_texts
from runwatch.policy.enforce import Enforcement, Enforcers, Target
from runwatch.sensors.inproc.collector import SdkCollector
from runwatch.sensors.proc.source import ProcReader
from runwatch.testing.sources import drain

CID = "b" * 61 + "023"
# Runs each operation of argv[1] (after a line on stdin when argv[2] is "wait"); prints the results.
WORKER = """
import json, os, socket, subprocess, sys
if sys.argv[2:] == ["wait"]:
    sys.stdin.readline()
out = []
for op, arg in json.loads(sys.argv[1]):
    if op == "sdk":
        msg = {"v": 1, "k": "tool.start", "m": 1000, "pid": os.getpid(), "tid": os.getpid(),
               "ns": os.stat("/proc/self/ns/pid").st_ino, "sid": 23, "name": "pure-v2"}
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(json.dumps(msg).encode(), arg)
        out.append(0)
    elif op == "connect":
        host, port = arg.rsplit(":", 1)
        s = socket.socket()
        try:
            s.connect((host, int(port))); out.append(0)
        except OSError as e:
            out.append(e.errno)
        finally:
            s.close()
    else:
        out.append(subprocess.run([arg]).returncode)
print(json.dumps(out), flush=True)
"""


@dataclass(frozen=True)
class Workload:
    """A host process in a cgroup of its own, as an enforcement target."""

    id: str
    cgroup_dir: Path
    cgroup_id: int
    init_pid: int


def policy_text(port: int) -> str:
    return (f"selector: {{container: [any]}}\nid: v2-23\nmode: enforce\negress:\n  allow: ['127.0.0.1:{port}']\n"
            "exec:\n  deny: [/usr/bin/true]\n  action: kill\n")


@contextmanager
def sdk_collector() -> Iterator[SdkCollector]:
    with tempfile.TemporaryDirectory() as tmp:
        collector = SdkCollector(Path(tmp) / "sdk.sock")
        collector.start()
        try:
            yield collector
        finally:
            collector.stop()


@contextmanager
def host_process(ops: list[list[str]]) -> Iterator[tuple[Target, subprocess.Popen[str]]]:
    """A worker held before its first operation, moved into ``/runwatch/<CID>``."""
    parent = Path("/sys/fs/cgroup/runwatch")
    parent.mkdir(exist_ok=True)
    cgroup_dir = parent / CID
    cgroup_dir.mkdir()
    worker = subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(ops), "wait"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        (cgroup_dir / "cgroup.procs").write_text(str(worker.pid))
        yield Workload(CID, cgroup_dir, cgroup_dir.stat().st_ino, worker.pid), worker
    finally:
        worker.kill()
        worker.wait()
        for _ in range(50):
            try:
                cgroup_dir.rmdir()
                break
            except OSError:
                time.sleep(0.05)


def run(mode: str) -> dict[str, object]:
    listener = socket.create_server(("0.0.0.0", 0), backlog=16)  # connects complete in the backlog
    port = listener.getsockname()[1]
    ops = [["connect", f"127.0.0.1:{port}"], ["connect", f"127.0.0.2:{port}"], ["exec", "/usr/bin/true"],
           ["exec", "/usr/bin/false"]]
    policy = next(iter(load_policy_texts([(policy_text(port), "pure-v2.yaml")])))
    decisions: list[Enforcement] = []
    result: dict[str, object] = {}
    with ExitStack() as stack:
        stack.callback(listener.close)
        if mode == "process":
            collector = stack.enter_context(sdk_collector())
            target, worker = stack.enter_context(host_process([*ops, ["sdk", str(collector.path)]]))
        else:
            container = RuncContainer(build_rootfs(), name="pure-v2")
            stack.callback(container.close)
            container.start()
            target = container
        enf = Enforcers(on_decision=decisions.append).start()
        stack.callback(enf.stop)
        result["problems"] = enf.problems
        try:
            result["notices"] = enf.apply(target, policy)
        except Exception as exc:  # the failure is the finding: report it as data
            result["apply_error"] = f"{type(exc).__name__}: {exc}"
        if mode == "process":
            assert worker.stdin is not None and worker.stdout is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
            result["results"] = json.loads(worker.stdout.readline())[:4]
            result["proc_reader_cgroup_id"] = ProcReader(cgroups=cgroup_v2_if_any()).read(worker.pid).cgroup_id
            result["sdk_cgroup_ids"] = [e.cgroup_id for e in drain(collector, 0.2)]
        else:
            out = container.exec([str(container.rootfs.python), "-c", WORKER, json.dumps(ops)])
            result["results"] = json.loads(out.stdout) if out.returncode == 0 else out.stderr.decode()
        time.sleep(0.3)  # decisions arrive from the ring buffer thread
        result["decisions"] = sorted({(d.layer, d.verdict, d.container_id, d.cgroup_id == target.cgroup_id)
                                      for d in decisions})
        resolver = ContainerResolver()
        by_pid = resolver.resolve_pid(target.init_pid)
        by_id = resolver.resolve(target.cgroup_id)
        result["id"] = target.id
        result["cgroup_id"] = target.cgroup_id
        result["cgroup_root"] = resolver.cgroup_root
        result["by_pid"] = [by_pid.id, by_pid.runtime] if by_pid else None
        result["by_id"] = [by_id.id, by_id.runtime] if by_id else None
        result["path_of"] = resolver.path_of(target.cgroup_id)
    return result


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1])))
