"""Policy files: the typed model, every located error collected, selection."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from runwatch.events import Container
from runwatch.policy import PolicyLoadError, Workload, check_policies, load_policies, load_policy_texts
from runwatch.policy.loader import parse_egress

GOOD = """\
policies:
  - id: planner
    description: the planning agent
    selector:
      container: ["planner-*"]
    mode: enforce
    fail: open
    challenge_timeout: 45s
    tools:
      allow: [search, "read_*"]
      deny: [run_shell]
      challenge: [send_email]
    egress:
      allow: ["10.0.0.0/8:443", "api.openai.com:443", "[::1]:8080", "127.0.0.1", "*.example.com:*"]
    exec:
      allow: ["/usr/bin/python3*"]
      deny: [/bin/sh]
      action: kill
    files:
      protect:
        - path: /run/secrets/api_key
          readers: [/usr/bin/python3.11]
      immutable: [/app/, "/etc/*.conf"]
  - id: labelled
    selector: {labels: {app: agent, tier: "back*"}}
  - id: spiffe
    selector: {identity: "spiffe://corp/agent/*"}
  - id: host-agent
    selector: {process: [/usr/local/bin/agent]}
"""


def test_good_file_loads_every_field(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(GOOD)
    ps = load_policies(f)
    assert [p.id for p in ps] == ["planner", "labelled", "spiffe", "host-agent"]
    p = ps.get("planner")
    assert p is not None
    assert p.source == f"{f}:2"
    assert (p.mode, p.fail, p.challenge_timeout_ns, p.description) == ("enforce", "open", 45_000_000_000,
                                                                        "the planning agent")
    assert p.tools.allow == ("search", "read_*") and p.tools.deny == ("run_shell",)
    assert p.tools.challenge == ("send_email",)
    assert p.egress is not None
    assert p.egress.networks() == [(ipaddress.ip_network("10.0.0.0/8"), 443),
                                   (ipaddress.ip_network("::1/128"), 8080),
                                   (ipaddress.ip_network("127.0.0.1/32"), None)]
    assert p.egress.hosts() == [("api.openai.com", 443), ("*.example.com", None)]
    assert p.exec is not None and p.exec.allow == ("/usr/bin/python3*",) and p.exec.deny == ("/bin/sh",)
    assert p.exec.action == "kill"
    assert p.files is not None
    assert [(f.path, f.readers) for f in p.files.protect] == [("/run/secrets/api_key", ("/usr/bin/python3.11",))]
    assert p.files.immutable == ("/app/", "/etc/*.conf")
    host = ps.get("host-agent")
    assert host is not None and host.mode == "monitor" and host.fail == "closed"
    assert host.challenge_timeout_ns == 30_000_000_000 and host.egress is None and host.exec is None


BAD = """\
policies:
  - id: a
    selector: {container: web}
    mode: enforcing
    fail: maybe
    colour: blue
    egress:
      allow: ["10.0.0.1/8", "1.2.3.4:70000", "bad host!"]
    exec:
      allow: [python3]
  - id: a
    selector: {container: x}
  - id: nosel
    tools: {allow: [x], block: [y]}
  - id: files
    selector: {process: /bin/x}
    challenge_timeout: soon
    files:
      protect:
        - path: relative/key
          readers: [/bin/cat]
        - {path: /k, readers: [cat]}
"""


def test_every_error_is_collected_with_its_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(BAD)
    with pytest.raises(PolicyLoadError) as info:
        load_policies([f])
    got = [(e.line, e.policy, e.message) for e in info.value.errors]
    expected_bits = [
        (4, "a", "mode must be monitor or enforce, not 'enforcing'"),
        (5, "a", "fail must be open or closed, not 'maybe'"),
        (6, "a", "unknown key 'colour'"),
        (8, "a", "'10.0.0.1/8': 10.0.0.1/8 has host bits set"),
        (8, "a", "port must be 1-65535"),
        (8, "a", "'bad host!': not an IP address, CIDR or host name"),
        (10, "a", "'python3' must be an absolute path or a glob"),
        (11, "a", "duplicate id (first defined at"),
        (14, "nosel", "unknown key 'block'"),
        (13, "nosel", "selector is required"),
        (17, "files", "bad duration 'soon'"),
        (20, "files", "path must be an absolute path"),
        (22, "files", "'cat' must be an absolute path or a glob"),
    ]
    assert len(got) == len(expected_bits), got
    for line, policy, bit in expected_bits:
        assert any(g[0] == line and g[1] == policy and bit in g[2] for g in got), (line, bit, got)
    assert str(info.value).startswith(f"{f}:")
    assert "(and 12 more)" in str(info.value)
    assert [str(e) for e in check_policies([f])] == [str(e) for e in info.value.errors]


def test_yaml_syntax_error_and_missing_file_are_located(tmp_path: Path) -> None:
    f = tmp_path / "syntax.yaml"
    f.write_text("policies:\n  - id: x\n    selector: {container: [a\n")
    errs = check_policies([f])
    assert len(errs) == 1 and errs[0].file == str(f) and "YAML syntax error" in errs[0].message
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PolicyLoadError, match="no such policy file or directory"):
        load_policies([missing])


def test_directory_loads_yaml_files_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("- id: second\n  selector: {container: b}\n")
    (tmp_path / "a.yml").write_text("id: first\nselector: {container: a}\n")
    (tmp_path / "notes.txt").write_text("not a policy")
    ps = load_policies([tmp_path])
    assert [p.id for p in ps] == ["first", "second"]
    assert ps.files == (str(tmp_path / "a.yml"), str(tmp_path / "b.yaml"))


def test_selection_by_name_id_labels_identity_and_process() -> None:
    ps = load_policy_texts([(GOOD, "g.yaml")])
    web = Container(id="f" * 64, runtime="runc", name="planner-23")
    assert ps.for_container(web).id == "planner"  # type: ignore[union-attr]
    other = Container(id="ab" * 32, runtime="runc", name="other", spiffe_id="spiffe://corp/agent/x")
    assert ps.for_container(other).id == "spiffe"  # type: ignore[union-attr]
    assert ps.for_container(other, labels={"app": "agent", "tier": "backend"}).id == "labelled"  # type: ignore[union-attr]
    assert ps.for_container(other, labels={"app": "agent", "tier": "front"}).id == "spiffe"  # type: ignore[union-attr]
    assert ps.for_container(Container(id="cd" * 32, runtime="runc", name="x")) is None
    assert ps.for_process("/usr/local/bin/agent").id == "host-agent"  # type: ignore[union-attr]
    assert ps.for_process("/usr/bin/planner-1") is None  # container selectors never match host processes
    by_id = load_policy_texts([("id: p\nselector: {container: '0123456789ab'}\n", "i.yaml")])
    assert by_id.for_container(Container(id="0123456789ab" + "0" * 52, runtime="runc")) is not None
    both = load_policy_texts([("id: p\nselector: {container: 'w*', process: /usr/bin/python3}\n", "b.yaml")])
    w = Container(id="1" * 64, runtime="runc", name="web")
    assert both.select(Workload(container=w, exe="/usr/bin/python3")) is not None
    assert both.select(Workload(container=w, exe="/bin/sh")) is None


def test_verdicts_and_mode_override() -> None:
    ps = load_policy_texts([(GOOD, "g.yaml")])
    p = ps.get("planner")
    assert p is not None
    assert p.exec_verdict("/bin/sh") == ("deny", "exec.deny:/bin/sh")
    assert p.exec_verdict("/usr/bin/python3.11") == ("allow", "exec.allow:/usr/bin/python3*")
    assert p.exec_verdict("/usr/bin/curl") == ("deny", "exec.default")
    assert p.egress_verdict("10.2.3.4", 443) == ("allow", "egress.allow:10.0.0.0/8:443")
    assert p.egress_verdict("10.2.3.4", 80) == ("deny", "egress.default")
    assert p.egress_verdict("104.18.7.23", 443, ("API.openai.com.",)) == ("allow", "egress.allow:api.openai.com:443")
    assert p.egress_verdict("203.0.113.23", 9999, ("cdn.example.com",)) == ("allow", "egress.allow:*.example.com:*")
    assert p.egress_verdict("::1", 8080) == ("allow", "egress.allow:[::1]:8080")
    assert p.file_verdict("/run/secrets/api_key", "/bin/cat") == ("deny", "files.protect:/run/secrets/api_key")
    assert p.file_verdict("/run/secrets/api_key", "/usr/bin/python3.11") == (
        "allow", "files.protect:/run/secrets/api_key")
    assert p.file_verdict("/app/main.py", "/usr/bin/python3.11", write=True) == ("deny", "files.immutable:/app/")
    assert p.file_verdict("/app/main.py", "/usr/bin/python3.11") == ("allow", "files.unlisted")
    assert {q.mode for q in ps.with_mode("enforce")} == {"enforce"}
    assert {q.mode for q in ps} == {"enforce", "monitor"}


def test_parse_egress_forms() -> None:
    assert parse_egress("[2001:db8::1]:443").cidr == "2001:db8::1/128"
    assert parse_egress("2001:db8::/32").port is None
    assert parse_egress("Example.COM.:8443").host == "example.com"
    with pytest.raises(ValueError, match="port must be"):
        parse_egress("1.2.3.4:0")


def test_role_is_a_word_given_to_the_containers_a_policy_selects(tmp_path: Path) -> None:
    ps = load_policy_texts([("id: ms\nrole: model-server\nselector: {labels: {app: llm}}\n---\n"
                             "id: rest\nselector: {container: '*'}\n", "r.yaml")])
    c = Container(id="e" * 64, runtime="runc", name="llm-23")
    assert ps.role_of(c, {"app": "llm"}) == "model-server"
    assert ps.role_of(c, {"app": "web"}) is None  # selected by a policy without a role
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: b\nselector: {container: x}\nrole: [model-server]\n---\nid: c\nselector: {container: y}\n"
                   "role: 'model server'\n")
    with pytest.raises(PolicyLoadError) as info:
        load_policies([bad])
    assert [(e.line, e.policy) for e in info.value.errors] == [(3, "b"), (7, "c")]
    assert all("role must be a word" in e.message for e in info.value.errors)


def test_egress_sockets_are_known_kinds_at_their_line(tmp_path: Path) -> None:
    ok = load_policy_texts([("id: s\nselector: {container: [a]}\negress:\n  allow: []\n  sockets: [packet, raw, raw]\n",
                             "s.yaml")])
    egress = next(iter(ok)).egress
    assert egress is not None and egress.sockets == ("packet", "raw")
    f = tmp_path / "sock.yaml"
    f.write_text("id: s\nselector: {container: [a]}\negress:\n  allow: []\n  sockets: [raw, icmp]\n")
    errs = check_policies([f])
    assert [(e.line, e.message) for e in errs] == [(5, "policy 's' egress: sockets must be a list of raw, packet")]


def test_file_patterns_that_cannot_be_marked_are_located_errors(tmp_path: Path) -> None:
    f = tmp_path / "files.yaml"
    f.write_text("id: fm\nselector: {container: [a]}\nfiles:\n  protect:\n    - path: /run/secrets/../token\n"
                 "    - {path: '/run//secrets/'}\n  immutable:\n    - /etc/app.conf\n    - '*.conf'\n"
                 "    - /app/./bin/\n")
    errs = check_policies([f])
    assert [str(e) for e in errs] == [
        f"{f}:5: policy 'fm' files.protect: '/run/secrets/../token' must be a normalised absolute path "
        "(no '.', '..' or '//')",
        f"{f}:6: policy 'fm' files.protect: '/run//secrets/' must be a normalised absolute path "
        "(no '.', '..' or '//')",
        f"{f}:9: policy 'fm' files.immutable: '*.conf' needs a literal directory before its first wildcard "
        "(such as /etc/*.conf)",
        f"{f}:10: policy 'fm' files.immutable: '/app/./bin/' must be a normalised absolute path "
        "(no '.', '..' or '//')",
    ]


def test_file_rules_know_the_line_of_each_entry() -> None:
    text = "id: fl\nselector: {container: [a]}\nfiles:\n  protect:\n    - path: /run/secrets/\n  immutable: [/etc/a]\n"
    files = next(iter(load_policy_texts([(text, "fl.yaml")]))).files
    assert files is not None
    assert files.source_of("files.protect:/run/secrets/") == "fl.yaml:5"
    assert files.source_of("files.immutable:/etc/a") == "fl.yaml:6"
    assert files.source_of("files.immutable:/etc/b") == ""
