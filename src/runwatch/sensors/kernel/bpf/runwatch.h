/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/* Records shared by runwatch.bpf.c and the Python decoder (decode.py).
 *
 * Contract: decode.py mirrors these structs field by field; tests/kernel/test_layout.py
 * compares both against the BTF of the built object, so they cannot drift.
 * Every record starts with struct rw_hdr; rw_hdr.kind selects the payload struct.
 */
#ifndef RUNWATCH_H
#define RUNWATCH_H

#define RW_COMM_LEN 16
#define RW_PATH_LEN 256
#define RW_ARGS_LEN 512
#define RW_CWD_DEPTH 10
#define RW_CWD_PART 32
#define RW_DNS_LEN 256
#define RW_NAME_LEN 64
#define RW_MAX_KIND 64
#define RW_EXE_LEN 512   /* resolved executable path: components, leaf first */
#define RW_EXE_DEPTH 32  /* components walked at most */
#define RW_NAME_MAX 256  /* one component (NAME_MAX + NUL) */
#define RW_NAME_KEY 32   /* a watched name or suffix: kind byte, then up to 30 bytes and a NUL */
#define RW_ENV_LEN 1024  /* allow-listed NAME=VALUE strings of one exec */
#define RW_ENV_NAME 32   /* longest allow-listed name (with NUL) */
#define RW_INO_BITS 16   /* log2 of the bits in struct rw_ino_bits */

enum rw_kind {
	RW_EXEC = 1,
	RW_FORK = 2,
	RW_EXIT = 3,
	RW_CONNECT = 4,
	RW_ACCEPT = 5,
	RW_LISTEN = 6,
	RW_BIND = 7,
	RW_DNS = 8,
	RW_OPEN = 9,
	RW_UNLINK = 10,
	RW_RENAME = 11,
	RW_MEMFD = 12,
	RW_SETUID = 13,
	RW_SETGID = 14,
	RW_CAPSET = 15,
	RW_MOUNT = 16,
	RW_PTRACE = 17,
	RW_UNSHARE = 18,
	RW_SETNS = 19,
	RW_CGROUP_MKDIR = 20,
	RW_LINK = 21,
	RW_SYMLINK = 22,
	RW_CHMOD = 23,
	RW_MKDIR = 24,
	RW_RMDIR = 25,
	RW_SOCKET = 26,
	RW_REDIRECT = 27,
	RW_MODULE_LOAD = 28,
	RW_BPF_LOAD = 29,
	RW_USERFAULTFD = 30,
	RW_IO_URING_SETUP = 31,
	RW_EXEC_FAILED = 32,
	RW_SEND = 33,
	RW_DNS_ANSWER = 34,
	RW_EXEC_ENV = 35,
};

/* Flags held as values of the watched-path LPM trie. */
enum rw_watch_flags {
	RW_WATCH_READ = 1,   /* report opens for reading */
	RW_WATCH_WRITE = 2,  /* report opens for writing, unlink, rename */
	RW_WATCH_KEYS = 4,   /* only names ending in .pem or .key */
};

/* What a watched name matches (rw_name_key.kind). */
enum rw_name_kind {
	RW_NAME_LEAF = 1,   /* the file's own name */
	RW_NAME_DIR = 2,    /* a directory anywhere above it */
	RW_NAME_SUFFIX = 3, /* the file name's extension, after its last dot */
};

/* What the walk of an opened file's path found (rw_file.fattrs). */
enum rw_file_attrs {
	RW_FILE_TRUNCATED = 1, /* deeper or longer than the record: the path is its tail */
};

/* What the walk of the executed file's path found (rw_exec.exe_flags). */
enum rw_exe_flags {
	RW_EXE_UNLINKED = 1,  /* the file has no directory entry (deleted, or a memfd) */
	RW_EXE_DETACHED = 2,  /* on no mount the process reaches: the path within its filesystem
	                         (a detached bind mount), or a pseudo file's name (memfd) */
	RW_EXE_TRUNCATED = 4, /* more components or bytes than the record holds: the top is missing */
	RW_EXE_UPPER = 8,     /* on an overlay file system, from its upper (writable) layer: written
	                         after the container's image was unpacked */
};

/* Which syscall a priv record came from (rw_priv.op). */
enum rw_priv_op {
	RW_OP_SETUID = 1, RW_OP_SETREUID, RW_OP_SETRESUID,
	RW_OP_SETGID, RW_OP_SETREGID, RW_OP_SETRESGID,
	RW_OP_INIT_MODULE, RW_OP_FINIT_MODULE, RW_OP_BPF_PROG_LOAD, RW_OP_USERFAULTFD,
	RW_OP_IO_URING_SETUP,
};

struct rw_hdr {
	__u32 kind;
	__u32 size;      /* bytes in the whole record */
	__u64 ts;        /* CLOCK_MONOTONIC ns (bpf_ktime_get_ns) */
	__u64 cgid;      /* cgroup v2 id */
	__u32 pid;       /* tgid, host view */
	__u32 tid;
	__u32 ppid;      /* real parent's tgid */
	__u32 uid;
	__u32 euid;
	__u32 gid;
	__u32 pidns;     /* pid namespace inode */
	__u32 vpid;      /* process (tgid) inside that namespace */
	__u32 vtid;      /* thread id inside that namespace */
	__u32 hpad;
	char comm[RW_COMM_LEN];
};

struct rw_exec {
	struct rw_hdr h;
	__u64 ino;       /* executed file's inode and device (s_dev: major << 20 | minor) */
	__u32 dev;
	__u32 args_len;  /* bytes of argv copied into args (NUL separated) */
	__u32 args_full; /* bytes of argv the process really has */
	__u32 cwd_depth; /* components filled in cwd, leaf first */
	char filename[RW_PATH_LEN]; /* the name passed to execve, as given */
	char args[RW_ARGS_LEN];
	char cwd[RW_CWD_DEPTH][RW_CWD_PART];
	__u32 exe_len;   /* bytes used in exe */
	__u32 exe_flags; /* enum rw_exe_flags */
	char exe[RW_EXE_LEN]; /* the executed file (bprm->file) as the process's root sees it:
	                         NUL-terminated components, leaf first */
	__u32 tty;       /* controlling terminal, encoded as /proc/PID/stat's tty_nr (0: none) */
	__u32 loginuid;  /* audit login uid (4294967295: never set) */
	__u64 cap_effective; /* effective capability set of the new image */
	__u64 cap_permitted; /* and its permitted set */
};

struct rw_fork {
	struct rw_hdr h;
	__u32 child_pid;
	__u32 child_vpid;
};

struct rw_exit {
	struct rw_hdr h;
	__u32 code;      /* raw exit_code: (status << 8) | signal */
	__u32 pad;
};

/* connect, accept, listen, bind. Addresses in network byte order. */
struct rw_net {
	struct rw_hdr h;
	__s32 result;    /* 0 or -errno (connect, bind); fd for accept */
	__u16 family;    /* AF_INET / AF_INET6 */
	__u16 proto;     /* IPPROTO_TCP / IPPROTO_UDP */
	__u16 sport;     /* host byte order */
	__u16 dport;
	__u32 pad;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct rw_dns {
	struct rw_hdr h;
	__u16 family;
	__u16 dport;
	__u32 len;       /* bytes of payload copied */
	__u8 daddr[16];
	__u8 payload[RW_DNS_LEN];
};

/* open, unlink, rename, memfd */
struct rw_file {
	struct rw_hdr h;
	__u32 flags;     /* open flags; unlinkat/renameat2 flags; memfd flags */
	__u32 pad;
	char path[RW_PATH_LEN];
	char path2[RW_PATH_LEN]; /* rename target */
	__u64 ino;       /* file.open: the opened file's inode and device (s_dev) */
	__u32 dev;
	__u32 fattrs;    /* file.open: enum rw_file_attrs */
	__s32 result;    /* file.open: 0, or -errno of a failed open (then path is as passed) */
	__u32 pad2;
};

/* Key of the watch_names map. */
struct rw_name_key {
	__u8 kind;       /* enum rw_name_kind */
	char name[RW_NAME_KEY - 1];
};

/* Value of the name_first map: bit c of leaf (dir, suffix) is set when a watched leaf name
 * (directory name, extension) starts with byte c; bit c of top when a watched prefix's first
 * component starts with c (every bit for the prefix "/"). A clear bit means no lookup. */
struct rw_name_first {
	__u64 leaf[4];
	__u64 dir[4];
	__u64 suffix[4];
	__u64 top[4];
};

/* Key of the watch_inodes map (s_dev as the kernel holds it: major << 20 | minor). */
struct rw_ino_key {
	__u64 ino;
	__u32 dev;
	__u32 pad;
};

/* Value of the watch_ino_bits map: the bit of each key of watch_inodes is set (the top
 * RW_INO_BITS bits of (ino ^ dev << 32) * 0x9E3779B97F4A7C15, mod 2^64: ino_bit() in
 * files.bpf.h and watchlist.py), so a component whose bit is clear costs no hash lookup.
 * Bits are only ever set: a stale one costs a lookup, never a missed file. */
struct rw_ino_bits {
	__u64 w[1 << (RW_INO_BITS - 6)];
};

struct rw_priv {
	struct rw_hdr h;
	__u32 op;
	__u32 pad;
	__s64 arg[3];    /* setuid family: ids (-1 = unchanged); ptrace: request, pid;
	                    unshare/setns: flags, fd; mount: flags */
	__u32 cap_eff[2];
	__u32 cap_prm[2];
	__u32 cap_inh[2];
	char path[RW_PATH_LEN];   /* mount target */
	char path2[RW_NAME_LEN];  /* mount source (head) */
	char fstype[RW_COMM_LEN];
};

/* A cgroup v2 directory was created: lets userspace attribute events of containers
 * that are gone before their cgroup could be looked up. */
struct rw_cgroup {
	struct rw_hdr h;
	__u64 id;
	__u32 level;
	__u32 pad;
	char path[RW_PATH_LEN];
};

/* socket creation, and a socket duplicated onto fd 0, 1 or 2 (redirect).
 * Addresses in network byte order. */
struct rw_sock {
	struct rw_hdr h;
	__s32 fd;        /* socket: the new fd or -errno; redirect: the fd written (0-2) */
	__s32 oldfd;     /* redirect: the socket's fd; socket: -1 */
	__u16 family;    /* AF_* */
	__u16 type;      /* SOCK_* (without SOCK_NONBLOCK / SOCK_CLOEXEC) */
	__u16 proto;     /* protocol (AF_PACKET: the ethertype, network byte order) */
	__u16 dport;     /* redirect: the peer's port, host byte order */
	__u8 daddr[16];  /* redirect: the peer's address */
};

/* The allow-listed environment variables of an exec (NAME=VALUE, NUL separated), written
 * just before its rw_exec record. */
struct rw_env {
	struct rw_hdr h;
	__u32 count;     /* strings in data */
	__u32 len;       /* bytes used in data */
	__u32 truncated; /* 1: more matched than data holds, or the walk stopped early */
	__u32 pad;
	char data[RW_ENV_LEN];
};

struct rw_config {
	__u32 filter_tracked; /* 1: report only processes in the tracked map */
	__u32 self_tgid;      /* never report this process (the sensor itself) */
	__u32 wakeup_bytes;   /* force a consumer wake-up when this much is queued */
	__u32 pad;
};

#endif
