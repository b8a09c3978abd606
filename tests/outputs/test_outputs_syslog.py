"""Syslog output: RFC 5424 frames over UDP and TCP (octet counting), parsed by real listeners."""

from __future__ import annotations

import os

import pytest

from runwatch.alerts.model import Alert
from runwatch.outputs.delivery import RetryPolicy
from runwatch.outputs.syslog import parse_target, rfc5424, syslog_output
from runwatch.testing.receivers import SyslogListener, parse_rfc5424

FAST = RetryPolicy(initial_s=0.02, max_s=0.1)
# local0 (16) * 8 + the syslog severity of info, low, medium, high, critical
PRI = {"info": 134, "low": 133, "medium": 132, "high": 131, "critical": 130}


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_each_alert_is_one_rfc5424_message(proto: str, alerts: list[Alert]) -> None:
    with SyslogListener(proto) as rx:
        out = syslog_output(rx.url, hostname="node-7", retry=FAST)
        out.open()
        out.write_alerts(alerts)
        assert out.flush(10)
        assert rx.wait_for(23)
        out.close()
        got = list(rx.messages)
    assert [m.sd["runwatch@32473"]["alert_id"] for m in got] == [a.id for a in alerts]
    assert [m.pri for m in got] == [PRI[a.severity] for a in alerts]
    first = got[1]
    assert (first.timestamp, first.hostname, first.app, first.procid, first.msgid) == (
        "2025-11-24T16:00:00.124456Z", "node-7", "runwatch", str(os.getpid()), "alert")
    assert first.sd == {"runwatch@32473": {"rule": "rule_1", "severity": "low", "alert_id": "al-01",
                                           "workload": "agent-1", "owner": "team-ml", "tool": "run_shell",
                                           "attack": "T1059,T1041"}}
    assert first.msg == "alert number 1 from /usr/bin/tool-1"
    st = out.output_stats()
    assert (st["sent"], st["retried"], st["spooled"], st["dropped"]) == (23, 0, 0, 0)


def test_structured_data_is_escaped_and_the_message_cannot_forge_another(alerts: list[Alert]) -> None:
    a = alerts[4]
    a.rule = 'odd"rule]\\x'
    a.output = "one\n<13>1 - forged - - - - line"
    frame = rfc5424(a, hostname="my host", procid=23)
    assert b"\n" not in frame
    m = parse_rfc5424(frame)
    assert (m.pri, m.hostname, m.procid) == (130, "myhost", "23")
    assert m.sd["runwatch@32473"]["rule"] == 'odd"rule]\\x'
    assert m.msg == "one\\n<13>1 - forged - - - - line"


def test_tcp_frames_are_octet_counted(alerts: list[Alert]) -> None:
    with SyslogListener("tcp") as rx:
        out = syslog_output(rx.url, hostname="h", facility="authpriv", retry=FAST)
        out.open()
        out.write_alerts(alerts[:3])
        assert out.flush(10) and rx.wait_for(3)
        out.close()
        frames = list(rx.frames)
    assert frames == [rfc5424(a, hostname="h", facility=10, procid=os.getpid()) for a in alerts[:3]]
    assert [parse_rfc5424(f).facility for f in frames] == [10, 10, 10]


def test_bad_targets_are_one_line_errors() -> None:
    for bad in ("syslog://h:514", "udp://h", "tcp://:514", "udp://h:99999"):
        with pytest.raises(ValueError, match="syslog target must be udp://HOST:PORT or tcp://HOST:PORT"):
            parse_target(bad)
    with pytest.raises(ValueError, match="unknown syslog facility 'local9'"):
        syslog_output("udp://127.0.0.1:514", facility="local9")
