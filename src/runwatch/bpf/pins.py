"""BPF links pinned under bpffs, so enforcement that fails closed outlives this process.

A link held only by a process's file descriptors is detached when the process dies. One
pinned at a path in bpffs stays attached until the path is removed. :class:`PinDir` is this
process's directory, ``/sys/fs/bpf/runwatch/<pid>-<start ticks>/`` (bpffs is mounted at
``/sys/fs/bpf`` when it is not), holding one entry per pinned link:

* ``<program>`` for a host-wide link (the exec and syscall hooks);
* ``cg=<cgroup path, %-quoted>=<program>`` for a link attached to one cgroup.

A directory whose owner is gone (no process with that pid and start time) is *stale*: the
enforcement of a crashed runwatch. :func:`stale_dirs` finds them; :meth:`StalePins.release`
removes their pins, which detaches the links.

Thread safety: :class:`PinDir` is not thread safe (its owner serialises calls).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote

from runwatch.bpf.libbpf import LibbpfError, lib
from runwatch.host import procfs
from runwatch.host.mounts import read_mountinfo

BPFFS = Path("/sys/fs/bpf")
ROOT = BPFFS / "runwatch"
_NAME_MAX = 255

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.mount.restype = ctypes.c_int


def ensure_bpffs(path: Path = BPFFS) -> None:
    """Mount bpffs at ``path`` unless one is mounted there; raises OSError (one line) when it
    cannot be."""
    if any(m.fstype == "bpf" and m.point == str(path) for m in read_mountinfo()):
        return
    if _libc.mount(b"bpf", str(path).encode(), b"bpf", 0, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot mount bpffs at {path}: {os.strerror(err)}")


def owner_name(pid: int) -> str | None:
    """``<pid>-<start ticks>``: names a process for as long as it lives (None: it is gone)."""
    ticks = procfs.start_ticks(pid)
    return None if ticks is None else f"{pid}-{ticks}"


def cgroup_pin_name(cgroup: str, program: str) -> str | None:
    """The entry name of ``program``'s link on cgroup ``cgroup`` (None: the path is too long)."""
    name = f"cg={quote(cgroup, safe='')}={program}"
    return name if len(name) <= _NAME_MAX else None


class PinDir:
    """This process's pinned links (see the module docstring)."""

    def __init__(self, root: Path = ROOT) -> None:
        self.root = root
        self.dir = root / (owner_name(os.getpid()) or str(os.getpid()))
        self._pinned: dict[int, Path] = {}

    def pin(self, link: int, name: str) -> None:
        """Pin ``link`` (a ``struct bpf_link *``) as ``name``; already pinned links are left as
        they are. Raises LibbpfError (one line) when bpffs or the pin is refused."""
        if link in self._pinned:
            return
        try:
            if self.root.parent == BPFFS:
                ensure_bpffs()
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LibbpfError(exc.errno or 1, str(exc)) from None
        path = self.dir / name
        rc = lib().bpf_link__pin(link, str(path).encode())
        if rc < 0:
            raise LibbpfError(-rc, f"pinning a link at {path}: {os.strerror(-rc)}")
        self._pinned[link] = path

    def unpin(self, link: int) -> None:
        """Remove ``link``'s pin (nothing when it has none); the link then lives as long as its fd."""
        path = self._pinned.pop(link, None)
        if path is not None:
            lib().bpf_link__unpin(link)
            with contextlib.suppress(OSError):
                path.unlink()

    def pinned(self, link: int) -> bool:
        """Whether ``link`` is pinned by this directory."""
        return link in self._pinned

    def clear(self) -> None:
        """Unpin every link and remove the directory."""
        for link in list(self._pinned):
            self.unpin(link)
        with contextlib.suppress(OSError):
            self.dir.rmdir()


@dataclass
class StalePins:
    """The pin directory of a runwatch that is gone, with what it pinned."""

    dir: Path
    pid: int
    names: list[str] = field(default_factory=list)

    def cgroups(self) -> list[str]:
        """The cgroups (v2 paths) its cgroup links are attached to, sorted, each once."""
        out = {unquote(n.split("=", 2)[1]) for n in self.names if n.startswith("cg=") and n.count("=") >= 2}
        return sorted(out)

    def release(self) -> None:
        """Remove every pin (each link is detached unless something else holds it) and the dir."""
        for name in self.names:
            with contextlib.suppress(OSError):
                (self.dir / name).unlink()
        with contextlib.suppress(OSError):
            self.dir.rmdir()


def stale_dirs(root: Path = ROOT) -> list[StalePins]:
    """Pin directories under ``root`` whose owner process is gone, oldest pid first."""
    out: list[StalePins] = []
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return out
    for d in entries:
        pid_text, _, ticks = d.name.partition("-")
        if not pid_text.isdigit() or owner_name(int(pid_text)) == d.name:
            continue
        if not ticks and Path(f"/proc/{pid_text}").exists():
            continue
        with contextlib.suppress(OSError):
            out.append(StalePins(d, int(pid_text), sorted(p.name for p in d.iterdir())))
    return sorted(out, key=lambda s: s.pid)
