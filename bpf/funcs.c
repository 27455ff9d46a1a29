//go:build ignore

// Functions the user names (uranus --func): one span per call, with the
// arguments read at entry and the results at return. One pair of programs
// serves every function; the probe's cookie says which fired, and indexes
// func_specs, where user space put what to read for that function.
//
// Go: attached at entry and at every RET. C/C++ (is_go = 0): at entry and as
// a uretprobe, which is safe where stacks never move.
//
// Pairing an entry with its return. Calls nest and recurse, so each thread
// of execution (goroutine, or thread for C) keeps a small stack of the calls
// in flight, each identified by how deep its frame sits: for Go, g.stack.hi
// minus SP at entry. SP itself would not do: when a goroutine's stack grows,
// the runtime copies it to new memory and every SP changes, but it keeps
// each frame at the same distance from the top (copystack moves [sp, hi) to
// [new.hi - used, new.hi)), so hi - SP is the same at entry and at the RET,
// before and after a copy. A recursive call sits strictly deeper. The entry
// of a function that had to grow the stack runs twice (the prologue calls
// morestack, then jumps back to the entry) — at the same depth with the same
// return address, which is how it is recognised and not counted twice; a
// goroutine preempted in its prologue re-enters the same way.
//
// A call whose RET is never seen (a panic unwinding through it) leaves its
// frame behind: the next call at the same depth or shallower, or the return
// of a caller, finds it deeper than itself and drops it, restoring the
// active span it had replaced.
#include "uranus.h"

#define MAX_FUNCS 256
#define MAX_FETCH 16  // values read per call (arguments, results, fields)
#define MAX_HOPS 4    // pointers followed along one field path
#define MAX_VALS 16
#define MAX_STRS 4
#define STR_LEN 128   // bytes kept of a string or []byte
#define MAX_DEPTH 32  // traced calls in flight in one goroutine

// is_go: the target is a Go program (else C/C++: no goroutines).
volatile const u8 is_go = 1;

// Instrumentor counters (named in instrumentors/funcs).
#define STAT_TOO_DEEP STAT_EXTRA   // not traced: MAX_DEPTH traced calls already in flight
#define STAT_UNWOUND STAT_EXTRA2   // calls whose RET was never seen (panic)
#define STAT_REENTRY STAT_EXTRA3   // entries run again after stack growth or preemption

// Where g.stack.hi is in runtime.g: stack {lo, hi} is g's first member in
// every Go release (the runtime's assembly relies on it).
#define G_STACK_HI 8

// Registers a value can be read from (the subset of struct pt_regs that
// the Go and System V calling conventions pass integers in).
enum reg { REG_AX, REG_BX, REG_CX, REG_DX, REG_SI, REG_DI, REG_R8, REG_R9, REG_R10, REG_R11 };

enum fetch_kind {
	FETCH_WORD = 1,  // an integer, bool, float bits or pointer
	FETCH_BYTES = 2, // a Go string or slice: data pointer and length
	FETCH_CSTR = 3,  // a C string: a pointer to NUL-terminated bytes
};

enum fetch_loc {
	LOC_REG = 1,   // in registers
	LOC_STACK = 2, // in memory at SP + stack_off
};

// fetch says where one value is and how to read it.
struct fetch {
	u8 at_return;  // read at return (a result) rather than at entry
	u8 kind;       // enum fetch_kind
	u8 loc;        // enum fetch_loc
	u8 reg;        // LOC_REG: the value, a string's data pointer, or the pointer to follow
	u8 reg2;       // LOC_REG, FETCH_BYTES without deref: the length
	u8 size;       // FETCH_WORD from memory: bytes to read (1, 2, 4 or 8)
	u8 slot;       // index into vals (FETCH_WORD) or str (FETCH_BYTES, FETCH_CSTR)
	u8 deref;      // the location holds a pointer; the value is in what it points to
	u8 nhops;      // deref: further pointers to follow
	u8 _pad[3];
	s32 stack_off; // LOC_STACK: offset from SP
	u32 final_off; // deref: offset of the value from the last pointer
	u32 hops[MAX_HOPS]; // deref: for each of nhops, pointer = *(pointer + hops[i])
};

struct func_spec {
	u32 nfetch;
	u32 _pad;
	struct fetch fetch[MAX_FETCH];
};

// What was read for one call. Bit i of valid/nil is vals[i]; bit
// MAX_VALS + j is str[j]. nil: a pointer on the way was nil.
struct values {
	u32 valid;
	u32 nil;
	u64 vals[MAX_VALS];
	u32 str_len[MAX_STRS]; // full length; more than STR_LEN when cut
	u8 str[MAX_STRS][STR_LEN];
};

struct event {
	struct event_header h;
	u32 func; // which function: the probe's cookie
	u32 _pad;
	struct values v;
};
EXPORT_TYPE(event);
EXPORT_TYPE(func_spec);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_FUNCS);
	__type(key, u32);
	__type(value, struct func_spec);
} func_specs SEC(".maps");

// A call in flight.
struct frame {
	struct event_header h;
	struct span_ctx prev; // the active span it replaced
	u8 had_prev;
	u8 _pad[3];
	u32 func;
	u64 ret_addr; // return address at entry: tells a re-entry from a new call
	struct values v;
};

struct frame_key {
	u64 thread; // goid, or the C thread's pid_tgid
	u64 pos;    // depth of the call's frame (see the top of this file)
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, struct frame_key);
	__type(value, struct frame);
} frames SEC(".maps");

// The depths of one thread's calls in flight, outermost first.
struct depths {
	u32 n;
	u32 _pad;
	u64 pos[MAX_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, u64);
	__type(value, struct depths);
} thread_depths SEC(".maps");

// A frame is built here: it is too big for the BPF stack.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct frame);
} frame_scratch SEC(".maps");

// The registers values are read from, copied out of the context first:
// read with a variable register number straight from the context, clang
// turns the choice into one load at a variable offset from ctx, which the
// verifier rejects.
struct regs {
	u64 r[16]; // indexed by enum reg
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct regs);
} regs_scratch SEC(".maps");

static __always_inline struct regs *save_regs(struct pt_regs *ctx)
{
	u32 zero = 0;
	struct regs *r = bpf_map_lookup_elem(&regs_scratch, &zero);
	if (!r)
		return 0;
	r->r[REG_AX] = ctx->ax;
	r->r[REG_BX] = ctx->bx;
	r->r[REG_CX] = ctx->cx;
	r->r[REG_DX] = ctx->dx;
	r->r[REG_SI] = ctx->si;
	r->r[REG_DI] = ctx->di;
	r->r[REG_R8] = ctx->r8;
	r->r[REG_R9] = ctx->r9;
	r->r[REG_R10] = ctx->r10;
	r->r[REG_R11] = ctx->r11;
	return r;
}

#define reg_value(regs, i) ((regs)->r[(i) & 15])

// where identifies the running goroutine (or C thread) and how deep sp is
// in its stack; 0 when it cannot be told (counted) or the process is out of
// uranus's scope (counted apart).
static __always_inline int where(struct pt_regs *ctx, u64 sp, u64 *thread, u64 *pos)
{
	if (current_pid() < 0) {
		stat_inc(STAT_OUT_OF_SCOPE);
		return 0;
	}
	if (!is_go) {
		*thread = bpf_get_current_pid_tgid();
		*pos = 0 - sp; // C stacks do not move: deeper is lower
		return 1;
	}
	u64 g = go_g(ctx), hi = 0;
	if (g == 0 || bpf_probe_read_user(thread, sizeof(*thread), (void *)(g + off_g_goid)) ||
	    bpf_probe_read_user(&hi, sizeof(hi), (void *)(g + G_STACK_HI)) || *thread == 0 || hi <= sp) {
		stat_inc(STAT_READ_ERROR);
		return 0;
	}
	*thread = qualify_goid(*thread);
	*pos = hi - sp;
	return 1;
}

// fetch_one is a global function, so the verifier checks it once rather
// than for every value of every call site's loop.
__noinline int fetch_one(struct pt_regs *ctx, const struct regs *regs, const struct fetch *f, struct values *v)
{
	if (!ctx || !regs || !f || !v)
		return 0;
	u32 bit = f->kind == FETCH_WORD ? (f->slot & (MAX_VALS - 1)) : MAX_VALS + (f->slot & (MAX_STRS - 1));
	// in_mem: the value is in memory at addr, not in registers.
	u8 in_mem = f->deref || f->loc == LOC_STACK;
	u64 addr = 0;
	if (in_mem) {
		if (f->loc == LOC_REG) {
			addr = reg_value(regs, f->reg);
		} else if (f->deref) {
			if (bpf_probe_read_user(&addr, sizeof(addr), (void *)(ctx->sp + f->stack_off)))
				goto fail;
		} else {
			addr = ctx->sp + f->stack_off;
		}
		if (f->deref) {
			for (int i = 0; i < MAX_HOPS; i++) {
				if (i >= f->nhops)
					break;
				if (addr == 0)
					goto nil;
				if (bpf_probe_read_user(&addr, sizeof(addr), (void *)(addr + f->hops[i])))
					goto fail;
			}
			if (addr == 0)
				goto nil;
			addr += f->final_off;
		}
	}

	switch (f->kind) {
	case FETCH_WORD: {
		u64 val = 0;
		if (!in_mem) {
			val = reg_value(regs, f->reg);
		} else {
			u32 size = f->size;
			if (size > 8)
				size = 8;
			if (bpf_probe_read_user(&val, size, (void *)addr))
				goto fail;
		}
		v->vals[f->slot & (MAX_VALS - 1)] = val;
		break;
	}
	case FETCH_BYTES: {
		struct go_str s = {};
		if (!in_mem) {
			s.ptr = reg_value(regs, f->reg);
			s.len = reg_value(regs, f->reg2);
		} else if (bpf_probe_read_user(&s, sizeof(s), (void *)addr)) {
			goto fail;
		}
		u32 j = f->slot & (MAX_STRS - 1);
		v->str_len[j] = copy_go_bytes(v->str[j], STR_LEN, s.ptr, s.len);
		break;
	}
	case FETCH_CSTR: {
		u64 ptr = 0;
		if (!in_mem)
			ptr = reg_value(regs, f->reg);
		else if (bpf_probe_read_user(&ptr, sizeof(ptr), (void *)addr))
			goto fail;
		if (ptr == 0)
			goto nil;
		u32 j = f->slot & (MAX_STRS - 1);
		long n = bpf_probe_read_user_str(v->str[j], STR_LEN, (void *)ptr);
		if (n < 0)
			goto fail;
		// A full buffer may hold only a prefix: say "longer".
		v->str_len[j] = n >= STR_LEN ? STR_LEN + 1 : (n > 0 ? n - 1 : 0);
		break;
	}
	default:
		return 0;
	}
	v->valid |= 1U << (bit & 31);
	return 1;
nil:
	v->valid |= 1U << (bit & 31);
	v->nil |= 1U << (bit & 31);
	return 1;
fail:
	stat_inc(STAT_READ_ERROR);
	return 0;
}

static __always_inline void fetch_all(struct pt_regs *ctx, const struct func_spec *spec, u8 at_return, struct values *v)
{
	const struct regs *regs = save_regs(ctx);
	if (!regs)
		return;
	for (int i = 0; i < MAX_FETCH; i++) {
		if (i >= spec->nfetch)
			break;
		const struct fetch *f = &spec->fetch[i];
		if (f->at_return == at_return)
			fetch_one(ctx, regs, f, v);
	}
}

// drop_frame forgets a call whose return was not seen, restoring the
// active span it replaced.
static __always_inline void drop_frame(u64 thread, u64 pos)
{
	struct frame_key k = {.thread = thread, .pos = pos};
	struct frame *f = bpf_map_lookup_elem(&frames, &k);
	if (f) {
		span_end(thread, &f->prev, f->had_prev);
		bpf_map_delete_elem(&frames, &k);
	}
}

SEC("uprobe")
int func_entry(struct pt_regs *ctx)
{
	stat_inc(STAT_ENTRY);
	u32 fn = bpf_get_attach_cookie(ctx);
	const struct func_spec *spec = bpf_map_lookup_elem(&func_specs, &fn);
	if (!spec)
		return 0;
	u64 sp = ctx->sp, thread = 0, pos = 0, ret = 0;
	if (!where(ctx, sp, &thread, &pos))
		return 0;
	bpf_probe_read_user(&ret, sizeof(ret), (void *)sp);

	struct depths *d = bpf_map_lookup_elem(&thread_depths, &thread);
	if (!d) {
		struct depths empty = {};
		bpf_map_update_elem(&thread_depths, &thread, &empty, BPF_NOEXIST);
		d = bpf_map_lookup_elem(&thread_depths, &thread);
		if (!d) {
			stat_inc(STAT_INFLIGHT_FULL);
			return 0;
		}
	}
	// Calls at this depth or deeper have ended, unless this is the same
	// call entered again.
	for (int i = 0; i < MAX_DEPTH; i++) {
		u32 n = d->n;
		if (n == 0 || n > MAX_DEPTH)
			break;
		u64 top = d->pos[(n - 1) & (MAX_DEPTH - 1)];
		if (top < pos)
			break;
		if (top == pos) {
			struct frame_key k = {.thread = thread, .pos = pos};
			struct frame *f = bpf_map_lookup_elem(&frames, &k);
			if (f && f->func == fn && f->ret_addr == ret) {
				stat_inc(STAT_REENTRY);
				return 0;
			}
		}
		drop_frame(thread, top);
		stat_inc(STAT_UNWOUND);
		d->n = n - 1;
	}
	u32 n = d->n;
	if (n >= MAX_DEPTH) {
		stat_inc(STAT_TOO_DEEP);
		return 0;
	}

	u32 zero = 0;
	struct frame *f = bpf_map_lookup_elem(&frame_scratch, &zero);
	if (!f)
		return 0;
	f->func = fn;
	f->ret_addr = ret;
	f->v.valid = 0;
	f->v.nil = 0;
	f->h.end_ns = 0;
	// C has no goroutines: its thread's active span is the parent.
	struct span_ctx *parent = is_go ? active_span(ctx, thread) : goroutine_span(thread);
	span_begin(&f->h, thread, parent, 0, &f->prev, &f->had_prev);
	if (f->h.flags & SPAN_FLAG_SAMPLED)
		fetch_all(ctx, spec, 0, &f->v);

	struct frame_key k = {.thread = thread, .pos = pos};
	if (bpf_map_update_elem(&frames, &k, f, BPF_ANY)) {
		stat_inc(STAT_INFLIGHT_FULL);
		span_end(thread, &f->prev, f->had_prev);
		return 0;
	}
	d->pos[n & (MAX_DEPTH - 1)] = pos;
	d->n = n + 1;
	return 0;
}

SEC("uprobe")
int func_return(struct pt_regs *ctx)
{
	stat_inc(STAT_RETURN);
	u32 fn = bpf_get_attach_cookie(ctx);
	const struct func_spec *spec = bpf_map_lookup_elem(&func_specs, &fn);
	if (!spec)
		return 0;
	// At a RET, SP is what it was at entry; after a uretprobe's return the
	// return address has been popped.
	u64 sp = is_go ? ctx->sp : ctx->sp - 8, thread = 0, pos = 0;
	if (!where(ctx, sp, &thread, &pos))
		return 0;
	struct depths *d = bpf_map_lookup_elem(&thread_depths, &thread);
	if (!d) {
		stat_inc(STAT_NO_ENTRY);
		return 0;
	}
	// Deeper calls still listed ended without a RET seen.
	for (int i = 0; i < MAX_DEPTH; i++) {
		u32 n = d->n;
		if (n == 0 || n > MAX_DEPTH)
			break;
		u64 top = d->pos[(n - 1) & (MAX_DEPTH - 1)];
		if (top <= pos)
			break;
		drop_frame(thread, top);
		stat_inc(STAT_UNWOUND);
		d->n = n - 1;
	}
	u32 n = d->n;
	if (n == 0 || n > MAX_DEPTH || d->pos[(n - 1) & (MAX_DEPTH - 1)] != pos) {
		// Entered before uranus attached, or not traced (too deep).
		stat_inc(STAT_NO_ENTRY);
		return 0;
	}
	d->n = n - 1;
	struct frame_key k = {.thread = thread, .pos = pos};
	struct frame *f = bpf_map_lookup_elem(&frames, &k);
	if (!f) {
		stat_inc(STAT_NO_ENTRY);
		return 0;
	}
	if (f->func != fn) {
		// Another function's frame at this depth: its RET was missed and
		// this call's entry was not seen.
		drop_frame(thread, pos);
		stat_inc(STAT_UNWOUND);
		stat_inc(STAT_NO_ENTRY);
		return 0;
	}
	if (span_sampled(&f->h)) {
		struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (e) {
			e->h = f->h;
			e->h.end_ns = bpf_ktime_get_ns();
			e->func = fn;
			e->_pad = 0;
			bpf_probe_read_kernel(&e->v, sizeof(e->v), &f->v);
			fetch_all(ctx, spec, 1, &e->v);
			submit_event(e);
		} else {
			stat_inc(STAT_RINGBUF_FULL);
		}
	}
	span_end(thread, &f->prev, f->had_prev);
	bpf_map_delete_elem(&frames, &k);
	return 0;
}
