"""File and exec enforcement (fanotify) and kill at exec (BPF) in real runc containers."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.kernel

SECRET = b"token-value-23\n"


def test_protected_secret_denied_to_cat_readable_by_listed_reader(runc_container, enforcers, decisions, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="secret", secrets={"token": SECRET})
    c.start()
    py = str(c.rootfs.python)
    notices = enforcers.apply(c, policy(
        f"id: sec-23\nmode: enforce\nfiles:\n  protect:\n    - path: /run/secrets/token\n      readers: ['{py}']\n"))
    assert notices == []
    cat = c.exec(["/bin/busybox", "cat", "/run/secrets/token"])
    assert cat.returncode == 1 and b"Operation not permitted" in cat.stderr and cat.stdout == b""
    reader = c.exec([py, "-c", "import sys; sys.stdout.buffer.write(open('/run/secrets/token', 'rb').read())"])
    assert (reader.returncode, reader.stdout) == (0, SECRET)
    # runwatch's own process is never blocked, even on the host view of the same inode.
    assert (c.bundle / "secrets" / "token").read_bytes() == SECRET
    got = decisions.wait(lambda d: d.layer == "file", 2)
    assert [(d.verdict, d.rule, d.target) for d in got] == [
        ("deny", "files.protect:/run/secrets/token", "/run/secrets/token"),
        ("allow", "files.protect:/run/secrets/token", "/run/secrets/token"),
    ]
    assert got[0].exe == "/bin/busybox" and got[0].container_id == c.id


def test_protected_secret_monitor_reads_and_records(runc_container, enforcers, decisions, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="secret-mon", secrets={"token": SECRET})
    c.start()
    enforcers.apply(c, policy("id: sec-mon\nmode: monitor\nfiles:\n  protect:\n    - path: /run/secrets/token\n"))
    for _ in range(3):
        assert c.exec(["/bin/busybox", "cat", "/run/secrets/token"]).stdout == SECRET
    got = decisions.wait(lambda d: d.layer == "file", 3)
    assert [d.verdict for d in got] == ["would_deny"] * 3


def test_immutable_path_write_denied_read_allowed(runc_container, enforcers, decisions, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="immutable")
    c.start()
    assert c.exec(["/bin/busybox", "sh", "-c", "printf kept-23 > /tmp/config"]).returncode == 0
    enforcers.apply(c, policy("id: imm\nmode: enforce\nfiles:\n  immutable: [/tmp/config]\n"))
    write = c.exec(["/bin/busybox", "sh", "-c", "echo changed > /tmp/config"])
    assert write.returncode != 0 and b"Operation not permitted" in write.stderr
    assert c.exec(["/bin/busybox", "cat", "/tmp/config"]).stdout == b"kept-23"
    got = decisions.wait(lambda d: d.layer == "file", 1)
    assert [(d.verdict, d.rule, d.write) for d in got] == [("deny", "files.immutable:/tmp/config", True)]


SPAWN = """
import subprocess, sys
try:
    p = subprocess.run(['/bin/sh', '-c', 'echo shell-ran'], capture_output=True)
    print(p.returncode, p.stdout.decode().strip())
except OSError as e:
    print('errno', e.errno)
"""


def test_exec_deny_of_sh_enforce_refuses(runc_container, enforcers, decisions, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="exec-deny")
    c.start()
    enforcers.apply(c, policy("id: ex-23\nmode: enforce\nexec:\n  deny: [/bin/sh]\n"))
    out = c.exec([str(c.rootfs.python), "-c", SPAWN])
    assert out.stdout == b"errno 1\n", out.stderr
    assert c.exec(["/usr/bin/true"]).returncode == 0
    got = decisions.wait(lambda d: d.layer == "exec", 1)
    assert [(d.verdict, d.rule, d.target) for d in got] == [("deny", "exec.deny:/bin/sh", "/bin/busybox")]


def test_exec_deny_of_sh_monitor_runs_and_records(runc_container, enforcers, decisions, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="exec-mon")
    c.start()
    enforcers.apply(c, policy("id: ex-mon\nmode: monitor\nexec:\n  deny: [/bin/sh]\n"))
    out = c.exec([str(c.rootfs.python), "-c", SPAWN])
    assert out.stdout == b"0 shell-ran\n", out.stderr
    got = decisions.wait(lambda d: d.layer == "exec", 1)
    assert [(d.verdict, d.rule) for d in got] == [("would_deny", "exec.deny:/bin/sh")]


def test_exec_allow_list_denies_the_rest(runc_container, enforcers, decisions, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="exec-allow")
    c.start()
    py = str(c.rootfs.python)
    enforcers.apply(c, policy(f"id: ex-allow\nmode: enforce\nexec:\n  allow: ['{py}', '/usr/bin/tr*']\n"))
    code = ("import subprocess\n"
            "for a in (['/usr/bin/true'], ['/usr/bin/env']):\n"
            "    try: print(subprocess.run(a).returncode)\n"
            "    except OSError as e: print('errno', e.errno)\n")
    assert c.exec([py, "-c", code]).stdout == b"0\nerrno 1\n"
    got = decisions.wait(lambda d: d.layer == "exec", 1)
    assert [(d.verdict, d.rule, d.target) for d in got] == [("deny", "exec.default", "/usr/bin/env")]


def test_exec_kill_action_kills_in_kernel(runc_container, enforcers, decisions, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="exec-kill")
    c.start()
    enforcers.apply(c, policy("id: ex-kill\nmode: enforce\nexec:\n  deny: [/bin/sh]\n  action: kill\n"))
    out = c.exec([str(c.rootfs.python), "-c", SPAWN])
    assert out.stdout == b"-9 \n", out.stderr
    got = decisions.wait(lambda d: d.layer == "exec", 1)
    assert [(d.verdict, d.rule, d.comm) for d in got] == [("kill", "exec.deny:/bin/sh", "sh")]
    assert got[0].cgroup_id == c.cgroup_id


def test_exec_kill_action_monitor_records_only(runc_container, enforcers, decisions, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="exec-kill-mon")
    c.start()
    enforcers.apply(c, policy("id: ex-kill-mon\nmode: monitor\nexec:\n  deny: [/bin/sh]\n  action: kill\n"))
    assert c.exec([str(c.rootfs.python), "-c", SPAWN]).stdout == b"0 shell-ran\n"
    got = decisions.wait(lambda d: d.layer == "exec", 1)
    assert [(d.verdict, d.rule) for d in got] == [("would_deny", "exec.deny:/bin/sh")]


def test_stop_leaves_nothing_enforced(runc_container, decisions, policy):  # type: ignore[no-untyped-def]
    from runwatch.policy.enforce import Enforcers

    c = runc_container(name="stopped", secrets={"token": SECRET})
    c.start()
    enf = Enforcers(on_decision=decisions).start()
    try:
        enf.apply(c, policy("id: st\nmode: enforce\nfiles:\n  protect: [{path: /run/secrets/token}]\n"
                            "exec:\n  deny: [/usr/bin/env]\n"))
        assert c.exec(["/bin/busybox", "cat", "/run/secrets/token"]).returncode == 1
    finally:
        enf.stop()
    assert c.exec(["/bin/busybox", "cat", "/run/secrets/token"]).stdout == SECRET
    assert c.exec(["/usr/bin/env", "true"]).returncode == 0
    assert os.path.exists(c.bundle)
