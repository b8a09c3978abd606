"""Each console page over the synthetic store (Starlette's TestClient): the right counts and
names, hostile workload text escaped, the evidence of an alert, acknowledgements, the zoom of
the timeline, the report downloads, and the live stream."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from console_synthetic import AGENT_WORKLOAD, HOSTILE, T0, TOKEN, TRAINER_NAME
from starlette.testclient import TestClient

from runwatch.console.app import ConsoleConfig, create_app

BEARER = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(cfg: ConsoleConfig) -> TestClient:
    c = TestClient(create_app(cfg))
    c.headers.update(BEARER)
    return c


def spans(html: str, ident: str) -> str:
    m = re.search(rf'<span id="{ident}">([^<]*)</span>', html)
    assert m is not None, ident
    return m.group(1)


def rows(html: str, cls: str) -> list[str]:
    return re.findall(rf'<tr class="{cls}[^"]*" data-(?:id|name)="([^"]*)"', html)


def test_workloads_identity_siblings_owner_policy_alerts_and_overdue_reviews(client: TestClient) -> None:
    html = client.get("/workloads").text
    assert (spans(html, "workload-count"), spans(html, "overdue-count")) == ("3", "1")
    assert rows(html, "workload") == [AGENT_WORKLOAD, "ml/bystander-0",
                                      "trainer&#34;&gt;&lt;script&gt;window.__pwned=3&lt;/script&gt;"]
    agent = html.split('data-name="ml/agent-7"')[1].split("</tr>")[0]
    assert "spiffe://cluster.local/ns/ml/sa/agent <span class=\"tag\">derived</span>" in agent
    assert re.findall(r'<li class="box" title="[^"]*">([^ ]+) ', agent) == ["agent", "proxy"]
    assert re.findall(r'<li class="sibling">([^ ]+) ', agent) == ["log-shipper"]
    assert ">team-ml<" in agent and ">egress-default<" in agent and "ReplicaSet/agent-7d9f" in agent
    assert re.findall(r'class="alert-count"[^>]*>(\d+)<', html) == ["2", "1", "1"]
    assert '<span class="sev critical">critical 1</span> <span class="sev high">high 1</span>' in agent
    assert "2025-12-06T05:46:40.060Z" in agent  # the sidecar's last event
    trainer = html.split('<tr class="workload overdue"')[1].split("</tr>")[0]
    assert "2026-01-31 <span class=\"sev high\">overdue</span>" in trainer
    assert "team-&lt;i&gt;research&lt;/i&gt;" in trainer and "<script>" not in html and "<i>" not in html


def test_alerts_filters_and_acknowledge(client: TestClient) -> None:
    html = client.get("/alerts").text
    assert (spans(html, "alert-count"), rows(html, "alert")) == ("5", ["al-5", "al-4", "al-1", "al-3", "al-2"])
    assert "window.__pwned=1&lt;/script&gt;" in html and "<script>window" not in html
    got = {q: rows(client.get(f"/alerts?{q}").text, "alert") for q in (
        "severity=high", "rule=shell_in_tool_call", "workload=ml%2Fagent-7", "framework=ASI02",
        "severity=critical&workload=ml%2Fagent-7", f"workload={TRAINER_NAME}")}
    assert got == {"severity=high": ["al-1", "al-3", "al-2"], "rule=shell_in_tool_call": ["al-5", "al-3"],
                   "workload=ml%2Fagent-7": ["al-1", "al-3"], "framework=ASI02": ["al-3"],
                   "severity=critical&workload=ml%2Fagent-7": ["al-3"], f"workload={TRAINER_NAME}": ["al-4"]}
    r = client.post("/alerts/al-3/ack", data={"by": "ana <b>", "note": "seen"}, follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/alerts")
    again = client.post("/alerts/al-3/ack", data={"by": "bob"}, headers={"accept": "application/json"})
    assert again.json()["by"] == "ana <b>"  # the first acknowledgement stays
    html = client.get("/alerts").text
    acked = html.split('data-id="al-3"')[1].split("</tr>")[0]
    assert "ana &lt;b&gt; 20" in acked and "Acknowledge" not in acked
    assert html.count("<button>Acknowledge</button>") == 4
    assert client.post("/alerts/al-999/ack").status_code == 404


def test_an_alert_opens_its_evidence(client: TestClient) -> None:
    html = client.get("/alerts/al-3").text
    assert spans(html, "evidence-count") == "3"
    assert re.findall(r'<tr class="event" data-id="[^"]+"><td>[^<]+</td><td>([^<]+)</td><td>[^<]+</td>'
                      r'<td class="n">(\d+)</td>', html) == [
        ("process.exec", "101"), ("process.exec", "102"), ("process.exec", "102")]
    assert "ASI02" in html and "T1059.004" in html and "run_shell [c-2]" in html
    assert '<a href="/timeline?w=ml%2Fagent-7">ml/agent-7</a>' in html
    assert client.get("/alerts/nope").status_code == 404


def test_timeline_spans_nested_events_routes_decisions_and_zoom(client: TestClient) -> None:
    html = client.get("/timeline?w=ml/agent-7").text
    assert (spans(html, "count-calls"), spans(html, "count-events"), spans(html, "count-unattested")) == (
        "3", "36", "1")
    assert re.findall(r'<details class="span" data-call="([^"]+)"', html) == ["c-1", "c-2", "c-3"]
    assert re.findall(r'<span class="kcount">(\d+)</span>', html) == ["2", "10", "3"]  # forks are not on the timeline
    # Kernel activity outside any tool call is listed, the instrumented agent's own flagged.
    outside = html.split('<table class="outside">')[1].split("</table>")[0]
    assert outside.count('<tr class="kevent') == 5 and outside.count('<tr class="kevent unattested">') == 1
    assert "/home/agent/.netrc (read) by python3</td>" in outside and outside.count("outside any tool call") == 1
    assert html.count('<tr class="route">') == 1 and "untrusted:web" in html
    assert html.count('<tr class="model-call">') == 3
    assert html.count('<tr class="decision">') == 1 and "no-new-egress" in html
    assert 'class="timeline"' in html and html.count('class="mark call"') == 3
    assert HOSTILE not in html and "&lt;script&gt;window.__pwned=1" in html
    # Zoom to the second call: only it is left.
    zoom = client.get(f"/timeline?w=ml/agent-7&since={T0 + 20_000_000}&until={T0 + 37_000_000}").text
    assert re.findall(r'<details class="span" data-call="([^"]+)"', zoom) == ["c-2"]
    assert f"&amp;since={T0 + 20_000_000}&amp;until={T0 + 37_000_000}" in zoom  # the other views keep the window
    bad = client.get("/timeline?w=ml/agent-7&since=yesterday")
    assert bad.status_code == 400 and "cannot read time &#39;yesterday&#39;" in bad.text
    assert client.get("/timeline?w=nobody").status_code == 404


def test_process_tree_marks_the_alerting_process(client: TestClient) -> None:
    html = client.get("/tree?w=ml/agent-7").text
    assert (spans(html, "count-processes"), spans(html, "count-alerting")) == ("6", "1")
    assert re.findall(r'<g class="(proc[^"]*)" data-node="\d+" data-pid="(\d+)"', html) == [
        ("proc", "100"), ("proc in-call alerting", "101"), ("proc in-call", "102"), ("proc in-call", "103"),
        ("proc", "104"), ("proc", "200")]


def test_investigation_in_the_page_and_as_downloads(client: TestClient) -> None:
    html = client.get("/investigate?w=ml/agent-7").text
    assert '<iframe class="report" title="investigation report" sandbox="" src="/report.html?w=ml%2Fagent-7">' in html
    assert re.findall(r'class="dl" href="([^"]+)"', html) == [
        "/report.md?w=ml%2Fagent-7", "/report.json?w=ml%2Fagent-7", "/report.html?w=ml%2Fagent-7&amp;download=1"]
    md = client.get("/report.md?w=ml/agent-7")
    assert md.headers["content-disposition"] == 'attachment; filename="runwatch-report-ml_agent-7.md"'
    assert md.text.startswith("# runwatch report: ml/agent-7")
    js = client.get("/report.json?w=ml/agent-7")
    assert json.loads(js.text)["counts"]["tool_calls"] == 3
    frame = client.get("/report.html?w=ml/agent-7")
    assert "content-disposition" not in frame.headers
    assert frame.headers["content-security-policy"].endswith("; frame-ancestors 'self'")
    assert "script-src" not in frame.headers["content-security-policy"]
    assert client.get("/report.html?w=ml/agent-7&download=1").headers["content-disposition"].endswith('.html"')
    assert client.get("/report.exe?w=ml/agent-7").status_code == 404


def test_challenges_without_a_running_runwatch_say_so(client: TestClient, cfg: ConsoleConfig) -> None:
    html = client.get("/challenges").text
    assert spans(html, "challenge-count") == "0"
    assert f"{cfg.control_socket}: no runwatch is serving policy decisions here" in html
    r = client.post("/challenges/abcd1234/approve")
    assert r.status_code == 409 and "no runwatch is serving policy decisions here" in r.text
    assert client.post("/challenges/abcd1234/delete").status_code == 404


def test_health_sources_hooks_drops_and_spool(client: TestClient) -> None:
    html = client.get("/health").text
    assert spans(html, "run-count") == "1"
    assert '<td class="source">kernel</td>' in html and '<td class="drops">7</td>' in html
    assert "3: sched_process_exec, sys_enter_connect, sys_exit_openat" in html
    assert "lsm/file_open: BPF LSM is not enabled" in html
    assert "spooled 3 (peak 3), recovered 3, lost 0, alerts lost 0" in html
    assert "42 events, 5 alerts" in html


def test_the_live_stream_sends_only_alerts_after_the_page(client: TestClient) -> None:
    after = T0 + 25_000_000  # al-3's time: al-3 is on the page, al-1, al-4 and al-5 are new
    with client.stream("GET", f"/alerts/stream?after={after}&for=0.01") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        body = "".join(r.iter_text())
    sent = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
    assert [(a["id"], a["workload"]) for a in sent] == [("al-1", "ml/agent-7"), ("al-4", TRAINER_NAME), ("al-5", None)]
    assert sent[0]["href"] == "/alerts/al-1"
    with client.stream("GET", f"/alerts/stream?after={after}&for=0.01&severity=medium") as r:
        body = "".join(r.iter_text())
    assert [json.loads(x[6:])["id"] for x in body.splitlines() if x.startswith("data: ")] == ["al-1", "al-5"]


def test_missing_store_is_one_line(cfg: ConsoleConfig) -> None:
    cfg.db = cfg.db + ".missing"
    c = TestClient(create_app(cfg))
    r = c.get("/workloads", headers=BEARER)
    assert r.status_code == 503 and f"event store not found: {cfg.db}" in r.text


def test_unusable_acknowledgements_file_is_one_line(cfg: ConsoleConfig, tmp_path: Path) -> None:
    (tmp_path / "acks-dir").mkdir()
    cfg.acks = str(tmp_path / "acks-dir")
    c = TestClient(create_app(cfg))
    c.headers.update(BEARER)
    r = c.get("/alerts")
    assert r.status_code == 503 and f"cannot open acknowledgements {cfg.acks}: unable to open database file" in r.text
    r = c.post("/alerts/al-3/ack")
    assert (r.status_code, r.text) == (503, f"cannot open acknowledgements {cfg.acks}: unable to open database file\n")
