"""A small, cached container root filesystem built from Debian's static busybox.

The rootfs holds busybox (``/bin/busybox`` plus one symlink per applet in ``/bin``), a
minimal ``/etc`` and empty mount points. Containers built on it bind the host's ``/usr``
read-only, and the rootfs carries ``lib -> usr/lib`` and ``lib64 -> usr/lib64`` so the host's
dynamically linked binaries (``/usr/bin/true``, the host's Python) run inside.

Note that busybox ``sh`` runs applets such as ``true`` or ``ls`` in-process without an
``execve``; call a host binary by path (``/usr/bin/true``) when a real exec is wanted.

Building is idempotent: a stamp file records what the tree was built from, and a matching
stamp means the existing tree is returned untouched. Builds take an exclusive ``flock`` on a
lock file beside the tree, so concurrent test sessions never see a half-built rootfs; a
rebuild assembles a new tree beside the old one and swaps it in by rename.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ROOTFS_DIR = Path("/var/lib/runwatch/rootfs/base")
"""Where the rootfs is cached unless told otherwise (env ``RUNWATCH_ROOTFS_DIR`` overrides)."""

DEFAULT_BUSYBOX = Path("/bin/busybox")
UNPRIVILEGED_UID = 1000
"""uid and gid of the unprivileged ``user`` account in the rootfs ``/etc/passwd``."""

_FORMAT_VERSION = 1
_STAMP_NAME = ".runwatch-rootfs.json"
_MOUNT_POINTS = ("proc", "dev", "sys", "tmp", "run", "usr", "etc", "root", "home/user", "var/tmp", "mnt")
_SYMLINKS = {"lib": "usr/lib", "lib64": "usr/lib64", "sbin": "bin"}


class RootfsError(RuntimeError):
    """The rootfs could not be built; the message is one line and says why."""


@dataclass(frozen=True)
class Rootfs:
    """A built rootfs and the host paths containers on it bind read-only at the same path.

    ``host_binds`` lists host directories (``/usr``, the Python prefix, the project's ``src``
    and, when running from a virtual environment, its prefix) that a container mounts
    read-only at the identical path, so host binaries and ``import runwatch`` work inside.
    """

    path: Path
    python_prefix: Path
    src_dir: Path | None = None
    venv_prefix: Path | None = None
    host_binds: tuple[Path, ...] = field(default=())

    @property
    def python(self) -> Path:
        """The host Python interpreter as seen inside the container (same path as on the host)."""
        return self.python_prefix / "bin" / "python3"

    def default_path_env(self) -> str:
        """A ``PATH`` value that finds the host Python first, then host ``/usr/bin``, then busybox."""
        return f"{self.python_prefix}/bin:/usr/local/bin:/usr/bin:/bin"


def project_src_dir() -> Path:
    """The directory that holds the ``runwatch`` package (the project's ``src`` in a checkout)."""
    return Path(__file__).resolve().parent.parent.parent


def default_rootfs_dir() -> Path:
    """The rootfs cache directory: ``$RUNWATCH_ROOTFS_DIR`` if set, else :data:`DEFAULT_ROOTFS_DIR`."""
    override = os.environ.get("RUNWATCH_ROOTFS_DIR")
    return Path(override) if override else DEFAULT_ROOTFS_DIR


def build_rootfs(
    dest: Path | None = None,
    *,
    busybox: Path = DEFAULT_BUSYBOX,
    python_prefix: Path | None = None,
    src_dir: Path | None = None,
    bind_venv: bool = True,
) -> Rootfs:
    """Build the busybox rootfs at ``dest`` (cached) and describe its host binds.

    ``python_prefix`` defaults to ``sys.base_prefix``; ``src_dir`` to :func:`project_src_dir`.
    With ``bind_venv`` and a running virtual environment, its prefix is bound too so the
    project's dependencies import inside. Raises :class:`RootfsError` on any failure.
    """
    dest = Path(dest) if dest is not None else default_rootfs_dir()
    busybox = Path(busybox)
    prefix = Path(python_prefix) if python_prefix is not None else Path(sys.base_prefix)
    src = Path(src_dir) if src_dir is not None else project_src_dir()
    venv = Path(sys.prefix) if bind_venv and sys.prefix != sys.base_prefix else None
    for label, needed in (("busybox", busybox), ("python prefix", prefix), ("src dir", src)):
        if not needed.exists():
            raise RootfsError(f"cannot build rootfs: {label} {needed} does not exist")
    if not os.access(busybox, os.X_OK):
        raise RootfsError(f"cannot build rootfs: {busybox} is not executable (install busybox-static)")

    wanted = _stamp_for(busybox)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _locked(dest.parent / f".{dest.name}.lock"):
            if _read_stamp(dest) != wanted:
                _rebuild(dest, busybox, wanted)
    except RootfsError:
        raise
    except (OSError, subprocess.SubprocessError) as exc:
        raise RootfsError(f"cannot build rootfs at {dest}: {exc}") from exc

    binds: list[Path] = []
    for candidate in (Path("/usr"), prefix, src, venv):
        if candidate is not None and candidate not in binds:
            binds.append(candidate)
    return Rootfs(path=dest, python_prefix=prefix, src_dir=src, venv_prefix=venv, host_binds=tuple(binds))


def _stamp_for(busybox: Path) -> dict[str, object]:
    """What a tree built now would be built from; a mismatch means rebuild."""
    st = busybox.stat()
    return {
        "format": _FORMAT_VERSION,
        "busybox": str(busybox),
        "busybox_size": st.st_size,
        "busybox_mtime_ns": st.st_mtime_ns,
        "mount_points": list(_MOUNT_POINTS),
        "symlinks": dict(_SYMLINKS),
    }


def _read_stamp(dest: Path) -> dict[str, object] | None:
    try:
        loaded = json.loads((dest / _STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``lock_path`` for the duration (blocks other builders)."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _rebuild(dest: Path, busybox: Path, stamp: dict[str, object]) -> None:
    """Assemble a fresh tree beside ``dest`` and swap it in; the caller holds the lock."""
    staging = dest.parent / f".{dest.name}.staging-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(mode=0o755)
    try:
        _populate(staging, busybox)
        (staging / _STAMP_NAME).write_text(json.dumps(stamp, sort_keys=True) + "\n")
        if dest.exists() or dest.is_symlink():
            old = dest.parent / f".{dest.name}.old-{os.getpid()}"
            dest.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        staging.rename(dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _populate(root: Path, busybox: Path) -> None:
    """Write busybox, its applet links, mount points, symlinks and /etc under ``root``."""
    for rel in _MOUNT_POINTS:
        (root / rel).mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    os.chmod(root / "var/tmp", 0o1777)
    os.chmod(root / "root", 0o700)
    os.chown(root / "home/user", UNPRIVILEGED_UID, UNPRIVILEGED_UID)
    for name, target in _SYMLINKS.items():
        (root / name).symlink_to(target)

    bindir = root / "bin"
    bindir.mkdir(mode=0o755)
    shutil.copy2(busybox, bindir / "busybox")
    for applet in _applets(busybox):
        link = bindir / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")

    etc = root / "etc"
    files = {
        "passwd": (
            "root:x:0:0:root:/root:/bin/sh\n"
            f"user:x:{UNPRIVILEGED_UID}:{UNPRIVILEGED_UID}:user:/home/user:/bin/sh\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
        ),
        "group": f"root:x:0:\nuser:x:{UNPRIVILEGED_UID}:\nnogroup:x:65534:\n",
        "hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        "resolv.conf": "nameserver 127.0.0.1\n",
        "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
        "hostname": "runwatch\n",
    }
    for name, text in files.items():
        (etc / name).write_text(text)
        os.chmod(etc / name, 0o644)


def _applets(busybox: Path) -> list[str]:
    """Names of the applets ``busybox`` was built with."""
    proc = subprocess.run([str(busybox), "--list"], capture_output=True, timeout=10, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().replace("\n", " ")
        raise RootfsError(f"cannot build rootfs: '{busybox} --list' failed with rc {proc.returncode}: {err}")
    names = [line.strip() for line in proc.stdout.decode().splitlines()]
    return [n for n in names if n and "/" not in n]
