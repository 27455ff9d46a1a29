//go:build ignore

// net/http client: one CLIENT span per request sent by
//
//   func (t *Transport) roundTrip(req *Request) (*Response, error)
//
// arguments t (word 0), req (1); results resp (0), err's itab (1) and
// data (2). The entry starts the span under the goroutine's active span (see
// active_span) and each RET emits it: two probe hits.
//
// Injection, one more hit: transferWriter.writeHeader is called once per
// request written to a connection, after the request line, Host and
// User-Agent, with the connection's *bufio.Writer; the span is found by the
// request's Header map, which the transferWriter carries. A traceparent line
// is appended to the buffered bytes — memory the program owns and is about
// to send — when the app set none itself and the buffer has room; otherwise
// nothing is written and the reason is counted.
//
// On the wire instead (feature "wire", see wire.h), one more hit:
// persistConn.roundTrip runs on the caller's goroutine once the connection
// is chosen and before the request is written to it; it announces the span
// under the connection's address tuple, and bpf/wire.c inserts the header
// into the bytes as they leave the socket. The process's memory is only read.
#include "uranus.h"
#include "go_header.h"
#include "tracecontext.h"
#include "wire.h"

volatile const u64 off_req_method;
volatile const u64 off_req_url;
volatile const u64 off_req_header;
volatile const u64 off_url_scheme;
volatile const u64 off_url_user;
volatile const u64 off_url_host;
volatile const u64 off_url_path;
volatile const u64 off_url_rawquery;
volatile const u64 off_resp_status;
volatile const u64 off_resp_tls;
volatile const u64 off_resp_proto;    // "HTTP/1.1", "HTTP/2.0"
volatile const u64 off_cs_version;    // crypto/tls.ConnectionState
volatile const u64 off_cs_cipher;
volatile const u64 off_tw_header;
volatile const u64 off_bufio_err;
volatile const u64 off_bufio_buf;
volatile const u64 off_bufio_n;
volatile const u64 off_pc_conn;       // net/http.persistConn
volatile const u64 off_pc_tls_state;
volatile const u8 feature_inject;
volatile const u8 feature_wire;

// Instrumentor counters (named in instrumentors/httpclient).
#define STAT_INJECTED STAT_EXTRA
#define STAT_APP_TRACEPARENT STAT_EXTRA2
#define STAT_NO_ROOM STAT_EXTRA3
#define STAT_NOT_ON_WIRE STAT_EXTRA4

struct event {
	struct event_header h;
	u64 status;    // Response.StatusCode; 0 without a response
	u64 err_type;  // the error's type descriptor; 0 without an error
	u32 method_len;
	u32 scheme_len;
	u32 host_len;
	u32 path_len;
	u32 query_len;
	u8 userinfo;   // the URL carries credentials (never read)
	u8 injected;   // a traceparent was written into the request
	u8 _pad[2];
	u16 tls_version; // Response.TLS.Version, CipherSuite; 0 without TLS
	u16 tls_cipher;
	u8 method[16];
	u8 scheme[8];
	u8 host[128];
	u8 path[256];
	u8 query[256];
	u32 proto_len;   // Response.Proto; 0 without a response
	u8 proto[12];
};
EXPORT_TYPE(event);

struct call {
	struct event_header h;
	u64 req;
	u64 header;
	struct span_ctx prev;
	u8 had_prev;
	u8 wire;       // enum call_wire
	u8 origin;     // enum call_origin: whose entry made it
	u8 _pad[5];
	struct wire_key key; // the connection announced in wire_requests
};

// golang.org/x/net/http2's Transport is a RoundTripper of its own: called
// directly, its RoundTripOpt is the call; called by net/http's Transport
// (http2.ConfigureTransport), it runs inside net/http's roundTrip on the
// same goroutine with the same *Request, and that outer call is the span.
enum call_origin {
	ORIGIN_NET_HTTP, // net/http.(*Transport).roundTrip
	ORIGIN_XNET,     // golang.org/x/net/http2.(*Transport).RoundTripOpt
};

// Argument words of x/net's RoundTripOpt(t, req, opt) before its results,
// under the stack ABI (x/net releases for Go < 1.17).
volatile const u32 xnet_arg_words;

enum call_wire {
	CALL_WIRE_NONE,      // not announced (yet)
	CALL_WIRE_ANNOUNCED, // in wire_requests under key
	CALL_WIRE_APP,       // the app set its own traceparent: left as is
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, u64); // goid
	__type(value, struct call);
} calls SEC(".maps");

// The span of each request in flight, by its Header map, for the inject
// probe, which runs on the connection's writer goroutine.
struct pending {
	struct span_ctx sc;
	u8 injected;
	u8 _pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, u64); // Header map pointer
	__type(value, struct pending);
} pending SEC(".maps");

// begin_call starts the span of a client call of req on goroutine goid.
static __always_inline void begin_call(struct pt_regs *ctx, u64 goid, u64 req, u8 origin)
{
	struct call c = {};
	c.req = req;
	c.origin = origin;
	c.header = read_u64(req, off_req_header);
	span_begin(&c.h, goid, active_span(ctx, goid), 0, &c.prev, &c.had_prev);
	if (bpf_map_update_elem(&calls, &goid, &c, BPF_ANY))
		stat_inc(STAT_INFLIGHT_FULL);
	if (feature_wire)
		wire_enroll(); // before the request dials its connection
	if (feature_inject && c.header) {
		struct pending p = {};
		__builtin_memcpy(p.sc.trace_id, c.h.trace_id, sizeof(p.sc.trace_id));
		__builtin_memcpy(p.sc.span_id, c.h.span_id, sizeof(p.sc.span_id));
		p.sc.flags = c.h.flags & SPAN_FLAG_SAMPLED;
		bpf_map_update_elem(&pending, &c.header, &p, BPF_ANY);
	}
}

SEC("uprobe")
int client_entry(struct pt_regs *ctx)
{
	stat_inc(STAT_ENTRY);
	u64 goid = go_goid(ctx);
	if (goid == 0)
		return 0;
	u64 req = go_arg(ctx, 1);
	struct call *prior = bpf_map_lookup_elem(&calls, &goid);
	if (prior && prior->req == req) // re-entry after morestack
		return 0;
	begin_call(ctx, goid, req, ORIGIN_NET_HTTP);
	return 0;
}

//   func (t *Transport) RoundTripOpt(req *http.Request, opt RoundTripOpt) (*http.Response, error)
//
// of golang.org/x/net/http2: arguments t (word 0), req (1), opt (2).
SEC("uprobe")
int xnet_entry(struct pt_regs *ctx)
{
	stat_inc(STAT_ENTRY);
	u64 goid = go_goid(ctx);
	if (goid == 0)
		return 0;
	u64 req = go_arg(ctx, 1);
	struct call *prior = bpf_map_lookup_elem(&calls, &goid);
	// Inside net/http's roundTrip (ConfigureTransport: its request, or a
	// copy of it with a rewindable body), or its own entry again after
	// morestack: the call has its span already.
	if (prior && (prior->origin == ORIGIN_NET_HTTP || prior->req == req))
		return 0;
	begin_call(ctx, goid, req, ORIGIN_XNET);
	return 0;
}

// end_call emits the span of call c at its return; nargs is where the
// results start under the stack ABI.
static __always_inline void end_call(struct pt_regs *ctx, u64 goid, struct call *c, u32 nargs)
{
	u8 injected = 0;
	if (c->wire == CALL_WIRE_ANNOUNCED) {
		u64 sid = span_key(c->h.span_id);
		// A failed delete means there was no entry: nothing went out.
		injected = bpf_map_delete_elem(&wire_sent, &sid) == 0;
		wire_withdraw(&c->key, c->h.span_id);
	}
	if (feature_wire) {
		if (injected)
			stat_inc(STAT_INJECTED);
		else if (c->wire != CALL_WIRE_APP)
			stat_inc(STAT_NOT_ON_WIRE);
	}
	if (c->header && feature_inject) {
		struct pending *p = bpf_map_lookup_elem(&pending, &c->header);
		if (p)
			injected = p->injected;
		bpf_map_delete_elem(&pending, &c->header);
	}
	if (!span_sampled(&c->h))
		goto done;
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		stat_inc(STAT_RINGBUF_FULL);
		goto done;
	}
	u64 req = c->req, resp = go_result(ctx, nargs, 0), err_itab = go_result(ctx, nargs, 1);
	e->h = c->h;
	e->h.end_ns = bpf_ktime_get_ns();
	e->status = resp ? read_u64(resp, off_resp_status) : 0;
	u64 tls = resp ? read_u64(resp, off_resp_tls) : 0;
	e->tls_version = tls ? read_u64(tls, off_cs_version) : 0;
	e->tls_cipher = tls ? read_u64(tls, off_cs_cipher) : 0;
	e->err_type = err_itab ? read_u64(err_itab, 8) : 0; // itab: {inter, _type, …}
	e->injected = injected;
	e->method_len = read_go_string(e->method, req, off_req_method);
	u64 url = read_u64(req, off_req_url);
	e->userinfo = read_u64(url, off_url_user) != 0;
	e->scheme_len = read_go_string(e->scheme, url, off_url_scheme);
	e->host_len = read_go_string(e->host, url, off_url_host);
	e->path_len = read_go_string(e->path, url, off_url_path);
	e->query_len = read_go_string(e->query, url, off_url_rawquery);
	e->proto_len = resp ? read_go_string(e->proto, resp, off_resp_proto) : 0;
	submit_event(e);
done:
	span_end(goid, &c->prev, c->had_prev);
	bpf_map_delete_elem(&calls, &goid);
}

SEC("uprobe")
int client_return(struct pt_regs *ctx)
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
	end_call(ctx, goid, c, 2);
	return 0;
}

SEC("uprobe")
int xnet_return(struct pt_regs *ctx)
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
	if (c->origin != ORIGIN_XNET) // net/http's call, which ends at its own return
		return 0;
	end_call(ctx, goid, c, xnet_arg_words);
	return 0;
}

//   func (t *transferWriter) writeHeader(w io.Writer, trace *httptrace.ClientTrace) error
//
// arguments t (word 0), w's itab (1) and data (2), trace (3).
SEC("uprobe")
int inject_traceparent(struct pt_regs *ctx)
{
	stat_inc(STAT_ENTRY);
	u64 header = read_u64(go_arg(ctx, 0), off_tw_header);
	if (header == 0)
		return 0;
	struct pending *p = bpf_map_lookup_elem(&pending, &header);
	if (!p) // a response being written, or a request uranus does not trace
		return 0;
	struct header_refs refs = {};
	scan_header(header, 1 << HDR_TRACEPARENT, &refs);
	if (refs.ptr[HDR_TRACEPARENT]) {
		stat_inc(STAT_APP_TRACEPARENT);
		return 0;
	}
	// The writer is the connection's *bufio.Writer: {err error, buf []byte,
	// n int, wr io.Writer}. Write only into buf[n:len(buf)] of a writer in
	// a sane state, then advance n, as Write would.
	u64 bw = go_arg(ctx, 2);
	struct {
		u64 ptr;
		s64 len, cap;
	} buf;
	s64 n;
	if (read_u64(bw, off_bufio_err) != 0 ||
	    bpf_probe_read_user(&buf, sizeof(buf), (void *)(bw + off_bufio_buf)) ||
	    bpf_probe_read_user(&n, sizeof(n), (void *)(bw + off_bufio_n)) ||
	    buf.ptr == 0 || buf.len <= 0 || buf.len > buf.cap || n < 0 || n > buf.len) {
		stat_inc(STAT_READ_ERROR);
		return 0;
	}
	if (buf.len - n < TRACEPARENT_HEADER_LEN) {
		stat_inc(STAT_NO_ROOM);
		return 0;
	}
	u8 line[TRACEPARENT_HEADER_LEN];
	format_traceparent_header(line, p->sc.trace_id, p->sc.span_id, p->sc.flags);
	if (bpf_probe_write_user((void *)(buf.ptr + n), line, sizeof(line)))
		return 0;
	n += TRACEPARENT_HEADER_LEN;
	if (bpf_probe_write_user((void *)(bw + off_bufio_n), &n, sizeof(n)))
		return 0;
	p->injected = 1;
	stat_inc(STAT_INJECTED);
	return 0;
}

//   func (pc *persistConn) roundTrip(req *transportRequest) (resp *Response, err error)
//
// arguments pc (word 0), req (1). Called on the caller's goroutine with the
// connection chosen (dialled, or reused from the idle pool) before the
// request is handed to the connection's writer.
SEC("uprobe")
int client_wire(struct pt_regs *ctx)
{
	stat_inc(STAT_ENTRY);
	u64 goid = go_goid(ctx);
	if (goid == 0)
		return 0;
	struct call *c = bpf_map_lookup_elem(&calls, &goid);
	if (!c)
		return 0;
	if (c->wire == CALL_WIRE_ANNOUNCED) { // a retry on another connection
		wire_withdraw(&c->key, c->h.span_id);
		c->wire = CALL_WIRE_NONE;
	}
	if (c->wire == CALL_WIRE_APP)
		return 0;
	// A traceparent the app (or an OTel SDK in it) set is sent as is, and
	// the span joins that context: a child of the span it names.
	struct header_refs refs = {};
	scan_header(c->header, 1 << HDR_TRACEPARENT, &refs);
	struct span_ctx app = {};
	if (refs.ptr[HDR_TRACEPARENT]) {
		c->wire = CALL_WIRE_APP;
		stat_inc(STAT_APP_TRACEPARENT);
		if (parse_traceparent(refs.ptr[HDR_TRACEPARENT], refs.len[HDR_TRACEPARENT], &app) == 0) {
			__builtin_memcpy(c->h.trace_id, app.trace_id, sizeof(c->h.trace_id));
			__builtin_memcpy(c->h.parent_span_id, app.span_id, sizeof(c->h.parent_span_id));
			if (sampler_parent_based)
				c->h.flags = (c->h.flags & ~SPAN_FLAG_SAMPLED) | app.flags;
		}
		return 0;
	}
	u64 pc = go_arg(ctx, 0);
	// pc.conn is a net.Conn: {itab, data}; for plain HTTP, data is the
	// *net.TCPConn whose conn.fd holds both addresses. Over TLS (tlsState
	// set) it is the *tls.Conn, whose own conn is the TCPConn: the bytes
	// are encrypted, and the context goes in a TCP option instead.
	u64 conn = read_u64(pc, off_pc_conn + 8);
	u8 encrypted = read_u64(pc, off_pc_tls_state) != 0;
	if (encrypted)
		conn = read_u64(conn, off_tlsconn_conn + 8);
	struct wire_key k = {};
	k.tgid = bpf_get_current_pid_tgid() >> 32;
	if (tcp_conn_key(conn, &k))
		return 0;
	struct wire_request r = {};
	__builtin_memcpy(r.sc.trace_id, c->h.trace_id, sizeof(r.sc.trace_id));
	__builtin_memcpy(r.sc.span_id, c->h.span_id, sizeof(r.sc.span_id));
	r.sc.flags = c->h.flags & SPAN_FLAG_SAMPLED;
	r.state = encrypted ? WIRE_OPTION : WIRE_PENDING;
	r.owner = span_key(c->h.span_id);
	if (bpf_map_update_elem(&wire_requests, &k, &r, BPF_ANY))
		return 0;
	c->key = k;
	c->wire = CALL_WIRE_ANNOUNCED;
	return 0;
}
