// wire.h — trace context on the wire: the maps shared between the uprobes
// of a traced HTTP client (which know the span and the connection) and the
// socket programs of bpf/wire.c (which see the bytes being sent). Nothing is
// written into the client's memory: the kernel inserts the header into the
// message as it leaves the socket, which lockdown allows.
//
// A request is matched to its bytes by the connection's address tuple and
// the sending process, read from Go's own connection before the request is
// written: never guessed. Go's Transport sends one request at a time on a
// connection (HTTP/1 without pipelining), so a tuple names one request.
#pragma once

#include "uranus.h"

// A connection as both sides see it. IPv4 addresses are stored as
// IPv4-mapped IPv6 (::ffff:a.b.c.d), as Go and dual-stack sockets do.
struct wire_key {
	u32 tgid;   // the sending process, in the root PID namespace
	u16 lport;  // host byte order
	u16 rport;
	u8 laddr[16];
	u8 raddr[16];
};

enum wire_state {
	WIRE_PENDING = 1,  // span known, request bytes not seen yet
	WIRE_INJECTED,     // traceparent inserted after the request line
	WIRE_NOT_HTTP1,    // the first bytes sent were not an HTTP/1 request line
	WIRE_FAILED,       // the kernel refused to grow the message
};

struct wire_request {
	struct span_ctx sc;
	u64 owner;  // the span's id as a u64; 0 once its client withdrew it
	u64 state;  // enum wire_state; 64 bits for atomic compare-and-swap
};

// Requests waiting for their bytes, by connection. Entries are never
// deleted by the programs: a client withdraws its own by clearing owner
// with a compare-and-swap, because a lookup-then-delete could remove the
// next request's entry, announced on the same connection in between (Go
// returns a connection to its idle pool before handing a bodyless response
// to the caller: seen under load, ~1 request in 2,000). LRU bounds what
// closed connections leave; user space removes a detached process's entries.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct wire_key);
	__type(value, struct wire_request);
} wire_requests SEC(".maps");

// Requests whose traceparent went out, by span id (its 8 bytes as a u64):
// their client's return reads it here, since by then the connection may
// carry the next request already. A plain hash (cheaper than LRU): the
// return deletes each entry; user space removes a dead process's.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, u64);
	__type(value, u32); // tgid, for clean-up
} wire_sent SEC(".maps");

static __always_inline u64 span_key(const u8 span_id[8])
{
	u64 k;
	__builtin_memcpy(&k, span_id, sizeof(k));
	return k;
}

// wire_withdraw takes back the request of span_id announced under key, if
// it is still that one and not a later request on the same connection.
static __always_inline void wire_withdraw(const struct wire_key *key, const u8 span_id[8])
{
	struct wire_request *r = bpf_map_lookup_elem(&wire_requests, key);
	if (r)
		__sync_val_compare_and_swap(&r->owner, span_key(span_id), 0);
}

// Processes whose new connections are enrolled, by tgid; the value is the
// source_id of the program that registered it, so that user space can remove
// a target's entries when it detaches.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u32);
	__type(value, u32);
} wire_tgids SEC(".maps");

// wire_enroll registers the calling process so that sockets it connects from
// now on are watched (see bpf/wire.c); one lookup once registered.
static __always_inline void wire_enroll(void)
{
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (bpf_map_lookup_elem(&wire_tgids, &tgid))
		return;
	u32 src = source_id;
	bpf_map_update_elem(&wire_tgids, &tgid, &src, BPF_NOEXIST);
}
