"""Events and alerts for the lake tests: a known mix at known times (ids are stable)."""

from __future__ import annotations

import calendar
from pathlib import Path

from runwatch.alerts.model import Alert, AlertProcess, Workload
from runwatch.events import Container, Event, FileInfo, NetInfo

#: 2026-12-04 20:15:00 UTC and 2026-12-05 03:40:00 UTC, in ns
T1 = calendar.timegm((2026, 12, 4, 20, 15, 0)) * 1_000_000_000
T2 = calendar.timegm((2026, 12, 5, 3, 40, 0)) * 1_000_000_000
CONTAINER = Container(id="c0ffee" * 10 + "abcd", runtime="runc", name="agent-23")


def exec_event(t: int, i: int) -> Event:
    return Event(id=f"{t:x}-exec-{i}", time=t + i, kind="process.exec", pid=4000 + i, ppid=3999, uid=1000,
                 exe="/usr/bin/true", cmdline=f"true {i}", ancestry=["/usr/bin/dash"], container=CONTAINER)


def connect_event(t: int, i: int) -> Event:
    return Event(id=f"{t:x}-connect-{i}", time=t + i, kind="net.connect", pid=5000 + i, exe="/usr/bin/curl",
                 net=NetInfo(proto="tcp", family="ipv4", dst_ip="127.0.0.1", dst_port=8000 + i, result=0))


def open_event(t: int, i: int) -> Event:
    return Event(id=f"{t:x}-open-{i}", time=t + i, kind="file.open", pid=6000 + i, exe="/usr/bin/cat",
                 file=FileInfo(path=f"/run/secrets/token-{i}", intent="read"), container=CONTAINER)


def alert(t: int, i: int) -> Alert:
    return Alert(id=f"{t:x}-alert-{i}", time=t + i, first_time=t + i, rule="secret_read_then_egress", severity="high",
                 output=f"secret read then egress {i}", kind="net.connect", attack=["T1552.001"],
                 process=AlertProcess(5000 + i, "/usr/bin/curl", "curl http://x", ["/usr/bin/dash"]),
                 workload=Workload(id=CONTAINER.id, name="agent-23", runtime="runc"))


def mix() -> tuple[list[Event], list[Alert]]:
    """23 execs (15 at T1, 8 at T2), 11 connects, 7 file opens (T1) and 3 alerts (T2)."""
    events = [exec_event(T1, i) for i in range(15)] + [exec_event(T2, i) for i in range(8)]
    events += [connect_event(T1, i) for i in range(11)] + [open_event(T1, i) for i in range(7)]
    return events, [alert(T2, i) for i in range(3)]


def parquet_files(root: Path) -> list[str]:
    """The lake's visible files, relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet"))
