"""The SDK collector on a real unix socket: validation, credentials, stale sockets, cleanup."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runwatch.events import Event
from runwatch.sensors.inproc.collector import SdkCollector
from runwatch.sensors.multi import MultiSource


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[SdkCollector]:
    col = SdkCollector(tmp_path / "d" / "sdk.sock")
    col.start()
    try:
        yield col
    finally:
        col.stop()


def _msg(**kw: object) -> bytes:
    base: dict[str, object] = {"v": 1, "k": "tool.start", "m": 1000, "pid": os.getpid(),
                               "tid": os.getpid(), "ns": os.stat("/proc/self/ns/pid").st_ino,
                               "sid": 1, "name": "t"}
    base.update(kw)
    return json.dumps({k: v for k, v in base.items() if v is not None}).encode()


def _send(col: SdkCollector, payload: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(payload, str(col.path))


def _read(col: SdkCollector) -> list[Event]:
    out: list[Event] = []
    while batch := col.poll(0.1):
        out.extend(batch)
    return out


def test_socket_mode_dir_and_cleanup(tmp_path: Path) -> None:
    col = SdkCollector(tmp_path / "new" / "sdk.sock")
    col.start()
    st = os.stat(col.path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o666
    assert stat.S_IMODE(os.stat(col.path.parent).st_mode) == 0o755
    col.stop()
    assert not col.path.exists()
    assert col.poll(0.0) is None


def test_bad_messages_are_counted_and_good_ones_kept(collector: SdkCollector) -> None:
    bad = [
        b"not json",
        b"[1, 2]",
        _msg(v=2),
        _msg(k="tool.explode"),
        _msg(pid="one"),
        _msg(name="x" * 1025),
        _msg(sid=None),
        _msg(k="tool.end", st="maybe"),
        _msg(m=-5),
        b'{"v": 1}',
        _msg(args="y" * 4097),
    ]
    good = _msg(name="kept", cid="c-23")
    _send(collector, b"\n".join([*bad, good]) + b"\n")
    events = _read(collector)
    assert len(events) == 1 and events[0].tool_call is not None
    assert (events[0].tool_call.name, events[0].tool_call.call_id) == ("kept", "c-23")
    stats = collector.stats()
    assert (stats["malformed"], stats["datagrams"], stats["events"]) == (11, 1, 1)
    assert collector.last_error is not None and "\n" not in collector.last_error


def test_kernel_credentials_win_over_claimed_identity(collector: SdkCollector) -> None:
    _send(collector, _msg(pid=4242, ns=99))
    (e,) = _read(collector)
    me = os.getpid()
    assert (e.pid, e.vpid, e.pidns) == (me, me, os.stat("/proc/self/ns/pid").st_ino)
    assert collector.stats()["identity_mismatch"] == 1


def test_time_is_monotonic_plus_offset(tmp_path: Path) -> None:
    col = SdkCollector(tmp_path / "sdk.sock", clock_offset=1_000_000)
    col.start()
    try:
        _send(col, _msg(m=23))
        (e,) = _read(col)
        assert e.time == 1_000_023
    finally:
        col.stop()


def test_stale_socket_is_replaced_live_one_and_regular_file_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "sdk.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(path))
    dead.close()  # the file stays: a collector that died
    col = SdkCollector(path)
    col.start()
    try:
        with pytest.raises(RuntimeError, match="another collector is listening"):
            SdkCollector(path).start()
    finally:
        col.stop()
    other = tmp_path / "file"
    other.write_text("keep me")
    with pytest.raises(RuntimeError, match="is not a socket"):
        SdkCollector(other).start()
    assert other.read_text() == "keep me"


class _ListSource:
    """A replay-style source yielding prepared batches, then ending."""

    name = "replay"

    def __init__(self, batches: list[list[Event]]) -> None:
        self.batches = batches
        self.stopped = False

    def start(self) -> None:
        pass

    def poll(self, timeout: float) -> list[Event] | None:
        return self.batches.pop(0) if self.batches else None

    def stop(self) -> None:
        self.stopped = True

    def stats(self) -> dict[str, int]:
        return {"events": 3, "drops": 2}


def test_multisource_merges_ends_and_stops_all(tmp_path: Path) -> None:
    col = SdkCollector(tmp_path / "sdk.sock")
    replay = _ListSource([[Event(id="a", time=1, kind="process.exec")], [],
                          [Event(id="b", time=2, kind="process.exit")]])
    multi = MultiSource([replay, col])
    assert multi.name == "replay+sdk"
    multi.start()
    _send(col, _msg(name="merged"))
    got = [e.id if e.source != "sdk" else "sdk" for e in multi.poll(0.1) or []]
    assert sorted(got) == ["a", "sdk"]
    # An empty pass makes the primary (replay) wait once more: its next batch comes at once.
    assert [e.id for e in multi.poll(0.0) or []] == ["b"]
    assert multi.poll(0.0) == []  # replay ended; the collector still runs
    assert multi.poll(0.0) == []
    stats = multi.stats()
    assert (stats["events"], stats["drops"], stats["sdk.events"], stats["replay.drops"]) == (4, 2, 1, 2)
    multi.stop()
    assert replay.stopped and not col.path.exists()
    assert multi.poll(0.0) is None
    with pytest.raises(ValueError, match="distinct names"):
        MultiSource([col, col])


def test_hostile_datagrams_are_counted_and_never_raise(collector: SdkCollector) -> None:
    hostile = [
        b'{"v": 1, "k": "tool.start", "name": "\xff\xfe"}',  # a JSON string that is not UTF-8
        b'{"a":' * 2000 + b"1" + b"}" * 2000,  # 2,000 levels of objects
        b"[" * 2000 + b"]" * 2000,  # and of arrays
        b'{"v": 1, "k": "tool.start", "name": "\\ud800"}',  # a lone surrogate escape
        _msg(m=10**40),  # a number no field holds
        b"\x00" * 64,
    ]
    for payload in hostile:
        _send(collector, payload)  # one datagram each, as an attacker would send them
    _send(collector, _msg(name="after", cid="c-7"))
    events = _read(collector)
    assert [(e.tool_call.name, e.tool_call.call_id) for e in events if e.tool_call] == [("after", "c-7")]
    stats = collector.stats()
    assert (stats["malformed"], stats["datagrams"], stats["events"]) == (6, 7, 1)


def test_a_claimed_identity_is_dropped_when_the_sender_is_gone_before_the_check(collector: SdkCollector) -> None:
    claim = _msg(pid=4243, tid=4243, ns=99, name="gone").decode()
    sender = ("import socket, sys\n"
              "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
              f"s.sendto(sys.argv[1].encode(), {str(collector.path)!r})\n")
    proc = subprocess.run([sys.executable, "-c", sender, claim], check=True, timeout=30)
    assert proc.returncode == 0  # exited: its /proc entry is gone before the collector reads the datagram
    (e,) = _read(collector)
    assert e.tool_call is not None and e.tool_call.name == "gone"
    assert e.pid > 0 and e.pid != os.getpid()  # the kernel's word for who sent it
    assert (e.pidns, e.vpid) == (None, None)  # not the claimed (99, 4243)
    assert collector.stats()["identity_unverified"] == 1


def test_svid_messages_are_checked_for_shape_and_become_identity_notices(collector: SdkCollector) -> None:
    svid = {"k": "svid", "sid": None, "name": None, "spiffe": "spiffe://prod.example/agent", "x5c": ["QUJD"],
            "sig": "c2ln"}
    bad = [
        _msg(**{**svid, "sig": None}),
        _msg(**{**svid, "x5c": []}),
        _msg(**{**svid, "spiffe": None}),
        _msg(**{**svid, "x5c": ["QUJD"] * 9}),
        _msg(**{**svid, "x5c": ["Q" * 8193]}),
    ]
    _send(collector, b"\n".join([*bad, _msg(**svid)]) + b"\n")
    events = _read(collector)
    assert len(events) == 1
    e = events[0]
    assert (e.kind, e.source) == ("sensor.notice", "sdk")
    assert e.attrs == {"notice": "identity.svid", "svid_spiffe_id": "spiffe://prod.example/agent",
                       "svid_chain": ["QUJD"], "svid_sig": "c2ln", "svid_mono": 1000}
    assert collector.stats()["malformed"] == 5
    assert collector.last_error == "an x5c certificate is longer than 8192 characters"
