"""Attribution and enforcement on a pure cgroup v2 host, not only on this hybrid one.

The driver runs in a private mount namespace where ``/sys/fs/cgroup`` is a cgroup2 mount
(the hybrid ``unified/`` subdirectory is hidden), as on most current Kubernetes nodes, once
with a host process in a cgroup of its own and once with a real runc container.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.kernel

DRIVER = Path(__file__).with_name("purev2_driver.py")
CID = "b" * 61 + "023"
PURE_V2 = ["unshare", "-m", "--propagation", "private", "sh", "-c",
           'mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$@"', "pure-v2"]


def under_pure_v2(mode: str) -> dict[str, Any]:
    """What the driver saw in ``mode`` under a pure-v2 layout."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    proc = subprocess.run([*PURE_V2, sys.executable, str(DRIVER), mode], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got: dict[str, Any] = json.loads(proc.stdout)
    return got


def _assert_enforced_and_attributed(got: dict[str, Any], cid: str) -> None:
    assert got.get("apply_error") is None
    assert got["problems"] == []
    # connect allowed, connect refused (EPERM = 1), exec killed (SIGKILL), another exec runs
    assert got["results"] == [0, 1, -9, 1]
    assert got["decisions"] == [["egress", "deny", cid, True], ["exec", "kill", cid, True]]
    assert got["cgroup_root"] == "/sys/fs/cgroup"
    assert got["by_pid"] == got["by_id"] == [cid, "runc"]
    assert got["path_of"] == f"/runwatch/{cid}"


def test_process_in_own_cgroup_is_enforced_and_attributed_under_pure_v2() -> None:
    got = under_pure_v2("process")
    _assert_enforced_and_attributed(got, CID)
    assert got["proc_reader_cgroup_id"] == got["cgroup_id"]  # the proc connector fallback's read
    assert got["sdk_cgroup_ids"] == [got["cgroup_id"]]  # the SDK collector's read of the sender


def test_runc_container_is_enforced_and_attributed_under_pure_v2() -> None:
    got = under_pure_v2("runc")
    assert got["id"].startswith("rw-")
    _assert_enforced_and_attributed(got, got["id"])


E2E_DRIVER = Path(__file__).parents[1] / "policy" / "e2e_driver.py"
RUNWATCH = str(Path(sys.executable).with_name("runwatch"))
# connect to each (ip, port) of argv[1], then exec /bin/sh; one line per step
PROBE = """
import json, socket, subprocess, sys
for ip, port in json.loads(sys.argv[1]):
    with socket.socket() as s:
        print(ip, "errno", s.connect_ex((ip, port)))
print("sh", subprocess.run(["/bin/sh", "-c", "true"]).returncode)
"""


def test_runwatch_run_enforces_on_a_container_it_starts_under_pure_v2(tmp_path: Path) -> None:
    socks = [socket.create_server((ip, 0)) for ip in ("127.0.0.23", "127.0.0.29")]
    ok, bad = (s.getsockname()[1] for s in socks)
    (tmp_path / "policy.yaml").write_text(
        f"id: v2-run\nselector: {{container: [v2-run]}}\nmode: enforce\negress:\n  allow: ['127.0.0.23:{ok}']\n"
        "exec:\n  deny: [/bin/sh]\n  action: kill\n")
    log = tmp_path / "runwatch.log"
    cfg = {"name": "v2-run", "wait_log": str(log),
           "steps": [["{python}", "-c", PROBE, json.dumps([["127.0.0.23", ok], ["127.0.0.29", bad]])]]}
    args = [*PURE_V2, RUNWATCH, "run", "--db", str(tmp_path / "e2e.db"), "--no-rules", "--sdk-socket",
            str(tmp_path / "sock" / "sdk.sock"), "--control-socket", str(tmp_path / "control.sock"),
            "--policy", str(tmp_path / "policy.yaml"), "--mode", "enforce", "--",
            sys.executable, str(E2E_DRIVER), json.dumps(cfg)]
    try:
        with open(log, "w") as err:
            proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=err, text=True, timeout=120, check=False)
    finally:
        for s in socks:
            s.close()
    text = log.read_text()
    assert proc.returncode == 0, text
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["applied"] is True, text
    assert out["steps"][0]["out"] == "127.0.0.23 errno 0\n127.0.0.29 errno 1\nsh -9\n"
    assert f"policy v2-run (enforce) applied to container v2-run ({out['id']})" in text
    res = subprocess.run([RUNWATCH, "events", "--db", str(tmp_path / "e2e.db"), "--kind", "policy.decision",
                          "--format", "json"], capture_output=True, text=True, timeout=60, check=False)
    got = [json.loads(line) for line in res.stdout.splitlines()]
    assert sorted((d["decision"]["verdict"], d["decision"]["target"], d["container"]["id"]) for d in got) == [
        ("deny", f"127.0.0.29:{bad}", out["id"]), ("kill", "/bin/sh", out["id"])]
