"""The outputs file: what it builds, and every mistake as file:line:col before anything starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runwatch.alerts.model import Alert
from runwatch.events import Event
from runwatch.outputs.config import OutputsLoadError, load_outputs, shortcut_specs
from runwatch.outputs.delivery import RetryPolicy
from runwatch.outputs.http import TlsOptions
from runwatch.outputs.ocsf import OcsfOutput
from runwatch.outputs.routing import Route
from runwatch.outputs.syslog import FACILITIES
from runwatch.store.spool import SpoolLimits

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))


def test_a_good_file_gives_each_output_its_options(tmp_path: Path) -> None:
    (tmp_path / "hook.secret").write_text("  s3cret\n")
    (tmp_path / "otlp.headers").write_text("Authorization: Bearer t\n")
    cfg = tmp_path / "outputs.yaml"
    cfg.write_text(f"""\
spool_dir: {tmp_path}/spools
outputs:
  - name: pager
    type: webhook
    url: https://hooks.example.com/x
    secret_file: {tmp_path}/hook.secret
    timeout: 2500ms
    retry: {{initial: 100ms, max: 3s}}
    queue: 17
    spool: {{max_items: 23, max_mb: 3}}
    route: {{min_severity: high, tags: exfil, owners: [team-a, team-b]}}
  - type: syslog
    url: tcp://127.0.0.1:601
    facility: authpriv
  - type: ocsf
    path: {tmp_path}/o.jsonl
  - type: otlp
    url: http://127.0.0.1:4318
    compression: none
    headers_file: {tmp_path}/otlp.headers
    headers: {{X-A: b}}
    tls: {{insecure: true}}
    spool: {{enabled: false}}
""")
    pager, syslog, ocsf, otlp = load_outputs(str(cfg), "unused")
    assert (pager.type, pager.name, pager.target) == ("webhook", "pager", "https://hooks.example.com/x")
    assert pager.options == {"spool_dir": f"{tmp_path}/spools/pager", "spool_limits": SpoolLimits(23, 3 << 20),
                             "queue_max": 17, "timeout": 2.5, "retry": RetryPolicy(0.1, 3.0), "secret": b"s3cret"}
    assert pager.route == Route("high", ("exfil",), ("team-a", "team-b"))
    assert (syslog.name, syslog.options["facility"], syslog.route) == ("syslog", "authpriv", None)
    assert (ocsf.target, ocsf.options) == (f"{tmp_path}/o.jsonl", {})
    assert otlp.options["headers"] == {"Authorization": "Bearer t", "X-A": "b"}
    assert (otlp.options["compression"], otlp.options["spool_dir"]) == ("none", None)
    assert otlp.options["tls"] == TlsOptions(insecure=True)
    assert isinstance(ocsf.build(), OcsfOutput)


BAD = """\
outputs:
  - type: webhook
    url: ftp://x
  - type: pager
  - type: syslog
    url: udp://h:514
    facility: local9
    colour: red
  - type: webhook
    url: http://a/b
    secret_file: /nonexistent/secret
    route: {min_severity: urgent}
  - type: webhook
    url: http://a/c
    timeout: soon
"""


def test_every_mistake_is_reported_at_its_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(BAD)
    with pytest.raises(OutputsLoadError) as info:
        load_outputs(str(cfg), str(tmp_path))
    assert [e.located() for e in info.value.errors] == [
        f"{cfg}:3:10: url: endpoint must be an http:// or https:// URL, got 'ftp://x'",
        f"{cfg}:4:11: unknown output type 'pager' (known: webhook, slack, syslog, otlp, ocsf)",
        f"{cfg}:7:15: unknown facility 'local9' (one of {', '.join(FACILITIES)})",
        f"{cfg}:8:5: unknown key 'colour' in a syslog output (known: type, name, route, url, facility, hostname, "
        "spool, queue, timeout, retry, close_timeout)",
        f"{cfg}:9:11: a second output named 'webhook' (give each a name)",
        f"{cfg}:11:18: secret_file: cannot read secret file /nonexistent/secret: No such file or directory",
        f"{cfg}:12:27: min_severity: unknown severity 'urgent' (one of info, low, medium, high, critical)",
        f"{cfg}:13:11: a second output named 'webhook' (give each a name)",
        f"{cfg}:15:14: timeout: bad duration 'soon' (use e.g. 500ms, 60s, 5m, 1h)",
    ]


def test_yaml_errors_and_a_missing_file_are_located(tmp_path: Path) -> None:
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("outputs:\n  - type: webhook\n    url: [unclosed\n")
    with pytest.raises(OutputsLoadError) as info:
        load_outputs(str(cfg), str(tmp_path))
    (only,) = info.value.errors
    assert only.located().startswith(f"{cfg}:4:1: YAML syntax error")
    with pytest.raises(OutputsLoadError, match="cannot read outputs file: No such file or directory"):
        load_outputs(str(tmp_path / "none.yaml"), str(tmp_path))


def test_run_with_a_bad_outputs_file_starts_nothing(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(BAD)
    marker = tmp_path / "ran"
    res = subprocess.run([RUNWATCH, "run", "--db", str(tmp_path / "r.db"), "--outputs", str(cfg), "--",
                          "/usr/bin/touch", str(marker)], capture_output=True, text=True, timeout=60, check=False)
    lines = res.stderr.splitlines()
    assert res.returncode == 1
    assert lines[0] == f"{cfg}:3:10: url: endpoint must be an http:// or https:// URL, got 'ftp://x'"
    assert lines[-1] == f"runwatch: error: 9 error(s) in the outputs file {cfg}; nothing was started"
    assert len(lines) == 10 and "Traceback" not in res.stderr
    assert not marker.exists() and not (tmp_path / "r.db").exists()


def test_shortcut_mistakes_are_one_usage_line(tmp_path: Path) -> None:
    for args, message in ((["--webhook", "hooks.example.com"], "--webhook must be an http:// or https:// URL"),
                          (["--webhook-secret-file", "/x"], "--webhook-secret-file needs --webhook"),
                          (["--syslog", "udp://h"], "syslog target must be udp://HOST:PORT"),
                          (["--otlp-compression", "none"], "--otlp-compression needs --otlp-export"),
                          (["--otlp-export", "http://h:4318", "--otlp-header", "nocolon"],
                           "--otlp-header expects 'NAME: VALUE'")):
        res = subprocess.run([RUNWATCH, "run", "--db", str(tmp_path / "r.db"), *args, "--", "true"],
                             capture_output=True, text=True, timeout=60, check=False)
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
    specs = shortcut_specs(str(tmp_path), webhook="http://h/x", syslog="tcp://h:601", ocsf_out="-")
    assert [(s.type, s.name, s.options.get("spool_dir")) for s in specs] == [
        ("webhook", "webhook", f"{tmp_path}/webhook"), ("syslog", "syslog", f"{tmp_path}/syslog"),
        ("ocsf", "ocsf", None)]


def test_the_live_ocsf_stream_has_events_and_findings(tmp_path: Path, alerts: list[Alert],
                                                      events: list[Event]) -> None:
    path = tmp_path / "live.jsonl"
    out = OcsfOutput(path, hostname="h")
    out.open()
    out.write(events[:5])
    assert len(path.read_text().splitlines()) == 5  # flushed as written: a reader sees it live
    out.write_alerts(alerts[:3])
    out.write(events[5:])
    out.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 5 + 3 + 18
    assert [x["class_uid"] for x in lines[5:8]] == [2004, 2004, 2004]
    assert [x["finding_info"]["uid"] for x in lines[5:8]] == ["al-00", "al-01", "al-02"]
    assert [x["metadata"]["uid"] for x in lines[:5] + lines[8:]] == [e.id for e in events]


def test_tls_material_that_does_not_load_is_located(tmp_path: Path, pki: dict[str, str]) -> None:
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    cfg = tmp_path / "tls.yaml"
    cfg.write_text(f"""\
outputs:
  - type: otlp
    url: https://127.0.0.1:4318
    tls: {{ca_file: {tmp_path}/junk.pem}}
  - type: webhook
    url: https://127.0.0.1:8443
    tls:
      cert_file: {pki['client_cert']}
      key_file: {pki['server_key']}
""")
    with pytest.raises(OutputsLoadError) as info:
        load_outputs(str(cfg), str(tmp_path))
    assert [e.located() for e in info.value.errors] == [
        f"{cfg}:4:20: tls: cannot load CA file {tmp_path}/junk.pem: not a PEM certificate (and key)",
        f"{cfg}:8:18: tls: cannot load client certificate {pki['client_cert']} with key {pki['server_key']}: "
        "the key does not belong to the certificate",
    ]
