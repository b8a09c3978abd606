"""The real executable: ``exe`` is the file the kernel executed, whatever name execve was given.

Each case runs one exec through a different kind of name (the magic ``/proc/self/exe`` link,
a symlink, a hard link, a relative ``./x``, a memfd, a deleted file, runc's re-exec of
itself through ``/dev/fd/N``) and checks the resolved path, the name as given
(``exec_name``) and the inode and device against ``os.stat`` of the file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runwatch.events import Event
from runwatch.policy import load_policy_texts
from runwatch.policy.suggest import suggest_policy

pytestmark = pytest.mark.kernel

PYTHON = os.path.realpath(sys.executable)


def _execs(capture, name: str) -> list[Event]:  # type: ignore[no-untyped-def]
    return capture.where(lambda e: e.kind == "process.exec" and e.exec_name == name)


def _identity(e: Event) -> tuple[str, str | None, int | None, int | None, bool | None]:
    return e.exe, e.exec_name, e.exe_ino, e.exe_dev, e.exe_deleted


def _stat_of(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_dev


def _copy_of_true(where: Path, name: str) -> Path:
    target = where / name
    shutil.copy2("/usr/bin/true", target)
    return target


def test_exec_through_proc_self_exe_is_the_interpreter(capture):
    p = subprocess.run(["/proc/self/exe", "-c", "import sys; sys.exit(23)"])
    assert p.returncode == 23
    execs = _execs(capture, "/proc/self/exe")
    assert len(execs) == 1
    assert _identity(execs[0]) == (PYTHON, "/proc/self/exe", *_stat_of(PYTHON), None)
    assert execs[0].argv == ["/proc/self/exe", "-c", "import sys; sys.exit(23)"]


def test_exec_through_a_symlink_is_its_target(capture):
    assert os.path.islink("/bin/sh") and os.path.realpath("/bin/sh") == "/usr/bin/dash"
    assert subprocess.run(["/bin/sh", "-c", "exit 23"]).returncode == 23
    execs = _execs(capture, "/bin/sh")
    assert [_identity(e) for e in execs] == [("/usr/bin/dash", "/bin/sh", *_stat_of("/usr/bin/dash"), None)]


def test_exec_through_a_hard_link_is_the_link_used_and_the_same_inode(capture, tmp_path: Path):
    first = _copy_of_true(tmp_path, "first")
    second = tmp_path / "second-23"
    os.link(first, second)
    assert subprocess.run([str(second)]).returncode == 0
    execs = _execs(capture, str(second))
    assert [_identity(e) for e in execs] == [(str(second), str(second), *_stat_of(str(first)), None)]
    assert os.stat(first).st_nlink == 2


def test_exec_of_a_relative_name_is_the_absolute_file(capture, tmp_path: Path):
    work = tmp_path / "work"
    work.mkdir()
    x = _copy_of_true(work, "x")
    assert subprocess.run(["./x"], cwd=work).returncode == 0
    execs = _execs(capture, "./x")
    assert [_identity(e) for e in execs] == [(str(x), "./x", *_stat_of(str(x)), None)]
    assert execs[0].cwd == str(work)


MEMFD_EXEC = """
import os, sys
fd = os.memfd_create("payload-23", 0)
with open("/usr/bin/true", "rb") as fh:
    os.write(fd, fh.read())
st = os.fstat(fd)
print(st.st_ino, st.st_dev, fd, flush=True)
os.execve(fd, ["payload"], {})
"""


def test_exec_of_a_memfd_is_memfd_name(capture):
    p = subprocess.run([sys.executable, "-c", MEMFD_EXEC], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    ino, dev, fd = (int(x) for x in p.stdout.split())
    execs = _execs(capture, f"/dev/fd/{fd}")
    assert [_identity(e) for e in execs] == [("memfd:payload-23", f"/dev/fd/{fd}", ino, dev, True)]
    assert execs[0].attrs is None


DELETED_EXEC = """
import os, sys
path = sys.argv[1]
fd = os.open(path, os.O_RDONLY)
os.unlink(path)
print(fd, flush=True)
os.execve(fd, ["gone"], {})
"""


def test_exec_of_a_deleted_file_keeps_its_path_marked_deleted(capture, tmp_path: Path):
    victim = _copy_of_true(tmp_path, "victim-23")
    ino, dev = _stat_of(str(victim))
    p = subprocess.run([sys.executable, "-c", DELETED_EXEC, str(victim)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert not victim.exists()
    fd = int(p.stdout)
    execs = _execs(capture, f"/dev/fd/{fd}")
    assert [_identity(e) for e in execs] == [(f"{victim} (deleted)", f"/dev/fd/{fd}", ino, dev, True)]


def test_runc_init_is_the_runc_binary(capture, runc_container):
    runc = os.path.realpath(shutil.which("runc") or "/usr/sbin/runc")
    c = runc_container(name="exe-runc")
    res = c.run(["/bin/true"])
    assert res.returncode == 0, res.stderr
    inits = capture.where(lambda e: e.kind == "process.exec" and e.argv == [runc, "init"])
    # runc starts "runc init" through /proc/self/exe, which re-executes itself through
    # /dev/fd/N (a bind mount of its own binary that it detached): both are the runc binary.
    names = [e.exec_name or "" for e in inits]
    assert names[0] == "/proc/self/exe" and len(names) == 2 and names[1].startswith("/dev/fd/"), names
    assert [(e.exe, e.exe_ino, e.exe_dev) for e in inits] == [(runc, *_stat_of(runc))] * 2
    assert [e.attrs for e in inits] == [{"exe_is_runtime": True}, {"exe_detached": True, "exe_is_runtime": True}]
    # The container's own program: busybox's applet symlink, resolved inside the container's root.
    true = capture.where(lambda e: e.kind == "process.exec" and e.exec_name == "/bin/true")
    assert [(e.exe, e.vpid) for e in true] == [("/bin/busybox", 1)]
    busybox = os.path.join(str(c.rootfs.path), "bin", "busybox")
    assert (true[0].exe_ino, true[0].exe_dev) == _stat_of(busybox)


@pytest.fixture
def secret_file() -> Iterator[Path]:
    """A file under /run/secrets/ (watched by the sensor by default), removed afterwards."""
    made = not os.path.isdir("/run/secrets")
    os.makedirs("/run/secrets", exist_ok=True)
    path = Path(f"/run/secrets/rw-exe-identity-{os.getpid()}")
    path.write_text("s3cr3t-23")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        if made:
            with contextlib.suppress(OSError):
                os.rmdir("/run/secrets")


def test_policy_suggest_never_allows_proc_self_exe(capture, secret_file: Path):
    child = f"open({str(secret_file)!r}).read()"
    code = f"import subprocess; subprocess.run(['/proc/self/exe', '-c', {child!r}], check=True)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    events = capture.settle()
    reexec = [e for e in events if e.kind == "process.exec" and e.exec_name == "/proc/self/exe"]
    assert len(reexec) == 1
    reads = [e for e in events if e.kind == "file.open" and e.file is not None and e.file.path == str(secret_file)]
    assert [(e.pid, e.exe) for e in reads] == [(reexec[0].pid, PYTHON)]
    text = suggest_policy(events, "host-23")
    assert "/proc/self/exe" not in text
    p = load_policy_texts([(text, "s.yaml")]).get("suggested-host-23")
    assert p is not None and p.exec is not None and p.files is not None
    assert PYTHON in p.exec.allow
    assert [(x.path, x.readers) for x in p.files.protect] == [(str(secret_file), (PYTHON,))]
