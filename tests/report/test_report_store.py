"""``runwatch report`` over a store written from synthetic events by the real SQLite writer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from report_synthetic import AGENT_ID, HOSTILE, MS, OTHER_ID, SPIFFE, T0

from runwatch.report.build import build_report
from runwatch.report.render_json import render as render_json
from runwatch.report.render_md import render as render_md
from runwatch.report.timearg import TimeArgError, iso, parse_time
from runwatch.store.sqlite_read import query_containers

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))


def rw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUNWATCH, "report", *args], capture_output=True, text=True, timeout=60)


def test_containers_are_read_with_their_workload_facts(synthetic_db: Path) -> None:
    boxes = query_containers(synthetic_db)
    assert [(c.id, c.name, c.pod, c.namespace, c.spiffe_id, c.owner) for c in boxes] == [
        (AGENT_ID, "agent", "agent-7", "ml", SPIFFE, "team-ml"),
        (OTHER_ID, "bystander", "bystander-0", "ml", None, None)]


def test_json_report_answers_what_left_where_and_by_which_call(synthetic_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    res = rw("--db", str(synthetic_db), "--workload", "agent-7", "--format", "json", "-o", str(out))
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
    r = json.loads(out.read_text())
    assert r["counts"] == {"events": 33, "execs": 7, "processes": 5, "tool_calls": 3, "secret_reads": 3,
                           "egress": 3, "dns": 1, "decisions": 1, "alerts": 1, "unattested": 0}
    assert [c["id"] for c in r["containers"]] == [AGENT_ID]
    assert r["containers"][0]["controller"] == "ReplicaSet/agent-7d9f"
    assert (r["data_left"], r["bytes_known"]) == (True, False)
    secrets = [(s["secret"], s["how"], s["sources"], s["call_id"], s["tool"], s["egress_total"], s["data_left"])
               for s in r["secrets"]]
    assert secrets == [
        ("/run/secrets/api-token", "file", ["kernel", "sdk"], "c-1", "read_file", 3, True),
        ("/var/run/secrets/kubernetes.io/serviceaccount/token", "file", ["kernel"], "c-2", "run_shell", 2, True),
        ("OPENAI_API_KEY", "env", ["sdk"], "c-3", "http_post", 2, True)]
    first = r["secrets"][0]["egress"][0]
    assert (first["destination"], first["name"], first["call_id"], first["tool"], first["pid"], first["exe"],
            first["time"], first["bytes"]) == ("203.0.113.9:443", "sink.example", "c-2", "run_shell", 102,
                                              "/usr/bin/curl", T0 + 27 * MS, None)
    assert [(d["destination"], d["kind"], d["count"], d["failed"], d["tools"]) for d in r["destinations"]] == [
        ("sink.example", "dns.query", 1, 0, ["run_shell"]),
        ("203.0.113.9:443", "net.connect", 2, 0, ["run_shell", "http_post"]),
        ("198.51.100.7:80", "net.connect", 1, 1, ["http_post"])]
    assert [(t["call_id"], t["name"], t["route"], t["status"], t["kinds"]) for t in r["tool_calls"]] == [
        ("c-1", "read_file", "untrusted:web", "ok", {"file.open": 2}),
        ("c-2", "run_shell", "untrusted:web", "ok",
         {"process.exec": 6, "dns.query": 1, "file.open": 2, "net.connect": 1}),
        ("c-3", "http_post", "untrusted:web", "ok", {"net.connect": 2, "policy.decision": 1})]
    assert [(x["route"], x["model_calls"], x["tool_calls"]) for x in r["routes"]] == [
        ("untrusted:web", 2, ["c-1", "c-2", "c-3"])]
    assert [(p["pid"], p["parent"], p["exe"], p["execs"], p["programs"], p["call_id"]) for p in r["processes"]] == [
        (100, None, "/usr/bin/python3", 1, ["/usr/bin/python3"], None),
        (101, 0, "/bin/sh", 1, ["/bin/sh"], "c-2"),
        (102, 1, "/usr/bin/curl", 2, ["/usr/bin/nice", "/usr/bin/curl"], "c-2"),
        (103, 1, "/usr/bin/id", 3, ["/usr/bin/env", "/bin/sh", "/usr/bin/id"], "c-2"),
        (104, 0, "/usr/bin/python3", 0, [], None)]
    assert r["processes"][2]["exit_code"] == 0
    assert [(d["verdict"], d["target"], d["call_id"]) for d in r["decisions"]] == [("deny", "198.51.100.7:80", "c-3")]
    assert [a["id"] for a in r["alerts"]] == ["al-1"]
    # The bystander's secret and connection are not the agent's.
    assert "/run/secrets/db" not in out.read_text() and "192.0.2.50" not in out.read_text()
    # The SDK's tool.end that arrived with no container still closes c-3 (same pid namespace).
    assert r["tool_calls"][2]["end_ns"] == T0 + 56 * MS


def test_markdown_report(synthetic_db: Path) -> None:
    res = rw("--db", str(synthetic_db), "--workload", "agent-7")
    assert res.returncode == 0, res.stderr
    md = res.stdout
    assert md.startswith("# runwatch report: agent-7\n")
    assert "**Yes, data may have left.**" in md
    assert ("- /run/secrets/api-token (file) read at 2025-12-06T05:46:40.012Z by /usr/bin/python3 (pid 100) in "
            "read\\_file \\[c-1\\]; then data may have left: tcp 203.0.113.9:443 (sink.example) at "
            "2025-12-06T05:46:40.027Z by /usr/bin/curl (pid 102) in run\\_shell \\[c-2\\], and 2 more outbound "
            "event(s) after it; bytes sent: unknown") in md
    assert "| 33 | 7 | 5 | 3 | 3 | 3 | 1 | 1 | 1 | 0 |" in md
    assert ("| 203.0.113.9:443 | net.connect | sink.example | 2 | 0 | 2025-12-06T05:46:40.027Z | "
            "2025-12-06T05:46:40.054Z | run\\_shell, http\\_post | yes |") in md
    tree = md.split("## Process tree\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [line.split(":", 1)[0] for line in tree] == [
        "- pid 100 `/usr/bin/python3`", "  - pid 101 `/bin/sh`", "    - pid 102 `/usr/bin/curl`",
        "    - pid 103 `/usr/bin/id`", "  - pid 104 `/usr/bin/python3` (forked, no exec)"]
    # The hostile command line is text: every Markdown/HTML special character escaped.
    assert "<script>" not in md and "\\<script\\>window.\\_\\_pwned=1\\</script\\>" in md


@pytest.mark.parametrize("name", ["agent-7", "ml/agent-7", SPIFFE, "agent", "4f3a9c0e", AGENT_ID])
def test_every_name_of_the_workload_selects_it(synthetic_db: Path, name: str) -> None:
    r = build_report(synthetic_db, name)
    assert [c.id for c in r.containers] == [AGENT_ID]
    assert r.counts.events == 33


def test_an_unknown_workload_is_one_line_naming_near_matches(synthetic_db: Path) -> None:
    res = rw("--db", str(synthetic_db), "--workload", "agnet-7")
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.splitlines() == [
        f"runwatch: error: no workload 'agnet-7' in {synthetic_db} (near matches: agent-7, ml/agent-7, agent)"]


def test_window_by_ns_and_iso_keeps_only_what_happened_inside(synthetic_db: Path) -> None:
    since, until = str(T0 + 20 * MS), iso(T0 + 41 * MS)
    res = rw("--db", str(synthetic_db), "--workload", "ml/agent-7", "--since", since, "--until", until, "--format",
             "json")
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout)
    assert (r["since_ns"], r["until_ns"]) == (T0 + 20 * MS, T0 + 41 * MS)
    assert [t["call_id"] for t in r["tool_calls"]] == ["c-2"]
    assert [s["secret"] for s in r["secrets"]] == ["/var/run/secrets/kubernetes.io/serviceaccount/token"]
    assert r["secrets"][0]["egress"] == [] and r["secrets"][0]["data_left"] is False
    # until is exclusive: not the connect at 41 ms
    assert (r["counts"]["events"], r["counts"]["execs"], r["counts"]["processes"]) == (17, 6, 4)
    assert [a["id"] for a in r["alerts"]] == ["al-1"]


def test_relative_window_before_the_events_is_empty(synthetic_db: Path) -> None:
    r = build_report(synthetic_db, "agent-7", since_ns=parse_time("15m"))
    assert (r.counts.events, r.secrets, r.processes, r.data_left) == (0, [], [], False)
    assert "No process was started in this window." in render_md(r)


def test_time_arguments() -> None:
    now = T0
    assert parse_time("1765000000000000123", now) == T0 + 123
    assert parse_time("15m", now) == T0 - 15 * 60 * 10**9
    assert parse_time("2h", now) == T0 - 7200 * 10**9
    assert parse_time("90s", now) == T0 - 90 * 10**9
    assert parse_time("now", now) == T0
    assert parse_time("2025-12-06T05:46:40.012Z") == T0 + 12 * MS
    assert parse_time("2025-12-06T06:46:40+01:00") == T0
    assert parse_time("2025-12-06 05:46:40") == T0
    assert iso(T0 + 12 * MS + 999) == "2025-12-06T05:46:40.012Z"
    with pytest.raises(TimeArgError, match="cannot read time 'yesterday'"):
        parse_time("yesterday")


def test_bad_time_and_inverted_window_are_usage_errors(synthetic_db: Path) -> None:
    res = rw("--db", str(synthetic_db), "--workload", "agent-7", "--since", "yesterday")
    assert res.returncode == 2 and len(res.stderr.splitlines()) == 1
    assert res.stderr.startswith("runwatch: error: cannot read time 'yesterday': give nanoseconds since the epoch")
    res = rw("--db", str(synthetic_db), "--workload", "agent-7", "--since", "1h", "--until", "2h")
    assert (res.returncode, res.stderr) == (2, "runwatch: error: --since (1h) must be before --until (2h)\n")


def test_missing_store_is_one_line(tmp_path: Path) -> None:
    res = rw("--db", str(tmp_path / "none.db"), "--workload", "agent-7")
    assert (res.returncode, res.stderr) == (1, f"runwatch: error: event store not found: {tmp_path / 'none.db'}\n")


def test_hostile_text_survives_in_json_and_is_escaped_in_markdown(synthetic_db: Path) -> None:
    r = build_report(synthetic_db, "agent-7")
    data = json.loads(render_json(r))
    assert [p["cmdline"] for p in data["processes"] if p["pid"] == 101] == [f"sh -c {HOSTILE}"]
    md = render_md(r)
    assert HOSTILE not in md and "onerror" in md


def test_every_report_option_is_documented() -> None:
    import click

    from runwatch.cli.report import report

    doc = (Path(__file__).resolve().parents[2] / "docs" / "report.md").read_text()
    opts = [o for p in report.params if isinstance(p, click.Option) for o in p.opts]
    assert [o for o in opts if f"`{o}" not in doc] == []
    assert len(opts) == 9


def test_documents_bound_the_process_tree_and_say_what_they_left_out(tmp_path: Path) -> None:
    from report_synthetic import AGENT

    from runwatch.events import Event
    from runwatch.report.render_html import render as render_html
    from runwatch.store.sqlite import SqliteStore

    root = Event(id="r", time=T0, kind="process.exec", pid=100, ppid=1, exe="/usr/bin/python3", cmdline="python3",
                 container=AGENT, vpid=1)
    forks = [Event(id=f"f{i:03d}", time=T0 + (i + 1) * MS, kind="process.fork", pid=100, child_pid=1000 + i,
                   exe="/usr/bin/python3", container=AGENT) for i in range(502)]
    with SqliteStore(tmp_path / "t.db") as store:
        store.write([root, *forks])
    r = build_report(tmp_path / "t.db", "agent")
    assert len(r.processes) == 503 and len(json.loads(render_json(r))["processes"]) == 503
    assert "\n3 more processes left out here (all are in --format json).\n" in render_md(r)
    page = render_html(r)
    assert page.count('<g class="proc') == 500 and "3 more processes left out here" in page
