//go:build ignore

// The floor: what any uprobe-based tracer pays before doing any work. The
// benchmark (bench/) attaches these at net/http.serverHandler.ServeHTTP's
// entry and at each of its RET instructions, exactly where uranus's server
// programs go, and they only count their own hits, so the difference between
// this and an uninstrumented server is the cost of the probes themselves.
#include "uranus.h"

SEC("uprobe")
int floor_entry(struct pt_regs *ctx)
{
	stat_inc(STAT_ENTRY);
	return 0;
}

SEC("uprobe")
int floor_return(struct pt_regs *ctx)
{
	stat_inc(STAT_RETURN);
	return 0;
}
