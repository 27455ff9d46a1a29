//go:build ignore

// crypto/tls: handshake spans, and the opt-in plaintext tap. Two
// instrumentors load this file (instrumentors/gotls), each keeping only its
// own programs.
//
// Handshakes, two probe hits each: the entry and every RET of
//
//   func (c *Conn) clientHandshake(ctx context.Context) (err error)  // no ctx before Go 1.17
//   func (c *Conn) serverHandshake(ctx context.Context) error
//
// which Handshake/HandshakeContext call only when a handshake really runs
// (Read and Write call Handshake every time, and it returns at once). The
// span's parent is the goroutine's active span; net/http's client runs the
// handshake two goroutines away from the request (roundTrip → go
// dialConnFor → addTLS → go func → HandshakeContext), so the entry of
// addTLS (one hit per new TLS connection the Transport dials) keeps the
// span it finds there, which Go >= 1.21's parentGoid then leads the
// handshake to.
//
// The tap: the entry of (*Conn).Write (plaintext about to be encrypted), and
// the entry and RETs of (*Conn).Read (the buffer from the entry, the count
// from the RET), paired per goroutine.
#include "uranus.h"

// crypto/tls.Conn and what hangs off it.
volatile const u64 off_conn_conn;         // Conn.conn, a net.Conn
volatile const u64 off_conn_is_client;
volatile const u64 off_conn_vers;
volatile const u64 off_conn_cipher;
volatile const u64 off_conn_did_resume;
volatile const u64 off_conn_server_name;  // the SNI a server received (a client's too from Go 1.14)
volatile const u64 off_conn_config;
volatile const u64 off_conn_alpn;         // Conn.clientProtocol
volatile const u64 off_conn_active_call;  // low bit: Close was called
volatile const u64 off_config_server_name;
volatile const u64 off_tcpconn_conn;      // net.TCPConn.conn (a net.conn)
volatile const u64 off_netconn_fd;
volatile const u64 off_netfd_raddr;
volatile const u64 off_tcpaddr_ip;
volatile const u64 off_tcpaddr_port;
// The error types that wrap a cause, known by their Error method's address
// (the first function of an error's itab; 0 when the program lacks the
// type), and where each keeps the cause.
volatile const u64 fn_permanent_error;    // crypto/tls.(*permanentError).Error: {err net.Error}
volatile const u64 fn_op_error;           // net.(*OpError).Error
volatile const u64 fn_cve_error;          // crypto/tls.(*CertificateVerificationError).Error, Go >= 1.20
volatile const u64 fn_syscall_error;      // os.(*SyscallError).Error
volatile const u64 off_operror_err;       // net.OpError.Err
volatile const u64 off_syscallerr_err;    // os.SyscallError.Err
volatile const u64 off_cve_err = OFFSET_ABSENT; // tls.CertificateVerificationError.Err
// Stack ABI: how many words of arguments precede the results.
volatile const u32 hs_arg_words = 1;
volatile const u32 rw_arg_words = 4;
// Tap settings (set by user space from --tls-capture-bytes and tls-dump).
volatile const u32 capture_bytes;
volatile const u8 tap_every_call;         // also record calls outside any span
// Telling a Write entry that morestack restarted from the first one.
volatile const u64 off_g_sched;
volatile const u64 off_gobuf_pc;
volatile const u64 write_fn_size;

// Instrumentor counters (named in instrumentors/gotls).
#define STAT_HS_FAILED STAT_EXTRA
#define STAT_HS_DIAL_PARENT STAT_EXTRA2
#define STAT_TAP_NO_SPAN STAT_EXTRA
#define STAT_TAP_NO_DATA STAT_EXTRA2
#define STAT_TAP_RESTART STAT_EXTRA3
#define STAT_TAP_CLOSED STAT_EXTRA4

// ---- Reads that may fail -------------------------------------------------------
// The peer address, and the string an error may start with, are read before
// user space knows the types involved: a read through a member that a type
// does not have fails or yields bytes user space then ignores, so failures
// here are not counted.

static __always_inline u64 peek(u64 addr)
{
	u64 v = 0;
	if (addr)
		bpf_probe_read_user(&v, sizeof(v), (void *)addr);
	return v;
}

struct iface {
	u64 itab;
	u64 data;
};

static __always_inline struct iface peek_iface(u64 addr)
{
	struct iface i = {};
	if (addr)
		bpf_probe_read_user(&i, sizeof(i), (void *)addr);
	return i;
}

// ---- Handshakes -------------------------------------------------------------------

#define ERR_NODES 4
#define ERR_STR 128

// One error value: its dynamic type, its first two words, and the string
// those two words make if they are a Go string header (errorString.s,
// wrapError.msg, OpError.Op, SyscallError.Syscall, RecordHeaderError.Msg).
// A failed handshake's record holds the returned error and, while each is
// one of the wrappers above, its cause, the cause's cause, …
struct err_node {
	u64 type;
	u64 word[2];
	u32 str_len;
	u32 _pad;
	u8 str[ERR_STR];
};

struct handshake_event {
	struct event_header h;
	u64 conn;        // the *tls.Conn: names the connection (tap records carry it too)
	u64 conn_type;   // Conn.conn's dynamic type (the peer is read for *net.TCPConn)
	u64 raddr_type;  // its remote address's dynamic type (*net.TCPAddr)
	u64 port;
	u16 version;
	u16 cipher;
	u8 is_client;
	u8 resumed;
	u8 ip_len;
	u8 _pad;
	u32 server_name_len;
	u32 config_name_len;
	u32 alpn_len;
	u32 _pad2;
	u8 ip[16];
	u8 server_name[128];
	u8 config_name[128];
	u8 alpn[32];
	struct err_node err[ERR_NODES];
};
EXPORT_TYPE(handshake_event);

struct hs_call {
	struct event_header h;
	u64 conn;
	struct span_ctx prev;
	u8 had_prev;
	u8 _pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, u64); // goid
	__type(value, struct hs_call);
} hs_calls SEC(".maps");

// The span active where net/http started dialing a TLS connection, by the
// dialing goroutine, for the handshake goroutine it starts.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, u64); // goid
	__type(value, struct span_ctx);
} dial_spans SEC(".maps");

//   func (pconn *persistConn) addTLS(ctx context.Context, name string, trace *httptrace.ClientTrace) error
SEC("uprobe")
int dial_tls_entry(struct pt_regs *ctx)
{
	stat_inc(STAT_ENTRY);
	u64 goid = go_goid(ctx);
	if (goid == 0)
		return 0;
	struct span_ctx *sc = active_span(ctx, goid);
	if (!sc)
		return 0;
	struct span_ctx copy = *sc;
	bpf_map_update_elem(&dial_spans, &goid, &copy, BPF_ANY);
	return 0;
}

static __always_inline struct span_ctx *handshake_parent(struct pt_regs *ctx, u64 goid)
{
	struct span_ctx *sc = active_span(ctx, goid);
	if (sc || off_g_parent_goid == OFFSET_ABSENT)
		return sc;
	u64 creator = qualify_goid(read_u64(go_g(ctx), off_g_parent_goid));
	if (creator == 0)
		return 0;
	sc = bpf_map_lookup_elem(&dial_spans, &creator);
	if (sc)
		stat_inc(STAT_HS_DIAL_PARENT);
	return sc;
}

SEC("uprobe")
int handshake_entry(struct pt_regs *ctx)
{
	stat_inc(STAT_ENTRY);
	u64 goid = go_goid(ctx);
	if (goid == 0)
		return 0;
	u64 conn = go_arg(ctx, 0);
	struct hs_call *prior = bpf_map_lookup_elem(&hs_calls, &goid);
	if (prior && prior->conn == conn) // re-entry after morestack
		return 0;
	struct hs_call c = {};
	c.conn = conn;
	span_begin(&c.h, goid, handshake_parent(ctx, goid), 0, &c.prev, &c.had_prev);
	if (bpf_map_update_elem(&hs_calls, &goid, &c, BPF_ANY))
		stat_inc(STAT_INFLIGHT_FULL);
	return 0;
}

// read_err_node fills n from the error interface i and returns its cause's
// interface when i holds one of the wrappers uranus knows; zeros otherwise.
static __always_inline struct iface read_err_node(struct err_node *n, struct iface i)
{
	struct iface cause = {};
	struct {
		u64 inter, type, hash, fun0; // itab {inter, _type, hash, _, fun[0]}: fun[0] is Error
	} itab;
	if (i.itab == 0 || i.data == 0 || bpf_probe_read_user(&itab, sizeof(itab), (void *)i.itab) || itab.type == 0)
		return cause;
	n->type = itab.type;
	bpf_probe_read_user(n->word, sizeof(n->word), (void *)i.data);
	s64 len = (s64)n->word[1];
	if (n->word[0] && len > 0 && len < (1 << 20)) {
		u32 k = len > ERR_STR ? ERR_STR : len;
		if (bpf_probe_read_user(n->str, k, (void *)n->word[0]) == 0)
			n->str_len = len;
	}
	u64 off = OFFSET_ABSENT;
	if (itab.fun0 == 0)
		return cause;
	if (itab.fun0 == fn_permanent_error)
		off = 0;
	else if (itab.fun0 == fn_op_error)
		off = off_operror_err;
	else if (itab.fun0 == fn_cve_error)
		off = off_cve_err;
	else if (itab.fun0 == fn_syscall_error)
		off = off_syscallerr_err;
	if (off != OFFSET_ABSENT)
		cause = peek_iface(i.data + off);
	return cause;
}

static __always_inline void read_peer(struct handshake_event *e, u64 conn)
{
	struct iface nc = peek_iface(conn + off_conn_conn);
	if (!nc.itab)
		return;
	e->conn_type = peek(nc.itab + 8);
	u64 fd = peek(nc.data + off_tcpconn_conn + off_netconn_fd);
	if (!fd)
		return;
	struct iface ra = peek_iface(fd + off_netfd_raddr);
	if (!ra.itab || !ra.data)
		return;
	e->raddr_type = peek(ra.itab + 8);
	struct go_str ip = {}; // the []byte's pointer and length
	if (bpf_probe_read_user(&ip, sizeof(ip), (void *)(ra.data + off_tcpaddr_ip)) == 0 &&
	    (ip.len == 4 || ip.len == 16) &&
	    bpf_probe_read_user(e->ip, ip.len == 16 ? 16 : 4, (void *)ip.ptr) == 0)
		e->ip_len = ip.len;
	e->port = peek(ra.data + off_tcpaddr_port);
}

SEC("uprobe")
int handshake_return(struct pt_regs *ctx)
{
	stat_inc(STAT_RETURN);
	u64 goid = go_goid(ctx);
	if (goid == 0)
		return 0;
	struct hs_call *c = bpf_map_lookup_elem(&hs_calls, &goid);
	if (!c) {
		stat_inc(STAT_NO_ENTRY);
		return 0;
	}
	u64 err_itab = go_result(ctx, hs_arg_words, 0), err_data = go_result(ctx, hs_arg_words, 1);
	if (err_itab)
		stat_inc(STAT_HS_FAILED);
	if (!span_sampled(&c->h))
		goto done;
	struct handshake_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		stat_inc(STAT_RINGBUF_FULL);
		goto done;
	}
	// The record is read field by field in user space; start from zeros so
	// that no earlier record's bytes (a tap's plaintext) linger in it.
	volatile u64 *w = (volatile u64 *)e; // volatile: clang would make the loop a memset, which BPF lacks
#pragma unroll
	for (int i = 0; i < sizeof(*e) / 8; i++)
		w[i] = 0;
	u64 conn = c->conn;
	e->h = c->h;
	e->h.end_ns = bpf_ktime_get_ns();
	e->conn = conn;
	e->version = read_u64(conn, off_conn_vers);
	e->cipher = read_u64(conn, off_conn_cipher);
	e->is_client = read_u64(conn, off_conn_is_client) & 1;
	e->resumed = read_u64(conn, off_conn_did_resume) & 1;
	e->server_name_len = read_go_string(e->server_name, conn, off_conn_server_name);
	e->config_name_len = read_go_string(e->config_name, read_u64(conn, off_conn_config), off_config_server_name);
	e->alpn_len = read_go_string(e->alpn, conn, off_conn_alpn);
	read_peer(e, conn);
	struct iface err = {err_itab, err_data};
	for (int i = 0; i < ERR_NODES && err.itab; i++)
		err = read_err_node(&e->err[i], err);
	submit_event(e);
done:
	span_end(goid, &c->prev, c->had_prev);
	bpf_map_delete_elem(&hs_calls, &goid);
	return 0;
}

// ---- Plaintext tap --------------------------------------------------------------------

#define TAP_MAX 4096
#define TAP_READ 0
#define TAP_WRITE 1

struct tap_event {
	struct event_header h;  // trace and span ids: the span the call happened in
	u64 conn;               // the *tls.Conn
	u64 conn_read;          // plaintext bytes read on the connection so far, this call included
	u64 conn_written;       // and written
	u64 len;                // bytes this Read returned, or this Write was given
	u32 captured;           // bytes of data that follow
	u8 dir;                 // TAP_READ or TAP_WRITE
	u8 in_span;             // h names the span active in the calling goroutine
	u8 _pad[2];
	u8 data[TAP_MAX];       // the first captured bytes of the plaintext
};
EXPORT_TYPE(tap_event);

// A record is assembled here, then copied into the ring buffer at its real
// length: a reservation would have to take TAP_MAX bytes for every call.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct tap_event);
} tap_scratch SEC(".maps");

struct conn_bytes {
	u64 read;
	u64 written;
	u64 under;  // the net.Conn beneath: a new *tls.Conn at a freed one's address has another
};

// Plaintext bytes per connection, counted whether or not bytes are captured.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, u64); // *tls.Conn
	__type(value, struct conn_bytes);
} conn_bytes SEC(".maps");

struct read_call {
	u64 conn;
	u64 buf;
	s64 len;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, u64); // goid
	__type(value, struct read_call);
} reads SEC(".maps");

static __always_inline void tap(struct pt_regs *ctx, u64 goid, u64 conn, u8 dir, u64 buf, u64 len)
{
	u64 under = read_u64(conn, off_conn_conn + 8); // the interface's data word
	struct conn_bytes *cb = bpf_map_lookup_elem(&conn_bytes, &conn);
	if (!cb || cb->under != under) {
		struct conn_bytes fresh = {.under = under};
		bpf_map_update_elem(&conn_bytes, &conn, &fresh, BPF_ANY);
		cb = bpf_map_lookup_elem(&conn_bytes, &conn);
	}
	u64 total_read = 0, total_written = 0;
	if (cb) {
		// A connection is often read and written by two goroutines at once.
		if (dir == TAP_READ)
			__sync_fetch_and_add(&cb->read, len);
		else
			__sync_fetch_and_add(&cb->written, len);
		total_read = cb->read;
		total_written = cb->written;
	}

	struct span_ctx *sc = active_span(ctx, goid);
	if (!sc || !(sc->flags & SPAN_FLAG_SAMPLED)) {
		if (!sc)
			stat_inc(STAT_TAP_NO_SPAN);
		if (!tap_every_call)
			return;
		sc = 0;
	}
	u32 zero = 0;
	struct tap_event *e = bpf_map_lookup_elem(&tap_scratch, &zero);
	if (!e)
		return;
	__builtin_memset(&e->h, 0, sizeof(e->h));
	e->h.start_ns = e->h.end_ns = bpf_ktime_get_ns();
	e->h.goid = goid;
	e->h.source = source_id;
	e->h.pid = (u32)current_pid();
	e->in_span = sc != 0;
	if (sc) {
		__builtin_memcpy(e->h.trace_id, sc->trace_id, sizeof(e->h.trace_id));
		__builtin_memcpy(e->h.span_id, sc->span_id, sizeof(e->h.span_id));
		e->h.flags = sc->flags & SPAN_FLAG_SAMPLED;
	}
	e->conn = conn;
	e->conn_read = total_read;
	e->conn_written = total_written;
	e->len = len;
	e->dir = dir;
	u32 n = capture_bytes;
	if (n > len)
		n = len;
	if (n > TAP_MAX)
		n = TAP_MAX;
	u32 captured = 0;
	if (n > 0) {
		if (bpf_probe_read_user(e->data, n, (void *)buf) == 0)
			captured = n;
		else
			stat_inc(STAT_READ_ERROR);
	}
	e->captured = captured;
	u64 size = __builtin_offsetof(struct tap_event, data) + captured;
	u64 flags = BPF_RB_NO_WAKEUP; // as submit_event in uranus.h
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > bpf_ringbuf_query(&events, BPF_RB_RING_SIZE) / 4)
		flags = BPF_RB_FORCE_WAKEUP;
	if (bpf_ringbuf_output(&events, e, size, flags))
		stat_inc(STAT_RINGBUF_FULL);
	else
		stat_inc(STAT_EVENTS);
}

//   func (c *Conn) Read(b []byte) (int, error)
//
// arguments c (word 0), b's pointer (1), length (2) and capacity (3);
// results n (0) and err (1, 2).
SEC("uprobe")
int read_entry(struct pt_regs *ctx)
{
	stat_inc(STAT_ENTRY);
	u64 goid = go_goid(ctx);
	if (goid == 0)
		return 0;
	// A restart after morestack only writes the same values again.
	struct read_call rc = {.conn = go_arg(ctx, 0), .buf = go_arg(ctx, 1), .len = (s64)go_arg(ctx, 2)};
	if (bpf_map_update_elem(&reads, &goid, &rc, BPF_ANY))
		stat_inc(STAT_INFLIGHT_FULL);
	return 0;
}

SEC("uprobe")
int read_return(struct pt_regs *ctx)
{
	stat_inc(STAT_RETURN);
	u64 goid = go_goid(ctx);
	if (goid == 0)
		return 0;
	struct read_call *p = bpf_map_lookup_elem(&reads, &goid);
	if (!p) {
		stat_inc(STAT_NO_ENTRY);
		return 0;
	}
	struct read_call rc = *p;
	bpf_map_delete_elem(&reads, &goid);
	s64 n = (s64)go_result(ctx, rw_arg_words, 0);
	if (n <= 0) { // EOF, a closed connection, an error, or an empty buffer
		stat_inc(STAT_TAP_NO_DATA);
		return 0;
	}
	if (n > rc.len) { // not a count Read can return: the pairing is wrong
		stat_inc(STAT_READ_ERROR);
		return 0;
	}
	tap(ctx, goid, rc.conn, TAP_READ, rc.buf, n);
	return 0;
}

// restarted tells whether this entry of Write is the function starting
// over after morestack grew the stack: morestack saved a return address
// inside Write (its prologue's call) in g.sched.pc, and gogo jumps back
// without clearing it. Any later call of Write finds another pc there: the
// write syscall (entersyscall) and every park save their own.
static __always_inline int restarted(struct pt_regs *ctx)
{
	if (write_fn_size == 0)
		return 0;
	u64 pc = read_u64(go_g(ctx), off_g_sched + off_gobuf_pc);
	return pc > ctx->ip && pc < ctx->ip + write_fn_size;
}

//   func (c *Conn) Write(b []byte) (int, error)
SEC("uprobe")
int write_entry(struct pt_regs *ctx)
{
	stat_inc(STAT_ENTRY);
	if (restarted(ctx)) {
		stat_inc(STAT_TAP_RESTART);
		return 0;
	}
	u64 goid = go_goid(ctx);
	if (goid == 0)
		return 0;
	u64 conn = go_arg(ctx, 0), buf = go_arg(ctx, 1);
	s64 len = (s64)go_arg(ctx, 2);
	if (len <= 0) {
		stat_inc(STAT_TAP_NO_DATA);
		return 0;
	}
	if (read_u64(conn, off_conn_active_call) & 1) { // Write will fail with net.ErrClosed
		stat_inc(STAT_TAP_CLOSED);
		return 0;
	}
	tap(ctx, goid, conn, TAP_WRITE, buf, len);
	return 0;
}
