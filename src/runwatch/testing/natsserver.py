"""A real ``nats-server`` with JetStream for tests and benchmarks, on a free port.

:class:`NatsServer` runs Debian's ``nats-server -js`` bound to 127.0.0.1 on a port of its own,
with its store in a directory of the caller's (a temporary one in tests), never as a system
service. :meth:`NatsServer.stop` and :meth:`NatsServer.start` again keep the port and the
store, so a test can take NATS away and bring it back with its streams and consumers. The
``nats_server`` fixture gives one per test, stopped at its end. Without the binary the fixture
skips the test (and fails it under ``CI=true``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BINARY = "nats-server"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """One nats-server process with JetStream (see the module)."""

    def __init__(self, store_dir: str | os.PathLike[str], port: int | None = None) -> None:
        self.store_dir = Path(store_dir)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.store_dir / "nats-server.log"

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:PORT``."""
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> NatsServer:
        """Start the server and wait until it accepts connections."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        exe = shutil.which(BINARY) or (f"/usr/sbin/{BINARY}" if os.path.exists(f"/usr/sbin/{BINARY}") else None)
        if exe is None:
            raise FileNotFoundError(f"{BINARY} is not installed (apt-get install nats-server)")
        self.store_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [exe, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store_dir)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.proc.returncode}; see {self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server did not listen on {self.port} within {timeout:g} s; see {self.log}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s). Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A started nats-server with JetStream, its store in the test's temporary directory."""
    if shutil.which(BINARY) is None and not os.path.exists(f"/usr/sbin/{BINARY}"):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{BINARY} is not installed (scripts/install.sh installs it)")
        pytest.skip(f"{BINARY} is not installed")
    server = NatsServer(tmp_path / "nats").start()
    try:
        yield server
    finally:
        server.stop()
