"""Attribution and enforcement on a pure cgroup v2 host, not only on this hybrid one.

The driver runs in a private mount namespace where ``/sys/fs/cgroup`` is a cgroup2 mount
(the hybrid ``unified/`` subdirectory is hidden), as on most current Kubernetes nodes, once
with a host process in a cgroup of its own and once with a real runc container.
"""

from __future__ import annotations

import json
import shutil
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
