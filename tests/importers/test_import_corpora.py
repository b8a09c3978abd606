"""Import the real SigmaHQ Linux and Falco corpora; exact counts so regressions show."""

from __future__ import annotations

from pathlib import Path

import pytest

from runwatch.rules import load_rules, load_texts
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
    assert len(sigma_report.loaded) == 120
    assert len(sigma_report.skipped) == 94
    (summary,) = sigma_report.corpora
    assert (summary.fmt, summary.source, summary.loaded, summary.skipped) == ("sigma", str(SIGMA), 120, 94)
    reasons = [r.reason for r in sigma_report.skipped]
    assert sum(r.startswith("unsupported logsource product linux, service auditd") for r in reasons) == 53
    assert sum(r.startswith("unmapped field ParentCommandLine") for r in reasons) == 6
    assert sum(r.startswith("unmapped field DestinationHostname") for r in reasons) == 3
    assert sum(r.startswith("regular expression (|re)") for r in reasons) == 8


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
        "falco-incubating_rules.yaml": (21, 10),
        "falco-sandbox_rules.yaml": (30, 7),
    }
    stable = {r.name: r.reason for r in falco_report.skipped if Path(r.file).name == "falco_rules.yaml"}
    assert stable == {"falco.directory_traversal_monitored_file_read": (
        "field fd.nameraw has no runwatch counterpart (runwatch reports the canonical path, never the path as "
        "passed) (via macro directory_traversal)")}
    reasons = [r.reason for r in falco_report.skipped]
    assert sum("field proc.env has no runwatch counterpart" in r for r in reasons) == 2
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
    assert sum(line.startswith("loaded  ") for line in printed) == 2
    assert sum(line.startswith("skipped ") for line in printed) == 3
    assert f"sigma {SIGMA / 'rules/linux/network_connection'}: 2/5 loaded (40.0%), 3 skipped" in printed
    assert printed[-1] == f"wrote 2 rules to {out}"
    assert sorted(r.meta.name for r in load_rules([out]).rules) == [
        "sigma.net_connection_lnx_back_connect_shell_dev", "sigma.net_connection_lnx_susp_malware_callback_port"]


def test_cli_import_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_import([tmp_path / "absent.yml"], "auto", None) == 2
    assert capsys.readouterr().err == f"runwatch: error: {tmp_path / 'absent.yml'}: no such file or directory\n"
    assert cli_import([SIGMA], "splunk", None) == 2
    assert capsys.readouterr().err == "runwatch: error: unknown format 'splunk' (one of auto, sigma, falco)\n"


def test_docs_state_the_measured_falco_fractions(falco_report: ImportReport) -> None:
    """docs/import.md's table of loaded Falco rules is the measured one, and names every rule that does not load."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "import.md").read_text(encoding="utf-8")
    for c in falco_report.corpora:
        row = next(line for line in doc.splitlines() if line.startswith(f"| Falco `{Path(c.source).name}`"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[1:] == [str(c.loaded), str(c.skipped), f"{100 * c.fraction:.1f}%"], row
    falco_names = {r.title for r in falco_report.skipped}
    assert all(f"| {name} |" in doc for name in falco_names), falco_names
