"""Fields compare what a name or address means, not how it was spelt."""

from __future__ import annotations

from runwatch.events import DnsInfo, Event, NetInfo
from runwatch.rules import Engine, load_texts
from runwatch.rules.fields import EvalCtx, resolve_field

RULES = """
- rule: pool
  condition: kind = dns.query and dns.name endswith .supportxmr.com
- rule: named
  condition: kind = net.connect and net.dst.name = api.example.com
- rule: imds
  condition: kind = net.connect and net.dst.ip cidr (169.254.169.254/32, "fd00:ec2::254/128")
- rule: suid
  condition: kind = file.chmod and evt.attr[setuid] = true
- rule: runtime
  condition: kind = priv.setns and not proc.exe_is_runtime
"""


def _get(name: str, e: Event) -> object:
    spec = resolve_field(name)
    assert spec is not None
    return spec.get(e, EvalCtx())


def _fired(*events: Event) -> list[str]:
    rs = load_texts([(RULES, "t.yaml")])
    assert rs.errors == []
    return [a.rule for a in Engine(rs).process_batch(list(events))]


def test_dns_names_are_lower_cased_without_the_root_dot() -> None:
    e = Event(id="1", time=1, kind="dns.query", dns=DnsInfo(name="Pool.SupportXMR.COM.", qtype="A"))
    assert _get("dns.name", e) == "pool.supportxmr.com"
    assert _fired(e) == ["pool"]
    c = Event(id="2", time=2, kind="net.connect", attrs={"dest_name": "API.Example.com."},
              net=NetInfo(proto="tcp", family="ipv4", dst_ip="192.0.2.1", dst_port=443))
    assert _get("net.dst.name", c) == "api.example.com"
    assert _fired(c) == ["named"]


def test_metadata_addresses_match_in_every_spelling() -> None:
    hits = [Event(id=str(i), time=i, kind="net.connect",
                  net=NetInfo(proto="tcp", family="ipv6", dst_ip=ip, dst_port=80))
            for i, ip in enumerate(["169.254.169.254", "::ffff:169.254.169.254", "fd00:ec2:0:0::254"], 1)]
    miss = Event(id="9", time=9, kind="net.connect",
                 net=NetInfo(proto="tcp", family="ipv6", dst_ip="::ffff:169.254.169.253", dst_port=80))
    assert _fired(*hits, miss) == ["imds"] * 3


def test_boolean_attributes_read_as_rules_write_them() -> None:
    e = Event(id="1", time=1, kind="file.chmod", attrs={"mode": "4755", "setuid": True, "setgid": False})
    assert _get("evt.attr[setuid]", e) == "true" and _get("evt.attr[setgid]", e) == "false"
    assert _fired(e) == ["suid"]


def test_the_runtime_mark_and_not_names_decides() -> None:
    named = Event(id="1", time=1, kind="priv.setns", comm="runc:[2:INIT]", argv=["/usr/sbin/runc", "init"])
    marked = Event(id="2", time=2, kind="priv.setns", attrs={"exe_is_runtime": True})
    assert _get("proc.exe_is_runtime", named) is False
    assert _fired(named, marked) == ["runtime"]
