"""``runwatch run`` end to end: real alerts reach a signed webhook, a routed one, syslog and the OCSF stream;
alerts for an endpoint that is down wait on disk and the next run sends them first."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from runwatch.testing.receivers import HttpReceiver, SyslogListener, free_port

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))
RULES = """\
- rule: e2e_true
  desc: true ran
  condition: kind = process.exec and proc.exe = /usr/bin/true
  output: "true ran %proc.cmdline"
  severity: low
  tags: [probe]
- rule: e2e_env
  desc: env ran
  condition: kind = process.exec and proc.exe = /usr/bin/env
  output: "env ran"
  severity: high
  attack: [T1082]
  tags: [recon]
- rule: e2e_printf
  desc: printf ran
  condition: kind = process.exec and proc.exe = /usr/bin/printf
  output: "printf ran"
  severity: critical
  attack: [T1059]
  tags: [exfil]
"""
SCRIPT = "/usr/bin/true; /usr/bin/env >/dev/null; /usr/bin/printf x >/dev/null; exit 3"
ORDER = ["e2e_true", "e2e_env", "e2e_printf"]


def _run(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUNWATCH, "run", "--db", str(tmp / "run.db"), "--rules", str(tmp / "rules.yaml"),
                           "--no-sdk", *args, "--", "/bin/sh", "-c", SCRIPT],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("the sensor needs root")
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "hook.secret").write_text("e2e-secret-23\n")
    return tmp_path


@pytest.mark.kernel
def test_alerts_of_a_run_reach_every_output(tmp: Path) -> None:
    with HttpReceiver(secret=b"e2e-secret-23") as hook, HttpReceiver() as pager, SyslogListener("udp") as syslog:
        (tmp / "outputs.yaml").write_text(f"outputs:\n  - name: pager\n    type: slack\n    url: {pager.url}\n"
                                          "    route: {min_severity: high}\n")
        res = _run(tmp, "--webhook", hook.url + "/rw", "--webhook-secret-file", str(tmp / "hook.secret"),
                   "--syslog", syslog.url, "--ocsf-out", str(tmp / "live.ocsf.jsonl"),
                   "--outputs", str(tmp / "outputs.yaml"))
        assert res.returncode == 3, res.stderr[-3000:]  # the command's own exit status
        assert syslog.wait_for(3)
        got_hook = [json.loads(b)["rule"] for b in hook.bodies()]
        got_pager = [json.loads(b)["blocks"][0]["text"]["text"] for b in pager.bodies()]
        got_syslog = [(m.sd["runwatch@32473"]["rule"], m.severity) for m in syslog.messages]
        bad = hook.bad_signatures
    assert got_hook == ORDER and bad == 0
    assert got_pager == ["HIGH e2e_env", "CRITICAL e2e_printf"]
    assert got_syslog == [("e2e_true", 5), ("e2e_env", 3), ("e2e_printf", 2)]
    lines = [json.loads(line) for line in (tmp / "live.ocsf.jsonl").read_text().splitlines()]
    findings = [x["finding_info"]["title"] for x in lines if x["class_uid"] == 2004]
    assert findings == ORDER
    assert any(x["class_uid"] == 1007 and x.get("process", {}).get("file", {}).get("path") == "/usr/bin/printf"
               for x in lines)
    summary = [line for line in res.stderr.splitlines() if "output " in line]
    assert summary == ["runwatch: output pager: sent 2, retried 0, spooled 0, dropped 0, filtered 1",
                       "runwatch: output syslog: sent 3, retried 0, spooled 0, dropped 0",
                       "runwatch: output webhook: sent 3, retried 0, spooled 0, dropped 0"]


@pytest.mark.kernel
def test_alerts_for_a_down_endpoint_are_sent_by_the_next_run(tmp: Path) -> None:
    port = free_port()
    first = _run(tmp, "--webhook", f"http://127.0.0.1:{port}/rw")
    assert first.returncode == 3, first.stderr[-3000:]
    spool = Path(f"{tmp / 'run.db'}.spool") / "webhook"
    left = sorted(spool.iterdir())
    assert len(left) == 3
    line = next(x for x in first.stderr.splitlines() if "output webhook" in x)
    assert re.fullmatch(rf"runwatch: output webhook: sent 0, retried (\d+), spooled 3, dropped 0, 3 left in the "
                        rf"spool {re.escape(str(spool))} for the next run; (\d+) failed attempt\(s\), last: POST "
                        rf"http://127.0.0.1:{port}/rw: Connection refused", line), line
    with HttpReceiver(port) as hook:
        second = _run(tmp, "--webhook", f"http://127.0.0.1:{port}/rw")
        assert second.returncode == 3, second.stderr[-3000:]
        rules = [json.loads(b)["rule"] for b in hook.bodies()]
        ids = [json.loads(b)["id"] for b in hook.bodies()]
    assert rules == ORDER + ORDER  # the first run's three, then this run's
    assert len(set(ids)) == 6
    assert list(spool.iterdir()) == []
    line = next(x for x in second.stderr.splitlines() if "output webhook" in x)
    assert line == "runwatch: output webhook: sent 6, retried 0, spooled 0, dropped 0, 3 from the last run's spool"


@pytest.mark.kernel
def test_watch_stats_json_has_each_outputs_counters(tmp: Path) -> None:
    port = free_port()
    assert _run(tmp, "--webhook", f"http://127.0.0.1:{port}/rw").returncode == 3  # leaves 3 in the spool
    stats = tmp / "stats.json"
    with HttpReceiver(port) as hook:
        res = subprocess.run([RUNWATCH, "watch", "--db", str(tmp / "run.db"), "--no-rules", "--no-sdk",
                              "--duration", "0.5", "--webhook", f"http://127.0.0.1:{port}/rw", "--stats-json",
                              str(stats)], capture_output=True, text=True, timeout=120, check=False)
        assert res.returncode == 0, res.stderr[-3000:]
        assert [json.loads(b)["rule"] for b in hook.bodies()] == ORDER
    webhook = json.loads(stats.read_text())["outputs"]["webhook"]
    assert {k: webhook[k] for k in ("sent", "retried", "spooled", "dropped", "recovered", "pending", "failures")} == {
        "sent": 3, "retried": 0, "spooled": 0, "dropped": 0, "recovered": 3, "pending": 0, "failures": 0}
    assert webhook["spool"] == f"{tmp / 'run.db'}.spool/webhook"
