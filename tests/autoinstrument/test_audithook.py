"""The audit-hook sensor in this process, through the real SDK transport and collector."""

from __future__ import annotations

import ctypes
import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runwatch import sdk
from runwatch.events import SPAWNED_ATTR, Event, ToolCall
from runwatch.sdk import audithook
from runwatch.sdk.transport import Transport, set_transport
from runwatch.sensors.inproc.collector import SdkCollector

CALL = ToolCall(name="probe", call_id="c-23", agent="unit")


def _audit(events: list[Event]) -> list[Event]:
    return [e for e in events if e.source == "audit"]


def test_each_observation_is_reported_once_with_exact_values(
        tmp_path: Path, collector: SdkCollector, transport: Transport, helpers: Any) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    plain = tmp_path / "plain"
    plain.mkdir()
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    module = plugins / "rw_plugin_23.py"
    module.write_text("VALUE = 23\n")
    audithook.install([str(secrets) + "/"])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    sys.path.insert(0, str(plugins))
    try:
        with sdk.tool_call("probe", call_id="c-23", agent="unit"):
            subprocess.Popen(["/usr/bin/true", "odd-23"]).wait()
            os.system("exit 0")
            with socket.create_connection(("127.0.0.1", port)):
                pass
            socket.getaddrinfo("localhost", 23)
            (secrets / "token").write_text("s3cr3t")
            assert (secrets / "token").read_text() == "s3cr3t"
            (plain / "notes").write_text("x")
            assert (plain / "notes").read_text() == "x"
            ctypes.CDLL("libm.so.6")
            import rw_plugin_23  # type: ignore[import-not-found]
            assert rw_plugin_23.VALUE == 23
    finally:
        sys.path.remove(str(plugins))
        sys.modules.pop("rw_plugin_23", None)
        listener.close()
    audithook.uninstall()
    assert sdk.flush(5.0)
    events = _audit(helpers.drain(collector))
    mine = [e for e in events if e.pid == os.getpid()]
    assert all(e.attrs is not None and e.attrs["via"] == "audit" for e in mine)

    execs = [e for e in mine if e.kind == "process.exec"]
    # exe is the executable the program resolved to (/bin/sh is a symlink to dash), exec_name the name asked for
    assert [(e.exe, e.exec_name, e.argv, e.attrs["audit_event"]) for e in execs if e.attrs] == [
        ("/usr/bin/true", "/usr/bin/true", ["/usr/bin/true", "odd-23"], "subprocess.Popen"),
        (os.path.realpath("/bin/sh"), "/bin/sh", ["/bin/sh", "-c", "exit 0"], "os.system"),
    ]
    assert os.path.realpath("/bin/sh") == "/usr/bin/dash"
    assert execs[0].cmdline == "/usr/bin/true odd-23"
    # both programs run in a child of this process, not in its place
    assert [bool(e.attrs and e.attrs.get(SPAWNED_ATTR)) for e in execs] == [True, True]

    connects = [e for e in mine if e.kind == "net.connect"]
    assert len(connects) == 1 and connects[0].net is not None
    assert (connects[0].net.proto, connects[0].net.family, connects[0].net.dst_ip, connects[0].net.dst_port) == (
        "tcp", "ipv4", "127.0.0.1", port)

    lookups = [e for e in mine if e.kind == "dns.query"]
    assert len(lookups) == 1 and lookups[0].dns is not None  # the IP literal of create_connection is no look-up
    assert lookups[0].dns.name == "localhost" and lookups[0].attrs is not None and lookups[0].attrs["port"] == 23

    opens = [e for e in mine if e.kind == "file.open"]
    assert [(e.file.path, e.file.intent) for e in opens if e.file] == [
        (str(secrets / "token"), "write"), (str(secrets / "token"), "read")]
    assert opens[0].file is not None and opens[0].file.flags is not None
    assert opens[0].file.flags & os.O_WRONLY and opens[0].file.flags & os.O_CREAT
    assert not any(e.file is not None and e.file.path.startswith(str(plain)) for e in events)

    loads = [e for e in mine if e.kind == "plugin.load" and e.ai is not None
             and e.ai.plugin in ("libm.so.6", "rw_plugin_23")]
    assert [(e.attrs["audit_event"], e.ai.plugin, e.ai.plugin_source) for e in loads if e.attrs] == [
        ("ctypes.dlopen", "libm.so.6", "libm.so.6"), ("import", "rw_plugin_23", str(module))]
    assert loads[1].ai is not None
    assert loads[1].ai.sha256 == hashlib.sha256(b"VALUE = 23\n").hexdigest()

    attributed = execs + connects + lookups + opens + loads
    assert len(attributed) == 8
    assert {e.tool_call for e in attributed} == {CALL}
    assert all(e.ai is not None and isinstance(e.ai.span, int) for e in attributed)
    assert collector.stats()["malformed"] == 0


def test_outside_a_call_events_carry_no_call_and_read_of_write_only_prefix_is_silent(
        collector: SdkCollector, transport: Transport, helpers: Any) -> None:
    audithook.install()
    with open("/usr/bin/true", "rb") as fh:  # /usr/bin/ is watched for writes only
        fh.read(4)
    subprocess.run(["/usr/bin/true", "outside"], check=True)
    audithook.uninstall()
    subprocess.run(["/usr/bin/true", "after-uninstall"], check=True)
    assert sdk.flush(5.0)
    events = [e for e in _audit(helpers.drain(collector)) if e.pid == os.getpid()]
    assert [(e.kind, e.argv, e.tool_call) for e in events] == [
        ("process.exec", ["/usr/bin/true", "outside"], None)]


class _Broken(Transport):
    def submit(self, msg: object) -> None:
        raise RuntimeError("transport exploded")


def test_the_hook_never_raises_without_a_collector_or_with_a_broken_transport(tmp_path: Path) -> None:
    watched = tmp_path / "w"
    watched.mkdir()
    for transport in (Transport(str(tmp_path / "nobody.sock")), _Broken(str(tmp_path / "x.sock"))):
        old = set_transport(transport)
        before = audithook.stats()
        try:
            audithook.install([str(watched) + "/"])
            with sdk.tool_call("t", call_id="c-1"):
                out = subprocess.run(["/bin/echo", "still-works"], capture_output=True, text=True, check=True)
                (watched / "f").write_text("ok")
            assert out.stdout == "still-works\n" and (watched / "f").read_text() == "ok"
        finally:
            audithook.uninstall()
            set_transport(old)
            transport.close()
        after = audithook.stats()
        if isinstance(transport, _Broken):
            assert after["errors"] - before["errors"] == 3  # echo, the write and the read
        else:
            assert after["reported"] - before["reported"] == 3
            assert transport.stats()["dropped_no_collector"] >= 3


def test_watched_prefixes_equal_the_kernel_sensors_defaults() -> None:
    from runwatch.sensors.kernel.layout import WatchFlag
    from runwatch.sensors.kernel.watchlist import DEFAULT_WATCHES, HOME_SECRETS, default_watches

    assert set(audithook.HOME_SECRETS) == set(HOME_SECRETS)
    prefixes = [w for w in DEFAULT_WATCHES if not w.prefix.startswith("**/")]  # patterns: kernel only
    rw = {w.prefix for w in prefixes if w.flags & WatchFlag.READ}
    wo = {w.prefix for w in prefixes if not w.flags & WatchFlag.READ}
    assert set(audithook.RW_PREFIXES) == rw and set(audithook.WRITE_PREFIXES) == wo
    kernel_homes = {w.prefix for w in default_watches() if not w.prefix.startswith("**/")} - rw - wo
    assert set(audithook.home_prefixes()) == kernel_homes


def _send(col: SdkCollector, payload: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(payload, str(col.path))


@pytest.mark.parametrize(("line", "reason"), [
    (b'"ev":"os.fork","exe":"/x"', "unknown audit event"),
    (b'"ev":"subprocess.Popen"', "needs exe"),
    (b'"ev":"subprocess.Popen","exe":"/x","argv":[' + b",".join([b'"a"'] * 257) + b"]", "more than 256"),
    (b'"ev":"socket.connect","fam":"ipv4","host":"1.2.3.4","port":70000', "port out of range"),
    (b'"ev":"open"', "needs path"),
    (b'"ev":"socket.getaddrinfo"', "needs host"),
    (b'"ev":"import"', "needs name or src"),
])
def test_collector_refuses_malformed_audit_messages(collector: SdkCollector, line: bytes, reason: str,
                                                    helpers: Any) -> None:
    head = f'{{"v":1,"k":"audit","m":1,"pid":{os.getpid()},"tid":1,"ns":1,'.encode()
    good = head + b'"ev":"open","path":"/run/secrets/a","intent":"read","fl":0}'
    _send(collector, head + line + b"}\n" + good + b"\n")
    events = helpers.drain(collector, quiet=0.1)
    assert [(e.kind, e.source, e.file.path if e.file else None) for e in events] == [
        ("file.open", "audit", "/run/secrets/a")]
    assert collector.stats()["malformed"] == 1
    assert collector.last_error is not None and reason in collector.last_error


def test_exec_reports_the_executable_the_program_resolves_to(
        tmp_path: Path, collector: SdkCollector, transport: Transport, helpers: Any) -> None:
    work = tmp_path / "work"
    work.mkdir()
    x = work / "x-23"
    x.write_bytes(Path("/usr/bin/true").read_bytes())
    x.chmod(0o755)
    link = tmp_path / "via-link"
    link.symlink_to(x)
    audithook.install()
    subprocess.run(["sh", "-c", "exit 0"], check=True)  # found on PATH, a symlink to dash
    subprocess.run(["./x-23"], cwd=work, check=True)  # relative to the child's cwd
    subprocess.run([str(link)], check=True)
    subprocess.run(["/proc/self/exe", "-c", "pass"], check=True)  # this interpreter
    with pytest.raises(FileNotFoundError):
        subprocess.run(["rw-no-such-program-23"])
    audithook.uninstall()
    assert sdk.flush(5.0)
    execs = [e for e in _audit(helpers.drain(collector)) if e.pid == os.getpid() and e.kind == "process.exec"]
    assert [(e.exec_name, e.exe) for e in execs] == [
        ("sh", "/usr/bin/dash"), ("./x-23", str(x)), (str(link), str(x)),
        ("/proc/self/exe", os.path.realpath(sys.executable)), ("rw-no-such-program-23", "")]
    # no executable by that name: the event says so rather than claiming the name as exe
    assert [bool(e.attrs and e.attrs.get("exe_unresolved")) for e in execs] == [False] * 4 + [True]


def test_a_message_without_a_resolved_executable_claims_none(collector: SdkCollector, helpers: Any) -> None:
    head = f'{{"v":1,"k":"audit","m":1,"pid":{os.getpid()},"tid":1,"ns":1,'.encode()
    _send(collector, head + b'"ev":"os.system","exe":"/bin/sh","argv":["/bin/sh","-c","id"]}\n')
    events = helpers.drain(collector, quiet=0.1)
    assert [(e.kind, e.exe, e.exec_name, e.cmdline, e.attrs) for e in events] == [
        ("process.exec", "", "/bin/sh", "/bin/sh -c id",
         {"via": "audit", "audit_event": "os.system", "exe_unresolved": True, SPAWNED_ATTR: True})]


def test_os_exec_replaces_the_caller_and_is_not_a_spawn(collector: SdkCollector, helpers: Any) -> None:
    head = f'{{"v":1,"k":"audit","m":1,"pid":{os.getpid()},"tid":1,"ns":1,'.encode()
    _send(collector, head + b'"ev":"os.exec","exe":"/bin/sh","xe":"/usr/bin/dash","argv":["/bin/sh"]}\n')
    _send(collector, head + b'"ev":"os.posix_spawn","exe":"/bin/sh","xe":"/usr/bin/dash","argv":["/bin/sh"]}\n')
    events = helpers.drain(collector, quiet=0.1)
    assert [(e.attrs or {}).get("audit_event") for e in events] == ["os.exec", "os.posix_spawn"]
    assert [bool((e.attrs or {}).get(SPAWNED_ATTR)) for e in events] == [False, True]
