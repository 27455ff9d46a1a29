//go:build ignore

// Trace context on the wire (see wire.h): a sockops program on the cgroup v2
// root enrolls the TCP connections that traced processes open, and an sk_msg
// program on those sockets inserts a traceparent header after the request
// line of the request a uprobe announced in wire_requests. For a request
// over TLS the sockops program writes the context in a TCP header option
// instead, and reads it on the connections that traced servers accept.
//
// Safety first: every other socket on the host is never enrolled; on an
// enrolled socket a message passes untouched unless its connection has a
// request announced and not yet sent, and that message begins with a
// complete HTTP/1 request line. Whatever fails after the message was grown
// is undone, so the peer receives either the original bytes or the original
// bytes plus one complete header line.
#include "uranus.h"
#include "tracecontext.h"
#include "wire.h"

#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define SK_PASS 1

// Longest request line looked at: Go's Transport writes the request line and
// headers in one message (its 4 KiB buffer); a longer line goes out as is.
#define MAX_REQUEST_LINE 2048

// Counters of the socket programs (named in attach/wire.go).
enum wire_stat {
	WIRE_STAT_ENROLLED,      // connections of traced processes watched
	WIRE_STAT_ENROLL_FAILED, // the socket map refused a connection
	WIRE_STAT_INJECTED,      // traceparent headers inserted
	WIRE_STAT_NOT_HTTP1,     // announced requests whose bytes were not HTTP/1
	WIRE_STAT_FAILED,        // the kernel refused to grow or read a message
	WIRE_STAT_UNANNOUNCED,   // messages on watched connections with no request announced
	WIRE_STAT_DECIDED,       // messages after their request's header was decided (bodies)
	WIRE_STAT_OPT_WRITTEN,   // segments that carried a request's context in a TCP option
	WIRE_STAT_OPT_NO_ROOM,   // segments with no room left for the option
	WIRE_STAT_PARSING,       // accepted connections of traced servers whose options are read
	WIRE_STAT_OPT_READ,      // segments whose option a traced server received
	WIRE_STAT_H2_INJECTED,   // traceparent fields added to HTTP/2 HEADERS frames
	WIRE_STAT_H2_UNPARSED,   // messages of connections with streams announced that were not whole frames
	WIRE_STAT_H2_NO_ROOM,    // announced HEADERS frames that could not take the field (size, padding, CONTINUATION)
	WIRE_STAT_COUNT,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, WIRE_STAT_COUNT);
	__type(key, u32);
	__type(value, u64);
} wire_stats SEC(".maps");

static __always_inline void wire_stat(u32 which)
{
	u64 *v = bpf_map_lookup_elem(&wire_stats, &which);
	if (v)
		*v += 1;
}

// Connections being opened by traced processes, by socket cookie: connect()
// runs in the process, but the connection is established later in softirq,
// where the process is unknown.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, u64);
	__type(value, u32);
} wire_connecting SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, u64); // socket cookie
	__type(value, u64);
} wire_socks SEC(".maps");

// The process of each enrolled connection, for the header option callbacks,
// which may run in softirq (a retransmission, an ACK-clocked send).
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, u32);
} wire_sk_tgid SEC(".maps");

// The context's IPv6 words must be read one u32 at a time: the verifier
// refuses the wider loads the compiler would merge them into.
#define CTX_U32(f) (*(volatile u32 *)&(f))

// A connection's tuple as the socket sees it, for sk_msg and sockops
// contexts alike (their fields are named the same).
#define SOCK_KEY(k, ctx)                                                       \
	({                                                                     \
		int _ok = 0;                                                   \
		(k)->lport = (ctx)->local_port;                                \
		(k)->rport = bpf_ntohl((ctx)->remote_port);                    \
		if ((ctx)->family == AF_INET) {                                \
			v4_mapped((k)->laddr, (ctx)->local_ip4);               \
			v4_mapped((k)->raddr, (ctx)->remote_ip4);              \
		} else if ((ctx)->family == AF_INET6) {                        \
			u32 _a[4];                                             \
			_a[0] = CTX_U32((ctx)->local_ip6[0]);                           \
			_a[1] = CTX_U32((ctx)->local_ip6[1]);                           \
			_a[2] = CTX_U32((ctx)->local_ip6[2]);                           \
			_a[3] = CTX_U32((ctx)->local_ip6[3]);                           \
			__builtin_memcpy((k)->laddr, _a, 16);                  \
			_a[0] = CTX_U32((ctx)->remote_ip6[0]);                          \
			_a[1] = CTX_U32((ctx)->remote_ip6[1]);                          \
			_a[2] = CTX_U32((ctx)->remote_ip6[2]);                          \
			_a[3] = CTX_U32((ctx)->remote_ip6[3]);                          \
			__builtin_memcpy((k)->raddr, _a, 16);                  \
		} else {                                                       \
			_ok = -1;                                              \
		}                                                              \
		_ok;                                                           \
	})

static __always_inline void v4_mapped(u8 dst[16], u32 ip4)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &ip4, 4);
}

// option_request finds the request whose context an enrolled client
// connection's next segment carries: one announced over TLS, still owned,
// whose option has not gone out yet.
static __always_inline struct wire_request *option_request(struct bpf_sock_ops *skops, struct wire_key *k)
{
	struct bpf_sock *sk = skops->sk;
	if (!sk)
		return 0;
	u32 *tgid = bpf_sk_storage_get(&wire_sk_tgid, sk, 0, 0);
	if (!tgid)
		return 0;
	k->tgid = *tgid;
	if (SOCK_KEY(k, skops))
		return 0;
	struct wire_request *r = bpf_map_lookup_elem(&wire_requests, k);
	if (!r || r->owner == 0 || r->state != WIRE_OPTION)
		return 0;
	return r;
}

static __always_inline void write_option(struct bpf_sock_ops *skops)
{
	struct wire_key k = {};
	struct wire_request *r = option_request(skops, &k);
	if (!r)
		return;
	struct wire_opt o = {.kind = WIRE_OPT_KIND, .len = sizeof(o)};
	u16 exid = WIRE_OPT_EXID | (r->sc.flags & SPAN_FLAG_SAMPLED ? 1 : 0);
	o.exid[0] = exid >> 8;
	o.exid[1] = exid & 0xff;
	__builtin_memcpy(o.trace_id, r->sc.trace_id, sizeof(o.trace_id));
	__builtin_memcpy(o.span_id, r->sc.span_id, sizeof(o.span_id));
	u64 owner = r->owner;
	// One segment carries it, the request's first: the server takes a
	// context once, for the request it is serving (see wire.h).
	if (__sync_val_compare_and_swap(&r->state, WIRE_OPTION, WIRE_OPTION_SENT) != WIRE_OPTION)
		return;
	if (bpf_store_hdr_opt(skops, &o, sizeof(o), 0)) {
		// Not on a later segment either: the server may be serving the
		// request by then, and would keep the context for the next one.
		r->state = WIRE_FAILED;
		wire_stat(WIRE_STAT_OPT_NO_ROOM);
		return;
	}
	wire_stat(WIRE_STAT_OPT_WRITTEN);
	// The client's return learns from wire_sent that its context left.
	bpf_map_update_elem(&wire_sent, &owner, &k.tgid, BPF_ANY);
}

// read_option keeps the context a traced server's connection received,
// until the server's uprobe takes it for the request it serves.
static __always_inline void read_option(struct bpf_sock_ops *skops)
{
	struct wire_key k = {};
	if (SOCK_KEY(&k, skops))
		return;
	struct wire_opt o = {.kind = WIRE_OPT_KIND, .len = 4};
	o.exid[0] = WIRE_OPT_EXID >> 8;
	o.exid[1] = (WIRE_OPT_EXID & 0xff) | 1;
	int n = bpf_load_hdr_opt(skops, &o, sizeof(o), 0);
	if (n < 0) {
		o.len = 4;
		o.exid[1] = WIRE_OPT_EXID & 0xff;
		n = bpf_load_hdr_opt(skops, &o, sizeof(o), 0);
	}
	if (n != sizeof(o))
		return;
	struct span_ctx sc = {};
	__builtin_memcpy(sc.trace_id, o.trace_id, sizeof(sc.trace_id));
	__builtin_memcpy(sc.span_id, o.span_id, sizeof(sc.span_id));
	sc.flags = o.exid[1] & 1 ? SPAN_FLAG_SAMPLED : 0;
	bpf_map_update_elem(&wire_received, &k, &sc, BPF_ANY);
	wire_stat(WIRE_STAT_OPT_READ);
}

SEC("sockops")
int wire_sockops(struct bpf_sock_ops *skops)
{
	u64 cookie;
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB: {
		u32 tgid = bpf_get_current_pid_tgid() >> 32;
		if (!bpf_map_lookup_elem(&wire_tgids, &tgid))
			return 1;
		cookie = bpf_get_socket_cookie(skops);
		bpf_map_update_elem(&wire_connecting, &cookie, &tgid, BPF_ANY);
		return 1;
	}
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB: {
		cookie = bpf_get_socket_cookie(skops);
		u32 *tgid = bpf_map_lookup_elem(&wire_connecting, &cookie);
		if (!tgid)
			return 1;
		u32 t = *tgid;
		bpf_map_delete_elem(&wire_connecting, &cookie);
		if (bpf_sock_hash_update(skops, &wire_socks, &cookie, BPF_NOEXIST) == 0)
			wire_stat(WIRE_STAT_ENROLLED);
		else
			wire_stat(WIRE_STAT_ENROLL_FAILED);
		// Encrypted requests on it carry their context in an option.
		struct bpf_sock *sk = skops->sk;
		if (sk && bpf_sk_storage_get(&wire_sk_tgid, sk, &t, BPF_SK_STORAGE_GET_F_CREATE))
			bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG);
		return 1;
	}
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB: {
		u16 port = skops->local_port;
		if (!bpf_map_lookup_elem(&wire_listen_ports, &port))
			return 1;
		// Only segments with an option the kernel does not know.
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_PARSE_UNKNOWN_HDR_OPT_CB_FLAG);
		wire_stat(WIRE_STAT_PARSING);
		return 1;
	}
	case BPF_SOCK_OPS_HDR_OPT_LEN_CB: {
		// Room on a segment with data (not a pure ACK) of a request whose
		// option has not gone out yet.
		struct wire_key k = {};
		if (skops->skb_len > 0 && option_request(skops, &k) &&
		    bpf_reserve_hdr_opt(skops, sizeof(struct wire_opt), 0)) {
			struct wire_request *r = bpf_map_lookup_elem(&wire_requests, &k);
			if (r)
				__sync_val_compare_and_swap(&r->state, WIRE_OPTION, WIRE_FAILED);
			wire_stat(WIRE_STAT_OPT_NO_ROOM);
		}
		return 1;
	}
	case BPF_SOCK_OPS_WRITE_HDR_OPT_CB:
		write_option(skops);
		return 1;
	case BPF_SOCK_OPS_PARSE_HDR_OPT_CB:
		read_option(skops);
		return 1;
	}
	return 1;
}

static __always_inline int msg_key(struct sk_msg_md *msg, struct wire_key *k)
{
	k->tgid = bpf_get_current_pid_tgid() >> 32;
	return SOCK_KEY(k, msg);
}

// request_line_end returns the offset just past the "\r\n" of the HTTP/1
// request line that starts the message ("METHOD target HTTP/1.x\r\n"), or
// -1 when the message does not start with one.
static __always_inline int request_line_end(struct sk_msg_md *msg)
{
	u32 want = msg->size < MAX_REQUEST_LINE ? msg->size : MAX_REQUEST_LINE;
	if (want < 16 || bpf_msg_pull_data(msg, 0, want, 0))
		return -1;
	u8 *p = msg->data, *end = msg->data_end;
	// The method: upper-case letters, then a space.
	int i = 0;
	for (; i < 16; i++) {
		if ((void *)(p + i + 1) > (void *)end)
			return -1;
		if (p[i] == ' ')
			break;
		if (p[i] < 'A' || p[i] > 'Z')
			return -1;
	}
	if (i == 0 || i == 16)
		return -1;
	for (int j = 0; j < MAX_REQUEST_LINE; j++) {
		u8 *c = p + j;
		if ((void *)(c + 1) > (void *)end)
			return -1;
		if (*c != '\n')
			continue;
		// " HTTP/1.x\r\n": the 10 bytes before '\n' and the '\n'.
		if (j < 12)
			return -1;
		u8 *v = c - 10;
		if ((void *)v < (void *)p || (void *)(v + 11) > (void *)end)
			return -1;
		if (v[0] != ' ' || v[1] != 'H' || v[2] != 'T' || v[3] != 'T' || v[4] != 'P' || v[5] != '/' ||
		    v[6] != '1' || v[7] != '.' || (v[8] != '0' && v[8] != '1') || v[9] != '\r')
			return -1;
		return j + 1;
	}
	return -1;
}

// ---- HTTP/2 (see wire.h) ------------------------------------------------------

#define H2_FRAME_HEADER 9
#define H2_HEADERS 0x1
#define H2_FLAG_END_HEADERS 0x4
#define H2_FLAG_PADDED 0x8
// Frames looked at in one message; a message with more passes as it is.
#define H2_MAX_FRAMES 256
// SETTINGS_MAX_FRAME_SIZE's initial value: a frame grown past it could be
// refused by a peer that never raised it.
#define H2_MAX_FRAME_SIZE 16384
// The connection preface a client sends first ("PRI * HTTP/2.0…").
#define H2_PREFACE_LEN 24
// 0x00: literal without indexing, new name; then the name's length (7-bit
// prefix, no Huffman coding), the name, the value's length, the value.
#define H2_FIELD_LEN (1 + 1 + 11 + 1 + TRACEPARENT_LEN)

struct h2_frame {
	u32 len;
	u32 stream_id;
	u8 type;
	u8 flags;
};

// h2_frame_at reads the header of the frame at off; 0 on success.
static __always_inline int h2_frame_at(struct sk_msg_md *msg, u32 off, struct h2_frame *f)
{
	if (bpf_msg_pull_data(msg, off, off + H2_FRAME_HEADER, 0))
		return -1;
	u8 *p = msg->data;
	if ((void *)(p + H2_FRAME_HEADER) > msg->data_end)
		return -1;
	f->len = (u32)p[0] << 16 | (u32)p[1] << 8 | p[2];
	f->type = p[3];
	f->flags = p[4];
	f->stream_id = ((u32)p[5] << 24 | (u32)p[6] << 16 | (u32)p[7] << 8 | p[8]) & 0x7fffffff;
	return 0;
}

// h2_start is where the message's first frame starts: past the preface
// when the message begins with it.
static __always_inline u32 h2_start(struct sk_msg_md *msg)
{
	if (msg->size < H2_PREFACE_LEN || bpf_msg_pull_data(msg, 0, 4, 0))
		return 0;
	u8 *p = msg->data;
	if ((void *)(p + 4) > msg->data_end)
		return 0;
	return p[0] == 'P' && p[1] == 'R' && p[2] == 'I' && p[3] == ' ' ? H2_PREFACE_LEN : 0;
}

// h2_add_field appends the traceparent field of sc to the header block of
// the HEADERS frame at off (of length len) and fixes the frame's length.
static __noinline int h2_add_field(struct sk_msg_md *msg, u32 off, u32 len, const struct span_ctx *sc)
{
	u8 field[H2_FIELD_LEN];
	field[0] = 0x00;
	field[1] = 11;
	__builtin_memcpy(field + 2, "traceparent", 11);
	field[13] = TRACEPARENT_LEN;
	u8 *v = field + 14;
	v[0] = '0';
	v[1] = '0';
	v[2] = '-';
	hex_encode(sc->trace_id, v + 3, 16);
	v[35] = '-';
	hex_encode(sc->span_id, v + 36, 8);
	v[52] = '-';
	v[53] = '0';
	v[54] = (sc->flags & SPAN_FLAG_SAMPLED) ? '1' : '0';

	u32 at = off + H2_FRAME_HEADER + len;
	if (bpf_msg_push_data(msg, at, sizeof(field), 0))
		return -1;
	if (bpf_msg_pull_data(msg, at, at + sizeof(field), 0))
		goto undo;
	u8 *d = msg->data;
	if ((void *)(d + sizeof(field)) > msg->data_end)
		goto undo;
	__builtin_memcpy(d, field, sizeof(field));
	if (bpf_msg_pull_data(msg, off, off + 3, 0))
		goto undo;
	d = msg->data;
	if ((void *)(d + 3) > msg->data_end)
		goto undo;
	u32 grown = len + sizeof(field);
	d[0] = grown >> 16;
	d[1] = grown >> 8;
	d[2] = grown;
	return 0;
undo:
	bpf_msg_pop_data(msg, at, sizeof(field), 0);
	return -1;
}

// A walk over a message's frames, one frame per bpf_loop step (a loop the
// verifier checks once, whatever the number of frames).
struct h2_walk {
	struct sk_msg_md *msg;
	struct wire_key k;
	u32 off;    // where the next frame starts
	u8 whole;   // the frames ended exactly at the message's end
	u8 inject;  // second pass: add the fields
};

static long h2_step(u64 i, void *ctx)
{
	struct h2_walk *w = ctx;
	struct sk_msg_md *msg = w->msg;
	u32 size = msg->size;
	if (w->off == size) {
		w->whole = 1;
		return 1;
	}
	struct h2_frame f;
	if (w->off + H2_FRAME_HEADER > size || h2_frame_at(msg, w->off, &f))
		return 1;
	u32 next = w->off + H2_FRAME_HEADER + f.len;
	if (next > size)
		return 1;
	if (w->inject && f.type == H2_HEADERS) {
		struct wire_h2_key hk = {.conn = w->k, .stream_id = f.stream_id};
		struct span_ctx *sc = bpf_map_lookup_elem(&wire_h2_streams, &hk);
		if (sc) {
			struct span_ctx c = *sc;
			bpf_map_delete_elem(&wire_h2_streams, &hk);
			u64 *pending = bpf_map_lookup_elem(&wire_h2_conns, &w->k);
			if (pending && *pending > 0)
				__sync_fetch_and_add(pending, -1);
			if (!(f.flags & H2_FLAG_END_HEADERS) || (f.flags & H2_FLAG_PADDED) ||
			    f.len + H2_FIELD_LEN > H2_MAX_FRAME_SIZE) {
				wire_stat(WIRE_STAT_H2_NO_ROOM);
			} else if (h2_add_field(msg, w->off, f.len, &c)) {
				wire_stat(WIRE_STAT_FAILED);
			} else {
				next += H2_FIELD_LEN;
				wire_stat(WIRE_STAT_H2_INJECTED);
			}
		}
	}
	w->off = next;
	return 0;
}

// h2_inject adds a traceparent to each HEADERS frame in the message of a
// stream announced on this connection, once the message is known to be a
// run of whole HTTP/2 frames ending exactly where it ends. Go's HTTP/2
// writers send whole frames; a frame split across two writes fails this
// and the message passes as it is: nothing is inserted into bytes whose
// framing is not certain.
static __always_inline void h2_inject(struct sk_msg_md *msg, struct wire_key *k)
{
	struct h2_walk w = {.msg = msg, .k = *k};
	u32 start = h2_start(msg);
	w.off = start;
	bpf_loop(H2_MAX_FRAMES, h2_step, &w, 0);
	if (!w.whole) {
		wire_stat(WIRE_STAT_H2_UNPARSED);
		return;
	}
	w.off = start;
	w.inject = 1;
	bpf_loop(H2_MAX_FRAMES, h2_step, &w, 0);
}

SEC("sk_msg")
int wire_msg(struct sk_msg_md *msg)
{
	struct wire_key k = {};
	if (msg_key(msg, &k))
		return SK_PASS;
	struct wire_request *r = bpf_map_lookup_elem(&wire_requests, &k);
	if (!r || r->owner == 0) {
		u64 *pending = bpf_map_lookup_elem(&wire_h2_conns, &k);
		if (pending && *pending > 0) {
			h2_inject(msg, &k);
			return SK_PASS;
		}
		wire_stat(WIRE_STAT_UNANNOUNCED);
		return SK_PASS;
	}
	// Claim the request: from here on its bytes are decided, and later
	// messages (its body) pass untouched.
	if (__sync_val_compare_and_swap(&r->state, WIRE_PENDING, WIRE_NOT_HTTP1) != WIRE_PENDING) {
		wire_stat(WIRE_STAT_DECIDED);
		return SK_PASS;
	}
	struct span_ctx sc = r->sc;
	u64 owner = r->owner;
	int at = request_line_end(msg);
	if (at < 0) {
		wire_stat(WIRE_STAT_NOT_HTTP1);
		return SK_PASS;
	}
	u8 line[TRACEPARENT_HEADER_LEN];
	format_traceparent_header(line, sc.trace_id, sc.span_id, sc.flags);
	line[0] = 't'; // lower case, as HTTP/2 requires and OTel SDKs send
	if (bpf_msg_push_data(msg, at, sizeof(line), 0)) {
		r->state = WIRE_FAILED;
		wire_stat(WIRE_STAT_FAILED);
		return SK_PASS;
	}
	if (bpf_msg_pull_data(msg, at, at + sizeof(line), 0))
		goto undo;
	u8 *d = msg->data;
	if ((void *)(d + sizeof(line)) > msg->data_end)
		goto undo;
	__builtin_memcpy(d, line, sizeof(line));
	r->state = WIRE_INJECTED;
	bpf_map_update_elem(&wire_sent, &owner, &k.tgid, BPF_ANY);
	wire_stat(WIRE_STAT_INJECTED);
	return SK_PASS;
undo:
	bpf_msg_pop_data(msg, at, sizeof(line), 0);
	r->state = WIRE_FAILED;
	wire_stat(WIRE_STAT_FAILED);
	return SK_PASS;
}
