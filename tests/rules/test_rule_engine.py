"""Engine semantics: every operator, fields, macros, lists, exceptions, kind index, state."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from runwatch.events import Event
from runwatch.rules import Engine, RuleSet, load_texts

T0 = 1_700_000_000_000_000_000


def ev(kind: str, n: int = 0, **kw: Any) -> Event:
    d: dict[str, Any] = {"id": f"e{n}", "time": T0 + n * 1_000_000, "kind": kind, "pid": 100 + n}
    d.update(kw)
    return msgspec.convert(d, Event)


def rules(text: str) -> RuleSet:
    return load_texts([(text, "t.yaml")])


def engine_for(condition: str, extra: str = "") -> Engine:
    cond = condition.replace("'", "''")
    return Engine(rules(f"{extra}\n- rule: r\n  condition: '{cond}'\n"), count_evaluations=True)


EXEC = {"exe": "/usr/bin/python3.11", "cmdline": "python3 -m http.server 8000", "argv": ["python3", "-m", "x"],
        "ancestry": ["/bin/bash", "/usr/sbin/sshd"], "uid": 1000, "cwd": "/srv/app",
        "container": {"id": "c0ffee", "runtime": "runc", "name": "agent-1", "pod": "p1", "namespace": "ai",
                      "spiffe_id": "spiffe://example.org/ns/ai/sa/agent"},
        "tool_call": {"name": "run_shell", "call_id": "call-23", "agent": "planner"}, "unattested": True}


@pytest.mark.parametrize(("condition", "expected"), [
    ("proc.name = python3.11", True),
    ("proc.name = python3", False),
    ("proc.name != python3", True),
    ("proc.uid < 1001", True),
    ("proc.uid <= 1000", True),
    ("proc.uid > 1000", False),
    ("proc.uid >= 1000", True),
    ("proc.uid in (0, 1000)", True),
    ("proc.name in (bash, sh)", False),
    ("proc.cmdline contains http.server", True),
    ("proc.cmdline icontains HTTP.SERVER", True),
    ("proc.cmdline contains HTTP.SERVER", False),
    ("proc.exe startswith /usr/bin/", True),
    ("proc.exe startswith (/bin/, /sbin/)", False),
    ("proc.exe endswith (.11, .12)", True),
    ("proc.exe glob \"/usr/*/python3.*\"", True),
    ("proc.exe glob \"/bin/*\"", False),
    ("container exists", True),
    ("file.path exists", False),
    ("not file.path exists", True),
    ("proc.pname = bash", True),
    ("proc.pexe = /bin/bash", True),
    ("proc.aname[2] = sshd", True),
    ("proc.aexe[2] = /usr/sbin/sshd", True),
    ("proc.aname[3] exists", False),
    ("proc.ancestry = /usr/sbin/sshd", True),
    ("proc.ancestry contains sshd", True),
    ("proc.anames in (sshd, init)", True),
    ("proc.ancestry != /bin/bash", False),
    ("proc.args = \"-m http.server 8000\"", False),
    ("proc.args = \"-m x\"", True),
    ("proc.argv = -m", True),
    ("proc.cwd = /srv/app", True),
    ("container.id = c0ffee and container.name = agent-1 and container.runtime = runc", True),
    ("container.pod = p1 and container.namespace = ai", True),
    ("workload.name = agent-1 and workload.spiffe_id startswith spiffe://", True),
    ("identity.spiffe_id = \"spiffe://example.org/ns/ai/sa/agent\"", True),
    ("identity.trust_domain = example.org", True),
    ("tool.name = run_shell and tool.call_id = call-23 and tool.agent = planner", True),
    ("tool.unattested", True),
    ("tool.unattested = false", False),
    ("kind = process.exec and (proc.name = x or proc.uid = 1000)", True),
    ("not (proc.name = python3.11)", False),
    ("evt.kind startswith process.", True),
    ("evt.id = e0 and evt.source = kernel", True),
])
def test_operator_on_exec(condition: str, expected: bool) -> None:
    e = ev("process.exec", **EXEC)
    assert bool(engine_for(condition).process(e)) is expected


def test_absent_field_makes_every_comparison_false() -> None:
    e = ev("process.exec", exe="/bin/sh")
    for cond in ("container.id = x", "container.id != x", "proc.pname != bash", "file.path startswith /"):
        assert engine_for(cond).process(e) == [], cond
    assert engine_for("not container.id = x").process(e) != []


def test_net_fields_cidr_external() -> None:
    def conn(ip: str, port: int = 443) -> Event:
        return ev("net.connect", net={"proto": "tcp", "family": "ipv4", "dst_ip": ip, "dst_port": port,
                                      "src_ip": "10.1.2.3", "src_port": 40000, "result": 0})

    cidr = engine_for("net.dst.ip cidr (10.0.0.0/8, 192.168.0.0/16, fd00::/8)")
    ips = ("10.9.9.9", "192.168.1.1", "8.8.8.8", "fd00::1", "::ffff:10.1.1.1")
    assert [bool(cidr.process(conn(ip))) for ip in ips] == [True, True, False, True, True]
    ext = engine_for("net.dst.external")
    assert [bool(ext.process(conn(ip))) for ip in
            ("8.8.8.8", "10.0.0.1", "127.0.0.1", "169.254.169.254", "100.64.0.1", "2606:4700::1", "fe80::1")] \
        == [True, False, False, False, False, True, False]
    ports = engine_for("net.dst.port in (4444, 1337) and net.src.port = 40000 and net.proto = tcp and net.result = 0")
    assert bool(ports.process(conn("1.1.1.1", 4444))) and not ports.process(conn("1.1.1.1", 443))


def test_first_seen_per_workload() -> None:
    eng = engine_for("kind = net.connect and net.dst.first_seen")

    def conn(n: int, ip: str, container: str | None, exe: str = "/usr/bin/curl") -> Event:
        extra: dict[str, Any] = {"container": {"id": container, "runtime": "runc"}} if container else {}
        return ev("net.connect", n, exe=exe, net={"proto": "tcp", "family": "ipv4", "dst_ip": ip, "dst_port": 443},
                  **extra)

    seq = [conn(1, "1.1.1.1", "a"), conn(2, "1.1.1.1", "a"), conn(3, "1.1.1.1", "b"), conn(4, "2.2.2.2", "a"),
           conn(5, "1.1.1.1", None), conn(6, "1.1.1.1", None), conn(7, "1.1.1.1", None, exe="/usr/bin/wget")]
    assert [bool(eng.process(e)) for e in seq] == [True, False, True, True, True, False, True]


def test_first_seen_state_is_bounded_and_evictions_counted() -> None:
    rs = rules("- rule: r\n  condition: kind = net.connect and net.dst.first_seen\n")
    eng = Engine(rs, max_first_seen=7)
    for i in range(23):
        eng.process(ev("net.connect", i, exe="/x", net={"proto": "tcp", "family": "ipv4", "dst_ip": f"9.9.9.{i}",
                                                        "dst_port": 80}))
    s = eng.stats()
    assert (s["first_seen_entries"], s["first_seen_evicted"], s["alerts"]) == (7, 16, 23)


def test_file_dns_priv_fields() -> None:
    f = ev("file.open", exe="/bin/cat", file={"path": "/run/secrets/api-token", "intent": "read", "flags": 0})
    assert engine_for("file.name = api-token and file.dir = /run/secrets and file.intent = read").process(f)
    r = ev("file.rename", file={"path": "/tmp/a", "new_path": "/usr/bin/a"})
    assert engine_for("file.new_path startswith /usr/bin/").process(r)
    d = ev("dns.query", dns={"name": "x.ngrok.io", "qtype": "A", "server_ip": "10.0.0.2", "server_port": 53})
    assert engine_for("dns.name endswith .ngrok.io and dns.qtype = A and dns.server = 10.0.0.2").process(d)
    p = ev("priv.setuid", uid=1000, priv={"op": "setuid", "uid": 0, "euid": 0})
    assert engine_for("priv.op = setuid and priv.uid = 0 and proc.uid != 0").process(p)
    m = ev("priv.mount", priv={"op": "mount", "source": "/", "target": "/mnt/host", "fstype": "ext4"})
    assert engine_for("priv.fstype in (ext4, xfs) and priv.target startswith /mnt").process(m)
    a = ev("plugin.load", attrs={"plugin": "mcp-fs", "version": 3})
    assert engine_for("evt.attr[plugin] startswith mcp- and evt.attr[version] = 3").process(a)


def test_lists_macros_nesting() -> None:
    extra = """
- list: shells
  items: [sh, bash]
- list: all_shells
  items: [shells, zsh]
- macro: spawned
  condition: kind = process.exec
- macro: shell_spawned
  condition: spawned and proc.name in (all_shells)
"""
    eng = engine_for("shell_spawned and not proc.pname in (sshd)", extra)
    out = [bool(eng.process(ev("process.exec", exe=f"/bin/{n}", ancestry=[p]))) for n, p in
           [("sh", "/usr/bin/python3"), ("zsh", "/x/node"), ("bash", "/usr/sbin/sshd"), ("ls", "/x/node")]]
    assert out == [True, True, False, False]
    # a list reference without parentheses
    assert engine_for("proc.name in shells", extra).process(ev("process.exec", exe="/bin/bash"))


def test_exceptions_single_and_multi_field() -> None:
    text = """
- rule: r
  condition: kind = file.open and file.path startswith /usr/bin/
  exceptions:
    - name: pkg
      fields: proc.name
      comps: in
      values: [[dpkg, apt]]
    - name: pairs
      fields: [proc.name, file.path]
      comps: [=, endswith]
      values:
        - [cp, /tool]
        - [install, .sh]
"""
    eng = Engine(rules(text))
    cases = [("/usr/bin/dpkg", "/usr/bin/x"), ("/usr/bin/cp", "/usr/bin/tool"), ("/usr/bin/cp", "/usr/bin/other"),
             ("/usr/bin/install", "/usr/bin/a.sh"), ("/usr/bin/vi", "/usr/bin/x"), ("/usr/bin/vi", "/etc/x")]
    got = [bool(eng.process(ev("file.open", exe=exe, file={"path": p}))) for exe, p in cases]
    assert got == [False, False, True, False, True, False]


def test_kind_index_skips_other_kinds() -> None:
    text = """
- macro: spawned
  condition: kind = process.exec
- rule: exec_only
  condition: spawned and proc.name glob "s*"
- rule: files
  condition: kind in (file.open, file.rename) and file.path exists
- rule: net_any
  condition: evt.kind startswith net. and net.dst.port > 0
- rule: either
  condition: (kind = process.exec and proc.uid > 1) or (kind = dns.query and dns.name glob x)
- rule: anything
  condition: proc.uid > 7
"""
    eng = Engine(rules(text), count_evaluations=True)
    events = [ev("file.open", i, file={"path": "/etc/x"}) for i in range(23)] + \
             [ev("process.exec", 30 + i, exe="/bin/sh") for i in range(7)] + \
             [ev("net.accept", 40 + i, net={"proto": "tcp", "family": "ipv4"}) for i in range(3)]
    alerts = eng.process_batch(events)
    assert eng.evaluations() == {"exec_only": 7, "files": 23, "net_any": 3, "either": 7, "anything": 33}
    assert [a.rule for a in alerts].count("files") == 23 and [a.rule for a in alerts].count("exec_only") == 7
    assert eng.stats()["evaluations"] == 73
    assert eng.candidates("file.open") == ("files", "anything")
    assert eng.candidates("dns.query") == ("either", "anything")


def test_value_index_skips_rules_whose_value_cannot_match() -> None:
    text = "".join(f"- rule: n{i}\n  condition: kind = process.exec and proc.name = tool{i}\n" for i in range(23))
    eng = Engine(rules(text), count_evaluations=True)
    alerts = eng.process_batch([ev("process.exec", i, exe=f"/bin/tool{i % 5}") for i in range(11)])
    evals = eng.evaluations()
    assert [evals[f"n{i}"] for i in range(6)] == [3, 2, 2, 2, 2, 0] and sum(evals.values()) == 11
    assert len(alerts) == 11


def test_value_index_never_misses_and_keeps_rule_order() -> None:
    # 61 rules over every indexable form; each event must get exactly the rules a linear scan gives.
    forms = [
        "proc.name in (p{i}, q{m})",
        "proc.exe startswith (/opt/{m}, /opt)",
        "proc.exe endswith (q{m}, /p{i})",
        "proc.cmdline contains (\"x{m}\", \"x{m}y\")",
        "proc.cmdline icontains \"AB{m}\"",
        "proc.exe glob \"/opt/*/p{m}\" or proc.exe glob \"/usr/p{i}*\"",
        "proc.exe startswith /usr/ or proc.exe startswith /bin/",
        "proc.cmdline glob \"*-v{m}*\"",
        "evt.attr[ip] cidr (10.{m}.0.0/16, 0.0.0.0/4, fd00::/8)",
    ]
    parts = []
    for i in range(61):
        cond = forms[i % len(forms)].format(i=i, m=i % 5).replace("'", "''")
        parts.append(f"- rule: r{i}\n  condition: 'kind = process.exec and ({cond})'\n")
    rs = rules("".join(parts))
    eng = Engine(rs)
    samples = [("/opt/2/p3", "run x2y -v1", "10.2.3.4"), ("/usr/q4", "AB3 ab1", "8.8.8.8"),
               ("/opt/1/x/q0", "x4 x3y", "fd00::9"), ("/bin/p9", "-v4 --", "::ffff:10.0.0.1"),
               ("/usr/p10zz", "none", "15.1.1.1")]
    for n, (exe, cmd, ip) in enumerate(samples):
        e = ev("process.exec", n, exe=exe, cmdline=cmd, attrs={"ip": ip})
        got = [a.rule for a in eng.process(e)]
        want = [r.name for r in rs.rules if r.pred(e, eng._ctx) and (r.kinds is None or r.kinds(e.kind))]
        assert got == want and len(got) >= 3, (exe, got, want)
    ix = eng._index["process.exec"]
    assert ix.always == () and len(ix.lit) == 2 and len(ix.cidr) == 1


def test_alert_fields_from_rule_and_event() -> None:
    text = """
- rule: shell_tool
  desc: Shell in a tool call.
  condition: kind = process.exec and tool.name exists
  output: "shell %proc.exe in tool %{tool.name} (100%%) port %net.dst.port"
  severity: critical
  attack: [T1059.004, AML.T0051]
  mappings: {owasp_agentic: [ASI02, ASI05], owasp_llm: [LLM06], owasp_nhi: [NHI3], nist_csf: [DE.CM-01, DE.CM-09]}
  action: kill
  tags: [ai, process]
"""
    a = Engine(rules(text)).process(ev("process.exec", **EXEC))[0]
    assert a.rule == "shell_tool" and a.severity == "critical" and a.rule_action == "kill" and a.action == "alert"
    assert a.output == "shell /usr/bin/python3.11 in tool run_shell (100%) port <NA>"
    assert a.attack == ["T1059.004", "AML.T0051"]
    assert (a.mappings.owasp_agentic, a.mappings.owasp_llm, a.mappings.owasp_nhi, a.mappings.nist_csf) == \
        (["ASI02", "ASI05"], ["LLM06"], ["NHI3"], ["DE.CM-01", "DE.CM-09"])
    assert (a.workload.id, a.workload.name, a.workload.pod, a.workload.spiffe_id) == \
        ("c0ffee", "agent-1", "p1", "spiffe://example.org/ns/ai/sa/agent")
    assert (a.process.pid, a.process.exe, a.process.ancestry) == (100, "/usr/bin/python3.11",
                                                                  ["/bin/bash", "/usr/sbin/sshd"])
    assert a.tool_call is not None and (a.tool_call.name, a.tool_call.call_id, a.tool_call.agent) == \
        ("run_shell", "call-23", "planner")
    assert a.evidence == ["e0"] and a.count == 1 and a.time == T0 and a.tags == ["ai", "process"]


def test_disabled_rule_not_evaluated() -> None:
    eng = Engine(rules("- rule: r\n  condition: kind = process.exec\n  enabled: false\n"))
    assert eng.process(ev("process.exec")) == [] and eng.stats()["rules"] == 0


def test_a_few_valued_field_is_the_index_of_last_resort() -> None:
    """``file.intent = read`` holds for most opens: the rule is indexed by its path prefix, so
    reads elsewhere never evaluate it; a rule with only a few-valued term still uses that term."""
    text = """
- rule: secret_read
  condition: kind = file.open and file.intent = read and file.path startswith /run/secrets/
- rule: any_write
  condition: kind = file.open and file.intent in (write, rw)
- rule: role_and_name
  condition: kind = process.exec and workload.role = agent and proc.name = curl
"""
    eng = Engine(rules(text), count_evaluations=True)
    reads = [ev("file.open", i, file={"path": f"/etc/conf-{i}", "intent": "read"}) for i in range(23)]
    secret = [ev("file.open", 30 + i, file={"path": f"/run/secrets/k{i}", "intent": "read"}) for i in range(5)]
    writes = [ev("file.open", 40 + i, file={"path": "/tmp/o", "intent": "write"}) for i in range(3)]
    agent = {"id": "c1", "runtime": "runc", "role": "agent"}
    execs = [ev("process.exec", 50 + i, exe="/usr/bin/id", container=agent) for i in range(7)]
    alerts = eng.process_batch(reads + secret + writes + execs)
    # the secret rule meets only the 5 opens below /run/secrets/; the write rule, indexed by intent,
    # only the 3 writes; the exec rule only by name (no curl ran), never by the role every exec has
    assert eng.evaluations() == {"secret_read": 5, "any_write": 3, "role_and_name": 0}
    assert sorted(a.rule for a in alerts) == ["any_write"] * 3 + ["secret_read"] * 5
