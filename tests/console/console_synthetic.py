"""The console tests' store: the report tests' agent and bystander (tests/report/report_synthetic.py)
plus a sidecar in the agent's pod, a trainer outside any pod whose access review is overdue
(its container name is hostile markup; one of its events came before the name was known),
five alerts and one recorded run, written through the real SQLite store writer."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))

import report_synthetic as rs

from runwatch.alerts.model import Alert, AlertProcess, AlertToolCall, Mappings, Workload
from runwatch.events import Container, DnsInfo, Event, FileInfo
from runwatch.store.sqlite import SqliteStore

TOKEN = "t0ken-for-the-console-tests-0123"
HOSTILE = rs.HOSTILE
T0, MS = rs.T0, rs.MS
SIDECAR_ID = "5c1d2e3f4a5b" + "2" * 52
TRAINER_ID = "7e7e7e7e7e7e" + "3" * 52
TRAINER_NAME = 'trainer"><script>window.__pwned=3</script>'
SIDECAR = Container(id=SIDECAR_ID, runtime="runc", name="proxy", pod="agent-7", namespace="ml",
                       spiffe_id=rs.SPIFFE, spiffe_source="derived", siblings=["agent", "log-shipper"])
TRAINER = Container(id=TRAINER_ID, runtime="runc", name=TRAINER_NAME, owner="team-<i>research</i>",
                    escalation="oncall@example.org", review_by="2026-01-31", role="trainer")
AGENT_WORKLOAD = "ml/agent-7"
BYSTANDER_WORKLOAD = "ml/bystander-0"
RUN_STATS = {"source": "kernel", "drops": 7, "events": 41,
             "hooks": {"active": ["sched_process_exec", "sys_enter_connect", "sys_exit_openat"],
                       "refused": {"lsm/file_open": "BPF LSM is not enabled"}},
             "store": {"written": 41, "spooled": 3, "spool_peak": 3, "recovered": 3, "lost": 0, "alerts_lost": 0},
             "notices": ["the BPF LSM is off: file-open enforcement unavailable"],
             "source_stats": {"ring_events": 45, "drops": 7}}


def _extra() -> list[Event]:
    def ev(n: int, ms: int, kind: str, c: Container, **kw: object) -> Event:
        return Event(id=f"cx-{n}", time=T0 + ms * MS, kind=kind, source="kernel", container=c, **kw)  # type: ignore[arg-type]

    return [
        ev(1, 3, "process.exec", SIDECAR, pid=200, ppid=190, vpid=1, exe="/usr/bin/envoy", cmdline="envoy -c /etc/e"),
        ev(2, 60, "file.open", SIDECAR, pid=200, exe="/usr/bin/envoy", file=FileInfo(path="/etc/e", intent="read")),
        ev(3, 9, "process.exec", TRAINER, pid=400, ppid=390, vpid=1, exe="/usr/bin/python3",
           cmdline="python3 train.py"),
        # The instrumented agent opened a file outside any tool call.
        ev(6, 45, "file.open", rs.AGENT, pid=100, exe="/usr/bin/python3", unattested=True,
           file=FileInfo(path="/home/agent/.netrc", intent="read")),
        # Seen once before its name was known: the store keeps that bare description too.
        ev(5, 1, "file.open", Container(id=TRAINER_ID, runtime="runc"), pid=400, exe="/usr/bin/python3",
           file=FileInfo(path="/data/shard-0", intent="read")),
        ev(4, 70, "dns.query", TRAINER, pid=400, exe="/usr/bin/python3", dns=DnsInfo(name="hub.example", qtype="A")),
    ]


def write_store(path: Path) -> tuple[Path, list[Event], list[Alert]]:
    """The store at ``path``, with the events and alerts written to it."""
    events = sorted(rs.events() + _extra(), key=lambda e: e.time)
    execs = [e.id for e in events if e.kind == "process.exec" and e.pid in (101, 102)]
    assert len(execs) == 3
    base = rs.alerts()
    alerts = [
        *base,
        Alert(id="al-3", time=T0 + 25 * MS, rule="shell_in_tool_call", severity="critical",
              output=f"a shell ran inside tool call run_shell: sh -c {HOSTILE}",
              mappings=Mappings(owasp_agentic=["ASI02"], nist_csf=["DE.CM-09"]), attack=["T1059.004"],
              workload=Workload(id=rs.AGENT_ID, name="agent", pod="agent-7", namespace="ml"),
              process=AlertProcess(pid=101, exe="/bin/sh", cmdline=f"sh -c {HOSTILE}"),
              tool_call=AlertToolCall(name="run_shell", call_id="c-2"), evidence=execs),
        Alert(id="al-4", time=T0 + 70 * MS, rule="unexpected_dns", severity="low", output="dns hub.example",
              workload=Workload(id=TRAINER_ID, name=TRAINER_NAME), process=AlertProcess(pid=400)),
        Alert(id="al-5", time=T0 + 80 * MS, rule="shell_in_tool_call", severity="medium", output="host shell",
              process=AlertProcess(pid=1, exe="/bin/bash")),
    ]
    with SqliteStore(path) as store:
        store.write(events)
        store.write_alerts(alerts)
        store.record_run(started_ns=T0 - 1000 * MS, ended_ns=T0 + 90 * MS, command="watch", exit_code=0,
                         stats=RUN_STATS)
        store.flush()
    return path, events, alerts
