"""``runwatch console`` and ``runwatch watch --console`` through the real command line: bad
addresses and token files are one line and exit 2; the console serves the store it is given,
and a watch session serves its own store while it runs."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from console_synthetic import TOKEN

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))


def rw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUNWATCH, *args], capture_output=True, text=True, timeout=30, check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, token: str) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.read().decode()


@pytest.mark.parametrize(("args", "line"), [
    (["--listen", "0.0.0.0:8080"], "refusing to serve the console on 0.0.0.0 (not loopback) without --token-file"),
    (["--listen", "nowhere"], "--listen 'nowhere': give HOST:PORT (127.0.0.1:8080, [::1]:8080)"),
    (["--token-file", "/nonexistent/token"], "cannot read token file /nonexistent/token: No such file or directory"),
])
def test_console_refuses_bad_addresses_and_token_files(args: list[str], line: str, store: Path) -> None:
    res = rw("console", "--db", str(store), *args)
    assert (res.returncode, res.stderr.strip().splitlines()) == (2, [f"runwatch: error: {line}"])


def test_console_without_a_store_is_one_line(tmp_path: Path) -> None:
    res = rw("console", "--db", str(tmp_path / "none.db"), "--listen", f"127.0.0.1:{free_port()}")
    assert (res.returncode, res.stderr.strip().splitlines()) == (
        1, [f"runwatch: error: event store not found: {tmp_path / 'none.db'}"])


def test_watch_refuses_an_exposed_console_before_starting(tmp_path: Path) -> None:
    res = rw("watch", "--db", str(tmp_path / "w.db"), "--console", "10.0.0.1:80")
    assert (res.returncode, res.stderr.strip().splitlines()) == (
        2, ["runwatch: error: refusing to serve the console on 10.0.0.1 (not loopback) without --token-file"])
    assert not (tmp_path / "w.db").exists()
    res = rw("watch", "--db", str(tmp_path / "w.db"), "--console-token-file", str(tmp_path / "t"))
    assert (res.returncode, res.stderr.strip()) == (
        2, "runwatch: error: --console-token-file needs --console HOST:PORT")


def test_console_serves_the_store_with_the_token_from_its_file(store: Path, tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    port = free_port()
    proc = subprocess.Popen([RUNWATCH, "console", "--db", str(store), "--listen", f"127.0.0.1:{port}",
                             "--token-file", str(tmp_path / "token")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first == f"runwatch console on http://127.0.0.1:{port} (store {store})"
        assert proc.stdout.readline().strip() == f"token: from {tmp_path / 'token'}"
        status, body = get(f"http://127.0.0.1:{port}/workloads", TOKEN)
        assert status == 200 and '<span id="workload-count">3</span>' in body
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0


@pytest.mark.kernel
def test_watch_serves_the_console_over_its_own_store(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "live.db"
    proc = subprocess.Popen([RUNWATCH, "watch", "--db", str(db), "--no-rules", "--no-sdk", "--duration", "30",
                             "--console", f"127.0.0.1:{port}", "--control-socket", str(tmp_path / "c.sock")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        token = None
        deadline = time.monotonic() + 60
        while token is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line, "watch ended before serving the console"
            m = re.fullmatch(rf"runwatch: console on http://127\.0\.0\.1:{port}; token (\S+)", line.strip())
            token = m.group(1) if m else None
        assert token is not None
        body = ""
        while '<span id="run-count">1</span>' not in body and time.monotonic() < deadline:
            time.sleep(0.1)  # the run record is committed with the writer's next batch
            body = get(f"http://127.0.0.1:{port}/health", token)[1]
        assert '<span id="run-count">1</span>' in body and '<span class="sev info">running</span>' in body
        body = get(f"http://127.0.0.1:{port}/challenges", token)[1]
        assert '<span id="challenge-count">0</span>' in body
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert proc.returncode == 0
    with pytest.raises(OSError):
        get(f"http://127.0.0.1:{port}/health", token)
