"""Attribution and enforcement on a pure cgroup v2 host, not only on this hybrid one.

The driver runs in a private mount namespace where ``/sys/fs/cgroup`` is a cgroup2 mount
(the hybrid ``unified/`` subdirectory is hidden), as on most current Kubernetes nodes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel

DRIVER = Path(__file__).with_name("purev2_driver.py")
CID = "b" * 61 + "023"


@pytest.fixture
def pure_v2() -> Iterator[list[str]]:
    """The command prefix that runs a program under a pure-v2 layout."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    yield ["unshare", "-m", "--propagation", "private", "sh", "-c",
           'mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$@"', "pure-v2"]


def test_egress_deny_exec_kill_and_attribution_under_pure_v2(pure_v2: list[str]) -> None:
    proc = subprocess.run([*pure_v2, sys.executable, str(DRIVER)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got.get("apply_error") is None
    assert got["problems"] == []
    assert (got["connect_allowed"], got["connect_denied"]) == (0, 1)  # EPERM = 1
    assert (got["exec_killed"], got["exec_other"]) == (-9, 1)  # SIGKILL; /usr/bin/false runs
    assert got["decisions"] == [["egress", "deny", CID, True], ["exec", "kill", CID, True]]
    assert got["cgroup_root"] == "/sys/fs/cgroup"
    assert got["by_pid"] == got["by_id"] == [CID, "runc"]
    assert got["path_of"] == f"/runwatch/{CID}"
