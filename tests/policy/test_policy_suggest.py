"""policy suggest: recorded behaviour -> least-privilege policy that allows all of it, denies the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from runwatch.events import Container, DnsInfo, Event, FileInfo, NetInfo, ToolCall, from_json, new_id
from runwatch.policy import load_policies, load_policy_texts
from runwatch.policy.cli import PolicyCliError, cli_suggest
from runwatch.policy.suggest import suggest_policy
from runwatch.store.sqlite import SqliteStore

BOX = Container(id="9" * 64, runtime="runc", name="agent-23")
OTHER = Container(id="8" * 64, runtime="runc", name="bystander")
T0 = 1_790_000_000_000_000_000


def _ev(t_ms: int, kind: str, pid: int, exe: str, box: Container = BOX, **kw: object) -> Event:
    t = T0 + t_ms * 1_000_000
    return Event(id=new_id(t), time=t, kind=kind, pid=pid, exe=exe, container=box, **kw)  # type: ignore[arg-type]


def _recorded() -> list[Event]:
    py, curl = "/usr/bin/python3.11", "/usr/bin/curl"
    ev = [
        _ev(0, "process.exec", 100, py),
        _ev(5, "tool.start", 100, py, source="sdk", tool_call=ToolCall(name="search", call_id="c1")),
        _ev(6, "tool.start", 100, py, source="sdk", tool_call=ToolCall(name="search", call_id="c2")),
        _ev(7, "tool.start", 100, py, source="sdk", tool_call=ToolCall(name="write_note", call_id="c3")),
        _ev(8, "file.open", 100, py, file=FileInfo(path="/run/secrets/openai_key", intent="read")),
        _ev(9, "file.open", 100, py, file=FileInfo(path="/tmp/scratch", intent="write")),
        # DNS then connect by the same process: becomes a host rule.
        _ev(10, "dns.query", 100, py, dns=DnsInfo(name="api.openai.com.", qtype="A", server_ip="10.96.0.10",
                                                  server_port=53)),
        _ev(11, "net.connect", 100, py, net=NetInfo(proto="udp", family="ipv4", dst_ip="10.96.0.10", dst_port=53,
                                                    result=0)),
        _ev(12, "net.connect", 100, py, net=NetInfo(proto="tcp", family="ipv4", dst_ip="104.18.7.192", dst_port=443,
                                                    result=-115)),
        # A child process: exec, plain IP connects (4 in one /24 collapse), a failed connect (ignored).
        _ev(20, "process.exec", 101, curl),
        _ev(40, "file.open", 101, curl, file=FileInfo(path="/root/.aws/credentials", intent="read")),
    ]
    ev += [_ev(30 + i, "net.connect", 101, curl, net=NetInfo(proto="tcp", family="ipv4", dst_ip=f"192.0.2.{i + 1}",
                                                             dst_port=8443, result=0)) for i in range(4)]
    ev += [
        _ev(50, "net.connect", 101, curl, net=NetInfo(proto="tcp", family="ipv4", dst_ip="198.51.100.23",
                                                      dst_port=80, result=-111)),
        _ev(51, "net.connect", 100, py, net=NetInfo(proto="tcp", family="ipv6", dst_ip="::1", dst_port=8080)),
        _ev(52, "file.open", 100, py, file=FileInfo(path="/run/secrets/openai_key", intent="read")),
        _ev(60, "net.connect", 100, py, net=NetInfo(proto="unix", family="ipv4", dst_ip=None)),
    ]
    return ev


def test_suggested_policy_allows_everything_recorded_and_denies_the_rest(tmp_path: Path) -> None:
    events = _recorded()
    text = suggest_policy(events, "agent-23", source="runs.db")
    f = tmp_path / "suggested.yaml"
    f.write_text(text)
    ps = load_policies([f])
    assert len(ps) == 1
    p = ps.for_container(BOX)
    assert p is not None and (p.id, p.mode, p.fail) == ("suggested-agent-23", "monitor", "closed")
    assert ps.for_container(OTHER) is None
    assert p.tools.allow == ("search", "write_note")
    assert p.exec is not None and p.exec.allow == ("/usr/bin/curl", "/usr/bin/python3.11")
    assert p.egress is not None
    assert [r.text for r in p.egress.allow] == ["api.openai.com:443", "192.0.2.0/24:8443", "[::1]:8080",
                                                "10.96.0.10:53"]
    assert p.files is not None
    assert [(x.path, x.readers) for x in p.files.protect] == [("/root/.aws/credentials", ("/usr/bin/curl",)),
                                                            ("/run/secrets/openai_key", ("/usr/bin/python3.11",))]
    assert "/usr/bin/" in p.files.immutable
    # Everything recorded is allowed ...
    for e in events:
        if e.kind == "tool.start" and e.tool_call:
            assert p.tool_verdict(e.tool_call.name)[0] == "allow"
        elif e.kind == "process.exec":
            assert p.exec_verdict(e.exe)[0] == "allow"
        elif e.kind == "net.connect" and e.net and e.net.dst_ip and e.net.result in (None, 0, -115):
            names = ("api.openai.com",) if e.net.dst_ip == "104.18.7.192" else ()
            assert p.egress_verdict(e.net.dst_ip, e.net.dst_port, names)[0] == "allow", e.net
        elif e.kind == "file.open" and e.file:
            write = e.file.intent == "write"
            assert p.file_verdict(e.file.path, e.exe, write)[0] == "allow", e.file
    # ... and what was not recorded is denied.
    assert p.tool_verdict("run_shell") == ("deny", "tools.default")
    assert p.exec_verdict("/bin/sh") == ("deny", "exec.default")
    assert p.egress_verdict("198.51.100.23", 80)[0] == "deny"
    assert p.egress_verdict("104.18.7.192", 443)[0] == "deny"  # without the DNS name
    assert p.egress_verdict("192.0.2.77", 22)[0] == "deny"
    assert p.file_verdict("/run/secrets/openai_key", "/usr/bin/cat") == ("deny",
                                                                         "files.protect:/run/secrets/openai_key")
    assert p.file_verdict("/usr/bin/python3.11", "/usr/bin/curl", write=True)[0] == "deny"
    assert "# Suggested by `runwatch policy suggest` from 19 recorded events over 0.1s in runs.db." in text
    assert "# resolved, then connected to 104.18.7.192" in text


def test_nothing_recorded_means_nothing_allowed() -> None:
    text = suggest_policy([_ev(0, "file.open", 5, "/bin/true", file=FileInfo(path="/tmp/x", intent="read"))], "idle")
    p = load_policy_texts([(text, "s.yaml")]).get("suggested-idle")
    assert p is not None and p.tools.allow == () and p.egress is not None and p.egress.allow == ()
    assert p.exec is None and p.files is not None and p.files.protect == ()


def test_cli_suggest_reads_the_store(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    store = SqliteStore(str(db))
    store.write([*_recorded(), _ev(3, "process.exec", 300, "/usr/bin/nc", box=OTHER)])
    store.close()
    out = tmp_path / "policy.yaml"
    text = cli_suggest(str(db), "agent-23", str(out))
    assert out.read_text() == text
    p = load_policies([out]).get("suggested-agent-23")
    assert p is not None and p.exec is not None and "/usr/bin/nc" not in (p.exec.allow or ())
    assert cli_suggest(str(db), "9999") == text  # an id prefix selects the same container
    with pytest.raises(PolicyCliError, match="no recorded events of container 'nobody'"):
        cli_suggest(str(db), "nobody")
    with pytest.raises(PolicyCliError, match="no such event store"):
        cli_suggest(str(tmp_path / "missing.db"), "agent-23")


def test_an_executable_that_only_points_at_a_file_is_never_suggested() -> None:
    # A schema-3 recording: the kernel reported the execve name, so a re-exec through
    # /proc/self/exe (and the secret read that followed) named no file.
    lines = [
        '{"id":"a","time":1,"kind":"process.exec","pid":23,"exe":"/usr/bin/python3.11"}',
        '{"id":"b","time":2,"kind":"process.exec","pid":24,"exe":"/proc/self/exe"}',
        '{"id":"c","time":3,"kind":"file.open","pid":24,"exe":"/proc/self/exe",'
        '"file":{"path":"/run/secrets/token","intent":"read"}}',
        '{"id":"d","time":4,"kind":"process.exec","pid":25,"exe":"/dev/fd/6"}',
        '{"id":"e","time":5,"kind":"file.open","pid":23,"exe":"/usr/bin/python3.11",'
        '"file":{"path":"/run/secrets/token","intent":"read"}}',
    ]
    text = suggest_policy([from_json(line) for line in lines], "agent-23")
    assert "/proc/self/exe" not in text and "/dev/fd/6" not in text
    p = load_policy_texts([(text, "s.yaml")]).get("suggested-agent-23")
    assert p is not None and p.exec is not None and p.files is not None
    assert p.exec.allow == ("/usr/bin/python3.11",)
    assert [(x.path, x.readers) for x in p.files.protect] == [("/run/secrets/token", ("/usr/bin/python3.11",))]


def test_memfd_and_deleted_executables_are_named_in_a_comment_and_never_allowed() -> None:
    # A memfd has no path, and a deleted file's old path may name another file by now:
    # allowing either would admit whatever later takes that name.
    lines = [
        '{"id":"a","time":1,"kind":"process.exec","pid":23,"exe":"/usr/bin/python3.11"}',
        '{"id":"b","time":2,"kind":"process.exec","pid":24,"exe":"memfd:payload","attrs":{"memfd":true}}',
        '{"id":"c","time":3,"kind":"process.exec","pid":25,"exe":"memfd:payload","attrs":{"memfd":true}}',
        '{"id":"d","time":4,"kind":"process.exec","pid":26,"exe":"/tmp/stage2 (deleted)","attrs":{"exe_deleted":true}}',
        '{"id":"e","time":5,"kind":"file.open","pid":24,"exe":"memfd:payload",'
        '"file":{"path":"/run/secrets/token","intent":"read"}}',
    ]
    text = suggest_policy([from_json(line) for line in lines], "agent-23")
    p = load_policy_texts([(text, "s.yaml")]).get("suggested-agent-23")
    assert p is not None and p.exec is not None and p.files is not None
    assert p.exec.allow == ("/usr/bin/python3.11",)
    assert p.files.protect == ()
    assert '# not allowed: "memfd:payload" (2 exec(s), a memfd has no path)' in text
    assert '# not allowed: "/tmp/stage2 (deleted)" (1 exec(s), deleted since)' in text
