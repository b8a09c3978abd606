// SPDX-License-Identifier: GPL-2.0
/* runwatch policy enforcement in the kernel.
 *
 * Egress: cgroup/connect4, connect6, sendmsg4, sendmsg6, attached by userspace to each
 * policed container's cgroup v2 directory (so they also run for its child cgroups).
 * The policy is found by the task's cgroup id or the nearest ancestor id present in
 * cg_cfg; the destination is looked up in the allow LPM trie under that policy's id.
 * Enforce denies (the syscall fails with EPERM); monitor allows and reports would_deny.
 *
 * Kill: tp_btf/sched_process_exec (attached once, host-wide) sends SIGKILL to a task
 * whose new executable (inode, device) is listed in kill_set for its policy cgroup, and,
 * under an exec allow list, to one executing a file on no mounted path (a memfd). The
 * same set is checked when a file is mapped executable (mmap/mprotect with PROT_EXEC,
 * from tp_btf/sys_enter): that is how the ELF loader run as a program
 * (ld.so /usr/bin/dash) maps its target, without an exec.
 *
 * Sockets: cgroup/sock_create (on the same cgroups as egress) refuses raw IP sockets
 * unless the policy allows them. AF_PACKET sockets pass no cgroup hook, so the process
 * asking for one is killed before the syscall returns (tp_btf/sys_enter for socket(),
 * the 32-bit socket() and socketcall(), tp_btf/io_uring_submit_req for IORING_OP_SOCKET).
 *
 * Hold: for a policy set that fails closed, tp_btf/cgroup_mkdir puts each cgroup created
 * by a task inside a hold scope (hold_scope: cgroup ids; the watched command's cgroup, or
 * the root for a host-wide watch) into `held`; the first exec in a held cgroup is stopped
 * (SIGSTOP, before its first instruction) and reported, until userspace has bound the
 * container's policy, deleted the entry and continued (or killed) the task.
 *
 * Guard: runwatch writes the time into `heartbeat` several times a second. When it is
 * older than STALE_NS (runwatch died; its links to a fail: closed policy's cgroups are
 * pinned, so these programs outlive it) every task of a guarded cgroup is killed at its
 * next system call: what needs runwatch (file and exec checks) is gone, so nothing of the
 * workload may go on unwatched. 0 in heartbeat turns the guard off.
 *
 * Every deny/would_deny/kill/would_kill/hold is one struct enf_record in the `decisions`
 * ring buffer; a failed reservation is counted in `lost`.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "enforce.h"

#define SIGKILL 9
#define SIGSTOP 19
#define AF_PACKET 17
#define SOCK_RAW 3
#define SOCK_TYPE_MASK 0xf
#define NR_SOCKET 41        /* x86-64 */
#define NR_IA32_SOCKET 359  /* i386, in a compat task */
#define NR_IA32_SOCKETCALL 102
#define SYS_SOCKET 1        /* socketcall's call number for socket() */
#define TS_COMPAT 0x0002    /* thread_info.status: a 32-bit syscall is running */
#define NR_MMAP 9
#define NR_MPROTECT 10
#define NR_PKEY_MPROTECT 329
#define NR_IA32_OLD_MMAP 90
#define NR_IA32_MPROTECT 125
#define NR_IA32_MMAP2 192
#define PROT_EXEC 0x4
#define MAP_ANONYMOUS 0x20
/* kern_mount()ed mounts (shm_mnt of memfd, pipes, anon inodes) carry MNT_NS_INTERNAL,
 * ERR_PTR(-EINVAL): no mount namespace can reach them. */
#define MAX_ERRNO 4095

/* Keep the record type in the object's BTF for the layout check. */
struct enf_record *_enf_record __attribute__((unused));
struct enf_allow_val *_enf_allow_val __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} decisions SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct enf_cg_cfg);
} cg_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct enf_allow_key);
	__type(value, struct enf_allow_val);
} allow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct enf_kill_key);
	__type(value, __u32);
} kill_set SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u64);
	__type(value, __u32);
} hold_scope SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, __u64);
} held SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} heartbeat SEC(".maps");

#define STALE_NS (2ULL * 1000000000ULL)

/* The policy for the current task: its own cgroup id, else the deepest ancestor with an
 * entry. Returns NULL (no policy: allow) when none matches. */
static __always_inline struct enf_cg_cfg *find_cfg(__u64 *policy_cgid)
{
	__u64 id = bpf_get_current_cgroup_id();
	struct enf_cg_cfg *cfg = bpf_map_lookup_elem(&cg_cfg, &id);

	if (cfg) {
		*policy_cgid = id;
		return cfg;
	}
	for (int level = ENF_MAX_LEVEL; level >= 1; level--) {
		id = bpf_get_current_ancestor_cgroup_id(level);
		if (!id)
			continue;
		cfg = bpf_map_lookup_elem(&cg_cfg, &id);
		if (cfg) {
			*policy_cgid = id;
			return cfg;
		}
	}
	return NULL;
}

static __always_inline void emit_full(__u64 start, __u64 policy_cgid, __u32 hook, __u32 verdict,
				      const __u8 *addr, __u16 port, __u16 proto, __u64 ino, __u32 dev,
				      __u16 family, __u16 stype, __u32 why)
{
	struct enf_record *r = bpf_ringbuf_reserve(&decisions, sizeof(*r), 0);
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	if (!r) {
		__u32 zero = 0;
		__u64 *n = bpf_map_lookup_elem(&lost, &zero);
		if (n)
			*n += 1;
		return;
	}
	r->ts = bpf_ktime_get_ns();
	r->policy_cgid = policy_cgid;
	r->cgid = bpf_get_current_cgroup_id();
	r->ino = ino;
	r->dev = dev;
	r->pid = pid_tgid >> 32;
	r->tid = (__u32)pid_tgid;
	r->hook = hook;
	r->verdict = verdict;
	r->port = port;
	r->proto = proto;
	for (int i = 0; i < 16; i++)
		r->addr[i] = addr ? addr[i] : 0;
	bpf_get_current_comm(r->comm, sizeof(r->comm));
	r->family = family;
	r->stype = stype;
	r->why = why;
	r->latency_ns = r->ts - start;
	bpf_ringbuf_submit(r, 0);
}

static __always_inline void emit(__u64 start, __u64 policy_cgid, __u32 hook, __u32 verdict,
				 const __u8 *addr, __u16 port, __u16 proto, __u64 ino, __u32 dev)
{
	emit_full(start, policy_cgid, hook, verdict, addr, port, proto, ino, dev, 0, 0, 0);
}

static __always_inline void emit_sock(__u64 start, __u64 policy_cgid, __u32 hook, __u32 verdict,
				      __u16 proto, __u16 family, __u16 stype)
{
	emit_full(start, policy_cgid, hook, verdict, NULL, 0, proto, 0, 0, family, stype, 0);
}

static __always_inline void emit_exec(__u64 start, __u64 policy_cgid, __u32 hook, __u32 verdict,
				      __u64 ino, __u32 dev, __u32 why)
{
	emit_full(start, policy_cgid, hook, verdict, NULL, 0, 0, ino, dev, 0, 0, why);
}

/* 1 = allowed (or no policy), 0 = denied in enforce mode. */
static __always_inline int check(struct bpf_sock_addr *ctx, __u32 hook, int v6)
{
	__u64 start = bpf_ktime_get_ns();
	__u64 policy_cgid = 0;
	struct enf_cg_cfg *cfg = find_cfg(&policy_cgid);
	struct enf_allow_key key = {};
	struct enf_allow_val *val;
	__u16 port;

	if (!cfg || cfg->egress == ENF_OFF)
		return 1;
	__builtin_memcpy(key.data, &policy_cgid, 8);
	if (v6) {
		__u32 w0 = ctx->user_ip6[0], w1 = ctx->user_ip6[1];
		__u32 w2 = ctx->user_ip6[2], w3 = ctx->user_ip6[3];
		__builtin_memcpy(key.data + 8, &w0, 4);
		__builtin_memcpy(key.data + 12, &w1, 4);
		__builtin_memcpy(key.data + 16, &w2, 4);
		__builtin_memcpy(key.data + 20, &w3, 4);
	} else {
		__u32 ip4 = ctx->user_ip4;
		key.data[18] = 0xff;
		key.data[19] = 0xff;
		__builtin_memcpy(key.data + 20, &ip4, 4);
	}
	key.prefixlen = 64 + 128;
	port = bpf_ntohs((__u16)ctx->user_port);

	val = bpf_map_lookup_elem(&allow, &key);
	if (val) {
		if (val->any_port)
			return 1;
		for (int i = 0; i < ENF_MAX_PORTS; i++) {
			if (i >= val->nports)
				break;
			if (val->ports[i] == port)
				return 1;
		}
	}
	if (cfg->egress == ENF_ENFORCE) {
		emit(start, policy_cgid, hook, ENF_DENY, key.data + 8, port, ctx->protocol, 0, 0);
		return 0;
	}
	emit(start, policy_cgid, hook, ENF_WOULD_DENY, key.data + 8, port, ctx->protocol, 0, 0);
	return 1;
}

SEC("cgroup/connect4")
int enf_connect4(struct bpf_sock_addr *ctx)
{
	return check(ctx, ENF_HOOK_CONNECT4, 0);
}

SEC("cgroup/connect6")
int enf_connect6(struct bpf_sock_addr *ctx)
{
	return check(ctx, ENF_HOOK_CONNECT6, 1);
}

SEC("cgroup/sendmsg4")
int enf_sendmsg4(struct bpf_sock_addr *ctx)
{
	return check(ctx, ENF_HOOK_SENDMSG4, 0);
}

SEC("cgroup/sendmsg6")
int enf_sendmsg6(struct bpf_sock_addr *ctx)
{
	return check(ctx, ENF_HOOK_SENDMSG6, 1);
}

/* A raw IP socket in a policed cgroup: refused (EPERM) unless the policy allows raw sockets. */
SEC("cgroup/sock_create")
int enf_sock_create(struct bpf_sock *sk)
{
	__u64 start = bpf_ktime_get_ns();
	__u64 policy_cgid = 0;
	struct enf_cg_cfg *cfg;

	if (sk->type != SOCK_RAW)
		return 1;
	cfg = find_cfg(&policy_cgid);
	if (!cfg || cfg->egress == ENF_OFF || (cfg->sockets & ENF_SOCK_RAW))
		return 1;
	if (cfg->egress == ENF_ENFORCE) {
		emit_sock(start, policy_cgid, ENF_HOOK_SOCKET, ENF_DENY, sk->protocol, sk->family, sk->type);
		return 0;
	}
	emit_sock(start, policy_cgid, ENF_HOOK_SOCKET, ENF_WOULD_DENY, sk->protocol, sk->family, sk->type);
	return 1;
}

/* An AF_PACKET socket asked for in a policed cgroup that does not allow it: kill the task
 * (the signal is taken before the syscall returns to user space). */
static __always_inline int packet_check(int family, int type, int protocol)
{
	__u64 start = bpf_ktime_get_ns();
	__u64 policy_cgid = 0;
	struct enf_cg_cfg *cfg;

	if (family != AF_PACKET)
		return 0;
	cfg = find_cfg(&policy_cgid);
	if (!cfg || cfg->egress == ENF_OFF || (cfg->sockets & ENF_SOCK_PACKET))
		return 0;
	if (cfg->egress == ENF_ENFORCE) {
		bpf_send_signal(SIGKILL);
		emit_sock(start, policy_cgid, ENF_HOOK_PACKET, ENF_KILL, (__u16)protocol, AF_PACKET, type & SOCK_TYPE_MASK);
	} else {
		emit_sock(start, policy_cgid, ENF_HOOK_PACKET, ENF_WOULD_KILL, (__u16)protocol, AF_PACKET,
			  type & SOCK_TYPE_MASK);
	}
	return 0;
}

/* The verdict on a file being executed or mapped executable by a policed task: the
 * kill_set reason for its inode, else ENF_WHY_NO_PATH for a pathless file under an
 * allow list, else 0 (let it run). */
static __always_inline __u32 exec_why(struct enf_cg_cfg *cfg, __u64 policy_cgid, struct file *f,
				      struct enf_kill_key *key)
{
	struct mount *m;
	__u32 *why;

	key->cgid = policy_cgid;
	key->ino = BPF_CORE_READ(f, f_inode, i_ino);
	key->dev = BPF_CORE_READ(f, f_inode, i_sb, s_dev);
	key->pad = 0;
	why = bpf_map_lookup_elem(&kill_set, key);
	if (why)
		return *why;
	if (!(cfg->exec_flags & ENF_EXEC_ALLOWLIST))
		return 0;
	m = container_of(BPF_CORE_READ(f, f_path.mnt), struct mount, mnt);
	{
		void *ns = BPF_CORE_READ(m, mnt_ns);

		if (!ns || (unsigned long)ns >= (unsigned long)-MAX_ERRNO)
			return ENF_WHY_NO_PATH;
	}
	return 0;
}

static __always_inline int stop_exec(struct enf_cg_cfg *cfg, __u64 policy_cgid, __u64 start, __u32 hook,
				     struct file *f)
{
	struct enf_kill_key key = {};
	__u32 why;

	if (!f)
		return 0;
	why = exec_why(cfg, policy_cgid, f, &key);
	if (!why)
		return 0;
	if (cfg->kill == ENF_ENFORCE) {
		bpf_send_signal(SIGKILL);
		emit_exec(start, policy_cgid, hook, ENF_KILL, key.ino, key.dev, why);
	} else {
		emit_exec(start, policy_cgid, hook, ENF_WOULD_KILL, key.ino, key.dev, why);
	}
	return 0;
}

static __always_inline struct file *fd_file(int fd)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct file **fds = BPF_CORE_READ(t, files, fdt, fd);
	struct file *f = NULL;

	if (fd < 0 || fd >= (int)BPF_CORE_READ(t, files, fdt, max_fds))
		return NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]))
		return NULL;
	return f;
}

struct vma_file {
	struct file *file;
};

static long vma_file_cb(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
	struct vma_file *out = data;

	out->file = BPF_CORE_READ(vma, vm_file);
	return 0;
}

/* mmap(PROT_EXEC) of a file (fd), or mprotect(PROT_EXEC) of a file-backed mapping (addr). */
static __always_inline int map_exec_check(bool protect, __u64 prot, __u64 flags, __u64 fd_or_addr)
{
	__u64 start = bpf_ktime_get_ns();
	__u64 policy_cgid = 0;
	struct enf_cg_cfg *cfg;
	struct vma_file vf = {};

	if (!(prot & PROT_EXEC) || (!protect && (flags & MAP_ANONYMOUS)))
		return 0;
	cfg = find_cfg(&policy_cgid);
	if (!cfg || cfg->kill == ENF_OFF)
		return 0;
	if (!protect)
		return stop_exec(cfg, policy_cgid, start, ENF_HOOK_MAP_EXEC, fd_file((int)fd_or_addr));
	bpf_find_vma(bpf_get_current_task_btf(), fd_or_addr, vma_file_cb, &vf, 0);
	return stop_exec(cfg, policy_cgid, start, ENF_HOOK_MAP_EXEC, vf.file);
}

/* The same for a 32-bit task: mmap2, the old mmap (its arguments in memory), mprotect. */
static __always_inline int map_exec_compat(long id, struct pt_regs *regs)
{
	__u32 args[6];

	if (id == NR_IA32_MMAP2)
		return map_exec_check(false, BPF_CORE_READ(regs, dx), BPF_CORE_READ(regs, si),
				      (__u32)BPF_CORE_READ(regs, di));
	if (id == NR_IA32_MPROTECT)
		return map_exec_check(true, BPF_CORE_READ(regs, dx), 0, (__u32)BPF_CORE_READ(regs, bx));
	if (bpf_probe_read_user(args, sizeof(args), (const void *)(unsigned long)(__u32)BPF_CORE_READ(regs, bx)))
		return 0;
	return map_exec_check(false, args[2], args[3], args[4]);
}

/* Whether runwatch stopped beating (it is gone, or stuck) while the guard is on. */
static __always_inline bool supervisor_gone(void)
{
	__u32 zero = 0;
	__u64 *beat = bpf_map_lookup_elem(&heartbeat, &zero);

	return beat && *beat && bpf_ktime_get_ns() - *beat > STALE_NS;
}

/* Kill a task of a guarded cgroup once runwatch is gone (returns 1 when it did). */
static __always_inline int guard_check(void)
{
	__u64 cgid = 0;
	struct enf_cg_cfg *cfg;

	if (!supervisor_gone())
		return 0;
	cfg = find_cfg(&cgid);
	if (!cfg || !cfg->guard)
		return 0;
	bpf_send_signal(SIGKILL);
	return 1;
}

/* The system calls the guard acts on: every way to read, write, send, open, map or run
 * something (64-bit numbers, then the 32-bit ones that differ). A task that makes none
 * of them can do no harm unwatched; the syscall itself still runs, but the task dies
 * before it returns to user space. */
#define GUARDED_SYSCALLS \
	case 0: case 1: case 2: case 17: case 18: case 19: case 20: case 40: case 42: case 44: \
	case 46: case 59: case 85: case 257: case 275: case 276: case 278: case 295: case 296: \
	case 299: case 304: case 307: case 322: case 326: case 327: case 328: case 425: case 426: case 437: \
	case 3: case 4: case 5: case 11: case 145: case 146: case 180: case 181: case 187: \
	case 239: case 313: case 358: case 369: case 370: case 371:

SEC("tp_btf/sys_enter")
int BPF_PROG(enf_sys_enter, struct pt_regs *regs, long id)
{
	struct task_struct *t;
	__u32 args[3];

	switch (id) { /* the cheap test every other syscall of the host takes */
	case NR_MMAP: case NR_MPROTECT: case NR_PKEY_MPROTECT: case NR_SOCKET:
	case NR_IA32_OLD_MMAP: case NR_IA32_MPROTECT: case NR_IA32_MMAP2:
	case NR_IA32_SOCKET: case NR_IA32_SOCKETCALL:
		break;
	GUARDED_SYSCALLS
		return guard_check();
	default:
		return 0;
	}
	if (guard_check())
		return 0;
	t = bpf_get_current_task_btf();
	if (t->thread_info.status & TS_COMPAT) {
		if (id == NR_IA32_MMAP2 || id == NR_IA32_MPROTECT || id == NR_IA32_OLD_MMAP)
			return map_exec_compat(id, regs);
	} else if (id == NR_MMAP) {
		return map_exec_check(false, BPF_CORE_READ(regs, dx), BPF_CORE_READ(regs, r10), BPF_CORE_READ(regs, r8));
	} else if (id == NR_MPROTECT || id == NR_PKEY_MPROTECT) {
		return map_exec_check(true, BPF_CORE_READ(regs, dx), 0, BPF_CORE_READ(regs, di));
	}
	if (id != NR_SOCKET && id != NR_IA32_SOCKET && id != NR_IA32_SOCKETCALL)
		return 0;
	if (!(t->thread_info.status & TS_COMPAT)) {
		if (id != NR_SOCKET)
			return 0;
		return packet_check((int)BPF_CORE_READ(regs, di), (int)BPF_CORE_READ(regs, si),
				    (int)BPF_CORE_READ(regs, dx));
	}
	if (id == NR_IA32_SOCKET)
		return packet_check((int)BPF_CORE_READ(regs, bx), (int)BPF_CORE_READ(regs, cx),
				    (int)BPF_CORE_READ(regs, dx));
	if (id != NR_IA32_SOCKETCALL || BPF_CORE_READ(regs, bx) != SYS_SOCKET)
		return 0;
	if (bpf_probe_read_user(args, sizeof(args), (const void *)(unsigned long)(__u32)BPF_CORE_READ(regs, cx)))
		return 0;
	return packet_check((int)args[0], (int)args[1], (int)args[2]);
}

SEC("tp_btf/io_uring_submit_req")
int BPF_PROG(enf_uring_socket, struct io_kiocb *req)
{
	struct io_socket *sock = (struct io_socket *)req;

	if (BPF_CORE_READ(req, opcode) != IORING_OP_SOCKET)
		return 0;
	return packet_check(BPF_CORE_READ(sock, domain), BPF_CORE_READ(sock, type), BPF_CORE_READ(sock, protocol));
}

/* Whether the current task (the creator of a cgroup) runs inside a hold scope. */
static __always_inline bool in_hold_scope(void)
{
	__u64 id = bpf_get_current_cgroup_id();

	if (bpf_map_lookup_elem(&hold_scope, &id))
		return true;
	for (int level = ENF_MAX_LEVEL; level >= 0; level--) {
		id = bpf_get_current_ancestor_cgroup_id(level);
		if (id && bpf_map_lookup_elem(&hold_scope, &id))
			return true;
	}
	return false;
}

SEC("tp_btf/cgroup_mkdir")
int BPF_PROG(enf_cgroup_mkdir, struct cgroup *cgrp, const char *path)
{
	__u64 id, ts;

	if (!in_hold_scope())
		return 0;
	id = BPF_CORE_READ(cgrp, kn, id);
	ts = bpf_ktime_get_ns();
	bpf_map_update_elem(&held, &id, &ts, BPF_ANY);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(enf_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u64 start = bpf_ktime_get_ns();
	__u64 policy_cgid = bpf_get_current_cgroup_id();
	struct enf_cg_cfg *cfg;

	if (bpf_map_lookup_elem(&held, &policy_cgid) && !supervisor_gone()) {
		/* only while runwatch is there to bind and continue it */
		bpf_send_signal(SIGSTOP);
		emit(start, policy_cgid, ENF_HOOK_HOLD, ENF_HOLD, NULL, 0, 0,
		     BPF_CORE_READ(bprm, file, f_inode, i_ino), BPF_CORE_READ(bprm, file, f_inode, i_sb, s_dev));
		return 0;
	}
	cfg = find_cfg(&policy_cgid);
	if (!cfg || cfg->kill == ENF_OFF)
		return 0;
	return stop_exec(cfg, policy_cgid, start, ENF_HOOK_EXEC, BPF_CORE_READ(bprm, file));
}

char LICENSE[] SEC("license") = "GPL";
