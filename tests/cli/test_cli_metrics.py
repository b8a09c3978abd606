"""``--metrics-listen`` on ``runwatch run``/``watch``: a scrape from inside the watched command,
and the one-line refusals."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from runwatch.testing.metrics import Scrape

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))
TRUES = 23

# The watched command runs /usr/bin/true TRUES times, then scrapes until the session has
# counted them (its own exec and the TRUES), and prints the scrape.
SCRAPER = f"""
import subprocess, sys, time, urllib.request
for _ in range({TRUES}):
    subprocess.run(["/usr/bin/true"], check=True)
url = sys.argv[1]
deadline = time.monotonic() + 20
while True:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    line = [l for l in text.splitlines() if l.startswith('runwatch_events_total{{kind="process.exec"')]
    if (line and float(line[0].split()[-1]) >= {TRUES + 1}) or time.monotonic() > deadline:
        break
    time.sleep(0.05)
time.sleep(0.3)
sys.stdout.write(urllib.request.urlopen(url, timeout=5).read().decode())
"""


def rw(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUNWATCH, *args], capture_output=True, text=True, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_serves_metrics_to_the_watched_command(tmp_path: Path) -> None:
    port = _free_port()
    res = rw("run", "--db", str(tmp_path / "m.db"), "--source", "proc", "--no-sdk", "--no-rules",
             "--metrics-listen", f"127.0.0.1:{port}", "--", sys.executable, "-c", SCRAPER,
             f"http://127.0.0.1:{port}/metrics")
    assert res.returncode == 0, res.stderr
    assert f"runwatch: metrics: http://127.0.0.1:{port}/metrics" in res.stderr.splitlines()
    got = Scrape(res.stdout)
    assert got.value("runwatch_events_total", kind="process.exec", source="proc") == TRUES + 1
    assert got.value("runwatch_info", version="0.1.0", source="proc") == 1


def test_a_non_loopback_address_needs_allow_remote() -> None:
    res = rw("watch", "--metrics-listen", "0.0.0.0:9464", "--duration", "1")
    assert res.returncode == 2
    assert "metrics listen address 0.0.0.0 is not a loopback address: give --metrics-allow-remote" in res.stderr
    res = rw("run", "--metrics-allow-remote", "--", "true")
    assert res.returncode == 2
    assert "--metrics-allow-remote needs --metrics-listen" in res.stderr
    res = rw("run", "--metrics-listen", "localhost", "--", "true")
    assert res.returncode == 2
    assert "expected HOST:PORT" in res.stderr


def test_a_taken_port_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = rw("run", "--db", str(tmp_path / "t.db"), "--source", "proc", "--no-sdk",
                 "--metrics-listen", f"127.0.0.1:{port}", "--", "true")
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert lines == [f"runwatch: error: cannot serve metrics on 127.0.0.1:{port}: Address already in use; "
                     "nothing was started"], lines
