"""Import the real SigmaHQ Linux and Falco corpora; exact counts so regressions show."""

from __future__ import annotations

from pathlib import Path

import pytest

from runwatch.events import Event
from runwatch.rules import Engine, load_rules, load_texts
from runwatch.rules.importers import ImportReport, cli_import, import_rules
from runwatch.testing.fixtures import fixture_path, require_fixture

SIGMA = fixture_path("sigma-linux")
FALCO = fixture_path("falco-rules")
FALCO_FILES = [FALCO / "falco_rules.yaml", FALCO / "falco-incubating_rules.yaml", FALCO / "falco-sandbox_rules.yaml"]


@pytest.fixture(autouse=True, scope="module")
def _corpora() -> None:
    """The rule corpora are needed (skipped without them; failed under CI)."""
    require_fixture(SIGMA, FALCO)


@pytest.fixture(scope="module")
def sigma_report() -> ImportReport:
    return import_rules([SIGMA], "auto")


@pytest.fixture(scope="module")
def falco_report() -> ImportReport:
    return import_rules(FALCO_FILES, "falco")


def test_sigma_corpus_fraction(sigma_report: ImportReport) -> None:
    assert len(sigma_report.rules) == 214
    assert len(sigma_report.loaded) == 184
    assert len(sigma_report.skipped) == 30
    (summary,) = sigma_report.corpora
    assert (summary.fmt, summary.source, summary.loaded, summary.skipped) == ("sigma", str(SIGMA), 184, 30)
    # every remaining skip, by reason (docs/import.md states the same counts)
    assert skip_counts(sigma_report) == SKIPS


#: Why the 30 rules of the SigmaHQ Linux corpus that do not load are skipped (prefix -> count).
SKIPS = {
    "unsupported logsource product linux (": 15,  # keyword searches over log lines
    "unsupported logsource product linux, service ": 7,  # syslog 2, clamav, cron, guacamole, sshd, vsftpd
    "can never match: runwatch reports no system call ": 3,  # syslog, sysinfo, mknod
    "can never match: runwatch reports no auditd SERVICE_STOP records": 1,
    "unmapped field key ": 2,
    "unmapped field LogonId ": 2,
}


def skip_counts(report: ImportReport) -> dict[str, int]:
    out = dict.fromkeys(SKIPS, 0)
    for r in report.skipped:
        key = next((k for k in SKIPS if r.reason.startswith(k)), r.reason)
        out[key] = out.get(key, 0) + 1
    return out


def test_sigma_rules_directory_fraction() -> None:
    """The 210 rules below rules/ (the corpus issue 13 measured at 118 loaded)."""
    report = import_rules([SIGMA / "rules"], "sigma")
    (summary,) = report.corpora
    assert (summary.total, summary.loaded, summary.skipped) == (210, 180, 30)
    assert summary.line() == f"sigma {SIGMA / 'rules'}: 180/210 loaded (85.7%), 30 skipped"
    by_dir: dict[str, list[int]] = {}
    for r in report.rules:
        d = Path(r.file).relative_to(SIGMA / "rules/linux").parts[0]
        by_dir.setdefault(d, [0, 0])[r.status != "loaded"] += 1
    assert by_dir == {"auditd": [47, 6], "builtin": [0, 22], "file_event": [8, 0], "network_connection": [5, 0],
                      "process_creation": [120, 2]}


def test_sigma_metadata_keeps_attribution(sigma_report: ImportReport) -> None:
    r = sigma_report.get("sigma.net_connection_lnx_back_connect_shell_dev")
    assert r is not None and r.status == "loaded"
    e = r.entry
    assert e["severity"] == "critical"
    assert e["attack"] == ["TA0002", "T1059.004"]
    assert "sigma.id:83dcd9f6-9ca8-4af7-a16e-a1c7a6b51871" in e["tags"]
    assert "author:Florian Roth (Nextron Systems)" in e["tags"]
    assert "license:DRL-1.1" in e["tags"]
    assert "Detection Rule License (DRL) 1.1" in e["desc"]
    assert e["mappings"] == {"owasp_agentic": [], "owasp_llm": [], "owasp_nhi": [],
                             "nist_csf": ["DE.CM-01", "DE.CM-09"]}
    assert r.meta["id"] == "83dcd9f6-9ca8-4af7-a16e-a1c7a6b51871"


def test_falco_corpus_fraction_per_file(falco_report: ImportReport) -> None:
    got = {Path(c.source).name: (c.loaded, c.skipped) for c in falco_report.corpora}
    assert got == {
        "falco_rules.yaml": (24, 1),
        "falco-incubating_rules.yaml": (29, 2),
        "falco-sandbox_rules.yaml": (31, 6),
    }
    stable = {r.name: r.reason for r in falco_report.skipped if Path(r.file).name == "falco_rules.yaml"}
    assert stable == {"falco.directory_traversal_monitored_file_read": (
        "field fd.nameraw has no runwatch counterpart (runwatch reports the canonical path, never the path as "
        "passed) (via macro directory_traversal)")}
    reasons = [r.reason for r in falco_report.skipped]
    assert not any("proc.env" in r for r in reasons)
    assert sum(r.startswith("can never match: runwatch reports no events for syscalls") for r in reasons) == 1


def test_falco_metadata(falco_report: ImportReport) -> None:
    r = falco_report.get("falco.netcat_remote_code_execution_in_container")
    assert r is not None and r.status == "loaded"
    assert r.entry["attack"] == ["TA0002", "T1059"]
    assert r.entry["severity"] == "medium"
    assert "license:Apache-2.0" in r.entry["tags"]
    assert "The Falco Authors, Apache License 2.0" in r.entry["desc"]
    assert r.file == str(FALCO / "falco_rules.yaml")


@pytest.mark.parametrize("which", ["sigma", "falco"])
def test_every_loaded_rule_compiles(which: str, sigma_report: ImportReport, falco_report: ImportReport,
                                    tmp_path: Path) -> None:
    report = sigma_report if which == "sigma" else falco_report
    rs = load_texts([(report.to_yaml(), "imported.yaml")])
    assert rs.errors == []
    assert sorted(r.meta.name for r in rs.rules) == sorted(r.name for r in report.loaded)
    out = tmp_path / "imported.yaml"
    out.write_text(report.to_yaml(), encoding="utf-8")
    assert len(load_rules([out]).rules) == len(report.loaded)
    for r in report.loaded:  # each rule's own YAML stands alone
        assert load_texts([(r.yaml, r.name)]).errors == []


def test_skip_reasons_are_one_line(sigma_report: ImportReport, falco_report: ImportReport) -> None:
    for r in [*sigma_report.skipped, *falco_report.skipped]:
        assert r.reason and "\n" not in r.reason and len(r.reason) < 300, r.status_line()
        assert r.status_line().startswith(f"skipped {r.name}  {r.file}:{r.line}: ")


def test_cli_import_writes_a_loadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "net.yaml"
    rc = cli_import([SIGMA / "rules/linux/network_connection"], "auto", str(out))
    printed = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert sum(line.startswith("loaded  ") for line in printed) == 5
    assert sum(line.startswith("skipped ") for line in printed) == 0
    assert f"sigma {SIGMA / 'rules/linux/network_connection'}: 5/5 loaded (100.0%), 0 skipped" in printed
    assert printed[-1] == f"wrote 5 rules to {out}"
    assert sorted(r.meta.name for r in load_rules([out]).rules) == [
        "sigma.net_connection_lnx_back_connect_shell_dev", "sigma.net_connection_lnx_crypto_mining_indicators",
        "sigma.net_connection_lnx_domain_localtonet_tunnel", "sigma.net_connection_lnx_ngrok_tunnel",
        "sigma.net_connection_lnx_susp_malware_callback_port"]


def test_cli_import_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_import([tmp_path / "absent.yml"], "auto", None) == 2
    assert capsys.readouterr().err == f"runwatch: error: {tmp_path / 'absent.yml'}: no such file or directory\n"
    assert cli_import([SIGMA], "splunk", None) == 2
    assert capsys.readouterr().err == "runwatch: error: unknown format 'splunk' (one of auto, sigma, falco)\n"


def test_docs_state_the_measured_sigma_counts(sigma_report: ImportReport) -> None:
    """docs/import.md: the loaded fraction and the per-reason counts are the ones measured here."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "import.md").read_text(encoding="utf-8")
    rules_only = import_rules([SIGMA / "rules"], "sigma").corpora[0]
    whole = sigma_report.corpora[0]
    assert (f"| SigmaHQ Linux (SigmaHQ/sigma 8eaafff), `rules/linux` ({rules_only.total} rules) | "
            f"{rules_only.loaded} | {rules_only.skipped} | {100 * rules_only.fraction:.1f}% |") in doc
    assert (f"| the same with `rules-threat-hunting/linux` ({whole.total} rules) | {whole.loaded} | "
            f"{whole.skipped} | {100 * whole.fraction:.1f}% |") in doc
    counts = skip_counts(sigma_report)
    for prefix, count in counts.items():
        assert f"| {count} | `{prefix.rstrip(' (')}" in doc, prefix
    assert sum(counts.values()) == whole.skipped


def test_docs_state_the_measured_falco_fractions(falco_report: ImportReport) -> None:
    """docs/import.md's table of loaded Falco rules is the measured one, and names every rule that does not load."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "import.md").read_text(encoding="utf-8")
    for c in falco_report.corpora:
        row = next(line for line in doc.splitlines() if line.startswith(f"| Falco `{Path(c.source).name}`"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[1:] == [str(c.loaded), str(c.skipped), f"{100 * c.fraction:.1f}%"], row
    falco_names = {r.title for r in falco_report.skipped}
    assert all(f"| {name} |" in doc for name in falco_names), falco_names


def test_falco_environment_rules_read_the_exec_environment(falco_report: ImportReport) -> None:
    """The two incubating rules on ``proc.env`` load and fire on the allow-listed variables."""
    rs = load_texts([(falco_report.to_yaml(), "imported.yaml")])
    names = {"falco.potential_local_privilege_escalation_via_environment_variables_misuse",
             "falco.program_run_with_disallowed_http_proxy_env"}
    assert names <= {r.meta.name for r in rs.rules}

    def fired(exe: str, env: dict[str, str] | None) -> list[str]:
        e = Event(id=f"env-{exe}", time=1, kind="process.exec", pid=4141, exe=exe, argv=[exe.rpartition("/")[2]],
                  attrs={"env": env} if env is not None else None)
        return sorted(a.rule for a in Engine(rs).process_batch([e]) if a.rule in names)

    assert fired("/usr/bin/su", {"GLIBC_TUNABLES": "glibc.malloc.mxfast=0"}) == [
        "falco.potential_local_privilege_escalation_via_environment_variables_misuse"]
    assert fired("/usr/bin/curl", {"HTTP_PROXY": "http://10.9.9.9:3128"}) == [
        "falco.program_run_with_disallowed_http_proxy_env"]
    assert fired("/usr/bin/curl", {"LD_BIND_NOW": ""}) == []
    assert fired("/usr/bin/curl", None) == []
