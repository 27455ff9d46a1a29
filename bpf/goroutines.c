//go:build ignore

// Goroutine creation: a goroutine started inside a span inherits that span,
// so that a request made from a goroutine a handler spawned (go func(){…}(),
// errgroup, workers started for the request) nests under the handler's span.
//
// One probe hit per goroutine created: the RET of runtime.newproc1. It runs
// on the system stack (g0) — the go statement's caller is g.m.curg there —
// and the new goroutine is its result (Go >= 1.15) or, before, the current
// P's runnext slot, where newproc1 has just put it. The copy happens before
// the new goroutine first runs, except if another P steals it in the few
// instructions between runqput and the RET.
#include "uranus.h"

volatile const u64 off_g_m;
volatile const u64 off_m_curg;
volatile const u64 off_m_p;
volatile const u64 off_p_runnext;
volatile const u8 newg_in_runnext;      // Go < 1.15: newproc1 returns nothing
volatile const u32 newproc1_arg_words;  // stack ABI: where the result follows the arguments

SEC("uprobe")
int newproc1_return(struct pt_regs *ctx)
{
	stat_inc(STAT_RETURN);
	if (current_pid() < 0) {
		stat_inc(STAT_OUT_OF_SCOPE);
		return 0;
	}
	u64 m = read_u64(go_g(ctx), off_g_m);
	u64 creator = qualify_goid(read_u64(read_u64(m, off_m_curg), off_g_goid));
	if (creator == 0)
		return 0;
	struct span_ctx *sc = goroutine_span(creator);
	if (!sc)
		return 0;
	u64 newg;
	if (newg_in_runnext)
		newg = read_u64(read_u64(m, off_m_p), off_p_runnext);
	else
		newg = go_result(ctx, newproc1_arg_words, 0);
	u64 goid = qualify_goid(read_u64(newg, off_g_goid));
	if (goid == 0 || goid == creator)
		return 0;
	struct span_ctx copy = *sc;
	bpf_map_update_elem(&goroutine_spans, &goid, &copy, BPF_ANY);
	stat_inc(STAT_EXTRA);
	return 0;
}
