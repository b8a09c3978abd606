/* SPDX-License-Identifier: GPL-2.0 */
/* file.open from the opened file itself (included by runwatch.bpf.c).
 *
 * Only the exit of open/openat/openat2/creat/open_by_handle_at is hooked: the call's
 * arguments (flags, dirfd, the path as passed) are still in the task's saved user
 * registers there, so no entry program and no per-thread state is needed. A successful
 * open's struct file is taken from the fd table and its dentry and mount chain walked up
 * to the task's root (bpf_loop, one component per step): that canonical path, not the
 * string the caller passed, is matched against the watched prefixes. Symlinks, "..", "//",
 * "/./", /proc/self/root, RESOLVE_IN_ROOT and file handles all end at the same dentry, so
 * at the same path.
 *
 * Besides prefixes: names (a component, anywhere) and suffixes (the leaf's extension) in
 * watch_names, and inodes in watch_inodes (watched directories and files found at load
 * time, and hard-linked watched files seen since), so a file reached through a hard link
 * or below a renamed watched directory is still reported.
 *
 * Cost: every open on the host pays for this, and almost none is watched. The walks read
 * the kernel's structs through typed pointers (bpf_rdonly_cast: plain loads, a fault reads
 * 0) instead of one bpf_probe_read_kernel call per field. The first walk (canon_check)
 * copies nothing: names are read in place, and bitmaps in front of every lookup (the
 * component's inode in watch_ino_bits, its first byte in name_first, the extension's first
 * byte, the first byte of the path's top directory for the LPM trie) skip it when it
 * cannot match. Only if a prefix or pattern can match does the second walk (canon_build)
 * copy the names into the path for the trie and the record. So an unwatched open does no
 * hash or trie lookup and no copy; its only helper read is the new fd's slot. Each bitmap
 * only says "cannot match" when no entry could: decisions are the same as without.
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

/* An open's arguments, read at its exit: the path as passed is only read if the open
 * fails (a refused attempt is still reported, by that string). */
struct open_args {
	__u32 flags;
	__s32 dfd;
	__u64 upath;
};

/* The system call's arguments 1-3 in the saved user registers (as the kernel used them). */
#if defined(__TARGET_ARCH_x86)
#define SYSCALL_ARG1(r) ((r)->di)
#define SYSCALL_ARG2(r) ((r)->si)
#define SYSCALL_ARG3(r) ((r)->dx)
#elif defined(__TARGET_ARCH_arm64)
#define SYSCALL_ARG1(r) ((r)->orig_x0) /* x0 holds the result by now */
#define SYSCALL_ARG2(r) ((r)->regs[1])
#define SYSCALL_ARG3(r) ((r)->regs[2])
#else
#error "SYSCALL_ARGn: unsupported architecture"
#endif

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

/* State of the canonical path walks (canon_check, then canon_build only if needed), one
 * component per bpf_loop step. It lives in a per-CPU map, not on the stack: the verifier
 * then knows nothing of its values between steps, so it checks each callback once instead
 * of once per distinct state the walk can reach (seconds per program at load). The kernel
 * pointers are kept as numbers and typed again (bpf_rdonly_cast) where fields are read. */
struct canon_walk {
	__u64 d;
	__u64 vm;       /* d's mount (struct vfsmount) */
	__u64 root;
	__u64 root_mnt;
	__u64 mnt_root; /* vm's root dentry and device, read once per mount */
	__u32 sdev;
	__u32 pos;      /* the path starts here in canon_buf (canon_check: would start) */
	__u32 depth;    /* components written (canon_check: looked at) */
	__u32 flags;    /* watch flags found by name, suffix or inode */
	__u32 done;     /* reached the root: the path is whole */
	__u32 key_ext;  /* the leaf ends in .pem or .key */
	__u32 top;      /* first byte of the last component looked at: the top directory's */
	__u32 pad;
	struct rw_name_key nk;
	struct rw_ino_key ik;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct canon_walk);
} walks SEC(".maps");

static __always_inline struct canon_walk *walk_state(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&walks, &zero);
}

/* What the walk steps get: the state, looked up once per walk. */
struct walk_ref {
	struct canon_walk *w;
};

/* Start a walk at the file's dentry and mount. */
static __always_inline void walk_begin(struct canon_walk *w, struct file *f)
{
	struct vfsmount *vm = f->f_path.mnt;

	w->d = (__u64)f->f_path.dentry;
	w->vm = (__u64)vm;
	w->mnt_root = (__u64)vm->mnt_root;
	w->sdev = vm->mnt_sb->s_dev;
	w->pos = CANON_END;
	w->depth = 0;
	w->done = 0;
}

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

/* The leaf's extension (after its last dot, in the last RW_EXT_SCAN bytes) as a suffix key;
 * name is the leaf's name in the kernel, s the same bytes as a typed pointer. */
static __always_inline void suffix_match(struct canon_walk *w, struct rw_name_first *nf, const char *name,
					 const unsigned char *s, __u32 len)
{
	for (int k = 2; k < RW_EXT_SCAN; k++) {
		if (k > len)
			return;
		if (s[(len - k) & (RW_NAME_MAX - 1)] != '.')
			continue;
		if (k == 4) {
			unsigned char x = s[(len - 3) & (RW_NAME_MAX - 1)], y = s[(len - 2) & (RW_NAME_MAX - 1)],
				      z = s[(len - 1) & (RW_NAME_MAX - 1)];

			if ((x == 'p' && y == 'e' && z == 'm') || (x == 'k' && y == 'e' && z == 'y'))
				w->key_ext = 1;
		}
		if (BYTE_IN(nf->suffix, s[(len - k + 1) & (RW_NAME_MAX - 1)]))
			name_match(w, RW_NAME_SUFFIX, name + len - k + 1, k - 1);
		return;
	}
}

/* One step up from w->d: 1 when the walk ends (at the task's root or a mount's top: done),
 * 0 when w->d was its mount's root and the walk crossed to the mount point (no component),
 * 2 when w->d is a component below *parent. */
static __always_inline int canon_up(struct canon_walk *w, struct dentry **parent)
{
	struct dentry *d = KERNEL_AS(struct dentry, w->d);

	if (w->d == w->root && w->vm == w->root_mnt) {
		w->done = 1;
		return 1;
	}
	if (w->d == w->mnt_root) {
		struct mount *m = mount_of((struct vfsmount *)w->vm);
		struct mount *mp = m->mnt_parent;
		struct vfsmount *vm;

		if (mp == m) {
			w->done = 1;
			return 1;
		}
		vm = KERNEL_AS(struct vfsmount, &mp->mnt);
		w->d = (__u64)m->mnt_mountpoint;
		w->vm = (__u64)vm;
		w->mnt_root = (__u64)vm->mnt_root;
		w->sdev = vm->mnt_sb->s_dev;
		return 0;
	}
	*parent = d->d_parent;
	if (*parent == d) {
		w->done = 1;
		return 1;
	}
	return 2;
}

/* A component that does not fit the record ends the walk: it is not done, the path is its tail. */
static __always_inline bool canon_full(__u32 pos, __u32 len)
{
	return len == 0 || len >= RW_NAME_MAX || pos > CANON_END || CANON_END - pos + len + 1 > RW_PATH_LEN - 1;
}

/* The check walk: each component's inode, name and (the leaf's) extension against the watch
 * maps, read in place; nothing copied. Returns 1 to stop. */
static long canon_check(__u32 i, void *arg)
{
	struct canon_walk *w = ((struct walk_ref *)arg)->w;
	struct dentry *d, *parent = NULL;
	const unsigned char *s;
	struct rw_name_first *nf;
	struct rw_ino_bits *ib;
	__u32 zero = 0, len, bit, *fl;
	const char *name;
	__u64 ino;
	__u8 first;
	int up;

	if (!w)
		return 1;
	d = KERNEL_AS(struct dentry, w->d);
	up = canon_up(w, &parent);
	if (up != 2)
		return up;
	nf = bpf_map_lookup_elem(&name_first, &zero);
	ib = bpf_map_lookup_elem(&watch_ino_bits, &zero);
	if (!nf || !ib)
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
	if (canon_full(w->pos, len))
		return 1;
	name = (const char *)d->d_name.name;
	s = bpf_rdonly_cast(name, 0);
	first = s[0];
	if (BYTE_IN(w->depth ? nf->dir : nf->leaf, first))
		name_match(w, w->depth ? RW_NAME_DIR : RW_NAME_LEAF, name, len);
	if (!w->depth)
		suffix_match(w, nf, name, s, len);
	w->top = first;
	w->pos -= len + 1;
	w->depth++;
	w->d = (__u64)parent;
	return 0;
}

/* The build walk: the same components' names copied into canon_buf, backwards from
 * CANON_END. Returns 1 to stop. */
static long canon_build(__u32 i, void *arg)
{
	struct canon_walk *w = ((struct walk_ref *)arg)->w;
	struct dentry *d, *parent = NULL;
	__u32 zero = 0, len, pos;
	struct canon_buf *b;
	int up;

	if (!w)
		return 1;
	d = KERNEL_AS(struct dentry, w->d);
	pos = w->pos;
	up = canon_up(w, &parent);
	if (up != 2)
		return up;
	len = d->d_name.len;
	if (canon_full(pos, len))
		return 1;
	b = bpf_map_lookup_elem(&canon, &zero);
	if (!b)
		return 1;
	barrier_var(len); /* keep the mask below: the verifier needs the bound in this register */
	pos -= len;
	if (bpf_probe_read_kernel(&b->data[pos & CANON_MASK], len & (RW_NAME_MAX - 1), d->d_name.name))
		return 1;
	pos -= 1;
	b->data[pos & CANON_MASK] = '/';
	w->pos = pos;
	w->depth++;
	w->d = (__u64)parent;
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
	__u32 zero = 0, lpm = 0, plen, pos;
	struct rw_ino_key ik;
	struct canon_walk *w = walk_state();
	struct walk_ref ref;
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
	if (!b || !k || !nf || !w)
		return 0;
	ref.w = w;
	t = bpf_get_current_task_btf();
	fs = t->fs;
	if (!fs)
		return 0;
	f = KERNEL_AS(struct file, fp);
	w->root = (__u64)fs->root.dentry;
	w->root_mnt = (__u64)fs->root.mnt;
	w->flags = 0;
	w->key_ext = 0;
	w->top = 0;
	walk_begin(w, f);
	bpf_loop(RW_EXE_DEPTH + 8, canon_check, &ref, 0);
	/* A prefix can only match a whole path whose top directory starts as one of them. */
	trie = w->done && (!w->depth || BYTE_IN(nf->top, w->top));
	if (!trie && !intent_wanted(w->flags, oflags))
		return 0; /* the common case: nothing copied, no trie lookup */
	/* Possibly watched: the path itself, walked again. */
	walk_begin(w, f);
	b->data[CANON_END] = 0;
	bpf_loop(RW_EXE_DEPTH + 8, canon_build, &ref, 0);
	pos = w->pos;
	if (pos > CANON_END)
		return 0;
	if (pos == CANON_END) {
		pos--;
		b->data[pos & CANON_MASK] = '/';
	}
	trie = trie && w->done;
	plen = CANON_END - pos;
	if (bpf_probe_read_kernel(k->data, RW_PATH_LEN, &b->data[pos & CANON_MASK]))
		return 0;
	if (trie) {
		__u32 *fl;

		k->prefixlen = plen * 8;
		fl = bpf_map_lookup_elem(&watched, k);
		if (fl && (!(*fl & RW_WATCH_KEYS) || w->key_ext))
			lpm = *fl;
	}
	if (!intent_wanted(lpm | w->flags, oflags))
		return 0;
	ino = f->f_inode;
	ik.ino = ino->i_ino;
	ik.dev = ino->i_sb->s_dev;
	ik.pad = 0;
	if (lpm && ino->__i_nlink > 1) { /* its other names too */
		struct rw_ino_bits *ib = bpf_map_lookup_elem(&watch_ino_bits, &zero);
		__u32 bit = ino_bit(ik.ino, ik.dev);

		if (ib) /* the bit first: a walk that sees the entry also sees its bit */
			__sync_fetch_and_or(&ib->w[(bit >> 6) & (RW_INO_WORDS - 1)], 1ULL << (bit & 63));
		bpf_map_update_elem(&watch_inodes, &ik, &lpm, BPF_NOEXIST);
	}
	{
		RESERVE(struct rw_file, e, RW_OPEN);
		e->flags = oflags;
		e->pad = 0;
		__builtin_memcpy(e->path, k->data, RW_PATH_LEN);
		e->path2[0] = 0;
		e->ino = ik.ino;
		e->dev = ik.dev;
		e->fattrs = w->done ? 0 : RW_FILE_TRUNCATED;
		e->result = 0;
		e->pad2 = 0;
		SUBMIT(e);
	}
	return 0;
}

/* The exit of an open: resolve the new fd's file and report it if it is watched. */
static __always_inline int open_exit(long ret, struct open_args *a)
{
	if (ret < 0)
		return open_failed(a, ret);
	return file_report(file_of_fd(ret), a->flags);
}

static __always_inline struct pt_regs *syscall_regs(void)
{
	return (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
}

SEC("tracepoint/syscalls/sys_exit_openat")
int rw_openat_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *r;
	struct open_args a;

	if (!wanted())
		return 0;
	r = syscall_regs();
	a.dfd = SYSCALL_ARG1(r);
	a.upath = SYSCALL_ARG2(r);
	a.flags = SYSCALL_ARG3(r);
	return open_exit(ctx->ret, &a);
}

SEC("tracepoint/syscalls/sys_exit_open")
int rw_open_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *r;
	struct open_args a;

	if (!wanted())
		return 0;
	r = syscall_regs();
	a.dfd = AT_FDCWD;
	a.upath = SYSCALL_ARG1(r);
	a.flags = SYSCALL_ARG2(r);
	return open_exit(ctx->ret, &a);
}

SEC("tracepoint/syscalls/sys_exit_openat2")
int rw_openat2_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct open_how how = {};
	struct pt_regs *r;
	struct open_args a;

	if (!wanted())
		return 0;
	r = syscall_regs();
	if (bpf_probe_read_user(&how, sizeof(how.flags), (void *)SYSCALL_ARG3(r)))
		return 0;
	a.dfd = SYSCALL_ARG1(r);
	a.upath = SYSCALL_ARG2(r);
	a.flags = how.flags;
	return open_exit(ctx->ret, &a);
}

SEC("tracepoint/syscalls/sys_exit_creat")
int rw_creat_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct open_args a;

	if (!wanted())
		return 0;
	a.dfd = AT_FDCWD;
	a.upath = SYSCALL_ARG1(syscall_regs());
	a.flags = O_CREAT | O_TRUNC | 1 /* O_WRONLY */;
	return open_exit(ctx->ret, &a);
}

SEC("tracepoint/syscalls/sys_exit_open_by_handle_at")
int rw_open_by_handle_at_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct open_args a;

	if (!wanted())
		return 0;
	a.dfd = AT_FDCWD;
	a.upath = 0; /* a handle, not a path: a failed open is not reported */
	a.flags = SYSCALL_ARG3(syscall_regs());
	return open_exit(ctx->ret, &a);
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
