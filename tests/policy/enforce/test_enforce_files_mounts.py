"""``files.protect`` with a ``dir/`` prefix or a glob covers files bind-mounted into the directory.

runc (and Kubernetes, Docker) mount each secret as a bind mount of a host file at
``/run/secrets/<name>``: the file's dentry is the host's, so a mark on the container's
``/run/secrets`` directory alone never sees its opens.
"""

from __future__ import annotations

import inspect
import os
import time
from pathlib import Path

import pytest

from runwatch.testing import uring
from runwatch.testing.mounts import bind_into

pytestmark = pytest.mark.kernel

PASSWORD = b"db-password-29\n"
SECRET = "/run/secrets/db-password"
READ = "import sys; sys.stdout.buffer.write(open(sys.argv[1], 'rb').read())"


def _protect(path: str, mode: str, readers: str) -> str:
    return (f"id: sec-mnt\nmode: {mode}\nfiles:\n  protect:\n    - path: '{path}'\n"
            f"      readers: [{readers}]\n")


@pytest.mark.parametrize("pattern", ["/run/secrets/", "/run/secrets/*"])
def test_bind_mounted_secret_under_a_protected_dir_is_denied_to_others(  # type: ignore[no-untyped-def]
        runc_container, enforcers, decisions, policy, pattern):
    c = runc_container(name="sec-bind", secrets={"db-password": PASSWORD})
    c.start()
    py = str(c.rootfs.python)
    assert enforcers.apply(c, policy(_protect(pattern, "enforce", f"'{py}'"))) == []
    for _ in range(3):
        cat = c.exec(["/bin/busybox", "cat", SECRET])
        assert (cat.returncode, cat.stdout) == (1, b""), cat.stderr
        assert b"Operation not permitted" in cat.stderr
    reader = c.exec([py, "-c", READ, SECRET])
    assert (reader.returncode, reader.stdout) == (0, PASSWORD), reader.stderr
    got = decisions.wait(lambda d: d.layer == "file", 4)
    rule = f"files.protect:{pattern}"
    assert [(d.verdict, d.rule, d.target, d.exe) for d in got] == [
        *[("deny", rule, SECRET, "/bin/busybox")] * 3,
        ("allow", rule, SECRET, os.path.realpath(py)),
    ]
    assert {d.container_id for d in got} == {c.id}


@pytest.mark.parametrize("pattern", ["/run/secrets/", "/run/secrets/*"])
def test_bind_mounted_secret_monitor_records_would_deny(  # type: ignore[no-untyped-def]
        runc_container, enforcers, decisions, policy, pattern):
    c = runc_container(name="sec-bind-mon", secrets={"db-password": PASSWORD})
    c.start()
    assert enforcers.apply(c, policy(_protect(pattern, "monitor", "'/usr/bin/head'"))) == []
    for _ in range(5):
        assert c.exec(["/bin/busybox", "cat", SECRET]).stdout == PASSWORD
    got = decisions.wait(lambda d: d.layer == "file", 5)
    assert [(d.verdict, d.rule, d.target) for d in got] == [("would_deny", f"files.protect:{pattern}", SECRET)] * 5


ATTACKS = inspect.getsource(uring) + """
import os, sys
secret = sys.argv[1]
ring = Ring()

def by_ring(flags):
    res = ring.openat(secret, os.O_RDONLY, sqe_flags=flags)
    if res < 0:
        raise OSError(-res, "io_uring openat")
    return res

os.symlink(secret, "/tmp/link")
ways = {
    "symlink": lambda: os.open("/tmp/link", os.O_RDONLY),
    "dotdot": lambda: os.open("/run/secrets/../secrets/./db-password", os.O_RDONLY),
    "proc-root": lambda: os.open("/proc/self/root" + secret, os.O_RDONLY),
    "o-path-reopen": lambda: os.open(f"/proc/self/fd/{os.open(secret, os.O_PATH)}", os.O_RDONLY),
    "dirfd": lambda: os.open("db-password", os.O_RDONLY, dir_fd=os.open("/run/secrets", os.O_RDONLY)),
    "io_uring": lambda: by_ring(0),
    "io_uring-async": lambda: by_ring(IOSQE_ASYNC),
}
for name, way in ways.items():
    try:
        way()
        print(name, "opened")
    except OSError as e:
        print(name, "errno", e.errno)
"""


def test_other_ways_to_a_bind_mounted_secret_are_denied(runc_container, enforcers, decisions, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="sec-bind-ways", secrets={"db-password": PASSWORD})
    c.start()
    enforcers.apply(c, policy(_protect("/run/secrets/*", "enforce", "'/usr/bin/head'")))
    out = c.exec([str(c.rootfs.python), "-c", ATTACKS, SECRET])
    assert out.stdout.decode().splitlines() == [
        "symlink errno 1", "dotdot errno 1", "proc-root errno 1", "o-path-reopen errno 1", "dirfd errno 1",
        "io_uring errno 1", "io_uring-async errno 1"], out.stderr
    got = decisions.wait(lambda d: d.layer == "file", 7)
    assert [(d.verdict, d.target) for d in got] == [("deny", SECRET)] * 7
    head = c.exec(["/usr/bin/head", "-c", "100", SECRET])
    assert head.stdout == PASSWORD


def test_a_file_created_or_hard_linked_in_a_protected_dir_is_covered(  # type: ignore[no-untyped-def]
        runc_container, enforcers, decisions, policy):
    c = runc_container(name="sec-later", secrets={"db-password": PASSWORD})
    c.start()
    assert c.exec(["/bin/busybox", "sh", "-c", "mkdir -p /run/secrets/deep && echo old > /run/secrets/deep/key"
                   ]).returncode == 0
    enforcers.apply(c, policy(_protect("/run/secrets/", "enforce", "'/usr/bin/head', '/usr/bin/cp'")))
    script = ("echo new > /tmp/new; /usr/bin/cp /tmp/new /run/secrets/fresh; ln /run/secrets/deep/key /run/key-link; "
              "for f in /run/secrets/fresh /run/secrets/deep/key /run/key-link; do /bin/busybox cat $f; done")
    out = c.exec(["/bin/busybox", "sh", "-c", script])
    assert out.stdout == b"" and out.stderr.count(b"Operation not permitted") == 3, out.stderr
    got = decisions.wait(lambda d: d.layer == "file", 4)
    assert [(d.verdict, d.target, d.exe) for d in got] == [
        ("allow", "/run/secrets/fresh", "/usr/bin/cp"), ("deny", "/run/secrets/fresh", "/bin/busybox"),
        ("deny", "/run/secrets/deep/key", "/bin/busybox"), ("deny", "/run/key-link", "/bin/busybox")]
    assert [(d.verdict, d.target) for d in got[1:]] == [
        ("deny", "/run/secrets/fresh"), ("deny", "/run/secrets/deep/key"), ("deny", "/run/key-link")]


def test_a_file_renamed_to_a_protected_name_is_covered(runc_container, enforcers, decisions, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="sec-rename", secrets={"db-password": PASSWORD})
    c.start()
    enforcers.apply(c, policy(_protect("/run/secrets/*.key", "enforce", "'/usr/bin/head'")))
    script = ("echo api-key-41 > /run/secrets/.tmp-41; /bin/busybox cat /run/secrets/.tmp-41; "
              "mv /run/secrets/.tmp-41 /run/secrets/api.key; /bin/busybox cat /run/secrets/api.key")
    out = c.exec(["/bin/busybox", "sh", "-c", script])
    assert out.stdout == b"api-key-41\n" and out.stderr.count(b"Operation not permitted") == 1, out.stderr
    got = decisions.wait(lambda d: d.layer == "file", 1)
    assert [(d.verdict, d.rule, d.target) for d in got] == [
        ("deny", "files.protect:/run/secrets/*.key", "/run/secrets/api.key")]


@pytest.mark.parametrize("pattern", ["/run/secrets/", "/run/secrets/api-key"])
def test_a_file_bind_mounted_after_apply_is_covered(  # type: ignore[no-untyped-def]
        runc_container, enforcers, decisions, policy, tmp_path, pattern):
    c = runc_container(name="sec-hotplug", secrets={"db-password": PASSWORD})
    c.start()
    host = tmp_path / "api-key"
    host.write_bytes(b"api-key-31\n")
    assert c.exec(["/bin/busybox", "touch", "/run/secrets/api-key"]).returncode == 0
    enforcers.apply(c, policy(_protect(pattern, "enforce", "'/usr/bin/head'")))
    before = enforcers.stats()["fanotify_rescans"]
    bind_into(c.init_pid, str(host), "/run/secrets/api-key")
    deadline = time.monotonic() + 5
    while enforcers.stats()["fanotify_rescans"] == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert enforcers.stats()["fanotify_rescans"] == before + 1
    for _ in range(3):
        cat = c.exec(["/bin/busybox", "cat", "/run/secrets/api-key"])
        assert (cat.returncode, cat.stdout) == (1, b""), cat.stderr
    assert c.exec(["/usr/bin/head", "/run/secrets/api-key"]).stdout == b"api-key-31\n"
    got = decisions.wait(lambda d: d.layer == "file" and d.verdict == "deny", 3)
    assert [(d.rule, d.target) for d in got] == [(f"files.protect:{pattern}", "/run/secrets/api-key")] * 3


def test_a_tree_too_big_to_walk_is_covered_by_its_mount(  # type: ignore[no-untyped-def]
        runc_container, enforcers, decisions, policy, monkeypatch):
    from runwatch.policy.enforce import targets

    monkeypatch.setattr(targets, "WALK_LIMIT", 5)
    c = runc_container(name="imm-big")
    c.start()
    assert c.exec(["/bin/busybox", "sh", "-c", "mkdir -p /tmp/tree/a/b && for i in 1 2 3 4 5 6 7; do "
                   "echo $i > /tmp/tree/a/b/f$i; done"]).returncode == 0
    enforcers.apply(c, policy("id: imm-big\nmode: enforce\nfiles:\n  immutable: [/tmp/tree/]\n"))
    script = ("for f in /tmp/tree/a/b/f3 /tmp/tree/a/b/f7 /tmp/tree/a/new; do echo x > $f; done; "
              "echo free > /tmp/free; /bin/busybox cat /tmp/tree/a/b/f7 /tmp/free")
    out = c.exec(["/bin/busybox", "sh", "-c", script])
    assert out.stdout == b"7\nfree\n" and out.stderr.count(b"Operation not permitted") == 3, out.stderr
    got = decisions.wait(lambda d: d.layer == "file", 3)
    assert [(d.verdict, d.rule, d.target) for d in got] == [
        ("deny", "files.immutable:/tmp/tree/", "/tmp/tree/a/b/f3"),
        ("deny", "files.immutable:/tmp/tree/", "/tmp/tree/a/b/f7"),
        ("deny", "files.immutable:/tmp/tree/", "/tmp/tree/a/new")]


def test_a_directory_bind_mounted_after_apply_is_covered_at_any_depth(  # type: ignore[no-untyped-def]
        runc_container, enforcers, decisions, policy, tmp_path):
    c = runc_container(name="sec-hotplug-dir", secrets={"db-password": PASSWORD})
    c.start()
    volume = tmp_path / "serviceaccount"
    (volume / "..2026_12_04").mkdir(parents=True)
    (volume / "..2026_12_04" / "token").write_bytes(b"sa-token-59\n")
    (volume / "token").symlink_to("..2026_12_04/token")
    assert c.exec(["/bin/busybox", "mkdir", "/run/secrets/sa"]).returncode == 0
    enforcers.apply(c, policy(_protect("/run/secrets/", "enforce", "'/usr/bin/head'")))
    before = enforcers.stats()["fanotify_rescans"]
    bind_into(c.init_pid, str(volume), "/run/secrets/sa")
    deadline = time.monotonic() + 5
    while enforcers.stats()["fanotify_rescans"] == before and time.monotonic() < deadline:
        time.sleep(0.01)
    # The volume is updated the way the kubelet does it: a new timestamped directory.
    (volume / "..2026_12_05").mkdir()
    (volume / "..2026_12_05" / "token").write_bytes(b"sa-token-61\n")
    out = c.exec(["/bin/busybox", "sh", "-c", "for f in /run/secrets/sa/token /run/secrets/sa/..2026_12_05/token; "
                  "do /bin/busybox cat $f; done; /usr/bin/head /run/secrets/sa/..2026_12_05/token"])
    assert out.stdout == b"sa-token-61\n" and out.stderr.count(b"Operation not permitted") == 2, out.stderr
    got = decisions.wait(lambda d: d.layer == "file" and d.verdict == "deny", 2)
    assert [(d.rule, d.target) for d in got] == [
        ("files.protect:/run/secrets/", "/run/secrets/sa/..2026_12_04/token"),
        ("files.protect:/run/secrets/", "/run/secrets/sa/..2026_12_05/token")]


def test_execs_from_a_mount_added_after_apply_are_judged(  # type: ignore[no-untyped-def]
        runc_container, enforcers, decisions, policy, tmp_path):
    c = runc_container(name="exec-hotplug")
    c.start()
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "env").write_bytes(Path("/usr/bin/env").read_bytes())  # a copy: another inode, another path
    (tools / "env").chmod(0o755)
    assert c.exec(["/bin/busybox", "mkdir", "/tmp/tools"]).returncode == 0
    py = str(c.rootfs.python)
    enforcers.apply(c, policy(f"id: ex-hot\nmode: enforce\nexec:\n  allow: ['{py}']\n"))
    before = enforcers.stats()["fanotify_rescans"]
    bind_into(c.init_pid, str(tools), "/tmp/tools")
    deadline = time.monotonic() + 5
    while enforcers.stats()["fanotify_rescans"] == before and time.monotonic() < deadline:
        time.sleep(0.01)
    code = ("import subprocess\ntry: print(subprocess.run(['/tmp/tools/env', 'true']).returncode)\n"
            "except OSError as e: print('errno', e.errno)\n")
    assert c.exec([py, "-c", code]).stdout == b"errno 1\n"
    got = decisions.wait(lambda d: d.layer == "exec", 1)
    assert [(d.verdict, d.rule, d.target) for d in got] == [("deny", "exec.default", "/tmp/tools/env")]
