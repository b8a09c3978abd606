"""Imported Sigma rules on the live sensor: an auditd EXECVE rule and a ParentCommandLine rule.

Real execs under the real BPF programs and enrichment; the imported rules (SigmaHQ, Detection
Rule License 1.1, from shared/fixtures/sigma-linux) must fire on them and not on near misses.
"""

from __future__ import annotations

import subprocess

import pytest

from runwatch.rules import Engine, load_texts
from runwatch.rules.importers import import_rules
from runwatch.testing.capture import LiveCapture
from runwatch.testing.fixtures import fixture_path, require_fixture

pytestmark = pytest.mark.kernel

LINUX = fixture_path("sigma-linux", "rules", "linux")
FILES = ["auditd/execve/lnx_auditd_capabilities_discovery.yml",
         "process_creation/proc_creation_lnx_susp_interactive_bash.yml"]


@pytest.fixture(scope="module")
def engine() -> Engine:
    require_fixture(LINUX)
    report = import_rules([LINUX / f for f in FILES], "sigma")
    assert [r.status for r in report.rules] == ["loaded", "loaded"]
    return Engine(load_texts([(report.to_yaml(), "imported.yaml")]))


def test_auditd_argv_and_parent_command_line_rules_fire_live(capture: LiveCapture, engine: Engine) -> None:
    # argv[0] as given: `exec -a getcap` runs true under the name getcap, as a shell runs `getcap -r /`
    for args in ("-r /", "/usr/bin/ping"):
        assert subprocess.run(["bash", "-c", f"exec -a getcap /usr/bin/true {args}"]).returncode == 0
    # children of an interactive shell (`bash -i`): whoami is suspicious there, id is not
    subprocess.run(["bash", "-i"], input=b"/usr/bin/whoami\n/usr/bin/id\nexit\n", capture_output=True, check=True)
    execs = capture.where(lambda e: e.kind == "process.exec" and e.exe in ("/usr/bin/true", "/usr/bin/whoami",
                                                                         "/usr/bin/id"))
    got = {e.cmdline: [a.rule for a in engine.process(e)] for e in execs}
    assert got == {
        "getcap -r /": ["sigma.lnx_auditd_capabilities_discovery"],
        "getcap /usr/bin/ping": [],
        "/usr/bin/whoami": ["sigma.proc_creation_lnx_susp_interactive_bash"],
        "/usr/bin/id": [],
    }
    # the parent's command line came from the process tree, not from the kernel record
    assert {e.cmdline: e.pcmdline for e in execs if e.exe != "/usr/bin/true"} == {
        "/usr/bin/whoami": "bash -i", "/usr/bin/id": "bash -i"}
