"""DNS answers parsed from the packet head, and the names they give to later connections."""

from __future__ import annotations

import socket
import struct

from runwatch.events import DnsInfo, Event, NetInfo
from runwatch.sensors.kernel.decode import parse_dns_answer
from runwatch.sensors.kernel.dnsnames import ResolvedNames


def response(name: str, addrs: list[str], rcode: int = 0, cname: str | None = None) -> bytes:
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    answers = []
    if cname:
        target = b"".join(bytes([len(p)]) + p.encode() for p in cname.split(".")) + b"\0"
        answers.append(struct.pack(">HHHIH", 0xC00C, 5, 1, 60, len(target)) + target)
    for a in addrs:
        fam, t = (socket.AF_INET6, 28) if ":" in a else (socket.AF_INET, 1)
        raw = socket.inet_pton(fam, a)
        answers.append(struct.pack(">HHHIH", 0xC00C, t, 1, 60, len(raw)) + raw)
    head = struct.pack(">HHHHHH", 7, 0x8180 | rcode, 1, len(answers), 0, 0)
    return head + q + struct.pack(">HH", 1, 1) + b"".join(answers)


def test_addresses_after_a_cname_and_both_families() -> None:
    got = parse_dns_answer(response("api.example", ["10.1.2.3", "fd00::7"], cname="edge.example"))
    assert got == ("api.example", "A", 0, ["10.1.2.3", "fd00::7"])


def test_a_query_or_a_cut_packet_is_not_an_answer_list() -> None:
    full = response("db.example", ["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    assert parse_dns_answer(full[:-3]) == ("db.example", "A", 0, ["10.0.0.1", "10.0.0.2"])
    query = bytearray(full)
    query[2] &= 0x7F  # QR clear: a question
    assert parse_dns_answer(bytes(query)) is None
    assert parse_dns_answer(response("gone.example", [], rcode=3)) == ("gone.example", "A", 3, [])


def conn(ip: str, cgroup: int = 5, kind: str = "net.connect") -> Event:
    return Event(id="c", time=1, kind=kind, pid=9, cgroup_id=cgroup,
                 net=NetInfo(proto="tcp", family="ipv4", dst_ip=ip, dst_port=443, result=0))


def answer(name: str, addrs: list[str], cgroup: int = 5) -> Event:
    return Event(id="a", time=1, kind="dns.answer", pid=9, cgroup_id=cgroup, dns=DnsInfo(name=name),
                 attrs={"answers": addrs, "rcode": 0})


def test_connections_get_the_name_their_workload_resolved() -> None:
    names = ResolvedNames(limit=3)
    names.observe(answer("api.example", ["10.0.0.1", "10.0.0.2"]))
    names.observe(answer("other.example", ["10.0.0.9"], cgroup=6))
    events = [conn("10.0.0.2"), conn("10.0.0.9"), conn("10.0.0.9", cgroup=6), conn("10.0.0.3"),
              conn("10.0.0.1", kind="net.send")]
    for e in events:
        names.observe(e)
    assert [(e.attrs or {}).get("dest_name") for e in events] == [
        "api.example", None, "other.example", None, "api.example"]
    names.observe(answer("new.example", ["10.0.0.4", "10.0.0.5"]))  # the oldest two go
    assert len(names) == 3
    late = conn("10.0.0.1")
    names.observe(late)
    assert late.attrs is None
