"""OTLP receiver authentication over real loopback HTTP: bearer tokens, and where it may listen."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from runwatch.sensors.ingest.access import check_listen
from runwatch.sensors.ingest.otlp import PROTOBUF, OtlpReceiver
from runwatch.testing.sources import drain

FIXTURES = Path(__file__).parent / "fixtures"
RUNWATCH = str(Path(sys.executable).with_name("runwatch"))
TOKEN = "s3cr3t-token-23"


def post(rx: OtlpReceiver, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    body = (FIXTURES / "agent_trace.pb").read_bytes()
    conn = http.client.HTTPConnection("127.0.0.1", rx.port, timeout=10)
    try:
        conn.request("POST", "/v1/traces", body=body,
                     headers={"Content-Type": PROTOBUF, "Content-Length": str(len(body)), **headers})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.fixture
def guarded() -> object:
    rx = OtlpReceiver("127.0.0.1", 0, token=TOKEN)
    rx.start()
    try:
        yield rx
    finally:
        rx.stop()


def test_requests_without_the_bearer_token_get_401_and_are_counted(guarded: OtlpReceiver) -> None:
    refused = [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
               {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer"}]
    for headers in refused:
        status, answer, _ = post(guarded, headers)
        assert status == 401, headers
        assert answer["www-authenticate"] == 'Bearer realm="runwatch-otlp"'
    assert drain(guarded) == []
    stats = guarded.stats()
    assert (stats["unauthorized"], stats["requests"], stats["events"]) == (5, 0, 0)
    status, _, _ = post(guarded, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    assert len(drain(guarded)) == 9
    stats = guarded.stats()
    assert (stats["unauthorized"], stats["requests"], stats["events"]) == (5, 1, 9)


def test_scheme_is_case_insensitive_and_the_connection_stays_usable(guarded: OtlpReceiver) -> None:
    body = (FIXTURES / "agent_trace.pb").read_bytes()
    conn = http.client.HTTPConnection("127.0.0.1", guarded.port, timeout=10)
    try:
        for auth, expected in (("", 401), (f"bearer {TOKEN}", 200), ("Bearer nope", 401), (f"BEARER {TOKEN}", 200)):
            headers = {"Content-Type": PROTOBUF, "Content-Length": str(len(body))}
            if auth:
                headers["Authorization"] = auth
            conn.request("POST", "/v1/traces", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == expected, auth
    finally:
        conn.close()
    assert guarded.stats()["unauthorized"] == 2


def test_a_large_body_without_the_token_is_not_read(guarded: OtlpReceiver) -> None:
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as s:
        s.sendall(b"POST /v1/traces HTTP/1.1\r\nContent-Type: application/x-protobuf\r\n"
                  b"Content-Length: 3000000\r\n\r\n")
        answer = b""
        while chunk := s.recv(65536):  # answered and closed without the 3 MB being sent
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 401 ") and b"Connection: close" in answer
    assert guarded.stats()["unauthorized"] == 1


def test_non_loopback_listen_needs_a_token() -> None:
    with pytest.raises(ValueError, match=r"^OTLP listen address 0\.0\.0\.0 is not a loopback address: "
                                         r"give a token \(--otlp-token-file\) to listen there$"):
        OtlpReceiver("0.0.0.0", 0)
    for host in ("127.0.0.1", "127.0.0.23", "::1", "localhost", "unix:/run/runwatch/sdk/otlp.sock"):
        check_listen(host, None)
    check_listen("0.0.0.0", TOKEN)
    with pytest.raises(ValueError, match="is not a loopback address"):
        check_listen("10.0.0.23", None)
    with pytest.raises(ValueError, match=r"^an empty OTLP token is no token$"):
        OtlpReceiver("127.0.0.1", 0, token="")


def rw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUNWATCH, *args], capture_output=True, text=True, timeout=60)


def test_cli_refuses_non_loopback_without_token_in_one_line(tmp_path: Path) -> None:
    for cmd in (["run", "--db", str(tmp_path / "a.db"), "--otlp-listen", "0.0.0.0:4318", "--", "true"],
                ["watch", "--db", str(tmp_path / "b.db"), "--otlp-listen", "0.0.0.0:4318", "--duration", "1"]):
        res = rw(*cmd)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in res.stderr
        assert "OTLP listen address 0.0.0.0 is not a loopback address" in lines[0]
    assert not (tmp_path / "a.db").exists()


def test_cli_token_file_problems_are_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    cases = [
        (["--otlp-listen", "127.0.0.1:0", "--otlp-token-file", str(tmp_path / "absent")],
         f"cannot read OTLP token file {tmp_path / 'absent'}: No such file or directory"),
        (["--otlp-listen", "127.0.0.1:0", "--otlp-token-file", str(empty)], f"OTLP token file {empty} is empty"),
        (["--otlp-token-file", str(empty)], "--otlp-token-file needs --otlp-listen"),
        (["--otlp-listen", "unix:relative/otlp.sock"], "expected unix:/ABSOLUTE/PATH, got 'unix:relative/otlp.sock'"),
    ]
    for extra, message in cases:
        res = rw("run", "--db", str(tmp_path / "c.db"), *extra, "--", "true")
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], res.stderr


AGENT = r"""
import http.client, os, sys
port, token, body_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
body = open(body_file, "rb").read()
for auth in ("", "Bearer " + token):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/x-protobuf", "Content-Length": str(len(body))}
    if auth:
        headers["Authorization"] = auth
    conn.request("POST", "/v1/traces", body=body, headers=headers)
    print(conn.getresponse().status, flush=True)
    conn.close()
"""


@pytest.mark.kernel
def test_run_with_a_token_refuses_and_scopes_and_says_so(tmp_path: Path) -> None:
    request = ExportTraceServiceRequest.FromString((FIXTURES / "agent_trace.pb").read_bytes())
    for rs in request.resource_spans:  # names pid 1, a process outside the command's own cgroup
        kept = [kv for kv in rs.resource.attributes if kv.key not in ("process.pid", "container.id")]
        del rs.resource.attributes[:]
        rs.resource.attributes.extend([*kept, KeyValue(key="process.pid", value=AnyValue(int_value=1))])
    body = tmp_path / "body.pb"
    body.write_bytes(request.SerializeToString())
    token_file = tmp_path / "otlp.token"
    token_file.write_text(TOKEN + "\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = tmp_path / "t.db"
    res = subprocess.run([RUNWATCH, "run", "--db", str(db), "--no-rules", "--no-sdk", "--otlp-listen",
                          f"127.0.0.1:{port}", "--otlp-token-file", str(token_file), "--", sys.executable, "-c",
                          AGENT, str(port), TOKEN, str(body)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["401", "200"]
    assert "runwatch: otlp: 1 request(s) refused for a missing or wrong bearer token" in res.stderr
    assert ("runwatch: otlp: 9 span event(s) named a process outside their sender's cgroup or pid namespace; "
            "stored unattributed") in res.stderr
    listed = subprocess.run([RUNWATCH, "events", "--db", str(db), "--format", "json"], capture_output=True,
                            text=True, timeout=60)
    spans = [e for e in map(json.loads, listed.stdout.splitlines()) if e.get("source") == "otlp"]
    assert len(spans) == 9
    assert {(e.get("pid", 0), e["attrs"]["foreign_pid"]) for e in spans} == {(0, True)}
