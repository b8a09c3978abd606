// SPDX-License-Identifier: GPL-2.0
/* runwatch kernel sensor.
 *
 * Only hooks this kernel allows: tp_btf/ for the scheduler, tracepoint/syscalls/ for
 * syscalls (needs tracefs mounted; the loader mounts it). Each program is independent:
 * the loader turns off any the kernel refuses and keeps the rest.
 *
 * Delivery: one BPF ring buffer, submitted without wake-ups; the consumer drains in
 * batches on a short timer and is woken early only when cfg.wakeup_bytes are queued.
 * A failed reservation is counted per CPU and kind in `drops`; nothing is lost silently.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "runwatch.h"

#define AF_INET 2
#define AF_INET6 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define O_ACCMODE 3
#define O_CREAT 0100
#define O_TRUNC 01000
#define DNS_PORT 53

const volatile struct rw_config cfg = {};

/* Keep every record type in the object's BTF so userspace can check its layout. */
struct rw_exec *_rw_exec __attribute__((unused));
struct rw_fork *_rw_fork __attribute__((unused));
struct rw_exit *_rw_exit __attribute__((unused));
struct rw_net *_rw_net __attribute__((unused));
struct rw_dns *_rw_dns __attribute__((unused));
struct rw_file *_rw_file __attribute__((unused));
struct rw_priv *_rw_priv __attribute__((unused));
struct rw_cgroup *_rw_cgroup __attribute__((unused));
struct rw_name_key *_rw_name_key __attribute__((unused));
struct rw_ino_key *_rw_ino_key __attribute__((unused));
struct rw_name_first *_rw_name_first __attribute__((unused));
struct rw_ino_bits *_rw_ino_bits __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RW_MAX_KIND);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

/* Processes (tgid) whose events are reported when cfg.filter_tracked is set.
 * Children of a tracked process are added at fork. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} tracked SEC(".maps");

struct path_key {
	__u32 prefixlen; /* bits */
	char data[RW_PATH_LEN];
};

/* Watched path prefixes -> enum rw_watch_flags. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct path_key);
	__type(value, __u32);
} watched SEC(".maps");

/* Per-CPU room to build a path: twice the key so a resolved directory plus the
 * relative name always fit; its head is used directly as an LPM key. */
struct path_scratch {
	__u32 prefixlen;
	char data[RW_PATH_LEN * 2];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct path_scratch);
} scratch SEC(".maps");

/* Per-CPU room to build the executed file's path: components are appended at an offset
 * below RW_EXE_LEN, each at most RW_NAME_MAX bytes, so twice the record's field is enough;
 * the first RW_EXE_LEN bytes are copied into the record. */
struct exe_scratch {
	char data[RW_EXE_LEN * 2];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exe_scratch);
} exe_buf SEC(".maps");

/* connect/bind arguments held from syscall entry to exit, by thread id. */
struct pending_sa {
	__u32 fd;
	__u32 len;
	__u8 sa[28];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct pending_sa);
} pending SEC(".maps");

/* UDP sockets connected to port 53, keyed by tgid << 32 | fd, to catch send() on them. */
struct dns_peer {
	__u16 family;
	__u16 port;
	__u32 pad;
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct dns_peer);
} dns_socks SEC(".maps");

static __always_inline void count_drop(__u32 kind)
{
	__u64 *d = bpf_map_lookup_elem(&drops, &kind);

	if (d)
		*d += 1;
}

static __always_inline bool wanted(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (tgid == cfg.self_tgid)
		return false;
	if (cfg.filter_tracked && !bpf_map_lookup_elem(&tracked, &tgid))
		return false;
	return true;
}

static __always_inline void fill_hdr(struct rw_hdr *h, __u32 kind, __u32 size)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	__u64 id = bpf_get_current_pid_tgid();
	unsigned int lvl;

	h->kind = kind;
	h->size = size;
	h->ts = bpf_ktime_get_ns();
	h->cgid = bpf_get_current_cgroup_id();
	h->pid = id >> 32;
	h->tid = (__u32)id;
	h->ppid = BPF_CORE_READ(t, real_parent, tgid);
	h->uid = BPF_CORE_READ(t, cred, uid.val);
	h->euid = BPF_CORE_READ(t, cred, euid.val);
	h->gid = BPF_CORE_READ(t, cred, gid.val);
	lvl = BPF_CORE_READ(t, thread_pid, level);
	h->pidns = BPF_CORE_READ(t, thread_pid, numbers[lvl & 31].ns, ns.inum);
	h->vtid = BPF_CORE_READ(t, thread_pid, numbers[lvl & 31].nr);
	h->vpid = BPF_CORE_READ(t, group_leader, thread_pid, numbers[lvl & 31].nr);
	h->hpad = 0;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

static __always_inline __u64 submit_flags(void)
{
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= cfg.wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

#define RESERVE(type, var, kind)                                              \
	type *var = bpf_ringbuf_reserve(&events, sizeof(type), 0);            \
	if (!var) {                                                           \
		count_drop(kind);                                             \
		return 0;                                                     \
	}                                                                     \
	fill_hdr(&var->h, kind, sizeof(type))

#define SUBMIT(var) bpf_ringbuf_submit(var, submit_flags())

/* ---------------------------------------------------------------- process */

static __always_inline void read_cwd(struct rw_exec *e, struct task_struct *t)
{
	struct dentry *d = BPF_CORE_READ(t, fs, pwd.dentry);
	struct vfsmount *vm = BPF_CORE_READ(t, fs, pwd.mnt);
	struct dentry *root = BPF_CORE_READ(t, fs, root.dentry);
	struct mount *m = container_of(vm, struct mount, mnt);
	__u32 n = 0;

	for (int i = 0; i < RW_CWD_DEPTH + 4; i++) {
		struct dentry *mnt_root = BPF_CORE_READ(m, mnt.mnt_root);
		struct dentry *parent;

		if (d == root)
			break;
		if (d == mnt_root) {
			struct mount *mp = BPF_CORE_READ(m, mnt_parent);

			if (mp == m)
				break;
			d = BPF_CORE_READ(m, mnt_mountpoint);
			m = mp;
			continue;
		}
		parent = BPF_CORE_READ(d, d_parent);
		if (parent == d || n >= RW_CWD_DEPTH)
			break;
		bpf_probe_read_kernel_str(e->cwd[n], RW_CWD_PART, BPF_CORE_READ(d, d_name.name));
		n++;
		d = parent;
	}
	e->cwd_depth = n;
}

/* State of the walk of the executed file's path (read_exe), one bpf_loop step at a time. */
struct exe_walk {
	struct dentry *d;
	struct mount *m;
	struct dentry *root;
	struct vfsmount *root_mnt;
	__u32 off;
	__u32 n;
	__u32 flags;
	__u32 detached; /* past the root of a detached mount: walking dentries only */
};

/* One step up: cross a mount point, or append d's name and go to its parent. Returns 1 to stop. */
static long exe_step(__u32 i, void *arg)
{
	struct exe_walk *w = arg;
	struct dentry *d = w->d;
	struct dentry *parent = BPF_CORE_READ(d, d_parent);
	struct mount *m = w->m;
	struct exe_scratch *buf;
	__u32 zero = 0, off = w->off;
	long r;

	if (!w->detached) {
		if (d == w->root && &m->mnt == w->root_mnt)
			return 1;
		if (d == BPF_CORE_READ(m, mnt.mnt_root)) {
			struct mount *mp = BPF_CORE_READ(m, mnt_parent);

			if (mp != m) {
				w->d = BPF_CORE_READ(m, mnt_mountpoint);
				w->m = mp;
				return 0;
			}
			if (parent == d)
				return 1; /* the top of a mount tree */
			/* A detached bind mount of a file or directory (runc re-executes itself from
			 * one): go on up its filesystem, so the path is the file's within it. */
			w->detached = 1;
			w->flags |= RW_EXE_DETACHED;
		}
	} else if (parent == d) {
		return 1;
	}
	if (w->n >= RW_EXE_DEPTH || off >= RW_EXE_LEN) {
		w->flags |= RW_EXE_TRUNCATED;
		return 1;
	}
	buf = bpf_map_lookup_elem(&exe_buf, &zero);
	if (!buf)
		return 1;
	r = bpf_probe_read_kernel_str(&buf->data[off & (RW_EXE_LEN - 1)], RW_NAME_MAX,
				      BPF_CORE_READ(d, d_name.name));
	if (r <= 0)
		return 1;
	w->off = off + r;
	w->n++;
	if (parent == d) {
		w->flags |= RW_EXE_DETACHED; /* a pseudo file with no parent: a memfd's "memfd:NAME" */
		return 1;
	}
	w->d = parent;
	return 0;
}

/* The executed file's path as the new image's root sees it, like d_path: walk the dentry
 * chain up, crossing mount points, at most RW_EXE_DEPTH components (bpf_loop, one name
 * read per step, so the verifier checks one step). Components go leaf first, NUL
 * terminated, into e->exe. bpf_d_path() would do this, but the verifier refuses it from
 * tp_btf/ ("helper call is not allowed in probe", measured on 6.18); it is only allowed in
 * iter/ and the fentry/lsm hooks this kernel does not load. A file that no directory holds
 * (deleted, memfd) is flagged RW_EXE_UNLINKED. RW_EXE_DETACHED: the file is on no mount the process can reach, and
 * the path is the one within its filesystem (a detached bind mount), or the pseudo file's
 * name (a memfd's "memfd:NAME"). */
static __always_inline void read_exe(struct rw_exec *e, struct task_struct *t, struct file *f)
{
	struct dentry *d = BPF_CORE_READ(f, f_path.dentry);
	struct exe_walk w = {};
	struct exe_scratch *buf;
	__u32 zero = 0;

	e->exe_len = 0;
	e->exe_flags = 0;
	if (!d)
		return;
	w.d = d;
	w.m = container_of(BPF_CORE_READ(f, f_path.mnt), struct mount, mnt);
	w.root = BPF_CORE_READ(t, fs, root.dentry);
	w.root_mnt = BPF_CORE_READ(t, fs, root.mnt);
	if (!BPF_CORE_READ(d, d_hash.pprev))
		w.flags |= RW_EXE_UNLINKED;
	bpf_loop(RW_EXE_DEPTH + 8, exe_step, &w, 0);
	buf = bpf_map_lookup_elem(&exe_buf, &zero);
	if (!buf)
		return;
	if (w.off > RW_EXE_LEN) {
		w.flags |= RW_EXE_TRUNCATED;
		w.off = RW_EXE_LEN;
	}
	bpf_probe_read_kernel(e->exe, RW_EXE_LEN, buf->data);
	e->exe_len = w.off;
	e->exe_flags = w.flags;
}

#define RW_OVERLAYFS_MAGIC 0x794c7630

/* The controlling terminal as /proc/PID/stat shows it (tty_nr): new_encode_dev() of the
 * tty's device number, 0 when the process has none. */
static __always_inline __u32 tty_nr(struct task_struct *t)
{
	struct tty_struct *tty = BPF_CORE_READ(t, signal, tty);
	__u32 major, minor;

	if (!tty)
		return 0;
	major = BPF_CORE_READ(tty, driver, major);
	minor = BPF_CORE_READ(tty, driver, minor_start) + BPF_CORE_READ(tty, index);
	return (minor & 0xff) | (major << 8) | ((minor & ~0xffu) << 12);
}

/* Whether an executed file is an overlay file whose data is in the upper layer (as Falco's
 * proc.is_exe_upper_layer: the overlay inode has an upper dentry). */
static __always_inline bool exe_upper(struct file *f)
{
	struct inode *ino = BPF_CORE_READ(f, f_inode);
	struct ovl_inode *oi;

	if (!ino || BPF_CORE_READ(ino, i_sb, s_magic) != RW_OVERLAYFS_MAGIC)
		return false;
	oi = container_of(ino, struct ovl_inode, vfs_inode);
	return BPF_CORE_READ(oi, __upperdentry) != NULL;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(rw_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	unsigned long start, end, len;

	if (!wanted())
		return 0;
	RESERVE(struct rw_exec, e, RW_EXEC);
	bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), BPF_CORE_READ(bprm, filename));
	e->ino = BPF_CORE_READ(bprm, file, f_inode, i_ino);
	e->dev = BPF_CORE_READ(bprm, file, f_inode, i_sb, s_dev);
	start = BPF_CORE_READ(p, mm, arg_start);
	end = BPF_CORE_READ(p, mm, arg_end);
	len = end > start ? end - start : 0;
	e->args_full = len;
	if (len > RW_ARGS_LEN - 1)
		len = RW_ARGS_LEN - 1;
	len &= RW_ARGS_LEN - 1;
	if (bpf_probe_read_user(e->args, len, (void *)start))
		len = 0;
	e->args_len = len;
	e->cwd_depth = 0;
	read_cwd(e, p);
	read_exe(e, p, BPF_CORE_READ(bprm, file));
	if (exe_upper(BPF_CORE_READ(bprm, file)))
		e->exe_flags |= RW_EXE_UPPER;
	e->tty = tty_nr(p);
	e->loginuid = BPF_CORE_READ(p, loginuid.val);
	e->cap_effective = BPF_CORE_READ(p, cred, cap_effective.val);
	e->cap_permitted = BPF_CORE_READ(p, cred, cap_permitted.val);
	SUBMIT(e);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(rw_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 ctgid = BPF_CORE_READ(child, tgid);
	unsigned int lvl;

	if (BPF_CORE_READ(child, pid) != ctgid)
		return 0; /* a new thread, not a process */
	if (cfg.filter_tracked) {
		__u8 one = 1;

		if (!bpf_map_lookup_elem(&tracked, &ptgid))
			return 0;
		bpf_map_update_elem(&tracked, &ctgid, &one, BPF_ANY);
	}
	/* The sensor's own forks are not reported, but a child it starts while it
	 * tracks itself (runwatch run) is followed from its first instruction. */
	if (ptgid == cfg.self_tgid)
		return 0;
	RESERVE(struct rw_fork, e, RW_FORK);
	e->child_pid = ctgid;
	lvl = BPF_CORE_READ(child, thread_pid, level);
	e->child_vpid = BPF_CORE_READ(child, thread_pid, numbers[lvl & 31].nr);
	SUBMIT(e);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(rw_exit, struct task_struct *p)
{
	__u32 tgid = BPF_CORE_READ(p, tgid);

	if (BPF_CORE_READ(p, pid) != tgid)
		return 0;
	if (!wanted())
		return 0;
	{
		RESERVE(struct rw_exit, e, RW_EXIT);
		e->code = BPF_CORE_READ(p, exit_code);
		e->pad = 0;
		SUBMIT(e);
	}
	if (cfg.filter_tracked)
		bpf_map_delete_elem(&tracked, &tgid);
	return 0;
}

/* ---------------------------------------------------------------- network */

static __always_inline struct sock *sock_of_fd(__u32 fd)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct file **fds = BPF_CORE_READ(t, files, fdt, fd);
	unsigned int max = BPF_CORE_READ(t, files, fdt, max_fds);
	struct file *f = NULL;
	struct socket *s;

	if (fd >= max)
		return NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return NULL;
	if ((BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	s = BPF_CORE_READ(f, private_data);
	if (!s)
		return NULL;
	return BPF_CORE_READ(s, sk);
}

/* Fill family and the peer ("d") or local ("s") address of sk. */
static __always_inline void sock_addrs(struct rw_net *e, struct sock *sk)
{
	e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->proto = BPF_CORE_READ(sk, sk_protocol);
	e->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (e->family == AF_INET6) {
		BPF_CORE_READ_INTO(&e->saddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&e->daddr, sk, __sk_common.skc_v6_daddr);
	} else {
		BPF_CORE_READ_INTO((__u32 *)e->saddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)e->daddr, sk, __sk_common.skc_daddr);
	}
}

/* Copy a user sockaddr (family, port, address) into rw_net's destination. */
static __always_inline bool sa_to_dst(struct rw_net *e, const __u8 *sa)
{
	__u16 fam = *(__u16 *)sa;

	if (fam != AF_INET && fam != AF_INET6)
		return false;
	e->family = fam;
	e->dport = bpf_ntohs(*(__u16 *)(sa + 2));
	if (fam == AF_INET)
		__builtin_memcpy(e->daddr, sa + 4, 4);
	else
		__builtin_memcpy(e->daddr, sa + 8, 16);
	return true;
}

static __always_inline int stash_sa(__u32 fd, const void *uaddr, __u32 len)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct pending_sa p = {};

	if (!wanted())
		return 0;
	p.fd = fd;
	p.len = len > sizeof(p.sa) ? sizeof(p.sa) : len;
	if (bpf_probe_read_user(p.sa, sizeof(p.sa), uaddr) &&
	    bpf_probe_read_user(p.sa, 16, uaddr))
		return 0;
	if (*(__u16 *)p.sa != AF_INET && *(__u16 *)p.sa != AF_INET6)
		return 0;
	bpf_map_update_elem(&pending, &tid, &p, BPF_ANY);
	return 0;
}

static __always_inline int emit_sa(__u32 kind, long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct pending_sa *p = bpf_map_lookup_elem(&pending, &tid);
	struct sock *sk;

	if (!p)
		return 0;
	{
		RESERVE(struct rw_net, e, kind);
		e->result = ret;
		e->pad = 0;
		e->sport = 0;
		__builtin_memset(e->saddr, 0, sizeof(e->saddr));
		__builtin_memset(e->daddr, 0, sizeof(e->daddr));
		e->proto = 0;
		sk = sock_of_fd(p->fd);
		if (sk) {
			e->proto = BPF_CORE_READ(sk, sk_protocol);
			e->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
		}
		if (!sa_to_dst(e, p->sa)) {
			bpf_ringbuf_discard(e, 0);
			bpf_map_delete_elem(&pending, &tid);
			return 0;
		}
		if (kind == RW_CONNECT && e->proto == IPPROTO_UDP && e->dport == DNS_PORT &&
		    (ret == 0)) {
			__u64 key = (bpf_get_current_pid_tgid() & 0xffffffff00000000ULL) | p->fd;
			struct dns_peer peer = {};

			peer.family = e->family;
			peer.port = e->dport;
			__builtin_memcpy(peer.addr, e->daddr, 16);
			bpf_map_update_elem(&dns_socks, &key, &peer, BPF_ANY);
		}
		SUBMIT(e);
	}
	bpf_map_delete_elem(&pending, &tid);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_connect")
int rw_connect_enter(struct trace_event_raw_sys_enter *ctx)
{
	return stash_sa(ctx->args[0], (void *)ctx->args[1], ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_exit_connect")
int rw_connect_exit(struct trace_event_raw_sys_exit *ctx)
{
	return emit_sa(RW_CONNECT, ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_bind")
int rw_bind_enter(struct trace_event_raw_sys_enter *ctx)
{
	return stash_sa(ctx->args[0], (void *)ctx->args[1], ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_exit_bind")
int rw_bind_exit(struct trace_event_raw_sys_exit *ctx)
{
	return emit_sa(RW_BIND, ctx->ret);
}

static __always_inline int sock_event(__u32 kind, long fd, long result)
{
	struct sock *sk;

	if (fd < 0 || !wanted())
		return 0;
	sk = sock_of_fd(fd);
	if (!sk)
		return 0;
	{
		__u16 fam = BPF_CORE_READ(sk, __sk_common.skc_family);

		if (fam != AF_INET && fam != AF_INET6)
			return 0;
	}
	{
		RESERVE(struct rw_net, e, kind);
		e->result = result;
		e->pad = 0;
		__builtin_memset(e->saddr, 0, sizeof(e->saddr));
		__builtin_memset(e->daddr, 0, sizeof(e->daddr));
		sock_addrs(e, sk);
		SUBMIT(e);
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int rw_accept4_exit(struct trace_event_raw_sys_exit *ctx)
{
	return sock_event(RW_ACCEPT, ctx->ret, ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int rw_accept_exit(struct trace_event_raw_sys_exit *ctx)
{
	return sock_event(RW_ACCEPT, ctx->ret, ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_listen")
int rw_listen(struct trace_event_raw_sys_enter *ctx)
{
	return sock_event(RW_LISTEN, ctx->args[0], ctx->args[1]);
}

/* DNS: the head of a UDP payload sent to port 53, parsed in userspace. */
static __always_inline int dns_emit(__u32 fd, const void *buf, __u64 len, const __u8 *sa)
{
	struct dns_peer peer = {};

	if (sa) {
		__u16 fam = *(__u16 *)sa;

		if (fam != AF_INET && fam != AF_INET6)
			return 0;
		if (bpf_ntohs(*(__u16 *)(sa + 2)) != DNS_PORT)
			return 0;
		peer.family = fam;
		peer.port = DNS_PORT;
		if (fam == AF_INET)
			__builtin_memcpy(peer.addr, sa + 4, 4);
		else
			__builtin_memcpy(peer.addr, sa + 8, 16);
	} else {
		__u64 key = (bpf_get_current_pid_tgid() & 0xffffffff00000000ULL) | fd;
		struct dns_peer *p = bpf_map_lookup_elem(&dns_socks, &key);
		struct sock *sk;

		if (!p)
			return 0;
		/* The fd may have been closed and reused since connect(): check it is
		 * still a UDP socket connected to port 53. */
		sk = sock_of_fd(fd);
		if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_UDP ||
		    bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport)) != DNS_PORT) {
			bpf_map_delete_elem(&dns_socks, &key);
			return 0;
		}
		peer = *p;
	}
	if (!wanted() || len < 12)
		return 0;
	{
		RESERVE(struct rw_dns, e, RW_DNS);
		e->family = peer.family;
		e->dport = peer.port;
		__builtin_memcpy(e->daddr, peer.addr, 16);
		if (len > RW_DNS_LEN - 1)
			len = RW_DNS_LEN - 1;
		len &= RW_DNS_LEN - 1;
		if (bpf_probe_read_user(e->payload, len, buf))
			len = 0;
		e->len = len;
		SUBMIT(e);
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int rw_sendto(struct trace_event_raw_sys_enter *ctx)
{
	__u8 sa[28] = {};
	const void *uaddr = (void *)ctx->args[4];

	if (uaddr) {
		if (bpf_probe_read_user(sa, 16, uaddr))
			return 0;
		return dns_emit(ctx->args[0], (void *)ctx->args[1], ctx->args[2], sa);
	}
	return dns_emit(ctx->args[0], (void *)ctx->args[1], ctx->args[2], NULL);
}

static __always_inline int dns_msghdr(__u32 fd, struct user_msghdr *um)
{
	struct user_msghdr m = {};
	struct iovec iov = {};
	__u8 sa[28] = {};

	if (bpf_probe_read_user(&m, sizeof(m), um) || !m.msg_iov || !m.msg_iovlen)
		return 0;
	if (bpf_probe_read_user(&iov, sizeof(iov), m.msg_iov))
		return 0;
	if (m.msg_name) {
		if (bpf_probe_read_user(sa, 16, m.msg_name))
			return 0;
		return dns_emit(fd, iov.iov_base, iov.iov_len, sa);
	}
	return dns_emit(fd, iov.iov_base, iov.iov_len, NULL);
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int rw_sendmsg(struct trace_event_raw_sys_enter *ctx)
{
	return dns_msghdr(ctx->args[0], (struct user_msghdr *)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_sendmmsg")
int rw_sendmmsg(struct trace_event_raw_sys_enter *ctx)
{
	/* glibc sends the A and AAAA questions together; both name the same host. */
	return dns_msghdr(ctx->args[0], (struct user_msghdr *)ctx->args[1]);
}

/* ---------------------------------------------------------------- files */

#define AT_FDCWD -100
#define PATH_MASK (RW_PATH_LEN - 1)

/* The current task's file at fd (the fd table through typed loads, the slot by a read). */
static __always_inline struct file *file_of_fd(int fd)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct files_struct *files = t->files;
	struct file **fds;
	struct fdtable *fdt;
	struct file *f = NULL;

	if (fd < 0 || !files)
		return NULL;
	fdt = files->fdt;
	if (!fdt || (unsigned int)fd >= fdt->max_fds)
		return NULL;
	fds = fdt->fd;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]))
		return NULL;
	return f;
}

/* State of a directory's path walk (dir_path), one bpf_loop step per component: kept in a
 * per-CPU map, so the verifier checks each step once, not once per state it can reach. */
struct dir_walk {
	__u64 d;     /* struct dentry */
	__u64 m;     /* struct mount */
	__u64 root;  /* the task's root dentry */
	__u64 parts[RW_CWD_DEPTH];
	__u32 n;     /* parts found, deepest first */
	__u32 done;  /* reached the root */
	__u32 off;   /* bytes written */
	__u32 fail;  /* a name did not fit */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dir_walk);
} dir_walks SEC(".maps");

/* Where dir_write writes (the caller's buffer, a map value). */
struct dir_out {
	char *buf;
};

static __always_inline struct dir_walk *dir_state(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&dir_walks, &zero);
}

/* One step up: a component into parts, or across a mount. Returns 1 to stop. */
static long dir_up(__u32 i, void *unused)
{
	struct dir_walk *w = dir_state();
	struct dentry *d, *parent, *mnt_root;
	struct mount *m;

	if (!w)
		return 1;
	if (w->d == w->root) {
		w->done = 1;
		return 1;
	}
	d = (struct dentry *)w->d;
	m = (struct mount *)w->m;
	mnt_root = BPF_CORE_READ(m, mnt.mnt_root);
	if (d == mnt_root) {
		struct mount *mp = BPF_CORE_READ(m, mnt_parent);

		if (mp == m) {
			w->done = 1;
			return 1;
		}
		w->d = (__u64)BPF_CORE_READ(m, mnt_mountpoint);
		w->m = (__u64)mp;
		return 0;
	}
	parent = BPF_CORE_READ(d, d_parent);
	if (parent == d) {
		w->done = 1;
		return 1;
	}
	if (w->n >= RW_CWD_DEPTH)
		return 1;
	w->parts[w->n] = w->d;
	w->n++;
	w->d = (__u64)parent;
	return 0;
}

/* Step i writes "/name" of the i-th component from the top. Returns 1 to stop. */
static long dir_write(__u32 i, void *arg)
{
	struct dir_walk *w = dir_state();
	char *buf = ((struct dir_out *)arg)->buf;
	struct dentry *part;
	__u32 j, off;
	long len;

	if (!w || i >= w->n)
		return 1;
	j = w->n - 1 - i;
	if (j >= RW_CWD_DEPTH)
		return 1;
	part = (struct dentry *)w->parts[j];
	off = w->off;
	buf[off & PATH_MASK] = '/';
	off++;
	len = bpf_probe_read_kernel_str(&buf[off & PATH_MASK], RW_NAME_LEN, BPF_CORE_READ(part, d_name.name));
	if (len <= 1 || len >= RW_NAME_LEN) {
		w->fail = 1;
		return 1;
	}
	off += len - 1;
	if (off >= RW_PATH_LEN - 1) {
		w->fail = 1;
		return 1;
	}
	w->off = off;
	return 0;
}

/* Writes the absolute path (as the task sees it: stops at its root, so a container's
 * view) of directory d on mount vm into buf (a map value of at least RW_PATH_LEN * 2
 * bytes), with a trailing '/'. Returns its length, or -1 if it is too deep or too long to
 * resolve here. */
static __always_inline long dir_path(char *buf, struct dentry *d, struct vfsmount *vm)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct dir_walk *w = dir_state();
	struct dir_out out = { .buf = buf };
	__u32 off;

	if (!w)
		return -1;
	w->root = (__u64)BPF_CORE_READ(t, fs, root.dentry);
	w->m = (__u64)container_of(vm, struct mount, mnt);
	w->d = (__u64)d;
	w->n = 0;
	w->done = 0;
	w->off = 0;
	w->fail = 0;
	bpf_loop(RW_CWD_DEPTH + 4, dir_up, NULL, 0);
	if (!w->done)
		return -1;
	bpf_loop(RW_CWD_DEPTH, dir_write, &out, 0);
	if (w->fail)
		return -1;
	off = w->off;
	buf[off & PATH_MASK] = '/';
	return off + 1;
}

/* Reads a user path (relative ones resolved against dfd or the cwd) into the per-CPU
 * scratch key. *out points at it whenever a path was read. Returns its watch flags or 0. */
static __always_inline __u32 watch_lookup(const char *upath, int dfd, __u32 slot, struct path_key **out)
{
	struct path_scratch *k = bpf_map_lookup_elem(&scratch, &slot);
	__u32 *flags;
	long n, base = 0;

	if (!k)
		return 0;
	n = bpf_probe_read_user_str(k->data, RW_PATH_LEN, upath);
	if (n <= 1)
		return 0;
	if (k->data[0] != '/') {
		struct dentry *d;
		struct vfsmount *vm;

		if (dfd == AT_FDCWD) {
			struct task_struct *t = (struct task_struct *)bpf_get_current_task();

			d = BPF_CORE_READ(t, fs, pwd.dentry);
			vm = BPF_CORE_READ(t, fs, pwd.mnt);
		} else {
			struct file *f = file_of_fd(dfd);

			if (!f)
				return 0;
			d = BPF_CORE_READ(f, f_path.dentry);
			vm = BPF_CORE_READ(f, f_path.mnt);
		}
		base = dir_path(k->data, d, vm);
		if (base <= 0)
			return 0;
		n = bpf_probe_read_user_str(&k->data[base & PATH_MASK], RW_PATH_LEN, upath);
		if (n <= 1)
			return 0;
		n += base & PATH_MASK;
	}
	*out = (struct path_key *)k;
	if (n > RW_PATH_LEN)
		n = RW_PATH_LEN;
	k->prefixlen = (n - 1) * 8;
	flags = bpf_map_lookup_elem(&watched, k);
	if (!flags && n < RW_PATH_LEN) {
		/* a watched directory itself (renamed or removed): try its name with a '/' */
		k->data[(n - 1) & PATH_MASK] = '/';
		k->prefixlen += 8;
		flags = bpf_map_lookup_elem(&watched, k);
		k->prefixlen -= 8;
		k->data[(n - 1) & PATH_MASK] = 0;
	}
	if (!flags)
		return 0;
	if (*flags & RW_WATCH_KEYS) {
		/* keep only names ending in .pem / .key */
		long i = n - 5;

		if (i < 0 || i > RW_PATH_LEN - 5)
			return 0;
		if (k->data[i & PATH_MASK] != '.')
			return 0;
		if (!((k->data[(i + 1) & PATH_MASK] == 'p' && k->data[(i + 2) & PATH_MASK] == 'e' &&
		       k->data[(i + 3) & PATH_MASK] == 'm') ||
		      (k->data[(i + 1) & PATH_MASK] == 'k' && k->data[(i + 2) & PATH_MASK] == 'e' &&
		       k->data[(i + 3) & PATH_MASK] == 'y')))
			return 0;
	}
	return *flags;
}

#include "files.bpf.h"

static __always_inline int path_change(__u32 kind, int dfd1, const char *p1, int dfd2, const char *p2,
				       __u32 flags)
{
	struct path_key *k1 = NULL, *k2 = NULL;
	__u32 w1, w2 = 0;

	if (!wanted())
		return 0;
	w1 = watch_lookup(p1, dfd1, 0, &k1);
	if (p2)
		w2 = watch_lookup(p2, dfd2, 1, &k2);
	if (!(w1 | w2))
		return 0;
	{
		RESERVE(struct rw_file, e, kind);
		e->flags = flags;
		e->pad = 0;
		if (k1)
			__builtin_memcpy(e->path, k1->data, RW_PATH_LEN);
		else
			bpf_probe_read_user_str(e->path, sizeof(e->path), p1);
		e->path2[0] = 0;
		if (k2)
			__builtin_memcpy(e->path2, k2->data, RW_PATH_LEN);
		else if (p2)
			bpf_probe_read_user_str(e->path2, sizeof(e->path2), p2);
		SUBMIT(e);
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_unlinkat")
int rw_unlinkat(struct trace_event_raw_sys_enter *ctx)
{
	return path_change(RW_UNLINK, ctx->args[0], (const char *)ctx->args[1], 0, NULL, ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_unlink")
int rw_unlink(struct trace_event_raw_sys_enter *ctx)
{
	return path_change(RW_UNLINK, AT_FDCWD, (const char *)ctx->args[0], 0, NULL, 0);
}

SEC("tracepoint/syscalls/sys_enter_renameat2")
int rw_renameat2(struct trace_event_raw_sys_enter *ctx)
{
	return path_change(RW_RENAME, ctx->args[0], (const char *)ctx->args[1], ctx->args[2],
			   (const char *)ctx->args[3], ctx->args[4]);
}

SEC("tracepoint/syscalls/sys_enter_renameat")
int rw_renameat(struct trace_event_raw_sys_enter *ctx)
{
	return path_change(RW_RENAME, ctx->args[0], (const char *)ctx->args[1], ctx->args[2],
			   (const char *)ctx->args[3], 0);
}

SEC("tracepoint/syscalls/sys_enter_rename")
int rw_rename(struct trace_event_raw_sys_enter *ctx)
{
	return path_change(RW_RENAME, AT_FDCWD, (const char *)ctx->args[0], AT_FDCWD, (const char *)ctx->args[1], 0);
}

SEC("tracepoint/syscalls/sys_enter_memfd_create")
int rw_memfd(struct trace_event_raw_sys_enter *ctx)
{
	if (!wanted())
		return 0;
	{
		RESERVE(struct rw_file, e, RW_MEMFD);
		e->flags = ctx->args[1];
		e->pad = 0;
		bpf_probe_read_user_str(e->path, sizeof(e->path), (void *)ctx->args[0]);
		e->path2[0] = 0;
		SUBMIT(e);
	}
	return 0;
}

/* ---------------------------------------------------------------- privilege */

static __always_inline struct rw_priv *priv_start(__u32 kind, __u32 op)
{
	struct rw_priv *e;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(kind);
		return NULL;
	}
	fill_hdr(&e->h, kind, sizeof(*e));
	e->op = op;
	e->pad = 0;
	e->arg[0] = e->arg[1] = e->arg[2] = -1;
	e->cap_eff[0] = e->cap_eff[1] = e->cap_prm[0] = e->cap_prm[1] = 0;
	e->cap_inh[0] = e->cap_inh[1] = 0;
	e->path[0] = 0;
	e->path2[0] = 0;
	e->fstype[0] = 0;
	return e;
}

static __always_inline int ids_event(__u32 kind, __u32 op, long a, long b, long c)
{
	struct rw_priv *e;

	if (!wanted())
		return 0;
	e = priv_start(kind, op);
	if (!e)
		return 0;
	e->arg[0] = (__s32)a;
	e->arg[1] = (__s32)b;
	e->arg[2] = (__s32)c;
	SUBMIT(e);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_setuid")
int rw_setuid(struct trace_event_raw_sys_enter *ctx)
{
	return ids_event(RW_SETUID, RW_OP_SETUID, ctx->args[0], -1, -1);
}

SEC("tracepoint/syscalls/sys_enter_setreuid")
int rw_setreuid(struct trace_event_raw_sys_enter *ctx)
{
	return ids_event(RW_SETUID, RW_OP_SETREUID, ctx->args[0], ctx->args[1], -1);
}

SEC("tracepoint/syscalls/sys_enter_setresuid")
int rw_setresuid(struct trace_event_raw_sys_enter *ctx)
{
	return ids_event(RW_SETUID, RW_OP_SETRESUID, ctx->args[0], ctx->args[1], ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_setgid")
int rw_setgid(struct trace_event_raw_sys_enter *ctx)
{
	return ids_event(RW_SETGID, RW_OP_SETGID, ctx->args[0], -1, -1);
}

SEC("tracepoint/syscalls/sys_enter_setregid")
int rw_setregid(struct trace_event_raw_sys_enter *ctx)
{
	return ids_event(RW_SETGID, RW_OP_SETREGID, ctx->args[0], ctx->args[1], -1);
}

SEC("tracepoint/syscalls/sys_enter_setresgid")
int rw_setresgid(struct trace_event_raw_sys_enter *ctx)
{
	return ids_event(RW_SETGID, RW_OP_SETRESGID, ctx->args[0], ctx->args[1], ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_capset")
int rw_capset(struct trace_event_raw_sys_enter *ctx)
{
	struct { __u32 eff, prm, inh; } d[2] = {};
	struct rw_priv *e;

	if (!wanted())
		return 0;
	if (bpf_probe_read_user(d, sizeof(d), (void *)ctx->args[1]) &&
	    bpf_probe_read_user(d, sizeof(d[0]), (void *)ctx->args[1]))
		return 0;
	e = priv_start(RW_CAPSET, 0);
	if (!e)
		return 0;
	e->cap_eff[0] = d[0].eff;
	e->cap_eff[1] = d[1].eff;
	e->cap_prm[0] = d[0].prm;
	e->cap_prm[1] = d[1].prm;
	e->cap_inh[0] = d[0].inh;
	e->cap_inh[1] = d[1].inh;
	SUBMIT(e);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_mount")
int rw_mount(struct trace_event_raw_sys_enter *ctx)
{
	struct rw_priv *e;

	if (!wanted())
		return 0;
	e = priv_start(RW_MOUNT, 0);
	if (!e)
		return 0;
	bpf_probe_read_user_str(e->path2, sizeof(e->path2), (void *)ctx->args[0]);
	bpf_probe_read_user_str(e->path, sizeof(e->path), (void *)ctx->args[1]);
	bpf_probe_read_user_str(e->fstype, sizeof(e->fstype), (void *)ctx->args[2]);
	e->arg[0] = ctx->args[3];
	SUBMIT(e);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_ptrace")
int rw_ptrace(struct trace_event_raw_sys_enter *ctx)
{
	struct rw_priv *e;

	if (!wanted())
		return 0;
	e = priv_start(RW_PTRACE, 0);
	if (!e)
		return 0;
	e->arg[0] = ctx->args[0];
	e->arg[1] = ctx->args[1];
	SUBMIT(e);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_unshare")
int rw_unshare(struct trace_event_raw_sys_enter *ctx)
{
	struct rw_priv *e;

	if (!wanted())
		return 0;
	e = priv_start(RW_UNSHARE, 0);
	if (!e)
		return 0;
	e->arg[0] = ctx->args[0];
	SUBMIT(e);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_setns")
int rw_setns(struct trace_event_raw_sys_enter *ctx)
{
	struct rw_priv *e;

	if (!wanted())
		return 0;
	e = priv_start(RW_SETNS, 0);
	if (!e)
		return 0;
	e->arg[0] = ctx->args[1];
	e->arg[1] = ctx->args[0];
	SUBMIT(e);
	return 0;
}

/* ---------------------------------------------------------------- cgroups */

SEC("tp_btf/cgroup_mkdir")
int BPF_PROG(rw_cgroup_mkdir, struct cgroup *cgrp, const char *path)
{
	/* Only the v2 (default) hierarchy: its ids are what bpf_get_current_cgroup_id gives.
	 * Not filtered by tracking: attribution needs every container's cgroup. */
	if (BPF_CORE_READ(cgrp, root, hierarchy_id) != 0)
		return 0;
	{
		RESERVE(struct rw_cgroup, e, RW_CGROUP_MKDIR);
		e->id = BPF_CORE_READ(cgrp, kn, id);
		e->level = BPF_CORE_READ(cgrp, level);
		e->pad = 0;
		bpf_probe_read_kernel_str(e->path, sizeof(e->path), path);
		SUBMIT(e);
	}
	return 0;
}

#include "kinds.bpf.h"
#include "net.bpf.h"

char LICENSE[] SEC("license") = "GPL";
