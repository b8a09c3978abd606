"""The watched paths the kernel filters file events by.

Three kinds of entry, all matched in the kernel on the *canonical* path of the opened file
(the dentry and mount walk at the open's exit, as the process's root sees it):

- a prefix (``/etc/``, ``/etc/shadow``), held in an LPM trie: one ending in ``/`` watches
  everything below that directory; one without watches that exact path (and names that
  extend it, such as ``/etc/shadow-``);
- a name pattern, held in a small hash map: ``**/NAME`` (a file of that name anywhere),
  ``**/NAME/`` (anything below a directory of that name) and ``**/*.EXT`` (a file name's
  extension);
- inodes, found at load time: each watched directory and file that exists, and every
  hard-linked file just below a watched directory, so another name of the file or a
  renamed watched directory still lands on the watch.

The list is :data:`DEFAULT_WATCHES` (documented with the rule that needs each entry in
docs/watchlist.md), changed by ``RUNWATCH_WATCH_PATHS`` (entries added, read and write) and
``RUNWATCH_UNWATCH`` (entries removed), both comma separated.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from runwatch.bpf.libbpf import check_rc, lib
from runwatch.sensors.kernel.layout import (
    INO_BITS,
    NAME_KEY,
    PATH_LEN,
    NameKind,
    RwInoBits,
    RwInoKey,
    RwNameFirst,
    RwNameKey,
    WatchFlag,
)

RW = WatchFlag.READ | WatchFlag.WRITE
W = WatchFlag.WRITE
PATTERN = "**/"
"""How a name pattern starts."""

SCAN_LIMIT = 512
"""Entries looked at below each watched directory for hard-linked files at load time."""


@dataclass(frozen=True)
class Watch:
    """One watched prefix or name pattern and what to report under it."""

    prefix: str
    flags: int

    @property
    def is_pattern(self) -> bool:
        """True for ``**/NAME``, ``**/NAME/`` and ``**/*.EXT``."""
        return self.prefix.startswith(PATTERN)

    def name_key(self) -> tuple[NameKind, str]:
        """The pattern as a ``watch_names`` key: its kind and the name or extension."""
        rest = self.prefix[len(PATTERN):]
        if rest.startswith("*."):
            kind, name = NameKind.SUFFIX, rest[2:]
        elif rest.endswith("/"):
            kind, name = NameKind.DIR, rest[:-1]
        else:
            kind, name = NameKind.LEAF, rest
        if not name or "/" in name or "*" in name or len(name.encode()) >= NAME_KEY - 1:
            raise ValueError(f"a name pattern is **/NAME, **/NAME/ or **/*.EXT, under {NAME_KEY - 1} bytes: "
                             f"{self.prefix!r}")
        return kind, name


#: Secrets and tokens (reads and writes), key material, system configuration, libraries and
#: binaries (writes), and what container escapes and persistence touch. docs/watchlist.md
#: names the rule that needs each entry; tests/docs keep the two in step.
DEFAULT_WATCHES: tuple[Watch, ...] = (
    Watch("/run/secrets/", RW),
    Watch("/var/run/secrets/", RW),
    Watch("/etc/shadow", RW),
    Watch("/etc/gshadow", RW),
    Watch("/etc/sudoers", W),
    Watch("/etc/passwd", W),
    Watch("/etc/ssl/private/", RW),
    Watch("/etc/pki/tls/private/", RW),
    Watch("/etc/kubernetes/pki/", RW | WatchFlag.KEYS),
    Watch("/var/lib/kubelet/pki/", RW | WatchFlag.KEYS),
    Watch("/etc/", W),
    Watch("/etc/pam.d/", W),
    Watch("/etc/rc", W),
    Watch("/etc/cron", W),
    Watch("/var/spool/cron/", W),
    Watch("/etc/profile", W),
    Watch("/etc/bash.bashrc", W),
    Watch("/etc/environment", W),
    Watch("/root/", W),
    Watch("/var/log/", W),
    Watch("/bin/", W),
    Watch("/sbin/", W),
    Watch("/usr/bin/", W),
    Watch("/usr/sbin/", W),
    Watch("/usr/local/bin/", W),
    Watch("/usr/local/sbin/", W),
    Watch("/lib/", W),
    Watch("/lib64/", W),
    Watch("/usr/lib/", W),
    Watch("/usr/lib64/", W),
    Watch("/usr/libexec/", W),
    Watch("/etc/ld.so.preload", W),
    Watch("/etc/group", W),
    Watch("/sys/fs/cgroup/", W),
    Watch("/dev/mem", RW),
    Watch("/dev/kmem", RW),
    Watch("/dev/port", RW),
    Watch("/dev/sd", RW),
    Watch("/dev/nvme", RW),
    Watch("/dev/vd", RW),
    Watch("/dev/nvidia", RW),
    Watch("/dev/dri/", RW),
    Watch("/dev/kfd", RW),
    Watch("/var/run/docker.sock", RW),
    Watch("/run/docker.sock", RW),
    Watch("/run/containerd/containerd.sock", RW),
    Watch("/var/run/containerd/containerd.sock", RW),
    Watch("/run/crio/crio.sock", RW),
    Watch("/run/podman/podman.sock", RW),
    Watch("**/.ssh/", RW),
    Watch("**/.aws/", RW),
    Watch("**/.kube/", RW),
    Watch("**/.azure/", RW),
    Watch("**/authorized_keys", W),
    Watch("**/release_agent", RW),
    Watch("**/environ", WatchFlag.READ),
    Watch("**/.bash_history", RW),
    Watch("**/.zsh_history", RW),
    Watch("**/.ash_history", RW),
    Watch("**/.bashrc", W),
    Watch("**/.bash_profile", W),
    Watch("**/.bash_login", W),
    Watch("**/.bash_logout", W),
    Watch("**/.profile", W),
    Watch("**/.zshrc", W),
    Watch("**/.zprofile", W),
    Watch("**/.zshenv", W),
    Watch("**/.zlogin", W),
    Watch("**/*.pem", RW),
    Watch("**/*.key", RW),
)

#: Credential paths expanded under /root and each /home/* at start: those of more than one
#: component (which a name pattern does not express), and the directories the patterns above
#: already cover, so that a *failed* open (no file to resolve, matched by the path as passed,
#: prefixes only) of a user's credentials is still reported.
HOME_SECRETS = (".docker/config.json", ".config/gcloud/", ".aws/", ".ssh/", ".kube/", ".azure/")


def home_dirs() -> list[str]:
    """Home directories of the host's users, plus /root."""
    homes = {"/root"}
    for entry in pwd.getpwall():
        if entry.pw_dir.startswith("/home/") or entry.pw_dir == "/root":
            homes.add(entry.pw_dir.rstrip("/"))
    return sorted(homes)


def _env_list(value: str | None) -> list[str]:
    return [p.strip() for p in (value or "").split(",") if p.strip()]


def default_watches(extra: tuple[str, ...] = (), env: Mapping[str, str] | None = None) -> list[Watch]:
    """The built-in list and home credential files, plus ``extra`` and RUNWATCH_WATCH_PATHS
    entries (read and write), less the RUNWATCH_UNWATCH entries."""
    env = os.environ if env is None else env
    out = list(DEFAULT_WATCHES)
    for home in home_dirs():
        out.extend(Watch(f"{home}/{rel}", RW) for rel in HOME_SECRETS)
    out.extend(Watch(p, RW) for p in (*extra, *_env_list(env.get("RUNWATCH_WATCH_PATHS"))))
    gone = set(_env_list(env.get("RUNWATCH_UNWATCH")))
    return [w for w in out if w.prefix not in gone]


class PathKey(ctypes.Structure):
    """``struct path_key`` (LPM trie key: prefix length in bits, then bytes)."""

    _fields_ = [("prefixlen", ctypes.c_uint32), ("data", ctypes.c_char * PATH_LEN)]


def _update(map_fd: int, key: ctypes.Structure, flags: int, what: str) -> None:
    val = ctypes.c_uint32(flags)
    check_rc(lib().bpf_map_update_elem(map_fd, ctypes.byref(key), ctypes.byref(val), 0), f"adding {what}")


def install(map_fd: int, watches: list[Watch]) -> None:
    """Write the prefix watches into the kernel's ``watched`` trie."""
    for w in watches:
        if w.is_pattern:
            continue
        raw = w.prefix.encode()
        if not raw.startswith(b"/") or len(raw) >= PATH_LEN:
            raise ValueError(f"watched path must be absolute and under {PATH_LEN} bytes: {w.prefix!r}")
        _update(map_fd, PathKey(len(raw) * 8, raw), w.flags, f"watched path {w.prefix}")


def name_first(watches: list[Watch]) -> RwNameFirst:
    """The ``name_first`` bitmaps: the first byte of each watched leaf name, directory name and
    extension, and of each prefix's first component (the byte after its leading ``/``; every
    byte for the prefix ``/`` itself). The kernel skips a lookup whose byte is not set."""
    out = RwNameFirst()
    for w in watches:
        if not w.is_pattern:
            raw = w.prefix.encode()
            for c in (range(256) if len(raw) < 2 else (raw[1],)):
                out.top[c >> 6] |= 1 << (c & 63)
            continue
        kind, name = w.name_key()
        c = name.encode()[0]
        bits = {NameKind.LEAF: out.leaf, NameKind.DIR: out.dir, NameKind.SUFFIX: out.suffix}[kind]
        bits[c >> 6] |= 1 << (c & 63)
    return out


def install_names(map_fd: int, first_fd: int, watches: list[Watch]) -> None:
    """Write the name patterns into the kernel's ``watch_names`` map, and their first bytes
    into ``name_first``."""
    merged: dict[tuple[NameKind, str], int] = {}
    for w in watches:
        if w.is_pattern:
            key = w.name_key()
            merged[key] = merged.get(key, 0) | w.flags
    for (kind, name), flags in merged.items():
        _update(map_fd, RwNameKey(int(kind), name.encode()), flags, f"watched name {name}")
    zero, first = ctypes.c_uint32(0), name_first(watches)
    check_rc(lib().bpf_map_update_elem(first_fd, ctypes.byref(zero), ctypes.byref(first), 0), "setting name_first")


def kernel_dev(st_dev: int) -> int:
    """``st_dev`` as the kernel's ``s_dev`` (major << 20 | minor)."""
    return os.major(st_dev) << 20 | os.minor(st_dev)


def watched_inodes(watches: list[Watch]) -> Iterator[tuple[int, int, int]]:
    """(inode, s_dev, flags) of each watched path that exists, and of the hard-linked files
    just below each watched directory (at most :data:`SCAN_LIMIT` entries looked at per
    directory). Key-only (KEYS) watches are left to their prefix."""
    for w in watches:
        if w.is_pattern or w.flags & WatchFlag.KEYS:
            continue  # a KEYS watch's inode would also match what its suffix test leaves out
        try:
            st = os.stat(w.prefix)
        except OSError:
            continue
        yield st.st_ino, kernel_dev(st.st_dev), w.flags
        if not stat.S_ISDIR(st.st_mode):
            continue
        try:
            with os.scandir(w.prefix) as it:
                for n, entry in enumerate(it):
                    if n >= SCAN_LIMIT:
                        break
                    try:
                        est = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISREG(est.st_mode) and est.st_nlink > 1:
                        yield est.st_ino, kernel_dev(est.st_dev), w.flags
        except OSError:
            continue


def ino_bit(ino: int, dev: int) -> int:
    """The bit of (inode, s_dev) in ``struct rw_ino_bits`` (as ``ino_bit()`` in files.bpf.h)."""
    return (((ino ^ (dev << 32)) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) >> (64 - INO_BITS)


def ino_bits(keys: Iterator[tuple[int, int]] | list[tuple[int, int]]) -> RwInoBits:
    """The ``watch_ino_bits`` value with the bit of each (inode, s_dev) set."""
    out = RwInoBits()
    for ino, dev in keys:
        b = ino_bit(ino, dev)
        out.w[b >> 6] |= 1 << (b & 63)
    return out


def install_inodes(map_fd: int, bits_fd: int, watches: list[Watch]) -> None:
    """Write :func:`watched_inodes` into the kernel's ``watch_inodes`` map, and their bits
    into ``watch_ino_bits`` (OR-ed into what the kernel may have set already)."""
    merged: dict[tuple[int, int], int] = {}
    for ino, dev, flags in watched_inodes(watches):
        merged[(ino, dev)] = merged.get((ino, dev), 0) | flags
    zero, bits = ctypes.c_uint32(0), ino_bits(list(merged))
    old = RwInoBits()
    if lib().bpf_map_lookup_elem(bits_fd, ctypes.byref(zero), ctypes.byref(old)) == 0:
        for i, word in enumerate(old.w):
            bits.w[i] |= word
    check_rc(lib().bpf_map_update_elem(bits_fd, ctypes.byref(zero), ctypes.byref(bits), 0), "setting watch_ino_bits")
    for (ino, dev), flags in merged.items():
        _update(map_fd, RwInoKey(ino, dev, 0), flags, f"watched inode {ino}")
