"""Linux names for bit sets events carry as numbers: capabilities and open(2) flags.

Rendered as Falco renders them, so Falco conditions on the text carry over: capability sets
as space-separated ``CAP_*`` names in bit order (``thread.cap_effective``), open flags as
``|``-joined ``O_*`` names (``evt.arg.flags``), file modes as ``|``-joined ``S_*`` names
(``evt.arg.mode``). x86-64 values; pure functions, cached.
"""

from __future__ import annotations

import functools

#: Every capability of Linux 5.9+ in bit order (index = capability number).
CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)

#: open(2) flag bits (x86-64) and their names; the access mode (low two bits) is named apart.
OPEN_FLAGS: tuple[tuple[int, str], ...] = (
    (0o100, "O_CREAT"), (0o200, "O_EXCL"), (0o400, "O_NOCTTY"), (0o1000, "O_TRUNC"), (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"), (0o10000, "O_DSYNC"), (0o20000, "O_ASYNC"), (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"), (0o200000, "O_DIRECTORY"), (0o400000, "O_NOFOLLOW"), (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"), (0o4000000, "O_SYNC"), (0o10000000, "O_PATH"), (0o20000000, "O_TMPFILE"),
)
_ACCESS = ("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE")

#: File mode bits (chmod, mkdir) and their names, as Falco prints ``evt.arg.mode``.
MODE_BITS: tuple[tuple[int, str], ...] = (
    (0o1, "S_IXOTH"), (0o2, "S_IWOTH"), (0o4, "S_IROTH"), (0o10, "S_IXGRP"), (0o20, "S_IWGRP"), (0o40, "S_IRGRP"),
    (0o100, "S_IXUSR"), (0o200, "S_IWUSR"), (0o400, "S_IRUSR"), (0o1000, "S_ISVTX"), (0o2000, "S_ISGID"),
    (0o4000, "S_ISUID"),
)


@functools.lru_cache(maxsize=1024)
def cap_names(bits: int) -> str:
    """A capability bit set as space-separated names (unknown bits as ``CAP_<n>``)."""
    return " ".join(CAPABILITIES[i] if i < len(CAPABILITIES) else f"CAP_{i}"
                    for i in range(bits.bit_length()) if bits >> i & 1)


@functools.lru_cache(maxsize=1024)
def mode_names(mode: int) -> str:
    """File mode bits as ``|``-joined names, lowest bit first (``S_IXOTH|S_IROTH|S_ISUID``)."""
    return "|".join(name for bit, name in MODE_BITS if mode & bit)


@functools.lru_cache(maxsize=1024)
def open_flag_names(flags: int) -> str:
    """open(2) flags as ``|``-joined names, the access mode first (``O_WRONLY|O_CREAT|O_TRUNC``).

    ``O_SYNC`` includes ``O_DSYNC``'s bit and ``O_TMPFILE`` ``O_DIRECTORY``'s: both names show.
    """
    names = [_ACCESS[flags & 3]]
    names.extend(name for bit, name in OPEN_FLAGS if flags & bit == bit)
    return "|".join(names)
