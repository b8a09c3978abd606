"""The runtime-init mark follows the executed file's identity, not its names."""

from __future__ import annotations

import os
import shutil

import pytest

from runwatch.enrich.runtime import RUNTIME_ATTR, RuntimeTracker, runtime_binaries
from runwatch.events import Event

RUNC = (2049, 777)


def _ev(kind: str, pid: int, **kw: object) -> Event:
    return Event(id=f"{kind}-{pid}", time=1, kind=kind, pid=pid, **kw)  # type: ignore[arg-type]


def _marked(e: Event) -> bool:
    return bool(e.attrs and e.attrs.get(RUNTIME_ATTR))


def test_runc_chain_is_marked_until_the_entrypoint_exec() -> None:
    t = RuntimeTracker(binaries=frozenset({RUNC}), proc_root="/nonexistent")
    run = _ev("process.exec", 10, exe="/usr/sbin/runc", exe_dev=RUNC[0], exe_ino=RUNC[1], argv=["runc", "run"])
    reexec = _ev("process.exec", 10, exe="/memfd:runc_cloned:/proc/self/exe (deleted)", exe_dev=5, exe_ino=9)
    fork = _ev("process.fork", 10, child_pid=11)
    init = _ev("process.exec", 11, exe="/dev/fd/6", exe_dev=5, exe_ino=9, argv=["/usr/sbin/runc", "init"])
    clone = _ev("process.fork", 11, child_pid=12)
    unshare = _ev("priv.unshare", 12, exe="/dev/fd/6", comm="runc:[1:CHILD]")
    entry = _ev("process.exec", 12, exe="/usr/bin/python3", exe_dev=2049, exe_ino=5)
    after = _ev("priv.unshare", 12, exe="/usr/bin/python3")
    for e in (run, reexec, fork, init, clone, unshare, entry, after):
        t.observe(e)
    assert [_marked(e) for e in (run, reexec, fork, init, clone, unshare, entry, after)] == [
        True, True, True, True, True, True, False, False]


def test_names_alone_are_not_the_runtime() -> None:
    t = RuntimeTracker(binaries=frozenset({RUNC}), proc_root="/nonexistent")
    fake = _ev("process.exec", 20, exe="/usr/sbin/runc", exe_dev=64, exe_ino=777, argv=["init"], comm="runc:[2:INIT]")
    memfd = _ev("process.exec", 21, exe="/dev/fd/3", exe_dev=5, exe_ino=9, argv=["/usr/sbin/runc", "init"])
    priv = _ev("priv.setns", 21, comm="runc:[2:INIT]", argv=["init"])
    for e in (fake, memfd, priv):
        t.observe(e)
    assert not any(_marked(e) for e in (fake, memfd, priv))


def test_exit_forgets_and_a_reused_pid_is_not_the_runtime() -> None:
    t = RuntimeTracker(binaries=frozenset({RUNC}), proc_root="/nonexistent")
    t.observe(_ev("process.exec", 30, exe="/usr/sbin/runc", exe_dev=RUNC[0], exe_ino=RUNC[1]))
    t.observe(_ev("process.exit", 30))
    later = _ev("priv.unshare", 30)
    t.observe(later)
    assert not _marked(later)


@pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc installed")
def test_the_installed_runc_is_found_by_inode() -> None:
    st = os.stat(shutil.which("runc") or "")
    assert (st.st_dev, st.st_ino) in runtime_binaries()
