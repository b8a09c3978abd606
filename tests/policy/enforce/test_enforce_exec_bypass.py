"""Exec policies against the ways around an exec check, in real runc containers on the live kernel.

The ELF loader run as a program (``ld.so /usr/bin/dash``) opens its target with a plain
read and maps it executable, so no exec check sees the target; a memfd copy lives on no
mounted path, so no mount mark sees its exec. The kernel stops both: the loader at its
exec, a copy of the loader when it maps a denied file executable, a memfd under an allow
list at exec or mapping. Ordinary programs and the libraries they map are unaffected.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.kernel

LOADER = "/lib64/ld-linux-x86-64.so.2"

RUN = """
import json, subprocess, sys
out = []
for argv in json.loads(sys.argv[1]):
    try:
        p = subprocess.run(argv, capture_output=True)
        out.append([p.returncode, p.stdout.decode().strip()])
    except OSError as e:
        out.append(["errno", e.errno])
print(json.dumps(out))
"""

MEMFD = """
import os, subprocess, sys
fd = os.memfd_create("payload", 0)
os.write(fd, open("/usr/bin/echo", "rb").read())
how = sys.argv[1]
if how == "path":
    p = subprocess.run([f"/proc/self/fd/{fd}", "memfd-ran"], pass_fds=(fd,), capture_output=True)
    print(p.returncode, p.stdout.decode().strip())
elif how == "fexecve":
    pid = os.fork()
    if pid == 0:
        os.execve(fd, ["echo", "memfd-ran"], {})
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
else:  # map the copy executable in this very process
    import mmap
    m = mmap.mmap(fd, 4096, prot=mmap.PROT_READ | mmap.PROT_EXEC)
    print("mapped", len(m))
"""

MPROTECT = """
import ctypes, mmap, os, sys
libc = ctypes.CDLL(None, use_errno=True)
with open(sys.argv[1], "rb") as f:
    m = mmap.mmap(f.fileno(), 4096, access=mmap.ACCESS_COPY)
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
rc = libc.mprotect(ctypes.c_void_p(addr), 4096, mmap.PROT_READ | mmap.PROT_EXEC)
print("mprotect", rc)
"""


def run(container, *argvs):  # type: ignore[no-untyped-def]
    import json

    proc = container.exec([str(container.rootfs.python), "-c", RUN, json.dumps([list(a) for a in argvs])])
    assert proc.returncode == 0, proc.stderr
    return [tuple(x) for x in json.loads(proc.stdout)]


def exec_decisions(decisions, count):  # type: ignore[no-untyped-def]
    return [(d.verdict, d.rule, d.target) for d in decisions.wait(lambda d: d.layer == "exec", count)]


def test_the_loader_run_as_a_program_is_killed_under_a_deny_list(runc_container, enforcers, decisions, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="ldso-deny")
    c.start()
    assert run(c, [LOADER, "/usr/bin/dash", "-c", "echo ran"]) == [(0, "ran")]  # the bypass, before
    enforcers.apply(c, policy("id: ld-23\nmode: enforce\nexec:\n  deny: [/usr/bin/dash]\n"))
    got = run(c, [LOADER, "/usr/bin/dash", "-c", "echo ran"], ["/usr/bin/dash", "-c", "echo ran"],
              ["/usr/bin/env", "true"], [LOADER, "--verify", "/usr/bin/true"])
    # the loader is killed at its exec, dash's own exec refused (EPERM), env runs
    assert got == [(-9, ""), ("errno", 1), (0, ""), (-9, "")]
    seen = exec_decisions(decisions, 3)
    assert ("kill", f"exec.loader:{LOADER}", LOADER) in seen
    kills = [d for d in decisions.items if d.rule.startswith("exec.loader")]
    assert len(kills) == 2 and {d.comm for d in kills} == {"ld-linux-x86-64"}
    assert kills[0].reason == "the ELF loader run as a program, killed in the kernel"
    assert (kills[0].policy_id, kills[0].container_id, kills[0].cgroup_id) == ("ld-23", c.id, c.cgroup_id)


def test_a_copy_of_the_loader_is_killed_when_it_maps_a_denied_program(runc_container, enforcers, decisions, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="ldso-copy")
    c.start()
    assert c.exec(["/bin/cp", LOADER, "/tmp/myld"]).returncode == 0
    enforcers.apply(c, policy("id: ld-copy\nmode: enforce\nexec:\n  deny: [/usr/bin/dash]\n"))
    got = run(c, ["/tmp/myld", "/usr/bin/dash", "-c", "echo ran"], ["/tmp/myld", "/usr/bin/tr", "a", "b"])
    assert got == [(-9, ""), (0, "")]  # dash is mapped and killed; tr (not denied) runs through the copy
    seen = [d for d in decisions.wait(lambda d: d.layer == "exec", 1) if d.rule == "exec.deny:/usr/bin/dash"]
    assert [(d.verdict, d.comm) for d in seen] == [("kill", "myld")]
    assert seen[0].reason == "a denied executable mapped executable (run through the ELF loader), killed in the kernel"


def test_mprotect_of_a_denied_file_to_executable_is_killed(runc_container, enforcers, decisions, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="mprotect")
    c.start()
    py = str(c.rootfs.python)
    enforcers.apply(c, policy("id: mp-7\nmode: enforce\nexec:\n  deny: [/usr/bin/dash]\n"))
    assert c.exec([py, "-c", MPROTECT, "/usr/bin/true"]).stdout == b"mprotect 0\n"  # not denied: fine
    proc = c.exec([py, "-c", MPROTECT, "/usr/bin/dash"])
    assert (proc.returncode, proc.stdout) == (137, b""), proc.stderr
    seen = [d for d in decisions.wait(lambda d: d.layer == "exec", 1)]
    assert [(d.verdict, d.rule, d.comm) for d in seen] == [("kill", "exec.deny:/usr/bin/dash", "python3")]


def test_under_an_allow_list_the_loader_and_memfd_copies_are_killed(runc_container, enforcers, decisions, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="allow-bypass")
    c.start()
    py = str(c.rootfs.python)
    assert run(c, [LOADER, "/usr/bin/perl", "-e", "print 5"]) == [(0, "5")]  # the bypass, before
    enforcers.apply(c, policy(f"id: al-23\nmode: enforce\nexec:\n  allow: ['{py}', '/usr/bin/tr*']\n"))
    got = run(c, [LOADER, "/usr/bin/perl", "-e", "print 5"], ["/usr/bin/tr", "a", "b"])
    assert got == [(-9, ""), (0, "")]
    for how, want in (("path", b"-9 \n"), ("fexecve", b"-9\n")):
        proc = c.exec([py, "-c", MEMFD, how])
        assert (proc.returncode, proc.stdout) == (0, want), (how, proc.stderr)
    mapped = c.exec([py, "-c", MEMFD, "map"])
    assert (mapped.returncode, mapped.stdout) == (137, b"")
    seen = exec_decisions(decisions, 4)
    assert seen.count(("kill", f"exec.loader:{LOADER}", LOADER)) == 1
    assert seen.count(("kill", "exec.default", "memfd")) == 3
    reasons = {d.reason for d in decisions.items if d.target == "memfd"}
    assert reasons == {"exec of a file on no mounted path (memfd) under an exec allow list, killed in the kernel",
                       "a file on no mounted path (memfd) mapped executable under an exec allow list, "
                       "killed in the kernel"}


def test_the_loader_listed_in_the_allow_list_runs(runc_container, enforcers, decisions, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="allow-ldso")
    c.start()
    py = str(c.rootfs.python)
    enforcers.apply(c, policy(f"id: al-ld\nmode: enforce\nexec:\n  allow: ['{py}', '{LOADER}', /usr/bin/tr]\n"))
    assert run(c, [LOADER, "/usr/bin/tr", "--version"])[0][0] == 0
    assert [d for d in decisions.wait(lambda d: d.layer == "exec", 1, timeout=0.5)] == []


def test_monitor_lets_the_bypasses_run_and_records_would_deny(runc_container, enforcers, decisions, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="bypass-mon")
    c.start()
    py = str(c.rootfs.python)
    enforcers.apply(c, policy(f"id: al-mon\nmode: monitor\nexec:\n  allow: ['{py}']\n  deny: [/usr/bin/dash]\n"))
    assert run(c, [LOADER, "/usr/bin/dash", "-c", "echo ran"]) == [(0, "ran")]
    assert c.exec([py, "-c", MEMFD, "path"]).stdout == b"0 memfd-ran\n"
    seen = exec_decisions(decisions, 4)
    assert ("would_deny", f"exec.loader:{LOADER}", LOADER) in seen
    assert ("would_deny", "exec.deny:/usr/bin/dash", "/usr/bin/dash") in seen  # mapped by the loader
    assert ("would_deny", "exec.default", "memfd") in seen
    assert {v for v, _, _ in seen} == {"would_deny"}
