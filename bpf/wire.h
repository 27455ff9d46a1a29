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
#include "go_net.h"

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
	WIRE_OPTION,       // encrypted: carried in a TCP option, none written yet
	WIRE_OPTION_SENT,  // encrypted: the option went out, on the request's first data segment
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

// ---- Encrypted connections: trace context in a TCP header option ----------
//
// TLS bytes cannot take a header, but the TCP segments carrying them can
// take an option: the client's sockops program writes the announced span's
// context on the first segment with data it sends for the request; the
// server's reads it into wire_received, by connection, and the server's
// uprobe takes it from there (and deletes it) to parent its span. Go's
// Transport and server handle one request at a time on an HTTP/1
// connection, so the context waiting on a connection is that of the request
// being served, and, taken once, it is never reused for a later request
// sent without one. A lost first segment is retransmitted without the
// option: that request is not linked, rather than linked wrongly. The
// option is RFC 6994's experimental kind with a
// 16-bit ExID whose low bit is the sampled flag: 2+2+16+8 = 28 bytes, what
// is left of the 40 option bytes beside timestamps (12). A segment that has
// no room (SACK blocks) goes out without it, and is counted.
#define WIRE_OPT_KIND 253
#define WIRE_OPT_EXID 0x7572 // "ur"; | 1 when sampled

struct wire_opt {
	u8 kind;
	u8 len;
	u8 exid[2]; // big-endian
	u8 trace_id[16];
	u8 span_id[8];
} __attribute__((packed));

// The context each server connection last received, keyed by the server's
// view of the connection (tgid 0: the softirq that parses a segment does
// not know the process).
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct wire_key);
	__type(value, struct span_ctx);
} wire_received SEC(".maps");

// Local ports that traced processes listen on: connections accepted on
// them have their segments' options parsed. Filled from /proc when a
// process is traced and by the server's uprobe from each connection it
// serves; LRU bounds what exited processes leave.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, u16);
	__type(value, u8);
} wire_listen_ports SEC(".maps");

// tcp_conn_key fills k's addresses and ports from a *net.TCPConn. Another
// type in its place (a custom net.Conn) yields a tuple no socket has, or an
// error: nothing is then matched.
static __always_inline int tcp_conn_key(u64 tcpconn, struct wire_key *k)
{
	u64 fd = read_u64(tcpconn, off_tcpconn_conn + off_conn_fd);
	if (fd == 0 || read_tcp_addr(read_u64(fd, off_netfd_laddr + 8), k->laddr, &k->lport) ||
	    read_tcp_addr(read_u64(fd, off_netfd_raddr + 8), k->raddr, &k->rport))
		return -1;
	return 0;
}

// ---- HTTP/2 without TLS (h2c): a header field in the stream's HEADERS ----
//
// An HTTP/2 connection carries many requests at once, each on a stream of
// its own. A client's uprobe that knows a request's span, its connection
// and its stream id announces them here before the stream's HEADERS frame
// is written; bpf/wire.c appends a traceparent field to that frame's header
// block as the bytes leave the socket, and fixes the frame's length. The
// field is an HPACK "literal without indexing" with a literal name: the
// peer's decoder adds nothing to its dynamic table, so the header
// compression state both ends share is untouched.
struct wire_h2_key {
	struct wire_key conn;
	u32 stream_id;
	u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct wire_h2_key);
	__type(value, struct span_ctx);
} wire_h2_streams SEC(".maps");

// Streams announced and not yet seen leaving, by connection: a message on
// a connection without any is passed without being looked at.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct wire_key);
	__type(value, u64);
} wire_h2_conns SEC(".maps");

// wire_h2_announce records that stream stream_id on connection conn
// carries span sc.
static __always_inline void wire_h2_announce(const struct wire_key *conn, u32 stream_id, const struct span_ctx *sc)
{
	struct wire_h2_key k = {.conn = *conn, .stream_id = stream_id};
	if (bpf_map_update_elem(&wire_h2_streams, &k, sc, BPF_ANY))
		return;
	u64 *pending = bpf_map_lookup_elem(&wire_h2_conns, conn);
	if (pending) {
		__sync_fetch_and_add(pending, 1);
	} else {
		u64 one = 1;
		bpf_map_update_elem(&wire_h2_conns, conn, &one, BPF_NOEXIST);
	}
}
