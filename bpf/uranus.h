// uranus.h — what every uranus BPF program shares: the Go ABI (arguments,
// results, the current goroutine, Go strings), the event header that starts
// every ring-buffer record, the maps shared across programs, and counters.
//
// Programs are attached at a Go function's entry and at each of its RET
// instructions. Never as uretprobes: a uretprobe replaces the return address
// on the goroutine stack, and when Go grows (copies) that stack the runtime
// finds a foreign return address and crashes the program.
#pragma once

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __s32 s32;
typedef __u64 u64;
typedef __s64 s64;

char __license[] SEC("license") = "Dual MIT/GPL";

// x86-64 user registers as the kernel saves them; a uprobe's context.
struct pt_regs {
	u64 r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	u64 ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};

// Just enough of the kernel's task to find the thread's FS base (CO-RE
// relocates the offsets against the running kernel's BTF).
struct thread_struct {
	unsigned long fsbase;
} __attribute__((preserve_access_index));
struct task_struct {
	struct thread_struct thread;
} __attribute__((preserve_access_index));

// ---- Load-time constants, set by user space for each target ----------------

// go_regabi: the target passes arguments in registers (amd64 Go >= 1.17).
volatile const u8 go_regabi;
// g_tls_offset: where the stack ABI keeps g relative to the FS base (-8).
volatile const s64 g_tls_offset = -8;
// off_g_goid: offset of runtime.g.goid; off_g_parent_goid: of
// runtime.g.parentGoid (Go >= 1.21), OFFSET_ABSENT before.
volatile const u64 off_g_goid;
volatile const u64 off_g_parent_goid = (u64)-1;
// source_id tags this program's events so user space knows the target
// process and instrumentor without trusting PIDs across namespaces.
volatile const u32 source_id;
// The sampler (OTEL_TRACES_SAMPLER), decided here at span start so that a
// trace's children and the traceparent sent downstream agree with what is
// exported: a root is sampled when the low 63 bits of its trace id (big
// endian, as the OTel SDK reads them) are below sampler_bound; with
// sampler_parent_based a span with a parent follows the parent's flag.
volatile const u64 sampler_bound = ~0ULL;
volatile const u8 sampler_parent_based = 1;
// scope_pidns_dev, scope_pidns_ino: uranus's own PID namespace, when it is not
// the initial one (a sidecar container). Probes on an executable file fire in
// every process that runs it, also in other containers sharing the image
// layer; calls of processes outside this namespace are dropped here, counted
// (STAT_OUT_OF_SCOPE), and never reach user space. 0: uranus sees every
// process, and pids are the initial namespace's.
volatile const u64 scope_pidns_dev;
volatile const u64 scope_pidns_ino;

// EXPORT_TYPE puts a struct into BTF so that bpf2go -type can generate its
// Go twin: BTF only carries types reachable from globals.
#define EXPORT_TYPE(name) const struct name *__export_##name __attribute__((unused))

// A struct member offset that the target's Go version does not have.
#define OFFSET_ABSENT ((u64)-1)

// ---- Counters ---------------------------------------------------------------

enum stat {
	STAT_ENTRY,          // entry probe hits
	STAT_RETURN,         // RET probe hits
	STAT_EVENTS,         // records submitted to the ring buffer
	STAT_RINGBUF_FULL,   // records lost: ring buffer full
	STAT_NO_ENTRY,       // RET without a recorded entry (attached mid-call, or evicted)
	STAT_INFLIGHT_FULL,  // entry not recorded: in-flight map update failed
	STAT_READ_ERROR,     // a read of target memory failed
	STAT_UNSAMPLED,      // spans not sent because the sampler dropped them
	STAT_EXTRA,          // instrumentor-specific (named in its Go declaration)
	STAT_EXTRA2,
	STAT_EXTRA3,
	STAT_EXTRA4,
	STAT_OUT_OF_SCOPE,   // calls of processes outside uranus's PID namespace, dropped
	STAT_COUNT,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_COUNT);
	__type(key, u32);
	__type(value, u64);
} stats SEC(".maps");

static __always_inline void stat_inc(u32 which)
{
	u64 *v = bpf_map_lookup_elem(&stats, &which);
	if (v)
		*v += 1; // per-CPU slot: no atomics needed
}

// ---- Events -------------------------------------------------------------------

// Every record starts with this header; the instrumentor's fields follow.
struct event_header {
	u64 start_ns;          // CLOCK_MONOTONIC at entry
	u64 end_ns;            // CLOCK_MONOTONIC at return
	u8 trace_id[16];
	u8 span_id[8];
	u8 parent_span_id[8];  // zero for a root span
	u64 goid;
	u32 source;            // source_id of the program that wrote it
	u32 pid;               // the process, as uranus's PID namespace numbers it
	u8 flags;              // SPAN_FLAG_*
	u8 _pad[7];
};

#define SPAN_FLAG_SAMPLED 0x01        // W3C trace-flags sampled bit
#define SPAN_FLAG_REMOTE_PARENT 0x02  // parent came from another process

// One ring buffer for all programs of all targets; user space creates it and
// hands the same map to every collection it loads.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

// current_pid is the calling process's pid as uranus sees it; -1 when the
// process lies outside uranus's PID namespace.
static __always_inline s64 current_pid(void)
{
	if (scope_pidns_ino == 0)
		return bpf_get_current_pid_tgid() >> 32;
	struct bpf_pidns_info ns = {};
	if (bpf_get_ns_current_pid_tgid(scope_pidns_dev, scope_pidns_ino, &ns, sizeof(ns)))
		return -1;
	return ns.tgid;
}

// submit_event hands a reserved record to user space without waking the
// reader, which polls: a wakeup costs ~15 us inside the target's thread,
// most of a request's overhead. Only a ring filling up (a quarter of it
// unread) wakes the reader early, so a burst is not lost waiting for a poll.
static __always_inline void submit_event(void *e)
{
	u64 flags = BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > bpf_ringbuf_query(&events, BPF_RB_RING_SIZE) / 4)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
	stat_inc(STAT_EVENTS);
}

// ---- Active span per goroutine -------------------------------------------------

struct span_ctx {
	u8 trace_id[16];
	u8 span_id[8];
	u8 flags;
	u8 _pad[7];
};

// The span each goroutine is inside, so that a span started deeper in the same
// goroutine gets it as parent. Shared by every instrumentor of one target
// process; LRU so goroutines that die inside a span cannot fill it.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, u64); // goid
	__type(value, struct span_ctx);
} goroutine_spans SEC(".maps");

// ---- Go ABI -----------------------------------------------------------------------

// go_g returns the current goroutine's g. Under the register ABI the runtime
// keeps it in R14 on entry to every ABIInternal function. Under the stack ABI
// it lives in thread-local storage: the runtime points FS 8 bytes past
// m.tls[0] ("ELF wants to use -8(FS)"), so g is at fsbase-8.
static __always_inline u64 go_g(struct pt_regs *ctx)
{
	if (go_regabi)
		return ctx->r14;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	u64 fsbase = BPF_CORE_READ(task, thread.fsbase);
	u64 g = 0;
	if (bpf_probe_read_user(&g, sizeof(g), (void *)(fsbase + g_tls_offset)))
		return 0;
	return g;
}

// qualify_goid makes a goid of the calling process unique across processes:
// one program serves every process of an executable, and each process counts
// its goroutines from 1. A goid never reaches 2^40; a pid needs 22 bits.
static __always_inline u64 qualify_goid(u64 goid)
{
	if (goid == 0)
		return 0;
	return goid | (bpf_get_current_pid_tgid() >> 32 << 40);
}

// go_goid identifies the current goroutine for its whole life (g structs are
// reused, goids are not), qualified by its process. 0 when it cannot be read
// (counted) or when the process is out of uranus's scope (counted apart):
// every program starts with it, so an out-of-scope call costs nothing more.
static __always_inline u64 go_goid(struct pt_regs *ctx)
{
	if (current_pid() < 0) {
		stat_inc(STAT_OUT_OF_SCOPE);
		return 0;
	}
	u64 g = go_g(ctx), goid = 0;
	if (g == 0 || bpf_probe_read_user(&goid, sizeof(goid), (void *)(g + off_g_goid)) || goid == 0) {
		stat_inc(STAT_READ_ERROR);
		return 0;
	}
	return qualify_goid(goid);
}

// go_word returns word i of a function's arguments at entry (results at a RET
// when i counts past the arguments: see go_result). Only for arguments made of
// integer/pointer words, which covers every instrumented standard-library
// function. Register ABI: RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11.
// Stack ABI: the caller's frame, just above the return address at SP.
static __always_inline u64 go_word(struct pt_regs *ctx, int i)
{
	if (go_regabi) {
		switch (i) {
		case 0: return ctx->ax;
		case 1: return ctx->bx;
		case 2: return ctx->cx;
		case 3: return ctx->di;
		case 4: return ctx->si;
		case 5: return ctx->r8;
		case 6: return ctx->r9;
		case 7: return ctx->r10;
		case 8: return ctx->r11;
		}
		return 0;
	}
	u64 v = 0;
	bpf_probe_read_user(&v, sizeof(v), (void *)(ctx->sp + 8 * (i + 1)));
	return v;
}

#define go_arg(ctx, i) go_word(ctx, i)
// Result word i at a RET site, for a function whose arguments take nargs
// words: registers restart at RAX; on the stack results follow the arguments.
#define go_result(ctx, nargs, i) go_word(ctx, go_regabi ? (i) : (nargs) + (i))

// read_u64 reads a word of target memory at base+off; 0 on failure or when
// the member is absent in this Go version.
static __always_inline u64 read_u64(u64 base, u64 off)
{
	u64 v = 0;
	if (base == 0 || off == OFFSET_ABSENT)
		return 0;
	if (bpf_probe_read_user(&v, sizeof(v), (void *)(base + off)))
		stat_inc(STAT_READ_ERROR);
	return v;
}

// A Go string header.
struct go_str {
	u64 ptr;
	s64 len;
};

// copy_go_bytes copies at most size bytes of the len bytes at ptr into dst
// and returns len, so user space can tell a truncated value from a short one.
static __always_inline u32 copy_go_bytes(void *dst, u32 size, u64 ptr, s64 len)
{
	if (len <= 0 || ptr == 0)
		return 0;
	u64 n = len;
	if (n > size)
		n = size;
	if (bpf_probe_read_user(dst, n & 0xffff, (void *)ptr)) {
		stat_inc(STAT_READ_ERROR);
		return 0;
	}
	return len > 0xffffffff ? 0xffffffff : (u32)len;
}

// read_go_string copies the Go string stored at base+off in the target into
// the array dst; 0 when the member is absent.
#define read_go_string(dst, base, off) read_go_string_sz(dst, sizeof(dst), base, off)
static __always_inline u32 read_go_string_sz(void *dst, u32 size, u64 base, u64 off)
{
	struct go_str s = {};
	if (base == 0 || off == OFFSET_ABSENT)
		return 0;
	if (bpf_probe_read_user(&s, sizeof(s), (void *)(base + off))) {
		stat_inc(STAT_READ_ERROR);
		return 0;
	}
	return copy_go_bytes(dst, size, s.ptr, s.len);
}

// copy_go_string copies a string whose header uranus already holds.
#define copy_go_string(dst, str) copy_go_bytes(dst, sizeof(dst), (str).ptr, (str).len)

// ---- Spans --------------------------------------------------------------------------

static __always_inline void random_bytes(u8 *dst, int n)
{
	for (int i = 0; i < n; i += 4) {
		u32 r = bpf_get_prandom_u32();
		__builtin_memcpy(dst + i, &r, 4);
	}
}

static __always_inline u8 sample_root(const u8 *trace_id)
{
	u64 x = 0;
	for (int i = 8; i < 16; i++)
		x = (x << 8) | trace_id[i];
	return (x >> 1) < sampler_bound ? SPAN_FLAG_SAMPLED : 0;
}

// span_begin fills the identity of a new span in h: a fresh span id, and the
// trace and parent from parent (when it is non-NULL) or a new trace, with
// the sampling decision. It then makes the span the goroutine's active span;
// the caller keeps *prev to restore with span_end. A parent from another
// process (extracted from a request) is flagged so user space marks it remote.
static __always_inline void span_begin(struct event_header *h, u64 goid, const struct span_ctx *parent,
				       u8 parent_remote, struct span_ctx *prev, u8 *had_prev)
{
	h->start_ns = bpf_ktime_get_ns();
	h->goid = goid;
	h->source = source_id;
	// The process, for user space: records copy this header at the return
	// (same goroutine, so same process), and a call still in flight at exit
	// is found by it.
	h->pid = (u32)current_pid();
	random_bytes(h->span_id, sizeof(h->span_id));
	if (parent) {
		__builtin_memcpy(h->trace_id, parent->trace_id, sizeof(h->trace_id));
		__builtin_memcpy(h->parent_span_id, parent->span_id, sizeof(h->parent_span_id));
		if (sampler_parent_based)
			h->flags = parent->flags & SPAN_FLAG_SAMPLED;
		else
			h->flags = sample_root(h->trace_id);
		if (parent_remote)
			h->flags |= SPAN_FLAG_REMOTE_PARENT;
	} else {
		random_bytes(h->trace_id, sizeof(h->trace_id));
		__builtin_memset(h->parent_span_id, 0, sizeof(h->parent_span_id));
		h->flags = sample_root(h->trace_id);
	}

	struct span_ctx *cur = bpf_map_lookup_elem(&goroutine_spans, &goid);
	*had_prev = cur != 0;
	if (cur)
		*prev = *cur;
	struct span_ctx me = {};
	__builtin_memcpy(me.trace_id, h->trace_id, sizeof(me.trace_id));
	__builtin_memcpy(me.span_id, h->span_id, sizeof(me.span_id));
	me.flags = h->flags & SPAN_FLAG_SAMPLED;
	bpf_map_update_elem(&goroutine_spans, &goid, &me, BPF_ANY);
}

// span_sampled tells whether a finished span goes to user space; a dropped
// one is counted, since its children and downstream services saw the flag.
static __always_inline int span_sampled(const struct event_header *h)
{
	if (h->flags & SPAN_FLAG_SAMPLED)
		return 1;
	stat_inc(STAT_UNSAMPLED);
	return 0;
}

// span_end restores the goroutine's active span to what it was before.
static __always_inline void span_end(u64 goid, const struct span_ctx *prev, u8 had_prev)
{
	if (had_prev)
		bpf_map_update_elem(&goroutine_spans, &goid, prev, BPF_ANY);
	else
		bpf_map_delete_elem(&goroutine_spans, &goid);
}

// goroutine_span returns the goroutine's active span, if any.
static __always_inline struct span_ctx *goroutine_span(u64 goid)
{
	return bpf_map_lookup_elem(&goroutine_spans, &goid);
}

// active_span returns the span a new span in this goroutine belongs under:
// the goroutine's own active span (set by a span it is inside, or inherited
// at creation when the goroutines instrumentor runs) or else, from Go 1.21,
// whose g records its creator's goid, the creator's active span at this
// moment: one level of "go func()" nests at no probe cost.
static __always_inline struct span_ctx *active_span(struct pt_regs *ctx, u64 goid)
{
	struct span_ctx *sc = goroutine_span(goid);
	if (sc || off_g_parent_goid == OFFSET_ABSENT)
		return sc;
	u64 parent = qualify_goid(read_u64(go_g(ctx), off_g_parent_goid));
	return parent ? goroutine_span(parent) : 0;
}
