"""Digests of tool arguments are HMAC-SHA256 under the per-installation key, over the real endpoint."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runwatch import sdk
from runwatch.argskey import ArgsKey, default_key_path
from runwatch.events import Event
from runwatch.policy import load_policy_texts
from runwatch.policy.decide import Decider
from runwatch.policy.server import PolicyServer

SELF_EXE = os.readlink("/proc/self/exe")
POLICY = f"""\
- id: tools
  selector: {{process: {json.dumps(SELF_EXE)}}}
  mode: enforce
  tools:
    allow: [search]
"""
ARGS = {"query": "quarterly report", "limit": 23, "tags": ["ä", "b"]}
CANON = json.dumps(ARGS, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def decide_digest(tmp: Path, key: ArgsKey, args: Any) -> str | None:
    """One run: a server on fresh sockets, one /v1/decide with raw args; the stored digest."""
    events: list[Event] = []
    decider = Decider(load_policy_texts([(POLICY, "p.yaml")]), emit=events.append)
    sock = tmp / f"decide-{len(list(tmp.iterdir()))}.sock"
    with PolicyServer(decider, str(sock), None, args_key=key):
        body = json.dumps({"tool": "search", "args": args}).encode()
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(sock))
            s.sendall(b"POST /v1/decide HTTP/1.1\r\nContent-Type: application/json\r\nConnection: close\r\n"
                      + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert len(events) == 1 and events[0].ai is not None
    return events[0].ai.args_digest


def test_decide_stores_a_keyed_digest_stable_across_runs(tmp_path: Path) -> None:
    key_file = tmp_path / "state" / "args.key"
    first = decide_digest(tmp_path, ArgsKey(str(key_file)), ARGS)
    text = key_file.read_text()
    assert len(text) == 64 and int(text, 16) >= 0
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    plain = hashlib.sha256(CANON).hexdigest()
    assert first is not None and plain not in first
    assert first == hmac.new(text.encode(), CANON, hashlib.sha256).hexdigest()
    assert first == sdk.args_digest(ARGS, text.encode())  # the SDK's digest under the same key
    second = decide_digest(tmp_path, ArgsKey(str(key_file)), ARGS)  # a second run, same installation
    assert second == first and key_file.read_text() == text
    other = decide_digest(tmp_path, ArgsKey(str(tmp_path / "other" / "args.key")), ARGS)
    assert other != first


def test_a_malformed_or_foreign_key_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "args.key"
    bad.write_text("not hex\n")
    with pytest.raises(OSError, match=rf"^{bad}: not an args key \(64 hex characters\); remove it to make a new "
                                      r"one$"):
        _ = ArgsKey(str(bad)).key
    loose = tmp_path / "loose.key"
    loose.write_text("ab" * 32)
    loose.chmod(0o644)
    assert ArgsKey(str(loose)).key == b"ab" * 32
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600


def test_default_key_lives_in_the_state_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RUNWATCH_STATE_DIR", str(tmp_path / "st"))
    assert default_key_path() == str(tmp_path / "st" / "args.key")
    monkeypatch.delenv("RUNWATCH_STATE_DIR")
    assert default_key_path() == "/var/lib/runwatch/args.key"


@pytest.mark.kernel
def test_run_gives_the_watched_command_the_same_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RUNWATCH_ARGS_KEY"}
    env["RUNWATCH_STATE_DIR"] = str(tmp_path / "st")
    runwatch = str(Path(sys.executable).with_name("runwatch"))
    res = subprocess.run([runwatch, "run", "--no-rules", "--db", str(tmp_path / "r.db"), "--", sys.executable, "-c",
                          "import os; print(os.environ['RUNWATCH_ARGS_KEY'])"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == (tmp_path / "st" / "args.key").read_text()
