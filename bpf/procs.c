//go:build ignore

// procs.c — tells uranus when a process executes a new program or exits,
// so that it follows the processes to trace without scanning /proc on a
// timer (an idle sidecar then sleeps until something happens). Raw
// tracepoints, attached by name: no kprobes and no tracefs needed.
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char __license[] SEC("license") = "Dual MIT/GPL";

// uranus's PID namespace when it is not the initial one (see uranus.h):
// pids are reported as uranus sees them, and processes it cannot see are
// not reported at all.
volatile const __u64 scope_pidns_dev;
volatile const __u64 scope_pidns_ino;

// A process that just executed a program (exited = 0), or whose main
// thread just exited (exited = 1). Every record wakes the reader: execs and
// exits are rare next to requests.
struct proc_event {
	__u32 pid;
	__u32 exited;
};
const struct proc_event *__export_proc_event __attribute__((unused)); // for bpf2go -type

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} execs SEC(".maps");

// execs_lost counts events not reported (ring full); uranus's periodic scan
// of /proc finds those processes (see bpftool map dump name execs_lost).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} execs_lost SEC(".maps");

static __always_inline int report(__u32 exited)
{
	struct proc_event e = {.exited = exited};
	__u64 id = bpf_get_current_pid_tgid();
	if (exited && (__u32)id != id >> 32)
		return 0; // a thread other than the main one
	if (scope_pidns_ino) {
		struct bpf_pidns_info ns = {};
		if (bpf_get_ns_current_pid_tgid(scope_pidns_dev, scope_pidns_ino, &ns, sizeof(ns)))
			return 0; // outside uranus's namespace
		e.pid = ns.tgid;
	} else {
		e.pid = id >> 32;
	}
	if (bpf_ringbuf_output(&execs, &e, sizeof(e), 0)) {
		__u32 zero = 0;
		__u64 *lost = bpf_map_lookup_elem(&execs_lost, &zero);
		if (lost)
			__sync_fetch_and_add(lost, 1);
	}
	return 0;
}

SEC("raw_tracepoint/sched_process_exec")
int on_exec(void *ctx)
{
	return report(0);
}

SEC("raw_tracepoint/sched_process_exit")
int on_exit(void *ctx)
{
	return report(1);
}
