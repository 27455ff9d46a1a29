//go:build ignore

// google.golang.org/grpc (gRPC-Go): a SERVER span per RPC a server handles
// and a CLIENT span per call a client makes, unary or streaming.
//
// Server, three probe hits per RPC, four with an incoming traceparent:
//
//   func (s *Server) handleStream(t transport.ServerTransport, stream *transport.Stream[, trInfo *traceInfo])
//
// runs one RPC on the goroutine of the stream (unary and streaming alike:
// the handler is called inside it); arguments s (word 0), t's itab (1) and
// data (2: the *http2Server), stream (3). From gRPC-Go 1.69 the stream is a
// *transport.ServerStream, embedding *Stream (1.69–1.76) or Stream (1.77+).
// The status the server sends is read where it is written, on the same
// goroutine, by
//
//   func (t *http2Server) WriteStatus(s *Stream, st *status.Status) error   (< 1.69)
//   func (t *http2Server) writeStatus(s *ServerStream, st *status.Status) error   (1.69+)
//
// arguments t (0), s (1), st (2). The incoming metadata is decoded on the
// connection's reader goroutine, before the stream's goroutine starts, by
//
//   func (t *http2Server) operateHeaders([ctx context.Context,] frame *http2.MetaHeadersFrame, ...)
//
// whose frame carries the decoded header fields and the stream id: a
// traceparent among them is kept under (transport, stream id) until
// handleStream takes it.
//
// Client, three hits per call:
//
//   func newClientStream(ctx context.Context, desc *StreamDesc, cc *ClientConn, method string, opts ...CallOption) (_ ClientStream, err error)
//
// is where every call starts, unary (Invoke) or streaming (NewStream), on
// the caller's goroutine: arguments ctx (words 0, 1), desc (2), cc (3),
// method (4, 5), opts (6–8); results the stream's itab and data, err's
// itab and data (from 1.84 the stream is a *clientStreamWrapper around
// the *clientStream). A stream that was made lives on, keyed by its pointer,
// until
//
//   func (cs *clientStream) finish(err error)
//
// ends it, on whatever goroutine saw the end (the last RecvMsg, a failed
// send, the context's cancellation): arguments cs (0), err (1, 2).
#include "uranus.h"
#include "tracecontext.h"
#include "wire.h"

volatile const u64 off_stream_method;   // transport.Stream.method
volatile const u64 off_stream_id;       // transport.Stream.id
volatile const u64 off_ss_stream;       // transport.ServerStream.Stream (1.69+)
volatile const u8 stream_deref;         // 1: ServerStream embeds *Stream (1.69–1.76)
volatile const u64 off_h2s_remote;      // http2Server.remoteAddr: net.Addr (older)
volatile const u64 off_h2s_peer;        // http2Server.peer: peer.Peer (newer)
volatile const u64 off_peer_addr;       // peer.Peer.Addr: net.Addr
volatile const u64 off_status_s;        // internal/status.Status.s: *spb.Status
volatile const u64 off_error_s;         // internal/status.Error.s: *Status (1.40+)
volatile const u64 off_error_e;         // internal/status.Error.e: *spb.Status (before 1.40)
volatile const u64 off_spb_code;        // genproto's rpc/status.Status.Code: int32
volatile const u64 off_cc_target;       // grpc.ClientConn.target
volatile const u64 off_csw_stream;      // grpc.clientStreamWrapper.ClientStream (1.84+)
volatile const u64 off_mhf_headers;     // x/net http2.MetaHeadersFrame.HeadersFrame: *HeadersFrame
volatile const u64 off_mhf_fields;      // MetaHeadersFrame.Fields: []hpack.HeaderField
volatile const u64 off_hf_header;       // HeadersFrame.FrameHeader
volatile const u64 off_fh_stream_id;    // FrameHeader.StreamID: uint32
volatile const u64 off_field_name;      // hpack.HeaderField.Name
volatile const u64 off_field_value;     // hpack.HeaderField.Value
volatile const u32 headers_frame_arg = 3; // operateHeaders' frame word: 3 (ctx first), 1 before 1.60
volatile const u64 off_loopy_framer;    // transport.loopyWriter.framer: *framer
volatile const u64 off_framer_writer;   // transport.framer.writer: *bufWriter
volatile const u64 off_bufwriter_conn;  // transport.bufWriter.conn: net.Conn (io.Writer from 1.77)
volatile const u8 feature_wire;

// hpack.HeaderField is {Name, Value string; Sensitive bool}: 40 bytes, the
// stride of the Fields slice, unchanged since x/net's hpack began.
#define HEADER_FIELD_SIZE 40
// Header fields looked at for a traceparent: gRPC's own (pseudo-headers,
// content-type, te, grpc-timeout, user-agent…) and the app's metadata.
#define MAX_HEADER_FIELDS 32

// Instrumentor counters (named in instrumentors/grpc).
#define STAT_FROM_METADATA STAT_EXTRA
#define STAT_H2_ANNOUNCED STAT_EXTRA2   // client streams announced for a traceparent on the wire
#define STAT_APP_TRACEPARENT STAT_EXTRA3 // the app sent its own traceparent: left as is
#define STAT_NOT_ON_WIRE STAT_EXTRA4    // headers whose connection could not be told (TLS, a custom net.Conn)

enum rpc_kind {
	RPC_SERVER = 1,
	RPC_CLIENT = 2,
};

struct event {
	struct event_header h;
	u64 err_type;    // client: the error's type descriptor; 0 without an error
	u8 kind;         // enum rpc_kind
	u8 has_status;   // code was read: server, the status written; client, from a status error
	u8 has_peer;
	u8 err_eof;      // client: the error's text is "EOF" (io.EOF ends a stream well)
	u32 code;        // gRPC status code
	u32 method_len;
	u32 target_len;
	u16 peer_port;   // server: the client's address
	u8 _pad[6];
	u8 peer_ip[16];
	u8 method[128];  // "/package.Service/Method"
	u8 target[64];   // client: the ClientConn's target ("dns:///host:443")
};
EXPORT_TYPE(event);

// A call in flight: the event as known so far, then what the return needs.
// Keyed by goroutine while a function runs (the server's RPC, the client's
// newClientStream: a handler's client call runs inside its RPC on the same
// goroutine, so the two kinds have keys of their own), then by the client
// stream once it exists.
struct call {
	struct event e;
	u64 ref;          // server: handleStream's stream argument; client: cc
	struct span_ctx prev;
	u8 had_prev;
	u8 _pad[7];
};

enum call_key_kind {
	KEY_SERVER = 1, // id: the qualified goid running handleStream
	KEY_CLIENT = 2, // id: the qualified goid running newClientStream
	KEY_STREAM = 3, // id: the *clientStream, with the pid
};

struct call_key {
	u64 id;
	u32 pid;
	u32 kind;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct call_key);
	__type(value, struct call);
} calls SEC(".maps");

// A traceparent that arrived with a stream's headers, until the stream's
// goroutine starts.
struct incoming_key {
	u64 transport; // *http2Server
	u32 stream_id;
	u32 pid;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct incoming_key);
	__type(value, struct span_ctx);
} incoming SEC(".maps");

static __always_inline struct call_key goroutine_key(u64 goid, u32 kind)
{
	struct call_key k = {.id = goid, .kind = kind};
	return k;
}

// stream_of turns handleStream's stream argument into the *Stream holding
// method and id.
static __always_inline u64 stream_of(u64 arg)
{
	if (stream_deref)
		return read_u64(arg, off_ss_stream);
	if (off_ss_stream != OFFSET_ABSENT)
		return arg + off_ss_stream;
	return arg;
}

// spb_code reads the code of a *spb.Status (genproto's rpc/status) into
// *code; 0 on success.
static __always_inline int spb_code(u64 spb, u32 *code)
{
	u32 v = 0;
	if (spb == 0 || bpf_probe_read_user(&v, sizeof(v), (void *)(spb + off_spb_code)))
		return -1;
	*code = v;
	return 0;
}

// status_code reads a *status.Status's code into *code; 0 on success.
static __always_inline int status_code(u64 st, u32 *code)
{
	return spb_code(read_u64(st, off_status_s), code);
}

static __always_inline int is_traceparent(u64 name_ptr, s64 name_len)
{
	if (name_len != 11)
		return 0;
	u8 n[11];
	if (bpf_probe_read_user(n, sizeof(n), (void *)name_ptr))
		return 0;
	const char want[] = "traceparent";
	for (int i = 0; i < 11; i++)
		if (n[i] != want[i])
			return 0;
	return 1;
}

struct go_slice {
	u64 ptr;
	s64 len, cap;
};

// find_traceparent looks for a traceparent among n hpack.HeaderFields at
// ptr and returns its value's header; 0 when there is none.
static __always_inline int find_traceparent(u64 ptr, s64 n, struct go_str *value)
{
	if (n > MAX_HEADER_FIELDS)
		n = MAX_HEADER_FIELDS;
	for (int i = 0; i < MAX_HEADER_FIELDS; i++) {
		if (i >= n)
			break;
		u64 f = ptr + (u64)i * HEADER_FIELD_SIZE;
		struct go_str name = {};
		if (bpf_probe_read_user(&name, sizeof(name), (void *)(f + off_field_name)) ||
		    !is_traceparent(name.ptr, name.len))
			continue;
		return bpf_probe_read_user(value, sizeof(*value), (void *)(f + off_field_value)) == 0;
	}
	return 0;
}

SEC("uprobe")
int headers_entry(struct pt_regs *ctx)
{
	stat_inc(STAT_ENTRY);
	if (current_pid() < 0) {
		stat_inc(STAT_OUT_OF_SCOPE);
		return 0;
	}
	u64 frame = go_arg(ctx, headers_frame_arg);
	struct go_slice fields = {};
	struct go_str value = {};
	if (frame == 0 || bpf_probe_read_user(&fields, sizeof(fields), (void *)(frame + off_mhf_fields)) ||
	    !find_traceparent(fields.ptr, fields.len, &value))
		return 0;
	struct span_ctx sc = {};
	if (parse_traceparent(value.ptr, value.len, &sc))
		return 0;
	u64 hf = read_u64(frame, off_mhf_headers);
	u32 id = 0;
	if (hf == 0 || bpf_probe_read_user(&id, sizeof(id), (void *)(hf + off_hf_header + off_fh_stream_id)))
		return 0;
	struct incoming_key k = {.transport = go_arg(ctx, 0), .stream_id = id, .pid = current_pid()};
	bpf_map_update_elem(&incoming, &k, &sc, BPF_ANY);
	return 0;
}

// read_peer fills the server event's peer from the *http2Server.
static __always_inline void read_peer(struct event *e, u64 transport)
{
	u64 addr = 0;
	if (off_h2s_peer != OFFSET_ABSENT && off_peer_addr != OFFSET_ABSENT)
		addr = read_u64(transport, off_h2s_peer + off_peer_addr + 8);
	else if (off_h2s_remote != OFFSET_ABSENT)
		addr = read_u64(transport, off_h2s_remote + 8);
	e->has_peer = read_tcp_addr(addr, e->peer_ip, &e->peer_port) == 0;
}

// new_call starts the in-flight call of kind under key, for the function
// entered with ref (its stream, its ClientConn), built in place: it is too
// large for the stack. NULL when the call is already there (the entry
// fired again after morestack restarted the function) or cannot be kept.
static __always_inline struct call *new_call(struct call_key *key, u64 ref, u8 kind)
{
	struct call *prior = bpf_map_lookup_elem(&calls, key);
	if (prior && prior->ref == ref)
		return 0;
	struct call zero = {};
	if (bpf_map_update_elem(&calls, key, &zero, BPF_ANY)) {
		stat_inc(STAT_INFLIGHT_FULL);
		return 0;
	}
	struct call *c = bpf_map_lookup_elem(&calls, key);
	if (!c)
		return 0;
	c->ref = ref;
	c->e.kind = kind;
	return c;
}

SEC("uprobe")
int server_entry(struct pt_regs *ctx)
{
	stat_inc(STAT_ENTRY);
	u64 goid = go_goid(ctx);
	if (goid == 0)
		return 0;
	struct call_key key = goroutine_key(goid, KEY_SERVER);
	u64 arg = go_arg(ctx, 3);
	struct call *c = new_call(&key, arg, RPC_SERVER);
	if (!c)
		return 0;
	u64 stream = stream_of(arg);
	c->e.method_len = read_go_string(c->e.method, stream, off_stream_method);
	u64 transport = go_arg(ctx, 2);
	read_peer(&c->e, transport);

	struct span_ctx remote = {};
	struct span_ctx *parent = 0;
	u32 id = 0;
	if (bpf_probe_read_user(&id, sizeof(id), (void *)(stream + off_stream_id)) == 0) {
		struct incoming_key ik = {.transport = transport, .stream_id = id, .pid = current_pid()};
		struct span_ctx *got = bpf_map_lookup_elem(&incoming, &ik);
		if (got) {
			remote = *got;
			parent = &remote;
			bpf_map_delete_elem(&incoming, &ik);
			stat_inc(STAT_FROM_METADATA);
		}
	}
	span_begin(&c->e.h, goid, parent, 1, &c->prev, &c->had_prev);
	return 0;
}

SEC("uprobe")
int status_entry(struct pt_regs *ctx)
{
	stat_inc(STAT_ENTRY);
	u64 goid = go_goid(ctx);
	if (goid == 0)
		return 0;
	struct call_key key = goroutine_key(goid, KEY_SERVER);
	struct call *c = bpf_map_lookup_elem(&calls, &key);
	// Only the status of the RPC this goroutine serves.
	if (!c || c->ref != go_arg(ctx, 1))
		return 0;
	if (status_code(go_arg(ctx, 2), &c->e.code) == 0)
		c->e.has_status = 1;
	return 0;
}

// emit sends call c's event, ended now.
static __always_inline void emit(struct call *c)
{
	if (!span_sampled(&c->e.h))
		return;
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		stat_inc(STAT_RINGBUF_FULL);
		return;
	}
	__builtin_memcpy(e, &c->e, sizeof(*e));
	e->h.end_ns = bpf_ktime_get_ns();
	submit_event(e);
}

SEC("uprobe")
int server_return(struct pt_regs *ctx)
{
	stat_inc(STAT_RETURN);
	u64 goid = go_goid(ctx);
	if (goid == 0)
		return 0;
	struct call_key key = goroutine_key(goid, KEY_SERVER);
	struct call *c = bpf_map_lookup_elem(&calls, &key);
	if (!c) {
		stat_inc(STAT_NO_ENTRY);
		return 0;
	}
	emit(c);
	span_end(goid, &c->prev, c->had_prev);
	bpf_map_delete_elem(&calls, &key);
	return 0;
}

SEC("uprobe")
int client_entry(struct pt_regs *ctx)
{
	stat_inc(STAT_ENTRY);
	u64 goid = go_goid(ctx);
	if (goid == 0)
		return 0;
	struct call_key key = goroutine_key(goid, KEY_CLIENT);
	u64 cc = go_arg(ctx, 3);
	struct call *c = new_call(&key, cc, RPC_CLIENT);
	if (!c)
		return 0;
	struct go_str method = {.ptr = go_arg(ctx, 4), .len = go_arg(ctx, 5)};
	c->e.method_len = copy_go_string(c->e.method, method);
	c->e.target_len = read_go_string(c->e.target, cc, off_cc_target);
	span_begin(&c->e.h, goid, active_span(ctx, goid), 0, &c->prev, &c->had_prev);
	if (feature_wire)
		wire_enroll(); // for the connections the ClientConn dials from now on
	return 0;
}

// err_status fills e's error from an error interface (itab, data): its
// type, its text when it is "EOF", and its code when it is a status error
// (user space checks the type before trusting the code).
static __always_inline void err_status(struct event *e, u64 itab, u64 data)
{
	if (itab == 0)
		return;
	e->err_type = read_u64(itab, 8);
	struct go_str text = {};
	if (bpf_probe_read_user(&text, sizeof(text), (void *)data) == 0 && text.len == 3) {
		u8 b[3] = {};
		if (bpf_probe_read_user(b, sizeof(b), (void *)text.ptr) == 0 && b[0] == 'E' && b[1] == 'O' && b[2] == 'F')
			e->err_eof = 1;
	}
	if (e->err_eof)
		return;
	// A *status.Error holds a *Status (1.40+) or the proto itself.
	u64 spb = off_error_s != OFFSET_ABSENT ? read_u64(read_u64(data, off_error_s), off_status_s)
					      : read_u64(data, off_error_e);
	if (spb_code(spb, &e->code) == 0)
		e->has_status = 1;
}

// newClientStream's arguments take 9 words; under the stack ABI its results
// follow them.
#define NCS_ARGS 9

SEC("uprobe")
int client_return(struct pt_regs *ctx)
{
	stat_inc(STAT_RETURN);
	u64 goid = go_goid(ctx);
	if (goid == 0)
		return 0;
	struct call_key key = goroutine_key(goid, KEY_CLIENT);
	struct call *c = bpf_map_lookup_elem(&calls, &key);
	if (!c) {
		stat_inc(STAT_NO_ENTRY);
		return 0;
	}
	u64 cs = go_result(ctx, NCS_ARGS, 1);
	// From 1.84 the stream comes wrapped; finish is the inner one's.
	if (cs && off_csw_stream != OFFSET_ABSENT)
		cs = read_u64(cs, off_csw_stream + 8);
	u64 err_itab = go_result(ctx, NCS_ARGS, 2);
	span_end(goid, &c->prev, c->had_prev);
	if (err_itab != 0 || cs == 0) {
		err_status(&c->e, err_itab, go_result(ctx, NCS_ARGS, 3));
		emit(c);
	} else {
		// The stream lives on until finish.
		struct call_key sk = {.id = cs, .pid = current_pid(), .kind = KEY_STREAM};
		if (bpf_map_update_elem(&calls, &sk, c, BPF_ANY))
			stat_inc(STAT_INFLIGHT_FULL);
	}
	bpf_map_delete_elem(&calls, &key);
	return 0;
}

SEC("uprobe")
int finish_entry(struct pt_regs *ctx)
{
	stat_inc(STAT_ENTRY);
	if (current_pid() < 0) {
		stat_inc(STAT_OUT_OF_SCOPE);
		return 0;
	}
	struct call_key sk = {.id = go_arg(ctx, 0), .pid = current_pid(), .kind = KEY_STREAM};
	struct call *c = bpf_map_lookup_elem(&calls, &sk);
	if (!c) // finished already (finish runs once per end seen), or failed at creation
		return 0;
	err_status(&c->e, go_arg(ctx, 1), go_arg(ctx, 2));
	emit(c);
	bpf_map_delete_elem(&calls, &sk);
	return 0;
}

// ---- Trace context on the wire, for h2c (feature "wire"; see wire.h) -------
//
//   func (t *http2Client) createHeaderFields(ctx context.Context, callHdr *CallHdr) ([]hpack.HeaderField, error)
//
// builds a new stream's header fields on the caller's goroutine, inside
// newClientStream: at its return the fields' array is tied to the call's
// span. The connection's writer goroutine later writes them with
//
//   func (l *loopyWriter) writeHeader(streamID uint32, endStream bool, hf []hpack.HeaderField, onWrite func()) error
//
// once the stream has its id: there the stream, its connection and its
// span come together and are announced to bpf/wire.c. Two probe hits.

// The fields' arrays waiting for their stream id, by address and process.
struct fields_key {
	u64 ptr;
	u32 pid;
	u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct fields_key);
	__type(value, struct span_ctx);
} header_fields SEC(".maps");

// createHeaderFields' arguments take 4 words under the stack ABI.
#define CHF_ARGS 4

SEC("uprobe")
int fields_return(struct pt_regs *ctx)
{
	stat_inc(STAT_RETURN);
	u64 goid = go_goid(ctx);
	if (goid == 0)
		return 0;
	struct call_key key = goroutine_key(goid, KEY_CLIENT);
	struct call *c = bpf_map_lookup_elem(&calls, &key);
	u64 ptr = go_result(ctx, CHF_ARGS, 0);
	if (!c || ptr == 0)
		return 0;
	struct fields_key fk = {.ptr = ptr, .pid = current_pid()};
	struct span_ctx sc = {};
	__builtin_memcpy(sc.trace_id, c->e.h.trace_id, sizeof(sc.trace_id));
	__builtin_memcpy(sc.span_id, c->e.h.span_id, sizeof(sc.span_id));
	sc.flags = c->e.h.flags & SPAN_FLAG_SAMPLED;
	bpf_map_update_elem(&header_fields, &fk, &sc, BPF_ANY);
	return 0;
}

SEC("uprobe")
int write_header_entry(struct pt_regs *ctx)
{
	stat_inc(STAT_ENTRY);
	if (current_pid() < 0) {
		stat_inc(STAT_OUT_OF_SCOPE);
		return 0;
	}
	// Register ABI: l, streamID, endStream, hf (3–5); the stack ABI packs
	// streamID and endStream into one word: hf is word 2.
	u64 ptr = go_arg(ctx, go_regabi ? 3 : 2);
	s64 n = go_arg(ctx, go_regabi ? 4 : 3);
	struct fields_key fk = {.ptr = ptr, .pid = current_pid()};
	struct span_ctx *found = bpf_map_lookup_elem(&header_fields, &fk);
	if (!found) // a server's response headers, or a stream of no traced call
		return 0;
	struct span_ctx sc = *found;
	bpf_map_delete_elem(&header_fields, &fk);
	struct go_str own = {};
	if (find_traceparent(ptr, n, &own)) {
		stat_inc(STAT_APP_TRACEPARENT);
		return 0;
	}
	u32 id = (u32)go_arg(ctx, 1); // the low half under the stack ABI
	u64 l = go_arg(ctx, 0);
	u64 w = read_u64(read_u64(l, off_loopy_framer), off_framer_writer);
	struct wire_key k = {};
	if (tcp_conn_key(read_u64(w, off_bufwriter_conn + 8), &k)) {
		stat_inc(STAT_NOT_ON_WIRE);
		return 0;
	}
	k.tgid = bpf_get_current_pid_tgid() >> 32;
	wire_h2_announce(&k, id, &sc);
	stat_inc(STAT_H2_ANNOUNCED);
	return 0;
}
