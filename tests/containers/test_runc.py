"""Real runc containers: namespaces, exit codes, secrets, host binaries, cgroups, cleanup."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import runwatch
from runwatch.containers.hostfs import cgroup_mounts
from runwatch.containers.oci import Bind
from runwatch.containers.rootfs import Rootfs
from runwatch.containers.runc import ContainerError, RuncContainer
from runwatch.containers.sweep import sweep_stale_containers

pytestmark = pytest.mark.kernel

Factory = Callable[..., RuncContainer]


def _mountinfo_mentions(*needles: str) -> list[str]:
    with open("/proc/self/mountinfo") as info:
        return [line for line in info if any(n in line for n in needles)]


def assert_gone(container: RuncContainer) -> None:
    """No runc state, no cgroup dir under any hierarchy, no mount, no bundle is left."""
    assert not (Path("/run/runc") / container.id).exists()
    assert [
        m / "runwatch" / container.id for m in cgroup_mounts() if (m / "runwatch" / container.id).exists()
    ] == []
    assert not container.cgroup_dir.exists()
    assert _mountinfo_mentions(container.id, str(container.bundle)) == []
    assert not container.bundle.exists()


@pytest.fixture
def started(runc_container: Factory) -> Iterator[RuncContainer]:
    container = runc_container(name="long-lived-23", pod_name="pod-23", pod_namespace="ns-23")
    container.start()
    yield container


def test_command_is_pid1_in_its_own_pid_namespace(runc_container: Factory) -> None:
    proc = runc_container().run(["/bin/sh", "-c", "echo $$; readlink /proc/1/ns/pid"])
    pid_line, ns_line = proc.stdout.decode().splitlines()
    assert proc.returncode == 0, proc.stderr
    assert pid_line == "1"
    assert ns_line.startswith("pid:[")
    assert ns_line != os.readlink("/proc/self/ns/pid")


@pytest.mark.parametrize("code", [0, 1, 7, 23, 113])
def test_exit_code_propagates(runc_container: Factory, code: int) -> None:
    assert runc_container().run(["/bin/sh", "-c", f"exit {code}"]).returncode == code


def test_secret_has_exact_bytes_and_is_read_only(runc_container: Factory) -> None:
    payload = b"tok-23\x00\xff\n" + secrets.token_bytes(23)
    container = runc_container(secrets={"token": payload})
    read = container.run(["/bin/cat", "/run/secrets/token"])
    assert read.returncode == 0, read.stderr
    assert read.stdout == payload
    host_copy = container.bundle / "secrets" / "token"
    assert host_copy.stat().st_mode & 0o777 == 0o400
    write = container.run(
        ["/bin/sh", "-c", "echo x > /run/secrets/token; echo rc=$?; stat -c %a /run/secrets/token"]
    )
    assert write.stdout == b"rc=1\n400\n"
    assert b"Read-only file system" in write.stderr
    assert host_copy.read_bytes() == payload


def test_secret_belongs_to_the_container_user(runc_container: Factory) -> None:
    container = runc_container(uid=1000, secrets={"api-key": b"k-1009"})
    proc = container.run(["/bin/sh", "-c", "id -u; cat /run/secrets/api-key"])
    assert proc.stdout == b"1000\nk-1009"


def test_host_python_and_runwatch_import_inside(runc_container: Factory) -> None:
    container = runc_container()
    assert container.run(["python3", "-c", "print(6*7)"]).stdout == b"42\n"
    proc = container.run(["python3", "-c", "import runwatch, sys; print(runwatch.__version__, sys.prefix)"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().split() == [
        runwatch.__version__,
        os.path.realpath(container.rootfs.python_prefix),
    ]


def test_host_binaries_exec(runc_container: Factory) -> None:
    container = runc_container()
    assert container.run(["/usr/bin/true"]).returncode == 0
    assert container.run(["/usr/bin/false"]).returncode == 1
    assert container.run(["/bin/sh", "-c", "/usr/bin/true && echo ok"]).stdout == b"ok\n"
    assert container.run(["/usr/bin/wc", "-c"], input=b"x" * 61).stdout == b"61\n"


def test_failed_start_raises_one_line_and_leaves_nothing(runc_container: Factory) -> None:
    container = runc_container()
    with pytest.raises(ContainerError, match=r"no such file or directory") as info:
        container.run(["/no/such/binary"])
    assert "\n" not in str(info.value)
    assert not (Path("/run/runc") / container.id).exists()
    assert not container.cgroup_dir.exists()
    container.close()
    assert_gone(container)


def test_run_timeout_kills_and_cleans_up(runc_container: Factory) -> None:
    container = runc_container()
    with pytest.raises(ContainerError, match=r"timed out after 0.3s"):
        container.run(["/usr/bin/sleep", "30"], timeout=0.3)
    container.close()
    assert_gone(container)


def test_foreground_run_leaves_nothing_after_close(runc_container: Factory) -> None:
    container = runc_container(secrets={"token": b"t"}, name="fg")
    assert container.run(["/usr/bin/true"]).returncode == 0
    assert not (Path("/run/runc") / container.id).exists()
    assert not container.cgroup_dir.exists()
    container.close()
    assert_gone(container)


def test_long_lived_container_exec_and_init_pid(started: RuncContainer) -> None:
    pid = started.init_pid
    # `runc start` returns once the init was told to exec, not once it has: the exec may
    # still be on its way (or held by an enforcing runwatch elsewhere on the host)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}/cmdline").read_bytes() == b"/usr/sbin/runc\0init\0" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert Path(f"/proc/{pid}/cmdline").read_bytes() == b"/usr/bin/sleep\0infinity\0"
    cgroup_lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    assert f"0::/runwatch/{started.id}" in cgroup_lines
    assert f"4:memory:/runwatch/{started.id}" in cgroup_lines
    status = Path(f"/proc/{pid}/status").read_text()
    nspid = next(line for line in status.splitlines() if line.startswith("NSpid:")).split()[1:]
    assert nspid == [str(pid), "1"]

    proc = started.exec(["/bin/sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; exit 23"])
    assert proc.returncode == 23
    assert proc.stdout == b"/usr/bin/sleep infinity \n"
    whoami = started.exec(["/usr/bin/id", "-u"], uid=1000)
    assert whoami.stdout == b"1000\n"
    env = started.exec(["/bin/sh", "-c", "echo $RW_X; pwd"], env={"RW_X": "x-29"}, cwd="/tmp")
    assert env.stdout == b"x-29\n/tmp\n"


def test_cgroup_id_is_inode_of_unified_dir_and_gone_after_close(runc_container: Factory) -> None:
    container = runc_container()
    container.start()
    unified = Path("/sys/fs/cgroup/unified/runwatch") / container.id
    assert container.cgroup_path == f"/runwatch/{container.id}"
    assert container.cgroup_dir == unified
    assert container.cgroup_id == os.stat(unified).st_ino
    for mount in cgroup_mounts():
        assert (mount / "runwatch" / container.id).is_dir()
    assert container.stop(grace=0) == 137
    assert not unified.exists()
    with pytest.raises(ContainerError, match="not running"):
        _ = container.cgroup_id
    container.close()
    assert_gone(container)


def test_state_and_annotations(started: RuncContainer) -> None:
    state = started.state()
    assert state["status"] == "running"
    assert state["pid"] == started.init_pid
    assert state["annotations"]["runwatch.container.name"] == "long-lived-23"
    assert state["annotations"]["io.kubernetes.pod.name"] == "pod-23"
    assert state["annotations"]["io.kubernetes.pod.namespace"] == "ns-23"
    on_disk = json.loads(started.state_file.read_text())
    assert f"bundle={started.bundle}" in on_disk["config"]["labels"]
    assert "runwatch.container.name=long-lived-23" in on_disk["config"]["labels"]
    assert started.id.startswith("rw-")


def test_long_lived_close_leaves_nothing(runc_container: Factory) -> None:
    container = runc_container(secrets={"token": b"t-31"})
    pid = container.start()
    container.close()
    assert not Path(f"/proc/{pid}").exists()
    assert_gone(container)


def test_host_network_is_shared_by_default(runc_container: Factory) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        got: list[bytes] = []

        def accept() -> None:
            conn, _ = server.accept()
            with conn:
                got.append(conn.recv(64))

        server.settimeout(10)
        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        code = f"import socket; socket.create_connection(('127.0.0.1', {port})).sendall(b'hello-37')"
        proc = runc_container().run(["python3", "-c", code])
        thread.join(timeout=10)
    assert proc.returncode == 0, proc.stderr
    assert got == [b"hello-37"]


def test_isolated_and_named_network_namespaces(runc_container: Factory) -> None:
    host_ns = os.readlink("/proc/self/ns/net")
    isolated = runc_container(isolated_network=True).run(["/bin/sh", "-c", "readlink /proc/self/ns/net"])
    assert isolated.stdout.decode().strip() not in ("", host_ns)

    name = f"rw-test-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        path = Path("/run/netns") / name
        proc = runc_container(netns=str(path)).run(["/bin/sh", "-c", "readlink /proc/self/ns/net"])
        assert proc.stdout.decode().strip() == f"net:[{os.stat(path).st_ino}]"
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


def test_capabilities_default_sys_admin_and_privileged(runc_container: Factory) -> None:
    script = (
        "mount -t tmpfs t /mnt 2>/dev/null; echo mount=$?; grep -E '^(CapEff|Seccomp):' /proc/self/status"
    )

    def run(**options: object) -> list[str]:
        proc = runc_container(**options).run(["/bin/sh", "-c", script])
        return proc.stdout.decode().split()

    default = run()
    assert default[0] == "mount=1"
    assert int(default[2], 16) >> 21 & 1 == 0  # CAP_SYS_ADMIN is bit 21
    assert default[3:] == ["Seccomp:", "2"]
    admin = run(sys_admin=True)
    assert admin[0] == "mount=0"
    assert int(admin[2], 16) >> 21 & 1 == 1
    privileged = run(privileged=True)
    assert privileged[0] == "mount=0"
    assert privileged[3:] == ["Seccomp:", "0"]
    own = int(
        next(
            x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("CapBnd:")
        ).split()[1],
        16,
    )
    assert int(privileged[2], 16) == own


def test_extra_bind_env_and_cwd(runc_container: Factory, tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_bytes(b"bound-41\n")
    container = runc_container(
        binds=[Bind(tmp_path, "/data")], env={"RW_ENV": "e-43"}, cwd="/data", readonly_rootfs=True
    )
    proc = container.run(["/bin/sh", "-c", "cat data.txt; echo $RW_ENV; touch new 2>&1; echo rc=$?"])
    assert proc.stdout.splitlines()[:2] == [b"bound-41", b"e-43"]
    assert proc.stdout.endswith(b"rc=1\n")
    assert not (tmp_path / "new").exists()


def test_bad_options_are_one_line_errors(runc_rootfs: Rootfs) -> None:
    with pytest.raises(ContainerError, match=r"secret name '\.\./x'"):
        RuncContainer(runc_rootfs, secrets={"../x": b""})
    with pytest.raises(ContainerError, match=r"unknown capability 'CAP_NOPE'"):
        RuncContainer(runc_rootfs, add_capabilities=["CAP_NOPE"])
    with pytest.raises(ContainerError, match=r"runc binary 'no-such-runc' not found"):
        RuncContainer(runc_rootfs, runc_binary="no-such-runc")
    with pytest.raises(ContainerError, match=r"unexpected keyword argument 'colour'"):
        RuncContainer(runc_rootfs, colour="red")


def test_sweep_removes_containers_of_dead_owners_only(started: RuncContainer, runc_rootfs: Rootfs) -> None:
    code = (
        "import sys, time\n"
        "from runwatch.containers.runc import RuncContainer\n"
        "c = RuncContainer()\n"
        "c.start()\n"
        "print(c.id, c.init_pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(runc_rootfs.src_dir)}
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    try:
        assert owner.stdout is not None
        stale_id, stale_pid = owner.stdout.readline().decode().split()
    finally:
        owner.kill()
        owner.wait()
    stale_cgroup = Path("/sys/fs/cgroup/unified/runwatch") / stale_id
    assert stale_cgroup.is_dir()

    removed, problems = sweep_stale_containers()

    assert stale_id in removed
    assert started.id not in removed
    assert problems == []
    assert not (Path("/run/runc") / stale_id).exists()
    assert not stale_cgroup.exists()
    assert not (Path("/run/runwatch/bundles") / stale_id).exists()
    assert (
        not Path(f"/proc/{stale_pid}").exists()
        or "Z" in Path(f"/proc/{stale_pid}/stat").read_text().split()[2]
    )
    assert started.state()["status"] == "running"


def test_exec_of_missing_binary_is_a_one_line_error(started: RuncContainer) -> None:
    with pytest.raises(ContainerError, match=r"runc exec in rw-\w+ failed .*no such file or directory"):
        started.exec(["/no/such/tool"])
    assert started.exec(["/usr/bin/true"]).returncode == 0


def test_quick_long_lived_command_reports_exit_and_output(runc_container: Factory) -> None:
    container = runc_container()
    container.start(["/bin/sh", "-c", "echo out-53; echo err-59 >&2; exit 3"])
    assert container.stop() == 3
    assert container.logs() == (b"out-53\n", b"err-59\n")
    assert not container.running
    container.close()
    assert_gone(container)
