"""Live sensor: file.open is decided from the opened file, so no other name for a watched
secret escapes it (symlink, hard link, "..", "//", "/./", /proc/self/root, openat2
RESOLVE_IN_ROOT, open_by_handle_at, a renamed directory, io_uring inline, in a worker and into
fixed-file slots)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator

import pytest

from runwatch.events import Event
from runwatch.sensors.kernel.layout import WatchFlag
from runwatch.sensors.kernel.source import KernelSource
from runwatch.sensors.kernel.watchlist import Watch, kernel_dev
from runwatch.testing.tracepins import absent_hooks

pytestmark = pytest.mark.kernel

OPENS = 3
"""Each script opens the secret this many times."""

PRELUDE = textwrap.dedent("""
    import ctypes, os, struct, sys
    libc = ctypes.CDLL(None, use_errno=True)
    d = sys.argv[1]

    def read(path, n=3, dfd=None):
        for _ in range(n):
            fd = os.open(path, os.O_RDONLY, dir_fd=dfd)
            os.close(fd)
""")


@pytest.fixture
def secret_dir() -> Iterator[str]:
    """A directory holding ``sec/key`` (the watched secret) and an unwatched ``other/``."""
    if os.geteuid() != 0:
        pytest.skip("the eBPF sensor needs root")
    with tempfile.TemporaryDirectory(prefix="rw-ident-") as d:
        os.mkdir(f"{d}/sec")
        os.mkdir(f"{d}/other")
        with open(f"{d}/sec/key", "w") as f:
            f.write("s3cret")
        yield d


def run_watched(d: str, body: str, setup: str = "", watches: list[Watch] | None = None) -> tuple[list[Event], int]:
    """Run ``setup`` (before the sensor starts), then ``body`` under the sensor watching
    ``d/sec/`` (or ``watches``); return the child's file events and its pid."""
    if setup:
        subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(setup), d], check=True, timeout=30)
    if watches is None:
        watches = [Watch(f"{d}/sec/", WatchFlag.READ | WatchFlag.WRITE)]
    src = KernelSource(track_pids=[os.getpid()], watches=watches)
    src.start()
    try:
        assert set(src.report.refused) == absent_hooks(), "every sensor program the kernel can hook loads"
        res = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(body) + "\nprint(os.getpid())\n", d],
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        pid = int(res.stdout.split()[-1])
        time.sleep(0.2)
        events: list[Event] = []
        for _ in range(10):
            got = src.poll(0.2) or []
            if not got and events:
                break
            events.extend(got)
    finally:
        src.stop()
    return [e for e in events if e.kind.startswith("file.") and e.pid == pid], pid


def opens_of(events: list[Event]) -> list[tuple[str, int, str | None]]:
    return [(e.kind, e.pid, e.file.path if e.file else None) for e in events]


def assert_reads(events: list[Event], pid: int, path: str, ino_of: str) -> None:
    assert [(e.kind, e.pid, e.file.path if e.file else None, e.file.intent if e.file else None)
            for e in events] == [("file.open", pid, path, "read")] * OPENS
    st = os.stat(ino_of)
    assert {(e.attrs["file_ino"], e.attrs["file_dev"]) for e in events} == {(st.st_ino, kernel_dev(st.st_dev))}


def test_plain_open_reports_the_path_inode_and_device(secret_dir):
    events, pid = run_watched(secret_dir, "read(f'{d}/sec/key')")
    assert_reads(events, pid, f"{secret_dir}/sec/key", f"{secret_dir}/sec/key")


def test_symlink_to_the_secret(secret_dir):
    os.symlink(f"{secret_dir}/sec/key", f"{secret_dir}/other/link")
    events, pid = run_watched(secret_dir, "read(f'{d}/other/link')")
    assert_reads(events, pid, f"{secret_dir}/sec/key", f"{secret_dir}/sec/key")


def test_hard_link_to_the_secret(secret_dir):
    os.link(f"{secret_dir}/sec/key", f"{secret_dir}/other/hard")
    events, pid = run_watched(secret_dir, "read(f'{d}/other/hard')")
    assert_reads(events, pid, f"{secret_dir}/other/hard", f"{secret_dir}/sec/key")


@pytest.mark.parametrize("spelling", ["/other/../sec/key", "//sec//key", "/./sec/./key"])
def test_dot_dot_double_slash_and_dot_spellings(secret_dir, spelling):
    events, pid = run_watched(secret_dir, f"read(d + {spelling!r})")
    assert_reads(events, pid, f"{secret_dir}/sec/key", f"{secret_dir}/sec/key")


def test_proc_self_root(secret_dir):
    events, pid = run_watched(secret_dir, "read('/proc/self/root' + d + '/sec/key')")
    assert_reads(events, pid, f"{secret_dir}/sec/key", f"{secret_dir}/sec/key")


def test_openat2_resolve_in_root(secret_dir):
    body = """
        RESOLVE_IN_ROOT = 0x10
        root = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        how = struct.pack("QQQ", os.O_RDONLY, 0, RESOLVE_IN_ROOT)
        for _ in range(3):
            fd = libc.syscall(437, root, b"/sec/key", how, len(how))
            assert fd >= 0, ctypes.get_errno()
            os.close(fd)
    """
    events, pid = run_watched(secret_dir, body)
    assert_reads(events, pid, f"{secret_dir}/sec/key", f"{secret_dir}/sec/key")


def test_open_by_handle_at(secret_dir):
    body = """
        buf = ctypes.create_string_buffer(8 + 128)
        struct.pack_into("I", buf, 0, 128)
        mount_id = ctypes.c_int()
        rc = libc.syscall(303, -100, (d + "/sec/key").encode(), buf, ctypes.byref(mount_id), 0)
        assert rc == 0, ctypes.get_errno()
        mfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        for _ in range(3):
            fd = libc.syscall(304, mfd, buf, os.O_RDONLY)
            assert fd >= 0, ctypes.get_errno()
            os.close(fd)
    """
    events, pid = run_watched(secret_dir, body)
    assert_reads(events, pid, f"{secret_dir}/sec/key", f"{secret_dir}/sec/key")


def test_read_after_renaming_the_secrets_directory(secret_dir):
    body = """
        os.rename(d + "/sec", d + "/moved")
        read(d + "/moved/key")
    """
    events, pid = run_watched(secret_dir, body)
    renames = [e for e in events if e.kind == "file.rename"]
    assert [(e.pid, e.file.path, e.file.new_path) for e in renames if e.file] == [
        (pid, f"{secret_dir}/sec", f"{secret_dir}/moved")]
    assert_reads([e for e in events if e.kind == "file.open"], pid, f"{secret_dir}/moved/key",
                 f"{secret_dir}/moved/key")


def test_name_directory_and_suffix_patterns_match_anywhere(secret_dir):
    d = secret_dir
    for sub in ("a/b", ".rwdir/c", "x"):
        os.makedirs(f"{d}/{sub}")
    for f in ("a/b/rw_leaf_7", ".rwdir/c/f", "x/k.rwx", "x/k.rwy", "x/rw_leaf_7.not", "x/.rwdir"):
        open(f"{d}/{f}", "w").close()
    rw = WatchFlag.READ | WatchFlag.WRITE
    body = "for f in ('a/b/rw_leaf_7', '.rwdir/c/f', 'x/k.rwx', 'x/k.rwy', 'x/rw_leaf_7.not', 'x/.rwdir'):\n" \
           "    read(d + '/' + f, n=1)\n"
    events, pid = run_watched(d, body, watches=[Watch("**/rw_leaf_7", rw), Watch("**/.rwdir/", rw),
                                                Watch("**/*.rwx", rw)])
    assert [(e.kind, e.pid, e.file.path if e.file else None) for e in events] == [
        ("file.open", pid, f"{d}/a/b/rw_leaf_7"), ("file.open", pid, f"{d}/.rwdir/c/f"),
        ("file.open", pid, f"{d}/x/k.rwx")]


def test_an_unwatched_file_is_not_reported(secret_dir):
    events, _pid = run_watched(secret_dir, "open(d + '/other/x', 'w').close()\nread(d + '/other/x')")
    assert events == []


def test_every_spelling_of_a_container_secret_is_its_canonical_path(capture, runc_container):
    c = runc_container(name="identity", secrets={"token": b"x"})
    script = textwrap.dedent("""
        import ctypes, os, struct
        libc = ctypes.CDLL(None, use_errno=True)
        for p in ("/run/secrets/../secrets/token", "//run//secrets//token", "/run/./secrets/./token",
                  "/proc/self/root/run/secrets/token"):
            os.close(os.open(p, os.O_RDONLY))
        root = os.open("/run", os.O_RDONLY | os.O_DIRECTORY)
        how = struct.pack("QQQ", os.O_RDONLY, 0, 0x10)  # RESOLVE_IN_ROOT
        fd = libc.syscall(437, root, b"/secrets/token", how, len(how))
        assert fd >= 0, ctypes.get_errno()
        os.close(fd)
    """)
    res = c.run(["python3", "-c", script])
    assert res.returncode == 0, res.stderr
    opens = capture.where(lambda e: e.kind == "file.open" and e.container is not None and e.container.id == c.id)
    assert [(e.file.path, e.file.intent) for e in opens] == [("/run/secrets/token", "read")] * 5
    assert len({e.pid for e in opens}) == 1


URING = """
    from runwatch.testing.uring import IOSQE_ASYNC, FILE_INDEX_ALLOC, Ring
    ring = Ring()
"""


@pytest.mark.parametrize("sqe_flags", [0, 16], ids=["inline", "io-wq"])
def test_io_uring_openat_inline_and_in_a_worker(secret_dir, sqe_flags):
    body = URING + f"""
    for _ in range(3):
        fd = ring.openat(d + "/other/../sec/key", sqe_flags={sqe_flags})
        assert fd >= 0, fd
        os.close(fd)
    """
    events, pid = run_watched(secret_dir, body)
    assert_reads(events, pid, f"{secret_dir}/sec/key", f"{secret_dir}/sec/key")


def test_io_uring_openat_into_fixed_file_slots(secret_dir):
    body = URING + """
    ring.register_sparse_files(4)
    assert ring.openat(d + "/sec/key", file_index=3) == 0          # slot 2, named
    assert ring.openat(d + "/sec/key", file_index=FILE_INDEX_ALLOC) >= 0  # a free slot, chosen
    assert ring.openat(d + "//sec/key", file_index=2, sqe_flags=IOSQE_ASYNC) == 0
    """
    events, pid = run_watched(secret_dir, body)
    assert_reads(events, pid, f"{secret_dir}/sec/key", f"{secret_dir}/sec/key")


def test_io_uring_open_of_an_unwatched_file_is_not_reported(secret_dir):
    with open(f"{secret_dir}/other/plain", "w") as f:
        f.write("x")
    body = URING + """
    for _ in range(5):
        os.close(ring.openat(d + "/other/plain"))
    """
    events, _ = run_watched(secret_dir, body)
    assert events == []
