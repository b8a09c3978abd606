"""What ``runwatch run`` writes is its owner's only (0600), and its sockets are gone after it exits."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))


@pytest.mark.kernel
def test_store_events_and_alerts_are_0600_and_the_sdk_socket_is_removed(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the kernel sensor needs root")
    db, events, alerts, sock = (tmp_path / n for n in ("run.db", "events.jsonl", "alerts.jsonl", "sdk.sock"))
    alerts.write_text("")  # an existing file of ours is narrowed too
    alerts.chmod(0o644)
    res = subprocess.run([RUNWATCH, "run", "--db", str(db), "--events-out", str(events), "--alerts-out",
                          str(alerts), "--sdk-socket", str(sock), "--", "/usr/bin/cat", "/etc/shadow"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    assert events.stat().st_size > 0 and alerts.stat().st_size > 0  # reading /etc/shadow alerts
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir() if p.is_file()}
    assert modes and set(modes.values()) == {0o600}, modes
    assert not sock.exists() and sorted(p.name for p in tmp_path.iterdir() if not p.is_file()) == []
