"""Run inside a private mount namespace whose ``/sys/fs/cgroup`` is a cgroup2 mount (pure v2).

Creates ``/runwatch/<id>`` under that root, moves a worker process into it, applies an egress
deny and an exec kill policy through :class:`~runwatch.policy.enforce.Enforcers`, resolves the
worker's container, and prints one JSON object with what happened.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from runwatch.enrich.containers import ContainerResolver
from runwatch.policy import load_policy_texts
from runwatch.policy.enforce import Decision, Enforcers

CID = "b" * 61 + "023"
WORKER = """
import socket, subprocess, sys
for line in sys.stdin:
    op, arg = line.split()
    if op == "connect":
        host, port = arg.rsplit(":", 1)
        s = socket.socket()
        try:
            s.connect((host, int(port))); print(0, flush=True)
        except OSError as e:
            print(e.errno, flush=True)
        finally:
            s.close()
    else:
        print(subprocess.run([arg]).returncode, flush=True)
"""


@dataclass(frozen=True)
class Workload:
    """The worker as an enforcement target."""

    id: str
    cgroup_dir: Path
    cgroup_id: int
    init_pid: int


def ask(proc: subprocess.Popen[str], line: str) -> int:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return int(proc.stdout.readline())


def main() -> dict[str, object]:
    listener = socket.create_server(("0.0.0.0", 0), backlog=16)  # connects complete in the backlog
    port = listener.getsockname()[1]
    parent = Path("/sys/fs/cgroup/runwatch")
    parent.mkdir(exist_ok=True)
    cgroup_dir = parent / CID
    cgroup_dir.mkdir()
    worker = subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    decisions: list[Decision] = []
    enf = Enforcers(on_decision=decisions.append).start()
    try:
        (cgroup_dir / "cgroup.procs").write_text(str(worker.pid))
        target = Workload(CID, cgroup_dir, cgroup_dir.stat().st_ino, worker.pid)
        text = (f"selector: {{container: [any]}}\nid: v2-23\nmode: enforce\negress:\n  allow: ['127.0.0.1:{port}']\n"
                "exec:\n  deny: [/usr/bin/true]\n  action: kill\n")
        policy = next(iter(load_policy_texts([(text, "pure-v2.yaml")])))
        result: dict[str, object] = {"problems": enf.problems}
        try:
            result["notices"] = enf.apply(target, policy)
        except Exception as exc:  # the failure is the finding: report it as data
            result["apply_error"] = f"{type(exc).__name__}: {exc}"
        result["connect_allowed"] = ask(worker, f"connect 127.0.0.1:{port}")
        result["connect_denied"] = ask(worker, f"connect 127.0.0.2:{port}")
        result["exec_killed"] = ask(worker, "exec /usr/bin/true")
        result["exec_other"] = ask(worker, "exec /usr/bin/false")
        time.sleep(0.3)  # decisions arrive from the ring buffer thread
        result["decisions"] = sorted({(d.layer, d.verdict, d.container_id, d.cgroup_id == target.cgroup_id)
                                      for d in decisions})
        resolver = ContainerResolver()
        by_pid = resolver.resolve_pid(worker.pid)
        by_id = resolver.resolve(target.cgroup_id)
        result["cgroup_root"] = resolver.cgroup_root
        result["by_pid"] = [by_pid.id, by_pid.runtime] if by_pid else None
        result["by_id"] = [by_id.id, by_id.runtime] if by_id else None
        result["path_of"] = resolver.path_of(target.cgroup_id)
        return result
    finally:
        enf.stop()
        worker.kill()
        worker.wait()
        listener.close()
        for _ in range(50):
            try:
                cgroup_dir.rmdir()
                break
            except OSError:
                time.sleep(0.05)


if __name__ == "__main__":
    print(json.dumps(main()))
