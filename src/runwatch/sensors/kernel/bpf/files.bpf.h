/* SPDX-License-Identifier: GPL-2.0 */
/* file.open from the opened file itself (included by runwatch.bpf.c).
 *
 * The entry of open/openat/openat2/creat/open_by_handle_at only keeps the open flags per
 * thread. At the exit, a successful open's struct file is taken from the fd table and
 * its dentry and mount chain walked up to the task's root (bpf_loop, one component per
 * step): that canonical path, not the string the caller passed, is matched against the
 * watched prefixes. Symlinks, "..", "//", "/./", /proc/self/root, RESOLVE_IN_ROOT and
 * file handles all end at the same dentry, so at the same path.
 *
 * Besides prefixes: names (a component, anywhere) and suffixes (the leaf's extension) in
 * watch_names, and inodes in watch_inodes (watched directories and files found at load
 * time, and hard-linked watched files seen since), so a file reached through a hard link
 * or below a renamed watched directory is still reported.
 */
#ifndef RUNWATCH_FILES_BPF_H
#define RUNWATCH_FILES_BPF_H

#define CANON_END (RW_PATH_LEN * 2 - 1) /* the canonical path ends here in canon_buf */
#define CANON_MASK (RW_PATH_LEN * 2 - 1)
#define RW_EXT_SCAN 16                  /* bytes from the end searched for the extension's dot */

/* An open's arguments from syscall entry to exit, per thread: the path as passed is
 * only read if the open fails (a refused attempt is still reported, by that string). */
struct open_args {
	__u32 flags;
	__s32 dfd;
	__u64 upath;
	__u32 armed;    /* set at entry, cleared at exit */
	__u32 pad;
};

/* Task-local storage: cheaper than a hash keyed by thread id on every open. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct open_args);
} open_flags SEC(".maps");

/* Watched names: a leaf name, a directory name anywhere on the path, or a leaf's
 * extension (enum rw_name_kind) -> enum rw_watch_flags. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct rw_name_key);
	__type(value, __u32);
} watch_names SEC(".maps");

/* First bytes of the watched leaf names and directory names (a bit each), so a component
 * that cannot match costs no hash lookup. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rw_name_first);
} name_first SEC(".maps");

/* Watched inodes (files and directories) -> enum rw_watch_flags. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct rw_ino_key);
	__type(value, __u32);
} watch_inodes SEC(".maps");

/* Per-CPU room for the canonical path, written backwards so it ends at CANON_END; twice
 * the masked range so a component (< RW_NAME_MAX bytes) written at any masked offset fits. */
struct canon_buf {
	char data[RW_PATH_LEN * 4];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct canon_buf);
} canon SEC(".maps");

/* State of the canonical path walk (canon_step), one component per bpf_loop step. */
struct canon_walk {
	struct dentry *d;
	struct mount *m;
	struct dentry *root;
	struct vfsmount *root_mnt;
	struct dentry *mnt_root; /* m's root dentry and device, read once per mount */
	__u32 sdev;
	__u32 pos;      /* the path starts here in canon_buf */
	__u32 depth;    /* components written */
	__u32 flags;    /* watch flags found by name, suffix or inode */
	__u32 done;     /* reached the root: the path is whole */
	__u32 key_ext;  /* the leaf ends in .pem or .key */
	struct rw_name_key nk;
	struct rw_ino_key ik;
};

static __always_inline void name_match(struct canon_walk *w, __u8 kind, const char *src, __u32 len)
{
	__u32 *fl;

	if (len == 0 || len >= RW_NAME_KEY)
		return;
	__builtin_memset(&w->nk, 0, sizeof(w->nk));
	w->nk.kind = kind;
	if (bpf_probe_read_kernel(w->nk.name, len & (RW_NAME_KEY - 1), src))
		return;
	fl = bpf_map_lookup_elem(&watch_names, &w->nk);
	if (fl)
		w->flags |= *fl;
}

/* The leaf's extension (after its last dot, in the last RW_EXT_SCAN bytes) as a suffix key. */
static __always_inline void suffix_match(struct canon_walk *w, struct canon_buf *b, __u32 start, __u32 len)
{
	__u32 end = start + len;

	for (int k = 2; k < RW_EXT_SCAN; k++) {
		char c;

		if (k > len)
			return;
		c = b->data[(end - k) & CANON_MASK];
		if (c == '/')
			return;
		if (c != '.')
			continue;
		if (k == 4) {
			char x = b->data[(end - 3) & CANON_MASK], y = b->data[(end - 2) & CANON_MASK],
			     z = b->data[(end - 1) & CANON_MASK];

			if ((x == 'p' && y == 'e' && z == 'm') || (x == 'k' && y == 'e' && z == 'y'))
				w->key_ext = 1;
		}
		name_match(w, RW_NAME_SUFFIX, &b->data[(end - k + 1) & CANON_MASK], k - 1);
		return;
	}
}

/* One step up: cross a mount point, or prepend d's name and go to its parent. Returns 1 to stop. */
static long canon_step(__u32 i, void *arg)
{
	struct canon_walk *w = arg;
	struct dentry *d = w->d;
	struct mount *m = w->m;
	struct dentry *parent;
	const unsigned char *name;
	struct rw_name_first *nf;
	struct canon_buf *b;
	__u32 zero = 0, len, pos = w->pos, *fl;
	struct qstr q;
	__u8 first;

	if (d == w->root && &m->mnt == w->root_mnt) {
		w->done = 1;
		return 1;
	}
	if (d == w->mnt_root) {
		struct mount *mp = BPF_CORE_READ(m, mnt_parent);

		if (mp == m) {
			w->done = 1;
			return 1;
		}
		w->d = BPF_CORE_READ(m, mnt_mountpoint);
		w->m = mp;
		w->mnt_root = BPF_CORE_READ(mp, mnt.mnt_root);
		w->sdev = BPF_CORE_READ(mp, mnt.mnt_sb, s_dev);
		return 0;
	}
	parent = BPF_CORE_READ(d, d_parent);
	if (parent == d) {
		w->done = 1;
		return 1;
	}
	w->ik.ino = BPF_CORE_READ(d, d_inode, i_ino);
	w->ik.dev = w->sdev;
	fl = bpf_map_lookup_elem(&watch_inodes, &w->ik);
	if (fl)
		w->flags |= *fl;
	BPF_CORE_READ_INTO(&q, d, d_name);
	len = q.len;
	name = q.name;
	if (len == 0 || len >= RW_NAME_MAX || pos > CANON_END || CANON_END - pos + len + 1 > RW_PATH_LEN - 1)
		return 1; /* too long for the record: the walk is not done */
	b = bpf_map_lookup_elem(&canon, &zero);
	nf = bpf_map_lookup_elem(&name_first, &zero);
	if (!b || !nf)
		return 1;
	pos -= len;
	if (bpf_probe_read_kernel(&b->data[pos & CANON_MASK], len & (RW_NAME_MAX - 1), name))
		return 1;
	first = (__u8)b->data[pos & CANON_MASK];
	if ((w->depth ? nf->dir : nf->leaf)[(first >> 6) & 3] & (1ULL << (first & 63)))
		name_match(w, w->depth ? RW_NAME_DIR : RW_NAME_LEAF, (const char *)name, len);
	if (!w->depth)
		suffix_match(w, b, pos, len);
	pos -= 1;
	b->data[pos & CANON_MASK] = '/';
	w->pos = pos;
	w->depth++;
	w->d = parent;
	return 0;
}

static __always_inline bool intent_wanted(__u32 wflags, __u32 oflags)
{
	bool writes = (oflags & O_ACCMODE) != 0 || (oflags & (O_CREAT | O_TRUNC));

	return writes ? (wflags & RW_WATCH_WRITE) : (wflags & RW_WATCH_READ);
}

/* A failed open: no file to resolve, so match the path as passed (as dir_path resolves
 * a relative one). */
static __always_inline int open_failed(struct open_args *a, long ret)
{
	struct path_key *k = NULL;
	__u32 wflags;

	if (!a->upath)
		return 0;
	wflags = watch_lookup((const char *)a->upath, a->dfd, 0, &k);
	if (!k || !intent_wanted(wflags, a->flags))
		return 0;
	{
		RESERVE(struct rw_file, e, RW_OPEN);
		e->flags = a->flags;
		e->pad = 0;
		__builtin_memcpy(e->path, k->data, RW_PATH_LEN);
		e->path2[0] = 0;
		e->ino = 0;
		e->dev = 0;
		e->fattrs = 0;
		e->result = ret;
		e->pad2 = 0;
		SUBMIT(e);
	}
	return 0;
}

/* An opened file: walk it to its canonical path and report it if it is watched for what
 * the open flags ask (read or write). */
static __noinline int file_report(struct file *f, __u32 oflags)
{
	__u32 zero = 0, lpm = 0, plen;
	struct canon_walk w = {};
	struct path_scratch *k;
	struct canon_buf *b;
	struct inode *ino;

	if (!f)
		return 0;
	b = bpf_map_lookup_elem(&canon, &zero);
	k = bpf_map_lookup_elem(&scratch, &zero);
	if (!b || !k)
		return 0;
	{
		struct task_struct *t = (struct task_struct *)bpf_get_current_task();

		w.d = BPF_CORE_READ(f, f_path.dentry);
		w.m = container_of(BPF_CORE_READ(f, f_path.mnt), struct mount, mnt);
		w.root = BPF_CORE_READ(t, fs, root.dentry);
		w.root_mnt = BPF_CORE_READ(t, fs, root.mnt);
	}
	{
		struct mount *m = w.m;

		w.mnt_root = BPF_CORE_READ(m, mnt.mnt_root);
		w.sdev = BPF_CORE_READ(m, mnt.mnt_sb, s_dev);
	}
	w.pos = CANON_END;
	b->data[CANON_END] = 0;
	bpf_loop(RW_EXE_DEPTH + 8, canon_step, &w, 0);
	if (w.pos > CANON_END)
		return 0;
	if (w.pos == CANON_END) {
		w.pos--;
		b->data[w.pos & CANON_MASK] = '/';
	}
	plen = CANON_END - w.pos;
	if (bpf_probe_read_kernel(k->data, RW_PATH_LEN, &b->data[w.pos & CANON_MASK]))
		return 0;
	if (w.done) {
		__u32 *fl;

		k->prefixlen = plen * 8;
		fl = bpf_map_lookup_elem(&watched, k);
		if (fl && (!(*fl & RW_WATCH_KEYS) || w.key_ext))
			lpm = *fl;
	}
	if (!intent_wanted(lpm | w.flags, oflags))
		return 0;
	ino = BPF_CORE_READ(f, f_inode);
	w.ik.ino = BPF_CORE_READ(ino, i_ino);
	w.ik.dev = BPF_CORE_READ(ino, i_sb, s_dev);
	w.ik.pad = 0;
	if (lpm && BPF_CORE_READ(ino, __i_nlink) > 1)
		bpf_map_update_elem(&watch_inodes, &w.ik, &lpm, BPF_NOEXIST); /* its other names too */
	{
		RESERVE(struct rw_file, e, RW_OPEN);
		e->flags = oflags;
		e->pad = 0;
		__builtin_memcpy(e->path, k->data, RW_PATH_LEN);
		e->path2[0] = 0;
		e->ino = w.ik.ino;
		e->dev = w.ik.dev;
		e->fattrs = w.done ? 0 : RW_FILE_TRUNCATED;
		e->result = 0;
		e->pad2 = 0;
		SUBMIT(e);
	}
	return 0;
}

/* The exit of an open: resolve the new fd's file and report it if it is watched. */
static __always_inline int open_exit(long ret)
{
	struct open_args *fp, a;

	fp = bpf_task_storage_get(&open_flags, bpf_get_current_task_btf(), 0, 0);
	if (!fp || !fp->armed)
		return 0;
	fp->armed = 0;
	a = *fp;
	if (ret < 0)
		return open_failed(&a, ret);
	return file_report(file_of_fd(ret), a.flags);
}

static __always_inline int open_enter(__u32 oflags, int dfd, const void *upath)
{
	struct open_args *a;

	if (!wanted())
		return 0;
	a = bpf_task_storage_get(&open_flags, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!a)
		return 0;
	a->flags = oflags;
	a->dfd = dfd;
	a->upath = (__u64)upath;
	a->armed = 1;
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int rw_openat(struct trace_event_raw_sys_enter *ctx)
{
	return open_enter(ctx->args[2], ctx->args[0], (void *)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_open")
int rw_open(struct trace_event_raw_sys_enter *ctx)
{
	return open_enter(ctx->args[1], AT_FDCWD, (void *)ctx->args[0]);
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int rw_openat2(struct trace_event_raw_sys_enter *ctx)
{
	struct open_how how = {};

	if (bpf_probe_read_user(&how, sizeof(how.flags), (void *)ctx->args[2]))
		return 0;
	return open_enter(how.flags, ctx->args[0], (void *)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_creat")
int rw_creat(struct trace_event_raw_sys_enter *ctx)
{
	return open_enter(O_CREAT | O_TRUNC | 1 /* O_WRONLY */, AT_FDCWD, (void *)ctx->args[0]);
}

SEC("tracepoint/syscalls/sys_exit_creat")
int rw_creat_exit(struct trace_event_raw_sys_exit *ctx)
{
	return open_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_open_by_handle_at")
int rw_open_by_handle_at(struct trace_event_raw_sys_enter *ctx)
{
	return open_enter(ctx->args[2], AT_FDCWD, NULL);
}

SEC("tracepoint/syscalls/sys_exit_openat")
int rw_openat_exit(struct trace_event_raw_sys_exit *ctx)
{
	return open_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_open")
int rw_open_exit(struct trace_event_raw_sys_exit *ctx)
{
	return open_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_openat2")
int rw_openat2_exit(struct trace_event_raw_sys_exit *ctx)
{
	return open_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_open_by_handle_at")
int rw_open_by_handle_at_exit(struct trace_event_raw_sys_exit *ctx)
{
	return open_exit(ctx->ret);
}

/* IORING_OP_OPENAT and IORING_OP_OPENAT2, inline or in an io-wq worker (a thread of the
 * same process, sharing its fd table): the file is taken when the completion is posted,
 * from the fd table, or from the ring's fixed-file table for an open into a registered
 * slot (file_slot is the slot + 1, or IORING_FILE_INDEX_ALLOC with the slot as result).
 * A failed io_uring open is not reported: its path has already been freed. */
#define RW_FILE_INDEX_ALLOC (~0U)
#define RW_FFS_MASK (~3UL) /* low bits of a fixed file's pointer are flags */

static __always_inline struct file *fixed_file(struct io_ring_ctx *ctx, __u32 slot)
{
	struct io_rsrc_node **nodes = BPF_CORE_READ(ctx, file_table.data.nodes);
	struct io_rsrc_node *node = NULL;

	if (!nodes || slot >= BPF_CORE_READ(ctx, file_table.data.nr))
		return NULL;
	if (bpf_probe_read_kernel(&node, sizeof(node), &nodes[slot]) || !node)
		return NULL;
	return (struct file *)(BPF_CORE_READ(node, file_ptr) & RW_FFS_MASK);
}

SEC("tp_btf/io_uring_complete")
int BPF_PROG(rw_uring_open, struct io_ring_ctx *ring, void *vreq, struct io_uring_cqe *cqe)
{
	struct io_kiocb *req = vreq;
	struct io_open *o = vreq;
	__u8 op;
	__u32 slot;
	int res;

	if (!req)
		return 0;
	op = BPF_CORE_READ(req, opcode);
	if ((op != IORING_OP_OPENAT && op != IORING_OP_OPENAT2) || !wanted())
		return 0;
	res = BPF_CORE_READ(cqe, res);
	if (res < 0)
		return 0;
	slot = BPF_CORE_READ(o, file_slot);
	if (!slot)
		return file_report(file_of_fd(res), (__u32)BPF_CORE_READ(o, how.flags));
	return file_report(fixed_file(ring, slot == RW_FILE_INDEX_ALLOC ? (__u32)res : slot - 1),
			   (__u32)BPF_CORE_READ(o, how.flags));
}

#endif
