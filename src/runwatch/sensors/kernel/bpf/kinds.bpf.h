/* SPDX-License-Identifier: GPL-2.0 */
/* Kinds beyond the first twenty: links, symlinks, chmod, mkdir/rmdir, socket creation,
 * sockets duplicated onto the standard streams, kernel module and BPF program loads,
 * userfaultfd, io_uring setup, failed execs, and the allow-listed environment of an exec.
 *
 * Included at the end of runwatch.bpf.c: it uses that file's maps and helpers (wanted,
 * RESERVE, watch_lookup, dir_path, file_of_fd, sock_of_fd, priv_start). None of these
 * syscalls is on a hot path, so every call of a reported process is reported; only socket
 * creation is filtered (ordinary TCP/UDP, unix and netlink sockets are left out). The
 * environment walk costs one hash lookup per variable of each exec.
 */
#ifndef RUNWATCH_KINDS_BPF_H
#define RUNWATCH_KINDS_BPF_H

#define AF_UNIX 1
#define AF_NETLINK 16
#define AF_PACKET 17
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define SOCK_TYPE_MASK 0xf
#define BPF_PROG_LOAD_CMD 5
#define BPF_OBJ_NAME_LEN 16

struct rw_sock *_rw_sock __attribute__((unused));

/* The user path at p (relative ones resolved against dfd or the cwd, as opens are) into
 * dst; the string as given when it cannot be resolved. */
static __always_inline void user_path(char *dst, const char *p, int dfd, __u32 slot)
{
	struct path_key *k = NULL;

	watch_lookup(p, dfd, slot, &k);
	if (k)
		__builtin_memcpy(dst, k->data, RW_PATH_LEN);
	else
		bpf_probe_read_user_str(dst, RW_PATH_LEN, p);
}

/* The path of the file open at fd (its directory's path plus its name) into dst. */
static __always_inline void fd_path(char *dst, int fd)
{
	__u32 zero = 0;
	struct exe_scratch *s = bpf_map_lookup_elem(&exe_buf, &zero);
	struct file *f = file_of_fd(fd);
	struct dentry *d;
	long off;

	dst[0] = 0;
	if (!f || !s)
		return;
	d = BPF_CORE_READ(f, f_path.dentry);
	off = dir_path(s->data, BPF_CORE_READ(d, d_parent), BPF_CORE_READ(f, f_path.mnt));
	if (off <= 0)
		return;
	if (bpf_probe_read_kernel_str(&s->data[off & PATH_MASK], RW_NAME_LEN, BPF_CORE_READ(d, d_name.name)) <= 1)
		return;
	__builtin_memcpy(dst, s->data, RW_PATH_LEN);
	dst[RW_PATH_LEN - 1] = 0;
}

/* A file event with one or two paths (p2 may be NULL); raw1: p1 is kept as given
 * (a symlink's target is not a path of the caller's). */
static __always_inline int path_kind(__u32 kind, int dfd1, const char *p1, int dfd2, const char *p2,
				     __u32 flags, bool raw1)
{
	if (!wanted())
		return 0;
	{
		RESERVE(struct rw_file, e, kind);
		e->flags = flags;
		e->pad = 0;
		e->path2[0] = 0;
		if (raw1)
			bpf_probe_read_user_str(e->path, sizeof(e->path), p1);
		else
			user_path(e->path, p1, dfd1, 0);
		if (p2)
			user_path(e->path2, p2, dfd2, 1);
		SUBMIT(e);
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_link")
int rw_link(struct trace_event_raw_sys_enter *ctx)
{
	return path_kind(RW_LINK, AT_FDCWD, (const char *)ctx->args[0], AT_FDCWD, (const char *)ctx->args[1], 0,
			 false);
}

SEC("tracepoint/syscalls/sys_enter_linkat")
int rw_linkat(struct trace_event_raw_sys_enter *ctx)
{
	return path_kind(RW_LINK, ctx->args[0], (const char *)ctx->args[1], ctx->args[2], (const char *)ctx->args[3],
			 ctx->args[4], false);
}

SEC("tracepoint/syscalls/sys_enter_symlink")
int rw_symlink(struct trace_event_raw_sys_enter *ctx)
{
	return path_kind(RW_SYMLINK, AT_FDCWD, (const char *)ctx->args[0], AT_FDCWD, (const char *)ctx->args[1], 0,
			 true);
}

SEC("tracepoint/syscalls/sys_enter_symlinkat")
int rw_symlinkat(struct trace_event_raw_sys_enter *ctx)
{
	return path_kind(RW_SYMLINK, AT_FDCWD, (const char *)ctx->args[0], ctx->args[1], (const char *)ctx->args[2],
			 0, true);
}

SEC("tracepoint/syscalls/sys_enter_chmod")
int rw_chmod(struct trace_event_raw_sys_enter *ctx)
{
	return path_kind(RW_CHMOD, AT_FDCWD, (const char *)ctx->args[0], 0, NULL, ctx->args[1], false);
}

SEC("tracepoint/syscalls/sys_enter_fchmodat")
int rw_fchmodat(struct trace_event_raw_sys_enter *ctx)
{
	return path_kind(RW_CHMOD, ctx->args[0], (const char *)ctx->args[1], 0, NULL, ctx->args[2], false);
}

SEC("tracepoint/syscalls/sys_enter_fchmodat2")
int rw_fchmodat2(struct trace_event_raw_sys_enter *ctx)
{
	return path_kind(RW_CHMOD, ctx->args[0], (const char *)ctx->args[1], 0, NULL, ctx->args[2], false);
}

SEC("tracepoint/syscalls/sys_enter_fchmod")
int rw_fchmod(struct trace_event_raw_sys_enter *ctx)
{
	if (!wanted())
		return 0;
	{
		RESERVE(struct rw_file, e, RW_CHMOD);
		e->flags = ctx->args[1];
		e->pad = 0;
		e->path2[0] = 0;
		fd_path(e->path, ctx->args[0]);
		SUBMIT(e);
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_mkdir")
int rw_mkdir(struct trace_event_raw_sys_enter *ctx)
{
	return path_kind(RW_MKDIR, AT_FDCWD, (const char *)ctx->args[0], 0, NULL, ctx->args[1], false);
}

SEC("tracepoint/syscalls/sys_enter_mkdirat")
int rw_mkdirat(struct trace_event_raw_sys_enter *ctx)
{
	return path_kind(RW_MKDIR, ctx->args[0], (const char *)ctx->args[1], 0, NULL, ctx->args[2], false);
}

SEC("tracepoint/syscalls/sys_enter_rmdir")
int rw_rmdir(struct trace_event_raw_sys_enter *ctx)
{
	return path_kind(RW_RMDIR, AT_FDCWD, (const char *)ctx->args[0], 0, NULL, 0, false);
}

/* ------------------------------------------------------------ sockets */

static __always_inline void sock_fill(struct rw_sock *e, struct sock *sk)
{
	e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->type = BPF_CORE_READ(sk, sk_type);
	e->proto = BPF_CORE_READ(sk, sk_protocol);
	/* a packet socket keeps its ethertype in packet_sock.num, not sk_protocol */
	if (e->family == AF_PACKET && bpf_core_type_exists(struct packet_sock))
		e->proto = BPF_CORE_READ((struct packet_sock *)sk, num);
	e->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	__builtin_memset(e->daddr, 0, sizeof(e->daddr));
	if (e->family == AF_INET6)
		BPF_CORE_READ_INTO(&e->daddr, sk, __sk_common.skc_v6_daddr);
	else if (e->family == AF_INET)
		BPF_CORE_READ_INTO((__u32 *)e->daddr, sk, __sk_common.skc_daddr);
	else
		e->dport = 0;
}

/* Reported at exit, read from the socket made: raw and packet sockets and any family other
 * than unix and netlink; TCP and UDP sockets show up at connect, bind and send instead. */
SEC("tracepoint/syscalls/sys_exit_socket")
int rw_socket_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct sock *sk;
	__u16 fam, type;

	if (ctx->ret < 0 || !wanted())
		return 0;
	sk = sock_of_fd(ctx->ret);
	if (!sk)
		return 0;
	fam = BPF_CORE_READ(sk, __sk_common.skc_family);
	type = BPF_CORE_READ(sk, sk_type) & SOCK_TYPE_MASK;
	if (fam == AF_UNIX || fam == AF_NETLINK)
		return 0;
	if ((fam == AF_INET || fam == AF_INET6) && (type == SOCK_STREAM || type == SOCK_DGRAM))
		return 0;
	{
		RESERVE(struct rw_sock, e, RW_SOCKET);
		e->fd = ctx->ret;
		e->oldfd = -1;
		sock_fill(e, sk);
		e->dport = 0;
		SUBMIT(e);
	}
	return 0;
}

/* dup2/dup3 (and dup, at its exit) of a socket onto fd 0, 1 or 2: a shell reading and
 * writing a connection. The socket is read through oldfd, or through newfd once dup made it
 * (oldfd -1: dup's argument is not at hand at its exit). */
static __always_inline int redirect_event(long oldfd, long newfd)
{
	struct sock *sk;

	if (newfd < 0 || newfd > 2 || oldfd < -1 || !wanted())
		return 0;
	sk = sock_of_fd(oldfd >= 0 ? oldfd : newfd);
	if (!sk)
		return 0;
	{
		RESERVE(struct rw_sock, e, RW_REDIRECT);
		e->fd = newfd;
		e->oldfd = oldfd;
		sock_fill(e, sk);
		SUBMIT(e);
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_dup2")
int rw_dup2(struct trace_event_raw_sys_enter *ctx)
{
	return redirect_event(ctx->args[0], ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_dup3")
int rw_dup3(struct trace_event_raw_sys_enter *ctx)
{
	return redirect_event(ctx->args[0], ctx->args[1]);
}

/* dup gives the lowest free descriptor: 0, 1 or 2 once the stream was closed first. */
SEC("tracepoint/syscalls/sys_exit_dup")
int rw_dup_exit(struct trace_event_raw_sys_exit *ctx)
{
	return redirect_event(-1, ctx->ret);
}

/* ------------------------------------------------------------ kernel extension */

SEC("tracepoint/syscalls/sys_enter_init_module")
int rw_init_module(struct trace_event_raw_sys_enter *ctx)
{
	struct rw_priv *e;

	if (!wanted())
		return 0;
	e = priv_start(RW_MODULE_LOAD, RW_OP_INIT_MODULE);
	if (!e)
		return 0;
	e->arg[0] = ctx->args[1];
	bpf_probe_read_user_str(e->path2, sizeof(e->path2), (void *)ctx->args[2]);
	SUBMIT(e);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_finit_module")
int rw_finit_module(struct trace_event_raw_sys_enter *ctx)
{
	struct rw_priv *e;

	if (!wanted())
		return 0;
	e = priv_start(RW_MODULE_LOAD, RW_OP_FINIT_MODULE);
	if (!e)
		return 0;
	e->arg[0] = (__s32)ctx->args[0];
	e->arg[1] = (__s32)ctx->args[2];
	fd_path(e->path, ctx->args[0]);
	bpf_probe_read_user_str(e->path2, sizeof(e->path2), (void *)ctx->args[1]);
	SUBMIT(e);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_bpf")
int rw_bpf(struct trace_event_raw_sys_enter *ctx)
{
	const char *uattr = (const char *)ctx->args[1];
	__u32 head[2] = {};
	struct rw_priv *e;

	if (ctx->args[0] != BPF_PROG_LOAD_CMD || !wanted())
		return 0;
	if (bpf_probe_read_user(head, sizeof(head), uattr))
		return 0;
	e = priv_start(RW_BPF_LOAD, RW_OP_BPF_PROG_LOAD);
	if (!e)
		return 0;
	e->arg[0] = head[0]; /* prog_type */
	e->arg[1] = head[1]; /* insn_cnt */
	if (ctx->args[2] >= __builtin_offsetof(union bpf_attr, prog_name) + BPF_OBJ_NAME_LEN)
		bpf_probe_read_user_str(e->path2, BPF_OBJ_NAME_LEN, uattr + __builtin_offsetof(union bpf_attr, prog_name));
	SUBMIT(e);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_userfaultfd")
int rw_userfaultfd(struct trace_event_raw_sys_enter *ctx)
{
	struct rw_priv *e;

	if (!wanted())
		return 0;
	e = priv_start(RW_USERFAULTFD, RW_OP_USERFAULTFD);
	if (!e)
		return 0;
	e->arg[0] = (__s32)ctx->args[0];
	SUBMIT(e);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_io_uring_setup")
int rw_io_uring_setup(struct trace_event_raw_sys_enter *ctx)
{
	__u32 flags = 0;
	struct rw_priv *e;

	if (!wanted())
		return 0;
	bpf_probe_read_user(&flags, sizeof(flags),
			    (const char *)ctx->args[1] + __builtin_offsetof(struct io_uring_params, flags));
	e = priv_start(RW_IO_URING_SETUP, RW_OP_IO_URING_SETUP);
	if (!e)
		return 0;
	e->arg[0] = (__u32)ctx->args[0];
	e->arg[1] = flags;
	SUBMIT(e);
	return 0;
}

/* ------------------------------------------------------------ failed exec */

/* The filename pointer of an execve in flight, by thread id: still readable when it fails. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} exec_names SEC(".maps");

static __always_inline int exec_stash(const char *name)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 p = (__u64)name;

	if (wanted())
		bpf_map_update_elem(&exec_names, &tid, &p, BPF_ANY);
	return 0;
}

static __always_inline int exec_result(long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 *p = bpf_map_lookup_elem(&exec_names, &tid);
	const char *name;

	if (!p)
		return 0;
	name = (const char *)*p;
	bpf_map_delete_elem(&exec_names, &tid);
	if (ret >= 0)
		return 0;
	{
		RESERVE(struct rw_file, e, RW_EXEC_FAILED);
		e->flags = -ret;
		e->pad = 0;
		e->path2[0] = 0;
		bpf_probe_read_user_str(e->path, sizeof(e->path), name);
		SUBMIT(e);
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_execve")
int rw_execve_enter(struct trace_event_raw_sys_enter *ctx)
{
	return exec_stash((const char *)ctx->args[0]);
}

SEC("tracepoint/syscalls/sys_exit_execve")
int rw_execve_exit(struct trace_event_raw_sys_exit *ctx)
{
	return exec_result(ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_execveat")
int rw_execveat_enter(struct trace_event_raw_sys_enter *ctx)
{
	return exec_stash((const char *)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_exit_execveat")
int rw_execveat_exit(struct trace_event_raw_sys_exit *ctx)
{
	return exec_result(ctx->ret);
}

/* ------------------------------------------------------------ exec environment */

#define RW_ENV_STRINGS 128 /* strings (or 255-byte pieces of long ones) looked at */

struct rw_env *_rw_env __attribute__((unused));

/* Allow-listed variable names (NUL padded) -> 1, filled by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, char[RW_ENV_NAME]);
	__type(value, __u8);
} env_allow SEC(".maps");

struct env_walk {
	__u64 pos, end;
	struct rw_env *e;
	struct path_scratch *buf;
	bool cont; /* pos is inside a long string: not a name */
};

static long env_step(__u32 i, void *arg)
{
	struct env_walk *w = arg;
	char name[RW_ENV_NAME] = {};
	struct rw_env *e = w->e;
	long n;
	bool eq = false;

	if (w->pos >= w->end)
		return 1;
	n = bpf_probe_read_user_str(w->buf->data, RW_PATH_LEN, (void *)w->pos);
	if (n <= 0)
		return 1;
	if (!w->cont) {
		for (int j = 0; j < RW_ENV_NAME - 1; j++) {
			char c = w->buf->data[j];

			if (c == '=') {
				eq = true;
				break;
			}
			if (!c)
				break;
			name[j] = c;
		}
		if (eq && bpf_map_lookup_elem(&env_allow, name)) {
			if (e->len > RW_ENV_LEN - RW_PATH_LEN) {
				e->truncated = 1;
			} else {
				bpf_probe_read_kernel(&e->data[e->len & (RW_ENV_LEN - 1)], n & (RW_PATH_LEN - 1),
						      w->buf->data);
				e->len += n & (RW_PATH_LEN - 1);
				e->data[(e->len - 1) & (RW_ENV_LEN - 1)] = 0;
				e->count++;
			}
		}
	}
	w->cont = n == RW_PATH_LEN;
	w->pos += w->cont ? RW_PATH_LEN - 1 : n;
	return 0;
}

/* Runs before rw_exec (programs attach in name order), so the record precedes the exec's. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(rw_env_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 slot = 1;
	struct env_walk w = {};

	if (!wanted())
		return 0;
	w.buf = bpf_map_lookup_elem(&scratch, &slot);
	if (!w.buf)
		return 0;
	w.pos = BPF_CORE_READ(p, mm, env_start);
	w.end = BPF_CORE_READ(p, mm, env_end);
	{
		RESERVE(struct rw_env, e, RW_EXEC_ENV);
		e->count = e->len = e->truncated = e->pad = 0;
		w.e = e;
		bpf_loop(RW_ENV_STRINGS, env_step, &w, 0);
		if (w.pos < w.end)
			e->truncated = 1;
		if (!e->count) {
			bpf_ringbuf_discard(e, 0);
			return 0;
		}
		SUBMIT(e);
	}
	return 0;
}

#endif
