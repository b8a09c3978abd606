/* SPDX-License-Identifier: GPL-2.0 */
/* Ways out that connect() does not see: datagrams sent to an address given with the send
 * (sendto, sendmsg, every message of sendmmsg) and TCP Fast Open (sendto/sendmsg with
 * MSG_FASTOPEN, which connects and sends in one call).
 *
 * Included at the end of runwatch.bpf.c; uses its maps and helpers (pending, stash_sa,
 * sa_to_dst, sock_of_fd, dns_msghdr). A datagram destination is reported once per socket
 * (the first send to it; `sent_to` remembers the pairs), so a busy UDP sender costs one map
 * lookup per send; sends without an address (connected sockets) cost a pointer test.
 *
 * DNS answers: a socket that sent a question to port 53 (connected, or with the address
 * given) is remembered in `dns_rx`; what recvfrom/recvmsg read on it is copied (its head)
 * so userspace can tie the answer's addresses to the name. Every other recv costs one map
 * lookup at entry.
 */
#ifndef RUNWATCH_NET_BPF_H
#define RUNWATCH_NET_BPF_H

#define MSG_FASTOPEN 0x20000000
#define RW_MMSG_MAX 8
#define RW_IPPROTO_ICMPV6 58 /* messages of one sendmmsg looked at */

struct sent_key {
	__u64 owner;     /* tgid << 32 | fd */
	__u8 addr[16];
	__u16 port;
	__u16 family;
	__u32 pad;
};

/* Datagram destinations already reported, per socket. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct sent_key);
	__type(value, __u8);
} sent_to SEC(".maps");

/* A send to sa on fd: RW_CONNECT for TCP Fast Open, RW_SEND for a datagram socket's first
 * send to that destination, 0 for anything else. */
static __always_inline __u32 send_kind(__u32 fd, const __u8 *sa, __u64 flags)
{
	struct sock *sk = sock_of_fd(fd);
	struct sent_key k = {};
	__u16 fam = *(__u16 *)sa;
	__u8 one = 1;
	__u16 proto;

	if (!sk || (fam != AF_INET && fam != AF_INET6))
		return 0;
	proto = BPF_CORE_READ(sk, sk_protocol);
	if (proto == IPPROTO_TCP)
		return (flags & MSG_FASTOPEN) ? RW_CONNECT : 0;
	if (proto != IPPROTO_UDP && proto != IPPROTO_ICMP && proto != RW_IPPROTO_ICMPV6 &&
	    BPF_CORE_READ(sk, sk_type) != 3 /* SOCK_RAW */)
		return 0;
	k.owner = (bpf_get_current_pid_tgid() & 0xffffffff00000000ULL) | fd;
	k.family = fam;
	k.port = *(__u16 *)(sa + 2);
	if (fam == AF_INET)
		__builtin_memcpy(k.addr, sa + 4, 4);
	else
		__builtin_memcpy(k.addr, sa + 8, 16);
	if (bpf_map_lookup_elem(&sent_to, &k))
		return 0;
	bpf_map_update_elem(&sent_to, &k, &one, BPF_ANY);
	return RW_SEND;
}

static __always_inline int send_event(__u32 kind, __u32 fd, const __u8 *sa, long result)
{
	struct sock *sk = sock_of_fd(fd);

	{
		RESERVE(struct rw_net, e, kind);
		e->result = result;
		e->pad = 0;
		e->sport = 0;
		e->proto = 0;
		__builtin_memset(e->saddr, 0, sizeof(e->saddr));
		__builtin_memset(e->daddr, 0, sizeof(e->daddr));
		if (sk) {
			e->proto = BPF_CORE_READ(sk, sk_protocol);
			e->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
		}
		sa_to_dst(e, sa);
		SUBMIT(e);
	}
	return 0;
}

/* The address of one user msghdr into sa (28 bytes); false when it has none. */
static __always_inline bool msg_addr(const struct user_msghdr *um, __u8 *sa)
{
	void *name = NULL;

	if (bpf_probe_read_user(&name, sizeof(name), &um->msg_name) || !name)
		return false;
	return bpf_probe_read_user(sa, 28, name) == 0 || bpf_probe_read_user(sa, 16, name) == 0;
}

/* Sockets that sent a DNS question (tgid << 32 | fd -> the socket's address): their reads
 * are DNS answers while the fd still names that socket. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u64);
} dns_rx SEC(".maps");

static __always_inline void dns_rx_mark(__u32 fd)
{
	__u64 key = (bpf_get_current_pid_tgid() & 0xffffffff00000000ULL) | fd;
	__u64 sk = (__u64)sock_of_fd(fd);

	if (sk)
		bpf_map_update_elem(&dns_rx, &key, &sk, BPF_ANY);
}

/* TCP sockets connecting to port 53 (tgid << 32 | fd): DNS over TCP, each message after a
 * two-byte length. Marked at connect entry; a reused fd is checked against the socket. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} dns_stream SEC(".maps");

static __always_inline __u64 fd_key(__u32 fd)
{
	return (bpf_get_current_pid_tgid() & 0xffffffff00000000ULL) | fd;
}

/* The peer of a TCP socket still connected to port 53 as a sockaddr (for dns_emit), or false. */
static __always_inline bool dns_stream_peer(__u32 fd, __u8 *sa)
{
	__u64 key = fd_key(fd);
	struct sock *sk;
	__u16 fam;

	if (!bpf_map_lookup_elem(&dns_stream, &key))
		return false;
	sk = sock_of_fd(fd);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP ||
	    bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport)) != DNS_PORT) {
		bpf_map_delete_elem(&dns_stream, &key);
		return false;
	}
	fam = BPF_CORE_READ(sk, __sk_common.skc_family);
	*(__u16 *)sa = fam;
	*(__u16 *)(sa + 2) = bpf_htons(DNS_PORT);
	if (fam == AF_INET6)
		BPF_CORE_READ_INTO((struct in6_addr *)(sa + 8), sk, __sk_common.skc_v6_daddr);
	else
		BPF_CORE_READ_INTO((__u32 *)(sa + 4), sk, __sk_common.skc_daddr);
	return true;
}

/* A question written without an address: DNS over TCP (after the length), or on a UDP
 * socket connected to port 53 (write() goes nowhere else). */
static __always_inline int dns_unaddressed(__u32 fd, const char *buf, __u64 len)
{
	__u8 sa[28] = {};
	__u64 key;

	if (dns_stream_peer(fd, sa))
		return len > 2 ? dns_emit(fd, buf + 2, len - 2, sa) : 0;
	key = fd_key(fd);
	if (bpf_map_lookup_elem(&dns_socks, &key))
		return dns_emit(fd, buf, len, NULL);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_connect")
int rw_connect_dns(struct trace_event_raw_sys_enter *ctx)
{
	__u8 sa[4] = {};
	__u64 key;
	__u8 one = 1;
	struct sock *sk;

	if (bpf_probe_read_user(sa, sizeof(sa), (void *)ctx->args[1]) ||
	    (*(__u16 *)sa != AF_INET && *(__u16 *)sa != AF_INET6) || bpf_ntohs(*(__u16 *)(sa + 2)) != DNS_PORT)
		return 0;
	sk = sock_of_fd(ctx->args[0]);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP || !wanted())
		return 0;
	key = fd_key(ctx->args[0]);
	bpf_map_update_elem(&dns_stream, &key, &one, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_write")
int rw_write_dns(struct trace_event_raw_sys_enter *ctx)
{
	return dns_unaddressed(ctx->args[0], (const char *)ctx->args[1], ctx->args[2]);
}

/* The send's kind, decided at entry; the event at exit with the result (as for connect). */
struct pending_send {
	__u32 kind;
	__u32 fd;
	__u8 sa[28];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct pending_send);
} sends SEC(".maps");

static __always_inline int send_enter(__u32 fd, const void *uaddr, bool from_msg, __u64 flags)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct pending_send p = {};

	if (!uaddr || !wanted())
		return 0;
	if (from_msg) {
		if (!msg_addr(uaddr, p.sa))
			return 0;
	} else if (bpf_probe_read_user(p.sa, sizeof(p.sa), uaddr) && bpf_probe_read_user(p.sa, 16, uaddr)) {
		return 0;
	}
	if (bpf_ntohs(*(__u16 *)(p.sa + 2)) == DNS_PORT)
		dns_rx_mark(fd);
	p.kind = send_kind(fd, p.sa, flags);
	if (!p.kind)
		return 0;
	p.fd = fd;
	bpf_map_update_elem(&sends, &tid, &p, BPF_ANY);
	return 0;
}

static __always_inline int send_exit(long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct pending_send *p = bpf_map_lookup_elem(&sends, &tid);

	if (!p)
		return 0;
	send_event(p->kind, p->fd, p->sa, ret < 0 ? ret : 0);
	bpf_map_delete_elem(&sends, &tid);
	return 0;
}

/* send() on a TCP DNS socket (rw_sendto covers connected UDP ones). */
SEC("tracepoint/syscalls/sys_enter_sendto")
int rw_send_dns(struct trace_event_raw_sys_enter *ctx)
{
	__u8 sa[28] = {};

	if (ctx->args[4] || ctx->args[2] <= 2 || !dns_stream_peer(ctx->args[0], sa))
		return 0;
	return dns_emit(ctx->args[0], (const char *)ctx->args[1] + 2, ctx->args[2] - 2, sa);
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int rw_sendto_enter(struct trace_event_raw_sys_enter *ctx)
{
	return send_enter(ctx->args[0], (void *)ctx->args[4], false, ctx->args[3]);
}

SEC("tracepoint/syscalls/sys_exit_sendto")
int rw_sendto_exit(struct trace_event_raw_sys_exit *ctx)
{
	return send_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int rw_sendmsg_enter(struct trace_event_raw_sys_enter *ctx)
{
	return send_enter(ctx->args[0], (void *)ctx->args[1], true, ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_exit_sendmsg")
int rw_sendmsg_exit(struct trace_event_raw_sys_exit *ctx)
{
	return send_exit(ctx->ret);
}

/* sendmmsg: every message with an address (up to RW_MMSG_MAX), reported at entry (each
 * message's own result is in its msg_len), and every DNS question after the first (the
 * first is reported by rw_sendmmsg). */
SEC("tracepoint/syscalls/sys_enter_sendmmsg")
int rw_sendmmsg_each(struct trace_event_raw_sys_enter *ctx)
{
	struct mmsghdr *v = (struct mmsghdr *)ctx->args[1];
	__u32 fd = ctx->args[0], n = ctx->args[2];

	if (!wanted())
		return 0;
	for (int i = 0; i < RW_MMSG_MAX; i++) {
		__u8 sa[28] = {};
		__u32 kind;

		if (i >= n)
			break;
		if (i > 0)
			dns_msghdr(fd, (struct user_msghdr *)&v[i].msg_hdr);
		if (!msg_addr((struct user_msghdr *)&v[i].msg_hdr, sa))
			continue;
		kind = send_kind(fd, sa, ctx->args[3]);
		if (kind)
			send_event(kind, fd, sa, 0);
	}
	return 0;
}

/* ------------------------------------------------------------ io_uring */

/* IORING_OP_CONNECT, seen when the request is submitted (prepared: its io_connect holds the
 * user address). Reported with result 0: the connect completes later, asynchronously. A
 * request on a registered (fixed) file names an index, not an fd: no protocol then. */
SEC("tp_btf/io_uring_submit_req")
int BPF_PROG(rw_uring_connect, struct io_kiocb *req)
{
	struct io_connect *c = (struct io_connect *)req;
	const void *uaddr;
	__u8 sa[28] = {};
	int fd;

	if (BPF_CORE_READ(req, opcode) != IORING_OP_CONNECT || !wanted())
		return 0;
	uaddr = BPF_CORE_READ(c, addr);
	fd = BPF_CORE_READ(req, cqe.fd);
	if (!uaddr || (bpf_probe_read_user(sa, sizeof(sa), uaddr) && bpf_probe_read_user(sa, 16, uaddr)))
		return 0;
	if (*(__u16 *)sa != AF_INET && *(__u16 *)sa != AF_INET6)
		return 0;
	return send_event(RW_CONNECT, fd, sa, 0);
}

/* ------------------------------------------------------------ DNS answers */

struct pending_rx {
	__u64 buf;       /* user buffer the answer lands in */
	__u32 fd;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct pending_rx);
} dns_reads SEC(".maps");

/* A socket is a DNS one if it sent a question, or is connected to port 53 (glibc's resolver
 * connects, then sends with send/sendmmsg). The marks are by fd, so each is checked against
 * what the fd names now: the same socket for a question's sender, a peer on port 53 for a
 * connected one. A closed fd reused by a pipe, a file or another socket reads no answer,
 * and its stale marks go. */
static __always_inline bool dns_socket(__u32 fd)
{
	__u64 key = fd_key(fd);
	__u64 *rx = bpf_map_lookup_elem(&dns_rx, &key);
	struct sock *sk;

	if (rx) {
		sk = sock_of_fd(fd);
		if (sk && *rx == (__u64)sk)
			return true;
		bpf_map_delete_elem(&dns_rx, &key);
	}
	if (!bpf_map_lookup_elem(&dns_socks, &key) && !bpf_map_lookup_elem(&dns_stream, &key))
		return false;
	sk = sock_of_fd(fd);
	if (sk && bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport)) == DNS_PORT)
		return true;
	bpf_map_delete_elem(&dns_socks, &key);
	bpf_map_delete_elem(&dns_stream, &key);
	return false;
}

static __always_inline int rx_enter(__u32 fd, __u64 buf)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct pending_rx p = {};

	if (!buf || !dns_socket(fd) || !wanted())
		return 0;
	p.buf = buf;
	p.fd = fd;
	bpf_map_update_elem(&dns_reads, &tid, &p, BPF_ANY);
	return 0;
}

static __always_inline int rx_exit(long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct pending_rx *p = bpf_map_lookup_elem(&dns_reads, &tid);
	struct sock *sk;
	__u64 len = ret;

	if (!p)
		return 0;
	if (ret < 12) {
		bpf_map_delete_elem(&dns_reads, &tid);
		return 0;
	}
	{
		RESERVE(struct rw_dns, e, RW_DNS_ANSWER);
		sk = sock_of_fd(p->fd);
		e->family = sk ? BPF_CORE_READ(sk, __sk_common.skc_family) : 0;
		e->dport = sk ? bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport)) : 0;
		__builtin_memset(e->daddr, 0, sizeof(e->daddr));
		if (sk && e->family == AF_INET6)
			BPF_CORE_READ_INTO(&e->daddr, sk, __sk_common.skc_v6_daddr);
		else if (sk)
			BPF_CORE_READ_INTO((__u32 *)e->daddr, sk, __sk_common.skc_daddr);
		if (sk && BPF_CORE_READ(sk, sk_protocol) == IPPROTO_TCP) {
			len -= 2; /* DNS over TCP: the message follows its length */
			p->buf += 2;
		}
		if (len > RW_DNS_LEN - 1)
			len = RW_DNS_LEN - 1;
		len &= RW_DNS_LEN - 1;
		if (bpf_probe_read_user(e->payload, len, (void *)p->buf))
			len = 0;
		e->len = len;
		SUBMIT(e);
	}
	bpf_map_delete_elem(&dns_reads, &tid);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_recvfrom")
int rw_recvfrom_enter(struct trace_event_raw_sys_enter *ctx)
{
	return rx_enter(ctx->args[0], ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_exit_recvfrom")
int rw_recvfrom_exit(struct trace_event_raw_sys_exit *ctx)
{
	return rx_exit(ctx->ret);
}

/* read() of an answer: one map lookup per read() of a reported process. */
SEC("tracepoint/syscalls/sys_enter_read")
int rw_read_enter(struct trace_event_raw_sys_enter *ctx)
{
	return rx_enter(ctx->args[0], ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_exit_read")
int rw_read_exit(struct trace_event_raw_sys_exit *ctx)
{
	return rx_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_recvmsg")
int rw_recvmsg_enter(struct trace_event_raw_sys_enter *ctx)
{
	struct user_msghdr m = {};
	struct iovec iov = {};

	if (!dns_socket(ctx->args[0]))
		return 0;
	if (bpf_probe_read_user(&m, sizeof(m), (void *)ctx->args[1]) || !m.msg_iov || !m.msg_iovlen)
		return 0;
	if (bpf_probe_read_user(&iov, sizeof(iov), m.msg_iov))
		return 0;
	return rx_enter(ctx->args[0], (__u64)iov.iov_base);
}

SEC("tracepoint/syscalls/sys_exit_recvmsg")
int rw_recvmsg_exit(struct trace_event_raw_sys_exit *ctx)
{
	return rx_exit(ctx->ret);
}

#endif
