"""Sample events for output and store tests: 23 mixed events with every optional group present."""

from __future__ import annotations

from typing import Any

from runwatch.events import Container, DnsInfo, Event, FileInfo, NetInfo, PrivInfo, ToolCall

BASE_NS = 1_760_000_000_123_456_789

AGENT = Container(id="a1b2c3d4e5f60718293a4b5c6d7e8f90", runtime="runc", name="agent", pod="agent-0")
MODEL = Container(id="ffee00112233445566778899aabbccdd", runtime="runc", name="model-server")
TOOL = ToolCall(name="shell", call_id="call-7", agent="planner")


def make_events() -> list[Event]:
    """23 events; event i has time BASE_NS + i*1000, pid 3000 + i % 5, id f"ev-{i:02d}"."""
    events: list[Event] = []
    for i in range(23):
        common: dict[str, Any] = {
            "id": f"ev-{i:02d}",
            "time": BASE_NS + i * 1000,
            "pid": 3000 + i % 5,
            "ppid": 2999,
            "uid": 1000 + i,
            "exe": f"/usr/bin/tool{i}",
            "cmdline": f"tool{i} --n {i}",
            "ancestry": ["/bin/sh", "/usr/bin/python3.11"],
            "container": (None, AGENT, MODEL)[i % 3],
            "tool_call": TOOL if i % 4 == 0 else None,
        }
        r = i % 6
        if r == 0:
            events.append(Event(kind="process.exec", argv=[f"tool{i}", "--n", str(i)], exec_name=f"tool{i}",
                                exe_ino=40 + i, exe_dev=2049, **common))
        elif r == 1:
            events.append(
                Event(
                    kind="file.open",
                    file=FileInfo(path=f"/secrets/key{i}.pem", intent="read", flags=0),
                    **common,
                )
            )
        elif r == 2:
            events.append(
                Event(
                    kind="net.connect",
                    net=NetInfo(proto="tcp", family="ipv4", dst_ip="10.1.2.3", dst_port=4000 + i, result=0),
                    **common,
                )
            )
        elif r == 3:
            events.append(
                Event(kind="dns.query", dns=DnsInfo(name=f"host{i}.example.com", qtype="A"), **common)
            )
        elif r == 4:
            events.append(
                Event(kind="priv.setuid", priv=PrivInfo(op="setresuid", uid=0, euid=0, result=0), **common)
            )
        else:
            events.append(
                Event(kind="process.exit", exit_code=i, attrs={"note": f"n{i}", "k": [1, 2]}, **common)
            )
    return events
