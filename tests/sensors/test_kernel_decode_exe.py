"""The kernel decoder's exec record: the executed file's path walk, its name as given, inode and device."""

from __future__ import annotations

import ctypes
import os

import pytest

from runwatch.sensors.kernel import layout as L
from runwatch.sensors.kernel.decode import Decoder, user_dev

F = L.ExeFlag


def _record(filename: bytes, leaf_first: list[bytes], flags: int = 0, *, ino: int = 4711, dev: int = 0) -> bytes:
    rec = L.RwExec()
    rec.h.kind, rec.h.size, rec.h.pid = int(L.Kind.EXEC), ctypes.sizeof(L.RwExec), 23
    rec.ino, rec.dev, rec.filename = ino, dev, filename
    walk = b"".join(p + b"\0" for p in leaf_first)
    ctypes.memmove(ctypes.addressof(rec) + L.RwExec.exe.offset, walk, min(len(walk), L.EXE_LEN))
    rec.exe_len, rec.exe_flags = min(len(walk), L.EXE_LEN), flags
    args = b"x\0"
    ctypes.memmove(ctypes.addressof(rec) + L.RwExec.args.offset, args, len(args))
    rec.args_len = rec.args_full = len(args)
    return bytes(rec)


@pytest.mark.parametrize(("filename", "parts", "flags", "exe", "deleted", "attrs"), [
    (b"/bin/sh", [b"dash", b"bin", b"usr"], 0, "/usr/bin/dash", None, None),
    (b"./x", [b"x", b"work", b"tmp"], 0, "/tmp/work/x", None, None),
    (b"/dev/fd/3", [b"memfd:payload-23"], F.UNLINKED | F.DETACHED, "memfd:payload-23", True, None),
    (b"/dev/fd/3", [b"victim", b"tmp"], F.UNLINKED, "/tmp/victim (deleted)", True, None),
    (b"/dev/fd/6", [b"runc", b"sbin", b"usr"], F.DETACHED, "/usr/sbin/runc", None, {"exe_detached": True}),
    (b"/opt/deep", [b"leaf", b"mid", b"cut-at-the-to"], F.TRUNCATED, "/.../mid/leaf", None,
     {"exe_truncated": True}),
])
def test_exec_record_decodes_the_executed_file(filename: bytes, parts: list[bytes], flags: int, exe: str,
                                               deleted: bool | None, attrs: dict[str, bool] | None) -> None:
    e = Decoder(clock_offset=0).decode(_record(filename, parts, flags, dev=(254 << 20) | 3))
    assert (e.kind, e.exe, e.exec_name, e.exe_ino, e.exe_dev, e.exe_deleted, e.attrs) == (
        "process.exec", exe, filename.decode(), 4711, os.makedev(254, 3), deleted, attrs)


def test_a_file_at_the_root_of_the_walk_is_slash() -> None:
    assert Decoder(clock_offset=0).decode(_record(b"/init", [])).exe == "/"


def test_user_dev_inverts_the_kernel_encoding() -> None:
    for major, minor in ((0, 1), (8, 17), (254, 0), (259, 300000)):
        assert user_dev((major << 20) | minor) == os.makedev(major, minor)
    st = os.stat("/usr/bin/true")
    assert user_dev((os.major(st.st_dev) << 20) | os.minor(st.st_dev)) == st.st_dev
