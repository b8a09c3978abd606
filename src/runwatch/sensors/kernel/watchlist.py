"""The watched paths the kernel filters file events by (an LPM trie of path prefixes).

A prefix ending in ``/`` watches everything below that directory; one without watches
that exact path (and names that extend it, such as ``/etc/shadow-``). Only absolute
paths as passed to open(2) are matched in the kernel.
"""

from __future__ import annotations

import ctypes
import pwd
from dataclasses import dataclass

from runwatch.bpf.libbpf import check_rc, lib
from runwatch.sensors.kernel.layout import PATH_LEN, WatchFlag

RW = WatchFlag.READ | WatchFlag.WRITE


@dataclass(frozen=True)
class Watch:
    """One watched prefix and what to report under it."""

    prefix: str
    flags: int


#: Secrets and tokens (reads and writes), key material, and binary dirs (writes only).
DEFAULT_WATCHES: tuple[Watch, ...] = (
    Watch("/run/secrets/", RW),
    Watch("/var/run/secrets/", RW),
    Watch("/etc/shadow", RW),
    Watch("/etc/gshadow", RW),
    Watch("/etc/sudoers", WatchFlag.WRITE),
    Watch("/etc/passwd", WatchFlag.WRITE),
    Watch("/etc/ssl/private/", RW),
    Watch("/etc/pki/tls/private/", RW),
    Watch("/etc/kubernetes/pki/", RW | WatchFlag.KEYS),
    Watch("/var/lib/kubelet/pki/", RW | WatchFlag.KEYS),
    Watch("/bin/", WatchFlag.WRITE),
    Watch("/sbin/", WatchFlag.WRITE),
    Watch("/usr/bin/", WatchFlag.WRITE),
    Watch("/usr/sbin/", WatchFlag.WRITE),
    Watch("/usr/local/bin/", WatchFlag.WRITE),
    Watch("/usr/local/sbin/", WatchFlag.WRITE),
    Watch("/usr/lib/", WatchFlag.WRITE),
    Watch("/etc/ld.so.preload", WatchFlag.WRITE),
    Watch("/etc/group", WatchFlag.WRITE),
    Watch("/sys/fs/cgroup/", WatchFlag.WRITE),  # release_agent and friends (container escapes)
    # GPU devices (model weights and accelerators: who touches them)
    Watch("/dev/nvidia", RW),
    Watch("/dev/dri/", RW),
    Watch("/dev/kfd", RW),
    # Container runtime sockets (escape by driving the runtime)
    Watch("/var/run/docker.sock", RW),
    Watch("/run/docker.sock", RW),
    Watch("/run/containerd/containerd.sock", RW),
    Watch("/var/run/containerd/containerd.sock", RW),
    Watch("/run/crio/crio.sock", RW),
    Watch("/run/podman/podman.sock", RW),
)

#: Per-home credential directories, expanded for each home directory on the host.
HOME_SECRETS = (".aws/", ".ssh/", ".kube/", ".docker/config.json", ".config/gcloud/", ".azure/")


def home_dirs() -> list[str]:
    """Home directories of the host's users, plus /root."""
    homes = {"/root"}
    for entry in pwd.getpwall():
        if entry.pw_dir.startswith("/home/") or entry.pw_dir == "/root":
            homes.add(entry.pw_dir.rstrip("/"))
    return sorted(homes)


def default_watches(extra: tuple[str, ...] = ()) -> list[Watch]:
    """The built-in list, credential dirs under every home, and ``extra`` prefixes (RW)."""
    out = list(DEFAULT_WATCHES)
    for home in home_dirs():
        out.extend(Watch(f"{home}/{rel}", RW) for rel in HOME_SECRETS)
    out.extend(Watch(p, RW) for p in extra)
    return out


class PathKey(ctypes.Structure):
    """``struct path_key`` (LPM trie key: prefix length in bits, then bytes)."""

    _fields_ = [("prefixlen", ctypes.c_uint32), ("data", ctypes.c_char * PATH_LEN)]


def install(map_fd: int, watches: list[Watch]) -> None:
    """Write the watches into the kernel's ``watched`` trie."""
    for w in watches:
        raw = w.prefix.encode()
        if not raw.startswith(b"/") or len(raw) >= PATH_LEN:
            raise ValueError(f"watched path must be absolute and under {PATH_LEN} bytes: {w.prefix!r}")
        key = PathKey(len(raw) * 8, raw)
        val = ctypes.c_uint32(w.flags)
        check_rc(lib().bpf_map_update_elem(map_fd, ctypes.byref(key), ctypes.byref(val), 0),
                 f"adding watched path {w.prefix}")
