"""Python mirror of the records in ``bpf/runwatch.h``.

The ctypes structures here are the single Python statement of the kernel layout; the
decoder derives its ``struct`` formats from them (:func:`runwatch.bpf.layout.struct_of`),
and the layout test checks them field by field against the BTF of the built
``runwatch.bpf.o``. Change both sides together.
"""

from __future__ import annotations

import ctypes
from enum import IntEnum

COMM_LEN = 16
PATH_LEN = 256
ARGS_LEN = 512
CWD_DEPTH = 10
CWD_PART = 32
DNS_LEN = 256
NAME_LEN = 64
MAX_KIND = 64
EXE_LEN = 512
EXE_DEPTH = 32
NAME_MAX = 256
NAME_KEY = 32
ENV_LEN = 1024
ENV_NAME = 32
INO_BITS = 16

u8, u16, u32, u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64
s32, s64 = ctypes.c_int32, ctypes.c_int64


class Kind(IntEnum):
    """``enum rw_kind``: the record type in ``rw_hdr.kind``."""

    EXEC = 1
    FORK = 2
    EXIT = 3
    CONNECT = 4
    ACCEPT = 5
    LISTEN = 6
    BIND = 7
    DNS = 8
    OPEN = 9
    UNLINK = 10
    RENAME = 11
    MEMFD = 12
    SETUID = 13
    SETGID = 14
    CAPSET = 15
    MOUNT = 16
    PTRACE = 17
    UNSHARE = 18
    SETNS = 19
    CGROUP_MKDIR = 20
    LINK = 21
    SYMLINK = 22
    CHMOD = 23
    MKDIR = 24
    RMDIR = 25
    SOCKET = 26
    REDIRECT = 27
    MODULE_LOAD = 28
    BPF_LOAD = 29
    USERFAULTFD = 30
    IO_URING_SETUP = 31
    EXEC_FAILED = 32
    SEND = 33
    DNS_ANSWER = 34
    EXEC_ENV = 35


class ExeFlag(IntEnum):
    """``enum rw_exe_flags``: what the walk of the executed file's path found."""

    UNLINKED = 1
    DETACHED = 2
    TRUNCATED = 4
    UPPER = 8


class WatchFlag(IntEnum):
    """``enum rw_watch_flags``: values of the watched-path trie."""

    READ = 1
    WRITE = 2
    KEYS = 4


class RwHdr(ctypes.Structure):
    """``struct rw_hdr``."""

    _fields_ = [
        ("kind", u32), ("size", u32), ("ts", u64), ("cgid", u64),
        ("pid", u32), ("tid", u32), ("ppid", u32), ("uid", u32), ("euid", u32), ("gid", u32),
        ("pidns", u32), ("vpid", u32), ("vtid", u32), ("hpad", u32), ("comm", ctypes.c_char * COMM_LEN),
    ]


class RwExec(ctypes.Structure):
    """``struct rw_exec``."""

    _fields_ = [
        ("h", RwHdr), ("ino", u64), ("dev", u32), ("args_len", u32), ("args_full", u32),
        ("cwd_depth", u32), ("filename", ctypes.c_char * PATH_LEN), ("args", ctypes.c_char * ARGS_LEN),
        ("cwd", (ctypes.c_char * CWD_PART) * CWD_DEPTH), ("exe_len", u32), ("exe_flags", u32),
        ("exe", ctypes.c_char * EXE_LEN), ("tty", u32), ("loginuid", u32), ("cap_effective", u64),
        ("cap_permitted", u64),
    ]


class RwFork(ctypes.Structure):
    """``struct rw_fork``."""

    _fields_ = [("h", RwHdr), ("child_pid", u32), ("child_vpid", u32)]


class RwExit(ctypes.Structure):
    """``struct rw_exit``."""

    _fields_ = [("h", RwHdr), ("code", u32), ("pad", u32)]


class RwNet(ctypes.Structure):
    """``struct rw_net``."""

    _fields_ = [
        ("h", RwHdr), ("result", s32), ("family", u16), ("proto", u16), ("sport", u16), ("dport", u16),
        ("pad", u32), ("saddr", u8 * 16), ("daddr", u8 * 16),
    ]


class RwDns(ctypes.Structure):
    """``struct rw_dns``."""

    _fields_ = [
        ("h", RwHdr), ("family", u16), ("dport", u16), ("len", u32), ("daddr", u8 * 16),
        ("payload", u8 * DNS_LEN),
    ]


class RwFile(ctypes.Structure):
    """``struct rw_file``."""

    _fields_ = [
        ("h", RwHdr), ("flags", u32), ("pad", u32), ("path", ctypes.c_char * PATH_LEN),
        ("path2", ctypes.c_char * PATH_LEN), ("ino", u64), ("dev", u32), ("fattrs", u32),
        ("result", s32), ("pad2", u32),
    ]


class NameKind(IntEnum):
    """``enum rw_name_kind``: what a watched name matches (``rw_name_key.kind``)."""

    LEAF = 1
    DIR = 2
    SUFFIX = 3


class FileAttr(IntEnum):
    """``enum rw_file_attrs``: what the walk of an opened file's path found."""

    TRUNCATED = 1


class RwNameKey(ctypes.Structure):
    """``struct rw_name_key``: key of the ``watch_names`` map."""

    _fields_ = [("kind", u8), ("name", ctypes.c_char * (NAME_KEY - 1))]


class RwNameFirst(ctypes.Structure):
    """``struct rw_name_first``: first bytes of watched leaf names, directory names, extensions
    and prefixes' first components, a bit each."""

    _fields_ = [("leaf", u64 * 4), ("dir", u64 * 4), ("suffix", u64 * 4), ("top", u64 * 4)]


class RwInoKey(ctypes.Structure):
    """``struct rw_ino_key``: key of the ``watch_inodes`` map."""

    _fields_ = [("ino", u64), ("dev", u32), ("pad", u32)]


class RwInoBits(ctypes.Structure):
    """``struct rw_ino_bits``: value of the ``watch_ino_bits`` map, a bit per ``watch_inodes`` key."""

    _fields_ = [("w", u64 * (1 << (INO_BITS - 6)))]


class RwPriv(ctypes.Structure):
    """``struct rw_priv``."""

    _fields_ = [
        ("h", RwHdr), ("op", u32), ("pad", u32), ("arg", s64 * 3), ("cap_eff", u32 * 2),
        ("cap_prm", u32 * 2), ("cap_inh", u32 * 2), ("path", ctypes.c_char * PATH_LEN),
        ("path2", ctypes.c_char * NAME_LEN), ("fstype", ctypes.c_char * COMM_LEN),
    ]


class RwCgroup(ctypes.Structure):
    """``struct rw_cgroup``."""

    _fields_ = [("h", RwHdr), ("id", u64), ("level", u32), ("pad", u32), ("path", ctypes.c_char * PATH_LEN)]


class RwSock(ctypes.Structure):
    """``struct rw_sock``."""

    _fields_ = [
        ("h", RwHdr), ("fd", s32), ("oldfd", s32), ("family", u16), ("type", u16), ("proto", u16),
        ("dport", u16), ("daddr", u8 * 16),
    ]


class RwEnv(ctypes.Structure):
    """``struct rw_env``."""

    _fields_ = [("h", RwHdr), ("count", u32), ("len", u32), ("truncated", u32), ("pad", u32),
                ("data", ctypes.c_char * ENV_LEN)]


class RwConfig(ctypes.Structure):
    """``struct rw_config``: the read-only globals set before load."""

    _fields_ = [("filter_tracked", u32), ("self_tgid", u32), ("wakeup_bytes", u32), ("pad", u32)]


#: BTF struct name -> mirror, for the layout test.
RECORDS: dict[str, type[ctypes.Structure]] = {
    "rw_hdr": RwHdr, "rw_exec": RwExec, "rw_fork": RwFork, "rw_exit": RwExit, "rw_net": RwNet,
    "rw_dns": RwDns, "rw_file": RwFile, "rw_priv": RwPriv, "rw_cgroup": RwCgroup, "rw_sock": RwSock,
    "rw_env": RwEnv, "rw_config": RwConfig, "rw_name_key": RwNameKey, "rw_ino_key": RwInoKey,
    "rw_name_first": RwNameFirst, "rw_ino_bits": RwInoBits,
}
