"""Sigma translations: auditd records, |re, filters on unmapped fields, never-matching selections.

Exact conditions and exact, located reasons. Corpus rules are SigmaHQ rules (Detection Rule
License 1.1) from shared/fixtures/sigma-linux; the inline rules are written for these tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runwatch.rules.importers import cli_import, import_rules
from runwatch.rules.importers.report import ImportedRule
from runwatch.rules.importers.sigma import SigmaImporter
from runwatch.rules.importers.sigma_fold import fold, render
from runwatch.rules.language import parse_condition
from runwatch.testing.fixtures import fixture_path, require_fixture

AUDITD = fixture_path("sigma-linux", "rules", "linux", "auditd")
PATH_KINDS = '"file.chmod", "file.link", "file.mkdir", "file.open", "file.rename", "file.rmdir", "file.unlink"'


def one(text: str, file: str = "t.yml") -> ImportedRule:
    (rec,) = SigmaImporter().import_text(text, file)
    return rec


def corpus(rel: str) -> ImportedRule:
    require_fixture(AUDITD)
    (rec,) = import_rules([AUDITD / rel], "sigma").rules
    return rec


@pytest.mark.parametrize(("rel", "condition"), [
    ("execve/lnx_auditd_capabilities_discovery.yml",
     'kind = "process.exec" and proc.argv[0] = "getcap" and proc.argv[1] = "-r" and proc.argv[2] = "/"'),
    ("execve/lnx_auditd_find_cred_in_files.yml",  # keywords in an EXECVE rule search its arguments
     'kind = "process.exec" and proc.cmdline icontains "grep" and proc.cmdline icontains "password"'),
    ("execve/lnx_auditd_coinminer.yml",  # no `type` at all: aN implies EXECVE, one kind term per selection
     " or ".join(f'(proc.argv[{n}] startswith "--cpu-priority" and kind = "process.exec")' for n in range(1, 8))),
    ("lnx_auditd_disable_aslr_protection.yml",  # the personality() selection can never match and drops out
     'kind = "process.exec" and proc.argv[0] = "sysctl" and proc.argv[1] = "-w" and '
     'proc.argv[2] = "kernel.randomize_va_space=0"'),
    ("lnx_auditd_keylogging_with_pam_d.yml",  # TTY records: none in runwatch
     f'kind in ({PATH_KINDS}) and file.path in ("/etc/pam.d/system-auth", "/etc/pam.d/password-auth")'),
    ("lnx_auditd_audio_capture.yml",
     '(kind = "process.exec" and proc.argv[0] = "arecord" and proc.argv[1] = "-vv" and proc.argv[2] = "-fdat") or '
     '(proc.exe endswith "/ecasound" and kind = "file.memfd")'),
    ("syscall/lnx_auditd_load_module_insmod.yml", 'kind = "process.exec" and proc.comm = "insmod" and '
                                                   'proc.exe = "/usr/bin/kmod"'),
    ("syscall/lnx_auditd_web_rce.yml", 'kind = "process.exec" and proc.euid = 33'),
    ("syscall/lnx_auditd_create_account.yml", 'kind = "process.exec" and proc.exe endswith "/useradd"'),
    ("path/lnx_auditd_ld_so_preload_mod.yml", f'kind in ({PATH_KINDS}) and file.path = "/etc/ld.so.preload"'),
    ("path/lnx_auditd_systemd_service_creation.yml",
     f'kind in ({PATH_KINDS}) and file.intent in ("rw", "write") and '
     '(file.path startswith "/usr/lib/systemd/system/" or file.path startswith "/etc/systemd/system/" or '
     'file.path icontains "/.config/systemd/user/")'),
    ("execve/lnx_auditd_hidden_files_directories.yml",
     'kind = "process.exec" and proc.argv[0] in ("mkdir", "nano", "touch", "vi", "vim") and '
     '(proc.argv[1] regex "(^|\\\\/)\\\\.[^.\\\\/]" or proc.argv[2] regex "(^|\\\\/)\\\\.[^.\\\\/]")'),
])
def test_auditd_translation(rel: str, condition: str) -> None:
    rec = corpus(rel)
    assert (rec.status, rec.reason) == ("loaded", "")
    assert rec.entry["condition"] == condition
    assert rec.warnings == []


@pytest.mark.parametrize(("rel", "line", "reason"), [
    ("lnx_auditd_susp_c2_commands.yml", 45,
     "unmapped field key (audit rule keys name rules of the local auditd configuration)"),
    ("syscall/lnx_auditd_network_service_scanning.yml", 30,
     "unmapped field key (audit rule keys name rules of the local auditd configuration)"),
    ("service_stop/lnx_auditd_disable_system_firewall.yml", 18,
     "can never match: runwatch reports no auditd SERVICE_STOP records"),
    ("syscall/lnx_auditd_clean_disable_dmesg_logs_via_syslog.yml", 32,
     "can never match: runwatch reports no system call syslog"),
    ("syscall/lnx_auditd_susp_discovery_sysinfo_syscall.yml", 27,
     "can never match: runwatch reports no system call sysinfo"),
    ("syscall/lnx_auditd_susp_special_file_creation_via_mknod_syscall.yml", 26,
     "can never match: runwatch reports no system call mknod"),
])
def test_auditd_rules_that_do_not_load(rel: str, line: int, reason: str) -> None:
    rec = corpus(rel)
    assert (rec.status, rec.line, rec.reason) == ("skipped", line, reason)


HEAD = """title: Test Rule
id: 9f6b2a51-3c1e-4d7a-8b0f-2e5c7d9a1b23
status: test
author: runwatch tests
logsource:
    product: linux
"""


def test_a_filter_on_an_unmapped_field_is_dropped_with_a_located_warning() -> None:
    rec = one(HEAD + """    category: process_creation
detection:
    selection:
        Image|endswith: '/curl'
    filter_session:
        LogonId: 0
        Image|endswith: '/curl'
    filter_updater:
        - CommandLine|contains: 'apt-helper'
        - ParentUser: 'root'
    condition: selection and not 1 of filter_*
level: low
""", "f.yml")
    assert rec.status == "loaded"
    # filter_session needs LogonId: dropped whole; of filter_updater only the ParentUser alternative goes
    assert rec.entry["condition"] == ('kind = process.exec and (proc.exe endswith "/curl" and '
                                      'not proc.cmdline icontains "apt-helper")')
    assert rec.warnings == [
        "f.yml:12: filter on unmapped field LogonId dropped (runwatch events carry no login session id): "
        "the rule may alert more often",
        "f.yml:16: filter on unmapped field ParentUser dropped (runwatch events carry no parent user): "
        "the rule may alert more often",
    ]
    assert rec.warning_lines()[0].startswith("warning sigma.f  f.yml:12: filter on unmapped field LogonId")


def test_an_unmapped_field_in_a_selection_still_skips_the_rule_at_its_line() -> None:
    rec = one(HEAD + """    category: process_creation
detection:
    selection:
        Image|endswith: '/curl'
    selection_session:
        LogonId: 0
    condition: selection or selection_session
""", "s.yml")
    assert (rec.status, rec.line, rec.reason) == ("skipped", 12, "unmapped field LogonId (runwatch events carry "
                                                                 "no login session id)")


def test_cli_prints_the_warning_and_the_rule_file_keeps_it(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "r.yml"
    src.write_text(HEAD + """    category: process_creation
detection:
    selection:
        Image|endswith: '/who'
    filter:
        LogonId: 0
    condition: selection and not filter
""", encoding="utf-8")
    out = tmp_path / "out.yaml"
    assert cli_import([src], "sigma", str(out)) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[:2] == [
        f"loaded  sigma.r  {src}:1",
        f"warning sigma.r  {src}:12: filter on unmapped field LogonId dropped (runwatch events carry no login "
        "session id): the rule may alert more often",
    ]
    assert f"# warning: {src}:12: filter on unmapped field LogonId dropped" in out.read_text(encoding="utf-8")


def test_re_modifier_with_flags_becomes_regex() -> None:
    rec = one(HEAD + """    category: process_creation
detection:
    selection:
        CommandLine|re|i: '\\s-(e|c)\\s'
    condition: selection
""")
    assert rec.entry["condition"] == 'kind = process.exec and (proc.cmdline regex "(?i)\\\\s-(e|c)\\\\s")'


def test_a_regex_re2_refuses_is_a_located_skip(capfd: pytest.CaptureFixture[str]) -> None:
    # look-ahead is not linear time: RE2 refuses it (pySigma checks patterns with RE2 once it is installed)
    rec = one(HEAD + """    category: process_creation
detection:
    selection:
        CommandLine|re: 'curl(?=.*-d)'
    condition: selection
""", "la.yml")
    assert (rec.status, rec.line) == ("skipped", 1)
    assert rec.reason == "la.yml:10: Regular expression 'curl(?=.*-d)' is invalid: invalid perl operator: (?="
    assert capfd.readouterr().err == ""  # RE2 logs nothing of its own: the reason says it all


def test_auditd_keywords_outside_execve_records_are_unmapped() -> None:
    rec = one(HEAD + """    service: auditd
detection:
    selection:
        type: PATH
        name: /etc/shadow
    keywords:
        - 'shadow'
    condition: selection and keywords
""", "k.yml")
    assert (rec.status, rec.reason) == ("skipped", "unmapped field keywords")


def test_auditd_syscall_arguments_are_unmapped_where_they_decide() -> None:
    rec = one(HEAD + """    service: auditd
detection:
    selection:
        type: SYSCALL
        SYSCALL: ptrace
        a0: 4
    condition: selection
""", "p.yml")
    assert (rec.status, rec.line, rec.reason) == (
        "skipped", 12, "unmapped field SYSCALL.a0 (SYSCALL a0..a3 are raw system call arguments, which runwatch "
                       "does not report)")


def test_auditd_only_unobservable_records_never_match() -> None:
    rec = one(HEAD + """    service: auditd
detection:
    selection:
        type:
            - TTY
            - USER_TTY
    condition: selection
""")
    assert (rec.line, rec.reason) == (11, "can never match: runwatch reports no auditd TTY records, "
                                          "auditd USER_TTY records")


@pytest.mark.parametrize(("condition", "rendered"), [
    ('kind = "process.exec" and not (proc.argv[1] in ("-a", "-b") or proc.exe exists)', None),
    ("a = 1 or b = 2 and c = 3", "a = 1 or (b = 2 and c = 3)"),
    ("(a = 1 or b = 2) and not not c in shells", None),
    ('x regex "(?i)^a\\\\b" and y != 3', None),
    ("(a = 1 and (b = 2 and c = 3))", "a = 1 and b = 2 and c = 3"),
])
def test_render_writes_a_condition_that_parses_back(condition: str, rendered: str | None) -> None:
    text = render(parse_condition(condition))
    assert text == (rendered or condition)
    assert render(parse_condition(text)) == text


def test_fold_settles_placeholders() -> None:
    res = fold('a = 1 and not (b = 2 and __unmapped__X = "y") and (__never__ = "TTY" or c = 3)')
    assert (res.condition, res.dropped_filters, res.never, res.unmapped) == ("a = 1 and c = 3", ["X"], ["TTY"], [])
    res = fold('__never__ = "TTY" and __unmapped__X = "y"')  # never decides: the unmapped field does not matter
    assert (res.condition, res.constant, res.unmapped) == (None, False, [])
    res = fold('a = 1 or __unmapped__X = "y"')
    assert (res.condition, res.unmapped) == ('a = 1 or __unmapped__X = "y"', ["X"])
