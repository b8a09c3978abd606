"""Fuzzing every listener of a real ``runwatch run`` while its command makes kernel events.

The SDK datagram socket, the OTLP receiver, and the policy decide and control sockets get
random and crafted bad input (see :mod:`runwatch.testing.fuzz`) plus idle and dribbling
connections, for the whole time the command makes 23 opens of a watched file. Every one of
those opens must be stored, the run must exit 0, and each listener must have counted
malformed input in the run's recorded summary. The seed is printed (and named in every
assertion); ``RUNWATCH_FUZZ_SEED=N`` repeats a run.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from runwatch.testing.fuzz import Fuzzer, datagram_inputs, hold_slow, http_inputs, stream_sender

pytestmark = pytest.mark.kernel

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))
SELF_EXE = os.path.realpath(sys.executable)
OPENS = 23
WORKLOAD = r"""
import os, sys, time
go, done, path = sys.argv[1:4]
deadline = time.monotonic() + 60
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.05)
for _ in range(23):
    with open(path, "rb") as fh:
        fh.read(1)
    time.sleep(0.6)
open(done, "w").close()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unix_stream(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(path)
    except OSError:
        s.close()
        raise
    return s


def wait_for(ready: list[Path], port: int, proc: subprocess.Popen[str], seed: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"seed={seed}: runwatch exited early: {proc.stderr.read() if proc.stderr else ''}"
        if all(p.exists() for p in ready):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                pass
        time.sleep(0.1)
    raise AssertionError(f"seed={seed}: listeners not up after 60 s")


def test_listeners_survive_fuzzing_and_no_kernel_event_is_lost(tmp_path: Path) -> None:
    seed = int(os.environ.get("RUNWATCH_FUZZ_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"listener fuzz seed: {seed} (RUNWATCH_FUZZ_SEED={seed} repeats it)")
    rng = random.Random(seed)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    watched = secrets / "token"
    watched.write_text("not a real token\n")
    sockets = tmp_path / "sdk"
    sdk_sock, decide_sock, control_sock = sockets / "sdk.sock", sockets / "policy.sock", tmp_path / "control.sock"
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"- id: fuzz\n  selector: {{process: {json.dumps(SELF_EXE)}}}\n  mode: monitor\n"
                      "  tools:\n    allow: [search]\n")
    port = free_port()
    db = tmp_path / "fuzz.db"
    go, done = tmp_path / "go", tmp_path / "done"
    env = {**os.environ, "RUNWATCH_WATCH_PATHS": f"{secrets}/", "RUNWATCH_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.Popen(
        [RUNWATCH, "run", "--db", str(db), "--no-rules", "--sdk-socket", str(sdk_sock),
         "--otlp-listen", f"127.0.0.1:{port}", "--policy", str(policy), "--control-socket", str(control_sock),
         "--", sys.executable, "-c", WORKLOAD, str(go), str(done), str(watched)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()
    fuzzers: list[Fuzzer] = []
    try:
        wait_for([sdk_sock, decide_sock, control_sock], port, proc, seed)
        dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

        def tcp() -> socket.socket:
            return socket.create_connection(("127.0.0.1", port), timeout=2)

        def datagram(data: bytes) -> None:
            dgram.sendto(data, str(sdk_sock))

        slow_head = b"POST /v1/traces HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 9999\r\n"
        holders = [hold_slow(tcp, 6, stop, slow_head),
                   hold_slow(lambda: unix_stream(str(decide_sock)), 6, stop, slow_head),
                   hold_slow(lambda: unix_stream(str(control_sock)), 6, stop, slow_head)]
        until = time.monotonic() + 30
        fuzzers = [
            Fuzzer("sdk", datagram_inputs(random.Random(rng.random())), datagram).start(until),
            Fuzzer("otlp", http_inputs(random.Random(rng.random()), "/v1/traces", "application/x-protobuf"),
                   stream_sender(tcp)).start(until),
            Fuzzer("decide", http_inputs(random.Random(rng.random()), "/v1/decide", "application/json"),
                   stream_sender(lambda: unix_stream(str(decide_sock)))).start(until),
            Fuzzer("control", http_inputs(random.Random(rng.random()), "/v1/challenges/x/approve",
                                          "application/json"),
                   stream_sender(lambda: unix_stream(str(control_sock)))).start(until),
        ]
        go.touch()
        deadline = time.monotonic() + 60
        while not done.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        sent = {f.name: f.finish() for f in fuzzers}
        stop.set()
        for t in holders:
            t.join(timeout=10)
        dgram.close()
        _, stderr = proc.communicate(timeout=90)
    finally:
        stop.set()
        for f in fuzzers:
            f.finish()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"sent: {sent}")
    print(stderr)
    assert proc.returncode == 0, f"seed={seed}: {stderr}"
    assert "Traceback" not in stderr, f"seed={seed}: {stderr}"
    assert all(n > 20 for n in sent.values()), f"seed={seed}: {sent}"
    with sqlite3.connect(db) as conn:
        stats = json.loads(conn.execute("SELECT stats FROM runs").fetchone()[0])
    listed = subprocess.run([RUNWATCH, "events", "--db", str(db), "--format", "json"],
                            capture_output=True, text=True, timeout=60)
    events = [json.loads(line) for line in listed.stdout.splitlines()]
    opens = [e for e in events if e["kind"] == "file.open" and e.get("file", {}).get("path") == str(watched)]
    assert len(opens) == OPENS, f"seed={seed}: {len(opens)} opens stored; {stderr}"
    kernel = Counter(e["kind"] for e in events if e.get("source", "kernel") == "kernel")
    assert kernel == {"file.open": OPENS, "process.exec": 1, "process.exit": 1}, f"seed={seed}: {kernel}"
    assert stats["drops"] == 0, f"seed={seed}: {stats['drops']} kernel events dropped"
    malformed = stats.get("malformed", {})
    for name in ("sdk", "otlp", "policy decide socket", "policy control socket"):
        assert malformed.get(name, {}).get("count", 0) > 0, f"seed={seed}: {name}: {malformed}"
        assert f"{name}: " in stderr and "malformed message(s) ignored" in stderr, f"seed={seed}: {stderr}"
