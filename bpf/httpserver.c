//go:build ignore

// net/http server: one span per request handled by serverHandler.ServeHTTP,
//
//   func (sh serverHandler) ServeHTTP(rw ResponseWriter, req *Request)
//
// whose argument words are sh.srv (0), rw's itab (1) and data (2), req (3).
// Two probe hits per request: entry records the request, reads its headers
// (an incoming traceparent makes the span a child of the caller's) and
// starts the span; each RET reads the request (ServeMux fills
// Request.Pattern during the call) and the status, and emits the event.
#include "uranus.h"
#include "go_header.h"
#include "tracecontext.h"
#include "wire.h"

volatile const u64 off_req_method;
volatile const u64 off_req_url;
volatile const u64 off_req_host;
volatile const u64 off_req_remote_addr;
volatile const u64 off_req_proto_major;
volatile const u64 off_req_proto_minor;
volatile const u64 off_req_tls;
volatile const u64 off_req_header;
volatile const u64 off_req_pattern;   // Go >= 1.23
volatile const u64 off_req_pat;       // Go 1.22: *pattern
volatile const u64 off_pattern_str;
volatile const u64 off_url_path;
volatile const u64 off_resp_req;      // HTTP/1: *response
volatile const u64 off_resp_status;
volatile const u64 off_h2rw_rws;      // HTTP/2: *http2responseWriter (Go 1.27: internal/http2.responseWriter)
volatile const u64 off_h2rws_req;
volatile const u64 off_h2rws_status;
volatile const u8 h2_req_copied;      // Go >= 1.27: rws->req is a copy, not the *Request
volatile const u64 off_cs_version;    // crypto/tls.ConnectionState
volatile const u64 off_cs_cipher;
volatile const u64 off_response_conn; // net/http.response.conn: *conn
volatile const u64 off_httpconn_rwc;  // net/http.conn.rwc: net.Conn
volatile const u64 off_httpconn_tls;  // net/http.conn.tlsState: set for TLS
volatile const u8 feature_wire;
// golang.org/x/net/http2's server (h2c.NewHandler, http2.Server.ServeConn):
// its responseWriter and state, by the module's version.
volatile const u64 off_xrw_rws;
volatile const u64 off_xrws_status;
volatile const u64 off_xrws_req;

// Instrumentor counters (named in instrumentors/httpserver).
#define STAT_FROM_OPTION STAT_EXTRA

struct event {
	struct event_header h;
	u64 status;            // 0: the handler wrote nothing yet (net/http then sends 200)
	u64 proto_major;
	u64 proto_minor;
	u32 method_len;
	u32 path_len;
	u32 host_len;
	u32 remote_len;
	u32 pattern_len;
	u32 user_agent_len;
	u32 tracestate_len;
	u8 tls;
	u8 status_unknown;     // rw is a writer whose status this Go version's offsets cannot read
	u16 tls_version;       // Request.TLS.Version, CipherSuite
	u16 tls_cipher;
	u8 _pad2[2];
	u8 method[16];
	u8 path[256];
	u8 host[128];
	u8 remote_addr[64];
	u8 pattern[128];
	u8 user_agent[128];
	u8 tracestate[256];
};
EXPORT_TYPE(event);

struct call {
	struct event_header h;
	u64 req;
	u64 rw;
	struct go_str user_agent; // header values found at entry
	struct go_str tracestate;
	struct span_ctx prev;
	u8 had_prev;
	u8 xnet;          // rw is golang.org/x/net/http2's *responseWriterState
	u8 _pad[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, u64); // goid
	__type(value, struct call);
} calls SEC(".maps");

// option_context finds the context the client's TCP option brought on an
// HTTP/1 TLS connection (see wire.h), and makes sure the connection's
// later siblings are parsed: its local port joins wire_listen_ports.
// HTTP/2 requests share a connection and are left alone.
static __always_inline int option_context(u64 rw, u64 req, struct span_ctx *sc)
{
	if (read_u64(rw, off_resp_req) != req) // not HTTP/1's *response
		return -1;
	u64 conn = read_u64(rw, off_response_conn);
	if (!read_u64(conn, off_httpconn_tls)) // plain: the header would have it
		return -1;
	u64 tls = read_u64(conn, off_httpconn_rwc + 8);
	struct wire_key k = {};
	if (tcp_conn_key(read_u64(tls, off_tlsconn_conn + 8), &k))
		return -1;
	if (!bpf_map_lookup_elem(&wire_listen_ports, &k.lport)) {
		u8 one = 1;
		bpf_map_update_elem(&wire_listen_ports, &k.lport, &one, BPF_NOEXIST);
	}
	struct span_ctx *got = bpf_map_lookup_elem(&wire_received, &k);
	if (!got)
		return -1;
	*sc = *got;
	bpf_map_delete_elem(&wire_received, &k); // once: see wire.h
	stat_inc(STAT_FROM_OPTION);
	return 0;
}

// begin_request starts the span of req, served through the response
// writer rw (an x/net one when xnet), on goroutine goid.
static __always_inline int begin_request(u64 goid, u64 req, u64 rw, u8 xnet)
{
	// A function entered with too little stack calls morestack, which
	// restarts it from the top: the entry probe fires twice for one call.
	struct call *prior = bpf_map_lookup_elem(&calls, &goid);
	if (prior && prior->req == req)
		return 0;

	struct call c = {};
	c.req = req;
	c.rw = rw;
	c.xnet = xnet;
	struct header_refs hdr = {};
	scan_header(read_u64(req, off_req_header), (1 << HDR_TRACEPARENT) | (1 << HDR_TRACESTATE) | (1 << HDR_USER_AGENT), &hdr);
	struct span_ctx remote = {};
	int extracted = parse_traceparent(hdr.ptr[HDR_TRACEPARENT], hdr.len[HDR_TRACEPARENT], &remote) == 0;
	if (extracted) {
		c.tracestate.ptr = hdr.ptr[HDR_TRACESTATE];
		c.tracestate.len = hdr.len[HDR_TRACESTATE];
	} else if (feature_wire && !xnet) {
		extracted = option_context(c.rw, req, &remote) == 0;
	}
	c.user_agent.ptr = hdr.ptr[HDR_USER_AGENT];
	c.user_agent.len = hdr.len[HDR_USER_AGENT];
	span_begin(&c.h, goid, extracted ? &remote : 0, 1, &c.prev, &c.had_prev);
	if (bpf_map_update_elem(&calls, &goid, &c, BPF_ANY))
		stat_inc(STAT_INFLIGHT_FULL);
	return 0;
}

SEC("uprobe")
int server_entry(struct pt_regs *ctx)
{
	stat_inc(STAT_ENTRY);
	u64 goid = go_goid(ctx);
	if (goid == 0)
		return 0;
	return begin_request(goid, go_arg(ctx, 3), go_arg(ctx, 2), 0);
}

//   func (sc *serverConn) runHandler(rw *responseWriter, req *http.Request, handler func(http.ResponseWriter, *http.Request))
//
// of golang.org/x/net/http2: one HTTP/2 stream's handler, on a goroutine
// of its own; arguments sc (word 0), rw (1), req (2), handler (3).
SEC("uprobe")
int xnet_stream_entry(struct pt_regs *ctx)
{
	stat_inc(STAT_ENTRY);
	u64 goid = go_goid(ctx);
	if (goid == 0)
		return 0;
	// The writer's state, kept now: the writer lets go of it when the
	// handler is done (and pools it), before runHandler returns.
	u64 rws = off_xrw_rws == OFFSET_ABSENT ? 0 : read_u64(go_arg(ctx, 1), off_xrw_rws);
	return begin_request(goid, go_arg(ctx, 2), rws, 1);
}

// response_status reads the status the handler set through rw (0: none
// yet, net/http then sends 200). rw is HTTP/1's *response or HTTP/2's
// response writer; when it is neither, or HTTP/2's members are unknown for
// this Go version, *unknown is set: a status that cannot be read must not
// look like a 200.
static __always_inline u64 response_status(u64 rw, u64 req, u8 *unknown)
{
	*unknown = 0;
	if (read_u64(rw, off_resp_req) == req)
		return read_u64(rw, off_resp_status);
	if (off_h2rw_rws != OFFSET_ABSENT && off_h2rws_status != OFFSET_ABSENT) {
		u64 rws = read_u64(rw, off_h2rw_rws);
		// Before Go 1.27 the writer points at this very *Request; from
		// 1.27 the handler's *Request is built from a copy the writer
		// keeps, and only HTTP/2 requests reach here with ProtoMajor 2.
		int ours = h2_req_copied ? read_u64(req, off_req_proto_major) == 2
					 : (off_h2rws_req != OFFSET_ABSENT && read_u64(rws, off_h2rws_req) == req);
		if (rws && ours)
			return read_u64(rws, off_h2rws_status);
	}
	*unknown = 1;
	return 0;
}

SEC("uprobe")
int server_return(struct pt_regs *ctx)
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

	if (!span_sampled(&c->h))
		goto done;
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		stat_inc(STAT_RINGBUF_FULL);
		goto done;
	}
	u64 req = c->req;
	e->h = c->h;
	e->h.end_ns = bpf_ktime_get_ns();
	if (c->xnet) {
		// The pooled state still holds this stream's status unless
		// another stream took it meanwhile (then its req differs).
		u64 rws = c->rw;
		e->status_unknown = off_xrws_status == OFFSET_ABSENT || off_xrws_req == OFFSET_ABSENT || rws == 0 ||
				    read_u64(rws, off_xrws_req) != req;
		e->status = e->status_unknown ? 0 : read_u64(rws, off_xrws_status);
	} else {
		e->status = response_status(c->rw, req, &e->status_unknown);
	}
	e->proto_major = read_u64(req, off_req_proto_major);
	e->proto_minor = read_u64(req, off_req_proto_minor);
	u64 tls = read_u64(req, off_req_tls);
	e->tls = tls != 0;
	e->tls_version = tls ? read_u64(tls, off_cs_version) : 0;
	e->tls_cipher = tls ? read_u64(tls, off_cs_cipher) : 0;
	e->method_len = read_go_string(e->method, req, off_req_method);
	e->path_len = read_go_string(e->path, read_u64(req, off_req_url), off_url_path);
	e->host_len = read_go_string(e->host, req, off_req_host);
	e->remote_len = read_go_string(e->remote_addr, req, off_req_remote_addr);
	if (off_req_pattern != OFFSET_ABSENT)
		e->pattern_len = read_go_string(e->pattern, req, off_req_pattern);
	else
		e->pattern_len = read_go_string(e->pattern, read_u64(req, off_req_pat), off_pattern_str);
	e->user_agent_len = copy_go_string(e->user_agent, c->user_agent);
	e->tracestate_len = copy_go_string(e->tracestate, c->tracestate);
	submit_event(e);
done:
	span_end(goid, &c->prev, c->had_prev);
	bpf_map_delete_elem(&calls, &goid);
	return 0;
}
