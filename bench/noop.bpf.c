// SPDX-License-Identifier: GPL-2.0
/* The benchmark floor: empty programs on the hooks the runwatch sensor uses, so the cost
 * of entering a BPF program at each hook is measured apart from the sensor's own work.
 * Names match the sensor's programs with an rwb_ prefix; each returns 0 and touches
 * nothing. The benchmark loads only the programs for the workload it measures. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

SEC("tp_btf/sched_process_exec")
int BPF_PROG(rwb_exec)
{
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(rwb_fork)
{
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(rwb_exit)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int rwb_openat(void *ctx)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_connect")
int rwb_connect_enter(void *ctx)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int rwb_connect_exit(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
