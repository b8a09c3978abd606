"""Bind a host file into a running container's mount namespace, as a runtime hot-plugs a secret.

:func:`bind_into` clones the host file's mount (``open_tree(OPEN_TREE_CLONE)``), enters the
container's mount namespace and attaches the clone at a path there (``move_mount``). The
namespace switch needs a single-threaded process, so it runs in a short child process.
"""

from __future__ import annotations

import subprocess
import sys

_CHILD = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
source, pid, dest = sys.argv[1], int(sys.argv[2]), sys.argv[3]
OPEN_TREE_CLONE, MOVE_MOUNT_F_EMPTY_PATH, AT_FDCWD, CLONE_NEWNS = 1, 4, -100, 0x20000
tree = libc.syscall(428, AT_FDCWD, source.encode(), OPEN_TREE_CLONE | os.O_CLOEXEC)
if tree < 0:
    sys.exit(f"open_tree {source}: {os.strerror(ctypes.get_errno())}")
ns = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
if libc.setns(ns, CLONE_NEWNS) < 0:
    sys.exit(f"setns: {os.strerror(ctypes.get_errno())}")
os.chdir("/")
if libc.syscall(429, tree, b"", AT_FDCWD, dest.encode(), MOVE_MOUNT_F_EMPTY_PATH) < 0:
    sys.exit(f"move_mount to {dest}: {os.strerror(ctypes.get_errno())}")
"""


def bind_into(pid: int, source: str, dest: str) -> None:
    """Bind-mount host path ``source`` at ``dest`` in the mount namespace of ``pid``.

    ``dest`` must exist there (an empty file for a file mount). Raises RuntimeError (one
    line) when the kernel refuses.
    """
    proc = subprocess.run([sys.executable, "-c", _CHILD, source, str(pid), dest],
                          capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}")
