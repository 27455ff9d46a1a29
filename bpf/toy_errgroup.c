//go:build ignore

// A toy instrumentor (internal/toy), written only to show that a library
// outside the standard library is one folder, one C file and one registry
// line: a span per errgroup.(*Group).Wait call of golang.org/x/sync,
//
//   func (g *Group) Wait() error
//
// reading two members of the module's struct at offsets keyed by the
// module's version (g.cancel: made by WithContext; g.err: a goroutine
// failed). Not part of uranus's registry.
#include "uranus.h"

volatile const u64 off_group_cancel;
volatile const u64 off_group_err;

struct event {
	struct event_header h;
	u8 with_context;
	u8 failed;
	u8 _pad[6];
};
EXPORT_TYPE(event);

struct call {
	struct event_header h;
	u64 group;
	struct span_ctx prev;
	u8 had_prev;
	u8 _pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, u64); // goid
	__type(value, struct call);
} calls SEC(".maps");

SEC("uprobe")
int wait_entry(struct pt_regs *ctx)
{
	stat_inc(STAT_ENTRY);
	u64 goid = go_goid(ctx);
	if (goid == 0)
		return 0;
	u64 group = go_arg(ctx, 0);
	struct call *prior = bpf_map_lookup_elem(&calls, &goid);
	if (prior && prior->group == group) // re-entry after morestack
		return 0;
	struct call c = {};
	c.group = group;
	span_begin(&c.h, goid, active_span(ctx, goid), 0, &c.prev, &c.had_prev);
	if (bpf_map_update_elem(&calls, &goid, &c, BPF_ANY))
		stat_inc(STAT_INFLIGHT_FULL);
	return 0;
}

SEC("uprobe")
int wait_return(struct pt_regs *ctx)
{
	stat_inc(STAT_RETURN);
	u64 goid = go_goid(ctx);
	if (goid == 0)
		return 0;
	struct call *c = bpf_map_lookup_elem(&calls, &goid);
	if (!c) {
		stat_inc(STAT_NO_ENTRY);
		return 0;
	}
	if (span_sampled(&c->h)) {
		struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (!e) {
			stat_inc(STAT_RINGBUF_FULL);
		} else {
			e->h = c->h;
			e->h.end_ns = bpf_ktime_get_ns();
			e->with_context = read_u64(c->group, off_group_cancel) != 0;
			e->failed = read_u64(c->group, off_group_err) != 0;
			submit_event(e);
		}
	}
	span_end(goid, &c->prev, c->had_prev);
	bpf_map_delete_elem(&calls, &goid);
	return 0;
}
