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
 *
 * Cost: every open on the host pays for this, and almost none is watched. The walk reads
 * the kernel's structs through typed pointers (bpf_rdonly_cast: plain loads, a fault reads
 * 0) instead of one bpf_probe_read_kernel call per field; the only helper reads left are
 * the new fd's slot and one per component name. Bitmaps in front of every lookup (the
 * component's inode in watch_ino_bits, its first byte in name_first, the extension's first
 * byte, the first byte of the path's top directory for the LPM trie) skip it when it
 * cannot match, so an unwatched open does no hash, trie or 256-byte key copy at all. Each
 * bitmap only says "cannot match" when no entry could: decisions are the same as without.
 */
#ifndef RUNWATCH_FILES_BPF_H
#define RUNWATCH_FILES_BPF_H

#define CANON_END (RW_PATH_LEN * 2 - 1) /* the canonical path ends here in canon_buf */
#define CANON_MASK (RW_PATH_LEN * 2 - 1)
#define RW_EXT_SCAN 16                  /* bytes from the end searched for the extension's dot */
#define RW_INO_WORDS (1 << (RW_INO_BITS - 6))

/* kfunc: obj as a read-only pointer to the kernel type btf_id (loads through it that
 * fault read 0, as bpf_probe_read_kernel would). */
extern void *bpf_rdonly_cast(const void *obj__ign, __u32 btf_id) __ksym;

#define KERNEL_AS(type, p) ((type *)bpf_rdonly_cast((const void *)(p), bpf_core_type_id_kernel(type)))

/* Bit c of a 256-bit set (struct rw_name_first's fields). */
#define BYTE_IN(set, c) ((set)[((__u8)(c) >> 6) & 3] & (1ULL << ((__u8)(c) & 63)))

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

/* The keys of watch_inodes as bits (struct rw_ino_bits): a clear bit, no lookup. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rw_ino_bits);
} watch_ino_bits SEC(".maps");

/* (ino, dev)'s bit in struct rw_ino_bits; watchlist.ino_bit() computes the same. */
static __always_inline __u32 ino_bit(__u64 ino, __u32 dev)
{
	return ((ino ^ ((__u64)dev << 32)) * 0x9E3779B97F4A7C15ULL) >> (64 - RW_INO_BITS);
}

static __always_inline struct mount *mount_of(struct vfsmount *vm)
{
	return KERNEL_AS(struct mount, (void *)vm - bpf_core_field_offset(struct mount, mnt));
}

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

/* State of the canonical path walk (canon_step), one component per bpf_loop step. The
 * pointers are typed (bpf_rdonly_cast): fields are read with plain loads. */
struct canon_walk {
	struct dentry *d;
	struct vfsmount *vm;     /* d's mount */
	struct dentry *root;
	struct vfsmount *root_mnt;
	struct dentry *mnt_root; /* vm's root dentry and device, read once per mount */
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
static __always_inline void suffix_match(struct canon_walk *w, struct canon_buf *b, struct rw_name_first *nf,
					 __u32 start, __u32 len)
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
		if (BYTE_IN(nf->suffix, b->data[(end - k + 1) & CANON_MASK]))
			name_match(w, RW_NAME_SUFFIX, &b->data[(end - k + 1) & CANON_MASK], k - 1);
		return;
	}
}

/* One step up: cross a mount point, or prepend d's name and go to its parent. Returns 1 to stop. */
static long canon_step(__u32 i, void *arg)
{
	struct canon_walk *w = arg;
	struct dentry *d = w->d;
	struct dentry *parent;
	const unsigned char *name;
	struct rw_name_first *nf;
	struct rw_ino_bits *ib;
	struct canon_buf *b;
	__u32 zero = 0, len, pos = w->pos, bit, *fl;
	__u64 ino;
	__u8 first;

	if (d == w->root && w->vm == w->root_mnt) {
		w->done = 1;
		return 1;
	}
	if (d == w->mnt_root) {
		struct mount *m = mount_of(w->vm);
		struct mount *mp = m->mnt_parent;

		if (mp == m) {
			w->done = 1;
			return 1;
		}
		w->d = m->mnt_mountpoint;
		w->vm = KERNEL_AS(struct vfsmount, &mp->mnt);
		w->mnt_root = w->vm->mnt_root;
		w->sdev = w->vm->mnt_sb->s_dev;
		return 0;
	}
	parent = d->d_parent;
	if (parent == d) {
		w->done = 1;
		return 1;
	}
	b = bpf_map_lookup_elem(&canon, &zero);
	nf = bpf_map_lookup_elem(&name_first, &zero);
	ib = bpf_map_lookup_elem(&watch_ino_bits, &zero);
	if (!b || !nf || !ib)
		return 1;
	ino = d->d_inode->i_ino;
	bit = ino_bit(ino, w->sdev);
	if (ib->w[(bit >> 6) & (RW_INO_WORDS - 1)] & (1ULL << (bit & 63))) {
		w->ik.ino = ino;
		w->ik.dev = w->sdev;
		fl = bpf_map_lookup_elem(&watch_inodes, &w->ik);
		if (fl)
			w->flags |= *fl;
	}
	len = d->d_name.len;
	name = d->d_name.name;
	if (len == 0 || len >= RW_NAME_MAX || pos > CANON_END || CANON_END - pos + len + 1 > RW_PATH_LEN - 1)
		return 1; /* too long for the record: the walk is not done */
	pos -= len;
	if (bpf_probe_read_kernel(&b->data[pos & CANON_MASK], len & (RW_NAME_MAX - 1), name))
		return 1;
	first = (__u8)b->data[pos & CANON_MASK];
	if (BYTE_IN(w->depth ? nf->dir : nf->leaf, first))
		name_match(w, w->depth ? RW_NAME_DIR : RW_NAME_LEAF, (const char *)name, len);
	if (!w->depth)
		suffix_match(w, b, nf, pos, len);
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
static __noinline int file_report(struct file *fp, __u32 oflags)
{
	__u32 zero = 0, lpm = 0, plen;
	struct canon_walk w = {};
	struct rw_name_first *nf;
	struct path_scratch *k;
	struct task_struct *t;
	struct canon_buf *b;
	struct fs_struct *fs;
	struct inode *ino;
	struct file *f;
	bool trie;

	if (!fp)
		return 0;
	b = bpf_map_lookup_elem(&canon, &zero);
	k = bpf_map_lookup_elem(&scratch, &zero);
	nf = bpf_map_lookup_elem(&name_first, &zero);
	if (!b || !k || !nf)
		return 0;
	t = bpf_get_current_task_btf();
	fs = t->fs;
	if (!fs)
		return 0;
	f = KERNEL_AS(struct file, fp);
	w.root = fs->root.dentry;
	w.root_mnt = fs->root.mnt;
	w.d = f->f_path.dentry;
	w.vm = f->f_path.mnt;
	w.mnt_root = w.vm->mnt_root;
	w.sdev = w.vm->mnt_sb->s_dev;
	w.pos = CANON_END;
	b->data[CANON_END] = 0;
	bpf_loop(RW_EXE_DEPTH + 8, canon_step, &w, 0);
	if (w.pos > CANON_END)
		return 0;
	if (w.pos == CANON_END) {
		w.pos--;
		b->data[w.pos & CANON_MASK] = '/';
	}
	/* A prefix can only match a whole path whose top directory starts as one of them. */
	trie = w.done && (!w.depth || BYTE_IN(nf->top, b->data[(w.pos + 1) & CANON_MASK]));
	if (!trie && !intent_wanted(w.flags, oflags))
		return 0;
	plen = CANON_END - w.pos;
	if (bpf_probe_read_kernel(k->data, RW_PATH_LEN, &b->data[w.pos & CANON_MASK]))
		return 0;
	if (trie) {
		__u32 *fl;

		k->prefixlen = plen * 8;
		fl = bpf_map_lookup_elem(&watched, k);
		if (fl && (!(*fl & RW_WATCH_KEYS) || w.key_ext))
			lpm = *fl;
	}
	if (!intent_wanted(lpm | w.flags, oflags))
		return 0;
	ino = f->f_inode;
	w.ik.ino = ino->i_ino;
	w.ik.dev = ino->i_sb->s_dev;
	w.ik.pad = 0;
	if (lpm && ino->__i_nlink > 1) { /* its other names too */
		struct rw_ino_bits *ib = bpf_map_lookup_elem(&watch_ino_bits, &zero);
		__u32 bit = ino_bit(w.ik.ino, w.ik.dev);

		if (ib) /* the bit first: a walk that sees the entry also sees its bit */
			__sync_fetch_and_or(&ib->w[(bit >> 6) & (RW_INO_WORDS - 1)], 1ULL << (bit & 63));
		bpf_map_update_elem(&watch_inodes, &w.ik, &lpm, BPF_NOEXIST);
	}
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
