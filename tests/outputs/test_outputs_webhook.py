"""Webhook and Slack outputs against real local HTTP receivers: signature, order, outages, restarts."""

from __future__ import annotations

import json
import time
from pathlib import Path

from runwatch.alerts.model import Alert
from runwatch.alerts.render import to_json
from runwatch.outputs.base import output_factory
from runwatch.outputs.delivery import RetryPolicy
from runwatch.outputs.webhook import webhook_output
from runwatch.store.spool import SpoolLimits
from runwatch.testing.receivers import HttpReceiver, free_port

SECRET = b"s3cret-23"
FAST = RetryPolicy(initial_s=0.02, max_s=0.1)


def ids(bodies: list[bytes]) -> list[str]:
    return [json.loads(b)["id"] for b in bodies]


def test_each_alert_is_posted_signed_in_order_as_the_json_contract(alerts: list[Alert]) -> None:
    with HttpReceiver(secret=SECRET) as rx:
        out = webhook_output(rx.url + "/hook?x=1", secret=SECRET, retry=FAST)
        out.open()
        out.write_alerts(alerts[:11])
        out.write_alerts(alerts[11:])
        assert out.flush(10)
        out.close()
        assert rx.bad_signatures == 0
        assert rx.bodies() == [to_json(a) for a in alerts]  # byte for byte the --format json alert
        assert {r.path for r in rx.requests} == {"/hook?x=1"}
        assert {r.headers["content-type"] for r in rx.requests} == {"application/json"}
    st = out.output_stats()
    assert (st["sent"], st["retried"], st["spooled"], st["dropped"], st["failures"]) == (23, 0, 0, 0, 0)


def test_a_wrong_secret_is_refused_by_the_receiver_and_counted_dropped(alerts: list[Alert]) -> None:
    with HttpReceiver(secret=SECRET) as rx:
        out = webhook_output(rx.url, secret=b"other", retry=FAST)
        out.open()
        out.write_alerts(alerts[:3])
        assert out.flush(10)
        out.close()
        assert (rx.bad_signatures, rx.requests) == (3, [])
    st = out.output_stats()
    assert (st["sent"], st["dropped"], st["dropped_by_reason"]) == (0, 3, {"rejected": 3})
    assert st["last_error"] == f"POST {rx.url}: HTTP 401"


def test_an_endpoint_down_for_a_while_gets_every_alert_once_in_order(tmp_path: Path, alerts: list[Alert]) -> None:
    port = free_port()
    out = webhook_output(f"http://127.0.0.1:{port}/in", secret=SECRET, retry=FAST, queue_max=5,
                         spool_dir=str(tmp_path / "spool"))
    out.open()
    out.write_alerts(alerts)  # nothing listens: 5 wait in the queue, 18 go to the disk spool
    time.sleep(0.4)
    mid = out.output_stats()
    assert (mid["sent"], mid["spooled"], mid["queued"], mid["pending"]) == (0, 18, 5, 18)
    assert mid["failures"] >= 2 and "connection refused" in mid["last_error"].lower()
    with HttpReceiver(port, secret=SECRET) as rx:
        assert out.flush(10)
        out.close()
        assert ids(rx.bodies()) == [a.id for a in alerts]
        assert rx.bad_signatures == 0
    st = out.output_stats()
    assert (st["sent"], st["spooled"], st["dropped"], st["pending"], st["queued"]) == (23, 18, 0, 0, 0)
    assert st["retried"] == st["failures"] >= 2  # every failed attempt was retried, none was given up
    assert list((tmp_path / "spool").iterdir()) == []


def test_what_is_left_at_close_is_sent_by_the_next_session_first(tmp_path: Path, alerts: list[Alert]) -> None:
    port = free_port()
    spool = tmp_path / "spool"
    first = webhook_output(f"http://127.0.0.1:{port}", retry=FAST, queue_max=7, spool_dir=str(spool),
                           close_timeout=0.5)
    first.open()
    first.write_alerts(alerts[:17])
    started = time.monotonic()
    first.close()  # the endpoint is down: everything stays on disk
    assert time.monotonic() - started < 3
    st = first.output_stats()
    assert (st["sent"], st["spooled"], st["dropped"], st["pending"]) == (0, 17, 0, 17)
    assert len(list(spool.iterdir())) == 17
    with HttpReceiver(port) as rx:
        second = webhook_output(rx.url, retry=FAST, queue_max=7, spool_dir=str(spool))
        second.open()
        second.write_alerts(alerts[17:])  # new alerts come after the recovered ones
        assert second.flush(10)
        second.close()
        assert ids(rx.bodies()) == [a.id for a in alerts]
    st = second.output_stats()
    assert (st["recovered"], st["sent"], st["pending"], st["dropped"]) == (17, 23, 0, 0)


def test_a_full_spool_drops_and_counts_what_does_not_fit(tmp_path: Path, alerts: list[Alert]) -> None:
    port = free_port()
    out = webhook_output(f"http://127.0.0.1:{port}", retry=FAST, queue_max=3, spool_dir=str(tmp_path / "s"),
                         spool_limits=SpoolLimits(events=11, bytes=1 << 20), close_timeout=0.2)
    out.open()
    out.write_alerts(alerts)
    out.close()
    st = out.output_stats()
    # 3 queued, 11 spooled while running; at close the 3 queued find the spool full
    assert (st["spooled"], st["dropped"], st["dropped_by_reason"], st["pending"]) == (11, 12, {"spool_full": 12}, 11)


def test_slack_messages_have_text_and_blocks_with_the_alert_facts(alerts: list[Alert]) -> None:
    a = alerts[3]  # high, tool call, ATT&CK T1059 and T1041
    a.output = "read <secret> & sent it\nFORGED line"
    with HttpReceiver() as rx:
        out = output_factory("slack")(rx.url, retry=FAST)
        out.open()
        out.write_alerts([a])
        assert out.flush(10)
        out.close()
        (body,) = rx.bodies()
    msg = json.loads(body)
    assert msg["text"] == "[HIGH] rule_3: read &lt;secret&gt; &amp; sent it\\nFORGED line"
    header, section, facts, context = msg["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": "HIGH rule_3"}}
    assert section["text"] == {"type": "mrkdwn", "text": "read &lt;secret&gt; &amp; sent it\\nFORGED line"}
    fields = {f["text"].split("\n", 1)[0]: f["text"].split("\n", 1)[1] for f in facts["fields"]}
    assert fields == {
        "*Severity*": "HIGH", "*Rule*": "rule_3",
        "*Workload*": f"agent-3 ({'03' + 'c' * 10}) pod ns/p owner team-ml",
        "*Process*": "/usr/bin/tool-3 (pid 1003): tool-3 --x", "*Tool call*": "run_shell (call-3)",
        "*ATT&CK*": "T1059, T1041",
    }
    assert context["elements"][0]["text"] == "runwatch alert al-03 at 2025-11-24T16:00:00.126Z"
