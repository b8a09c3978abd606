"""Every Falco stable rule that loads, against real runc containers under the live sensor.

Each loaded rule of ``falco_rules.yaml`` (falcosecurity/rules, Apache-2.0, The Falco Authors;
the corpus in ``shared/fixtures/falco-rules``) has a positive workload, which must raise it, and
a benign near-miss, which must not: the same act with the one thing the rule looks for taken
away. Workloads are Python scripts run as the init of fresh runc containers (host Python,
busybox rootfs), a few at a time under one live pipeline; each case sees the events of its
own container. The rules are the importer's translation, compiled by the runwatch loader.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runwatch.containers.rootfs import Rootfs
from runwatch.containers.runc import RuncContainer
from runwatch.events import Event
from runwatch.rules import Engine, RuleSet, load_texts
from runwatch.rules.importers import import_rules
from runwatch.sensors.kernel import watchlist
from runwatch.testing import probes
from runwatch.testing.capture import LiveCapture, require_kernel_sensor
from runwatch.testing.fixtures import fixture_path, require_fixture

pytestmark = pytest.mark.kernel

STABLE = fixture_path("falco-rules") / "falco_rules.yaml"
PYTHON = os.path.realpath(sys.executable)  # the host Python the containers run, resolved as exe is

PRELUDE = textwrap.dedent("""
    import ctypes, fcntl, os, shutil, socket, struct, subprocess, sys, termios, time
    libc = ctypes.CDLL(None, use_errno=True)

    def tool(name, path=None):
        # busybox under another file name: the applet comes from argv[0]
        path = path or f"/tmp/{name}"
        shutil.copy("/bin/busybox", path)
        os.chmod(path, 0o755)
        return path

    def run(argv, exe=None):
        subprocess.run(argv, executable=exe, capture_output=True, timeout=20)

    def shadow():
        with open("/etc/shadow", "w") as f:  # the busybox image has none; written, not read
            f.write("root:*:19000:0:99999:7:::\\n")

    def question(name, qid):
        q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\\0"
        return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack(">HH", 1, 1)

    def resolve(server_ip, name, addr):
        # a resolver of our own on a loopback address: the workload reads the answer
        srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        srv.bind((server_ip, 53))
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.connect((server_ip, 53))
        c.send(question(name, 7))
        q, peer = srv.recvfrom(512)
        qend = 12 + q[12:].index(b"\\0") + 5
        out = q[:2] + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0) + q[12:qend]
        out += struct.pack(">HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(addr)
        srv.sendto(out, peer)
        c.recv(512)

    def init_module():
        buf = ctypes.create_string_buffer(b"not an ELF module" * 4)
        libc.syscall(175, buf, len(buf), b"")  # init_module: refused (not a module, or no capability)

    def shell_on_a_terminal(controlling):
        master, slave = os.openpty()
        try:
            os.setsid()  # a session of its own, without a terminal
        except OSError:
            pass  # already a session leader
        if controlling:
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        os.execv("/bin/sh", ["sh", "-c", "true; true"])
""") + probes.PROBES


_MEMFD_EXEC = """
    fd = os.memfd_create("payload")
    os.write(fd, open("/bin/busybox", "rb").read())
    pid = os.fork()
    if pid == 0:
        os.execve(fd, ["true"], {})
    os.waitpid(pid, 0)
"""


@dataclass(frozen=True)
class Case:
    """One workload for one rule: ``positive`` must raise it, a near-miss must not."""

    rule: str
    positive: bool
    script: str
    options: dict[str, Any] = field(default_factory=dict)
    overlay: bool = False  # the container's rootfs is an overlay mount (a layer over the image)

    @property
    def name(self) -> str:
        return f"{self.rule.removeprefix('falco.')}-{'pos' if self.positive else 'neg'}"


def pair(rule: str, pos: str, neg: str, options: dict[str, Any] | None = None,
         neg_options: dict[str, Any] | None = None, overlay: bool = False) -> tuple[Case, Case]:
    """A rule's positive and near-miss (the near-miss takes ``neg_options`` when given)."""
    opts = options or {}
    return (Case(rule, True, pos, opts, overlay),
            Case(rule, False, neg, neg_options if neg_options is not None else opts, overlay))


IMAGE = {"io.kubernetes.cri.image-name": "docker.io/library/app:1.0"}
SYSDIG = {"io.kubernetes.cri.image-name": "docker.io/sysdig/sysdig:0.36@sha256:" + "ab" * 32}
NO_SECCOMP = {"seccomp": False}
WRITABLE = {"readonly_rootfs": False}

CASES: tuple[Case, ...] = (
    # a shell (busybox under the server's name) that reads the file itself, in a redirection
    *pair("falco.read_sensitive_file_trusted_after_startup",
          'shadow(); run(["sh", "-c", "sleep 5.5; read x < /etc/shadow"], tool("httpd"))',
          'shadow(); run(["sh", "-c", "read x < /etc/shadow"], tool("httpd"))', WRITABLE, overlay=True),
    *pair("falco.read_sensitive_file_untrusted",
          'shadow(); open("/etc/shadow").read()',
          'shadow(); run(["sh", "-c", "read x < /etc/shadow"], tool("iptables"))', WRITABLE, overlay=True),
    *pair("falco.run_shell_untrusted",
          'run(["sh", "-c", "/bin/sh -c true; true"], tool("nginx"))',
          'run(["sh", "-c", "/bin/sh -c true; true"], tool("myapp"))'),
    *pair("falco.system_user_interactive",
          'run(["sh", "-c", "/bin/true; true"], tool("login"))',
          'run(["sh", "-c", "/bin/true; true"], tool("login"))',
          {"uid": 65534}, {"uid": 1000}),
    *pair("falco.terminal_shell_in_container", "shell_on_a_terminal(True)", "shell_on_a_terminal(False)"),
    *pair("falco.contact_k8s_api_server_from_container",
          'resolve("127.53.1.1", "kubernetes.default.svc.cluster.local", "127.0.1.31"); tcp_try("127.0.1.31", 443)',
          'resolve("127.53.1.2", "kubernetes.default.svc.cluster.local", "127.0.1.32"); tcp_try("127.0.1.32", 443)',
          {"annotations": IMAGE}, {"annotations": SYSDIG}),
    *pair("falco.netcat_remote_code_execution_in_container",
          'run(["nc", "-e", "/bin/true", "127.0.0.1", "9"], tool("nc"))',
          'run(["nc", "-w", "1", "127.0.0.1", "9"], tool("nc"))'),
    *pair("falco.search_private_keys_or_passwords",
          'run(["grep", "-r", "BEGIN RSA PRIVATE", "/etc"])',
          'run(["grep", "-r", "BEGIN CERTIFICATE", "/etc"])'),
    *pair("falco.clear_log_activities",
          'os.makedirs("/var/log", exist_ok=True); open("/var/log/syslog", "w").close()',
          'os.makedirs("/var/log", exist_ok=True); open("/var/log/syslog", "a").close()',
          WRITABLE, overlay=True),
    *pair("falco.remove_bulk_data_from_disk",
          'open("/tmp/data", "w").write("x" * 64); run(["shred", "/tmp/data"], tool("shred"))',
          'open("/tmp/data", "w").write("x" * 64); run(["rm", "/tmp/data"], tool("rm"))'),
    *pair("falco.create_symlink_over_sensitive_files",
          'os.symlink("/etc/shadow", "/tmp/s")', 'os.symlink("/etc/hostname", "/tmp/s")'),
    *pair("falco.create_hardlink_over_sensitive_files",
          'open("/tmp/h", "w").close()\ntry:\n    os.link("/etc/shadow", "/tmp/l")\nexcept OSError:\n    pass',
          'open("/tmp/h", "w").close(); os.link("/tmp/h", "/tmp/l")'),
    *pair("falco.packet_socket_created_in_container",
          "socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)).close()",
          "socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()"),
    *pair("falco.redirect_stdout_stdin_to_network_connection_in_container",
          'l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)\n'
          's = socket.create_connection(l.getsockname()); os.dup2(s.fileno(), 1)',
          'a, b = socket.socketpair(); os.dup2(a.fileno(), 1)'),
    *pair("falco.linux_kernel_module_injection_detected", "init_module()", "init_module()",
          {**NO_SECCOMP, "add_capabilities": ["CAP_SYS_MODULE"]}, NO_SECCOMP),
    *pair("falco.debugfs_launched_in_privileged_container",
          'os.symlink("/bin/busybox", "/tmp/debugfs"); run(["true"], "/tmp/debugfs")',
          'os.symlink("/bin/busybox", "/tmp/debugfs"); run(["true"], "/tmp/debugfs")',
          {"privileged": True}, {}),
    *pair("falco.detect_release_agent_file_container_escapes",
          'open("/tmp/release_agent", "w").close()', 'open("/tmp/release_agent", "w").close()',
          {"sys_admin": True}, {}),
    *pair("falco.ptrace_attached_to_process", "ptrace_child([4])", "libc.ptrace(2, os.getppid(), None, None)"),
    *pair("falco.ptrace_anti-debug_attempt",
          "libc.ptrace(0, 0, None, None)", "libc.ptrace(0x4200, os.getpid(), None, None)"),
    *pair("falco.find_aws_credentials",
          'run(["find", "/root", "-path", "*/.aws/credentials"], tool("find"))',
          'run(["find", "/root", "-path", "*/.aws/config"], tool("find"))'),
    *pair("falco.execution_from_dev_shm",
          'run(["sh", "-c", "/dev/shm/payload; true"])', 'run(["sh", "-c", "/tmp/payload; true"])'),
    *pair("falco.drop_and_execute_new_binary_in_container",
          'shutil.copy("/bin/busybox", "/dropped"); os.chmod("/dropped", 0o755); run(["true"], "/dropped")',
          'run(["true"], "/bin/busybox")', WRITABLE, overlay=True),
    *pair("falco.disallowed_ssh_connection_non_standard_port",
          'run(["nc", "-w", "1", "198.51.100.7", "443"], tool("ssh"))',
          'run(["nc", "-w", "1", "198.51.100.7", "22"], tool("ssh"))'),
    *pair("falco.fileless_execution_via_memfd_create", _MEMFD_EXEC,
          'fd = os.memfd_create("buffer"); os.write(fd, b"data"); run(["true"], "/bin/busybox")'),
)

PARALLEL_RUNS = 4


@pytest.fixture(scope="module")
def stable_rules() -> RuleSet:
    require_fixture(STABLE.parent)
    report = import_rules([STABLE], "falco")
    rs = load_texts([(report.to_yaml(), "falco-stable.yaml")])
    assert rs.errors == []
    return rs


@dataclass
class Overlay:
    """An overlay mount of the rootfs (lower) with a fresh upper layer, unmounted at close."""

    base: Path
    merged: Path

    @classmethod
    def over(cls, lower: Path) -> Overlay:
        base = Path(tempfile.mkdtemp(prefix="rw-falco-ovl-"))
        for d in ("upper", "work", "merged"):
            (base / d).mkdir()
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={lower},upperdir={base / 'upper'},workdir={base / 'work'}", str(base / "merged")],
                       check=True, capture_output=True)
        return cls(base, base / "merged")

    def close(self) -> None:
        subprocess.run(["umount", str(self.merged)], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


@dataclass
class Live:
    """Each case's events (those of its container) and the kinds the sensor could report."""

    events: dict[str, list[Event]]
    kinds: frozenset[str]


#: Rules whose events this kernel may not have: the kind they need.
NEEDS = {"falco.linux_kernel_module_injection_detected": "priv.module_load"}


@pytest.fixture(scope="module")
def falco_live(runc_rootfs: Rootfs) -> Iterator[Live]:
    """Runs every case once under one live pipeline."""
    require_kernel_sensor()
    require_fixture(STABLE.parent)
    live = LiveCapture(watches=watchlist.default_watches(), quiet=0.4, limit=20.0).start()
    containers: list[RuncContainer] = []
    overlays: list[Overlay] = []
    owners: dict[str, str] = {}

    def container_of(case: Case) -> RuncContainer:
        rootfs = runc_rootfs
        if case.overlay:
            ovl = Overlay.over(runc_rootfs.path)
            overlays.append(ovl)
            rootfs = dataclasses.replace(runc_rootfs, path=ovl.merged)
        c = RuncContainer(rootfs, name=case.name, **case.options)
        containers.append(c)
        owners[case.name] = c.id
        return c

    def run_in(c: RuncContainer, case: Case) -> None:
        res = c.run(["python3", "-c", PRELUDE + textwrap.dedent(case.script)], timeout=60)
        assert res.returncode == 0, f"{case.name}: rc {res.returncode}: {res.stderr.decode()[-600:]}"

    try:
        with ThreadPoolExecutor(max_workers=PARALLEL_RUNS) as pool:
            for done in [pool.submit(run_in, container_of(case), case) for case in CASES]:
                done.result()
        events = live.settle()
        kinds = frozenset(live.kernel.report.kinds_active())
    finally:
        live.stop()
        for c in containers:
            c.close()
        for o in overlays:
            o.close()
    yield Live({name: [e for e in events if e.container is not None and e.container.id == cid]
                for name, cid in owners.items()}, kinds)


def test_every_loaded_stable_rule_has_a_positive_and_a_near_miss(stable_rules: RuleSet) -> None:
    loaded = sorted(r.meta.name for r in stable_rules.rules)
    assert len(loaded) == 24
    assert sorted(c.rule for c in CASES if c.positive) == loaded
    assert sorted(c.rule for c in CASES if not c.positive) == loaded


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_stable_rule_live(case: Case, falco_live: Live, stable_rules: RuleSet) -> None:
    need = NEEDS.get(case.rule)
    if need is not None and need not in falco_live.kinds:
        pytest.skip(f"this kernel reports no {need} (built without module support)")
    events = falco_live.events[case.name]
    assert events, f"{case.name}: no events were captured"
    fired = sorted({a.rule for a in Engine(stable_rules).process_batch(events)})
    if case.positive:
        assert case.rule in fired, f"{case.rule} did not fire; fired: {fired}"
    else:
        assert case.rule not in fired, f"{case.rule} fired on the near-miss; fired: {fired}"


def test_process_facts_reach_the_events(falco_live: Live) -> None:
    """The exec facts behind the new fields, as the kernel and enrichment give them."""
    live = falco_live.events

    def execs(name: str, exe: str) -> list[Event]:
        return [e for e in live[name] if e.kind == "process.exec" and e.exe == exe]

    (tty_sh,) = execs("terminal_shell_in_container-pos", "/bin/busybox")
    assert tty_sh.tty is not None and tty_sh.tty >> 8 == 136  # a pseudo-terminal (Unix98 pty major 136)
    (no_tty_sh,) = execs("terminal_shell_in_container-neg", "/bin/busybox")
    assert no_tty_sh.tty == 0
    (nobody,) = execs("system_user_interactive-pos", "/bin/busybox")
    assert (nobody.uid, nobody.user) == (65534, "nobody")
    (user,) = execs("system_user_interactive-neg", "/bin/busybox")
    assert (user.uid, user.user) == (1000, "user")  # the container's passwd, not the host's
    (dropped,) = execs("drop_and_execute_new_binary_in_container-pos", "/dropped")
    assert dropped.exe_upper_layer is True
    (lower,) = execs("drop_and_execute_new_binary_in_container-neg", "/bin/busybox")
    assert lower.exe_upper_layer is None
    shell = [e for e in live["run_shell_untrusted-pos"] if e.kind == "process.exec" and e.exe == "/bin/busybox"
             and e.exec_name == "/bin/sh"]
    assert [e.pcmdline for e in shell] == ["sh -c /bin/sh -c true; true"]
    # the workload's own events: once runc has written its state (the runtime's first events may precede it)
    (k8s,) = execs("contact_k8s_api_server_from_container-neg", PYTHON)
    assert k8s.container is not None
    assert (k8s.container.image, k8s.container.image_repository, k8s.container.image_tag,
            k8s.container.image_digest) == ("docker.io/sysdig/sysdig:0.36@sha256:" + "ab" * 32,
                                            "docker.io/sysdig/sysdig", "0.36", "sha256:" + "ab" * 32)
    (priv,) = execs("debugfs_launched_in_privileged_container-pos", PYTHON)
    assert priv.container is not None and priv.container.privileged is True
    (unpriv,) = execs("debugfs_launched_in_privileged_container-neg", PYTHON)
    assert unpriv.container is not None and unpriv.container.privileged is False
    (module_py,) = execs("linux_kernel_module_injection_detected-pos", PYTHON)
    assert module_py.cap_effective is not None and module_py.cap_effective >> 16 & 1  # CAP_SYS_MODULE
    (plain_py,) = execs("linux_kernel_module_injection_detected-neg", PYTHON)
    assert plain_py.cap_effective is not None and not plain_py.cap_effective >> 16 & 1
