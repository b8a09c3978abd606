/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/* Maps and records shared by enforce.bpf.c and the Python side (bpfobj.py).
 *
 * Contract: bpfobj.py mirrors these structs with ctypes; a test compares both against
 * the BTF of the built object, so the layouts cannot drift.
 */
#ifndef RUNWATCH_ENFORCE_H
#define RUNWATCH_ENFORCE_H

#define ENF_COMM_LEN 16
#define ENF_MAX_PORTS 16
#define ENF_MAX_LEVEL 16

/* Per policy cgroup modes (enf_cg_cfg.egress / .kill). */
enum enf_mode {
	ENF_OFF = 0,
	ENF_MONITOR = 1,
	ENF_ENFORCE = 2,
};

/* Which hook produced a record (enf_record.hook). */
enum enf_hook {
	ENF_HOOK_CONNECT4 = 1,
	ENF_HOOK_CONNECT6 = 2,
	ENF_HOOK_SENDMSG4 = 3,
	ENF_HOOK_SENDMSG6 = 4,
	ENF_HOOK_EXEC = 5,
	ENF_HOOK_SOCKET = 6,   /* cgroup/sock_create: a raw IP socket */
	ENF_HOOK_PACKET = 7,   /* socket(AF_PACKET) by syscall or io_uring: no hook can refuse it */
	ENF_HOOK_MAP_EXEC = 8, /* mmap/mprotect with PROT_EXEC of a file (the ELF loader's way) */
	ENF_HOOK_HOLD = 9,     /* the first exec in a cgroup whose policy is not bound yet: stopped */
};

/* Why an exec or executable mapping was stopped (enf_record.why; kill_set values). */
enum enf_why {
	ENF_WHY_DENIED = 1,    /* the file is a denied executable (exec.deny) */
	ENF_WHY_LOADER = 2,    /* the ELF loader run as a program under an allow list */
	ENF_WHY_NO_PATH = 3,   /* a file on no mounted path (memfd) under an allow list */
};

/* enf_cg_cfg.exec_flags bits. */
enum enf_exec_bits {
	ENF_EXEC_ALLOWLIST = 1, /* the policy has an exec allow list */
};

/* Socket kinds a policy may allow beyond ordinary TCP/UDP (enf_cg_cfg.sockets bits). */
enum enf_socket_bits {
	ENF_SOCK_RAW = 1,      /* SOCK_RAW in AF_INET/AF_INET6 (raw IP, ICMP) */
	ENF_SOCK_PACKET = 2,   /* AF_PACKET (link-layer frames) */
};

/* What the program did (enf_record.verdict). */
enum enf_verdict {
	ENF_DENY = 1,
	ENF_WOULD_DENY = 2,
	ENF_KILL = 3,
	ENF_WOULD_KILL = 4,
	ENF_HOLD = 5,          /* SIGSTOPped until userspace binds the policy and continues it */
};

/* Value of the cg_cfg hash, keyed by the cgroup v2 id a policy was applied to. */
struct enf_cg_cfg {
	__u32 egress;  /* enum enf_mode */
	__u32 kill;    /* enum enf_mode */
	__u32 sockets; /* enum enf_socket_bits the policy allows */
	__u32 exec_flags; /* enum enf_exec_bits */
	__u32 guard;   /* 1: fail closed when runwatch is gone (see heartbeat in enforce.bpf.c) */
};

/* Key of the egress allow LPM trie: the policy cgroup id (always matched in full: the
 * prefix length counts its 64 bits) then the address as IPv6 (IPv4 v4-mapped). */
struct enf_allow_key {
	__u32 prefixlen;
	__u8 data[24];  /* 8 bytes cgroup id (host order), 16 bytes address */
};

/* Ports allowed for a prefix. Userspace folds the ports of every covering prefix into
 * each entry, so the longest match alone decides. Ports in host order. */
struct enf_allow_val {
	__u32 any_port;
	__u32 nports;
	__u16 ports[ENF_MAX_PORTS];
};

/* Key of the kill hash: policy cgroup id + the executable's inode and (kernel) device. */
struct enf_kill_key {
	__u64 cgid;
	__u64 ino;
	__u32 dev;
	__u32 pad;
};

/* One decision record in the ring buffer. */
struct enf_record {
	__u64 ts;          /* CLOCK_MONOTONIC ns */
	__u64 policy_cgid; /* the cgroup id the policy was applied to */
	__u64 cgid;        /* the task's own cgroup id */
	__u64 latency_ns;  /* time spent deciding in the program */
	__u64 ino;         /* exec: executable inode */
	__u32 dev;         /* exec: executable device (kernel encoding) */
	__u32 pid;         /* tgid */
	__u32 tid;
	__u32 hook;        /* enum enf_hook */
	__u32 verdict;     /* enum enf_verdict */
	__u16 port;        /* host order */
	__u16 proto;       /* IPPROTO_* of the socket */
	__u8 addr[16];     /* IPv6 or v4-mapped IPv4 */
	char comm[ENF_COMM_LEN];
	__u16 family;      /* socket hooks: address family */
	__u16 stype;       /* socket hooks: socket type (SOCK_RAW, ...) */
	__u32 why;         /* exec and mapping hooks: enum enf_why */
};

#endif
