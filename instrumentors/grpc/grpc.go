// Package grpc instruments google.golang.org/grpc (gRPC-Go), the first
// library uranus instruments from outside the standard library: a SERVER
// span per RPC a server handles and a CLIENT span per call a client makes,
// unary or streaming (a stream's span lasts the whole stream), by the
// OpenTelemetry RPC conventions. Struct members are read at offsets keyed
// by the gRPC-Go version the binary links (offsets/modules), or from the
// target's DWARF. See bpf/grpc.c for the functions probed.
package grpc

import (
	"fmt"
	"net/netip"
	"strings"
	"unsafe"

	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/bpf"
	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/offsets"
	"github.com/uranus-otel/uranus/otel"
)

// Module is gRPC-Go's module path.
const Module = "google.golang.org/grpc"

// field names a member of a struct linked with gRPC-Go. The x/net and
// genproto structs it reads come with the gRPC-Go release too, so their
// offsets are keyed by its version as well (their layouts have not changed
// in the releases covered).
func field(s, m string) offsets.Field {
	return offsets.Field{Struct: s, Member: m, Module: Module}
}

const transport = "google.golang.org/grpc/internal/transport."

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 -output-dir ../../bpf -go-package bpf -type event Grpc ../../bpf/grpc.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
var Instrumentor = &instrumentors.Instrumentor{
	ID:       "grpc",
	Doc:      "google.golang.org/grpc: a SERVER span per RPC handled, a CLIENT span per call, unary or streaming",
	Library:  "gRPC-Go",
	Module:   Module,
	Spec:     bpf.LoadGrpc,
	InFlight: "calls",
	// A call in flight at exit is a server's RPC or a client's call; the
	// record says which (InFlightConvert).
	InFlightKind:    trace.SpanKindInternal,
	InFlightConvert: inFlight,
	// Every probe is optional: a binary may link only gRPC-Go's client, or
	// only its server.
	Probes: []instrumentors.Probe{{
		Symbol:   "google.golang.org/grpc.(*Server).handleStream",
		Entry:    "server_entry",
		Return:   "server_return",
		Optional: true,
	}, {
		Symbol:   transport + "(*http2Server).WriteStatus", // before 1.69
		Entry:    "status_entry",
		Optional: true,
	}, {
		Symbol:   transport + "(*http2Server).writeStatus", // 1.69 and later
		Entry:    "status_entry",
		Optional: true,
	}, {
		Symbol:   transport + "(*http2Server).operateHeaders",
		Entry:    "headers_entry",
		Optional: true,
	}, {
		Symbol:   "google.golang.org/grpc.newClientStream",
		Entry:    "client_entry",
		Return:   "client_return",
		Optional: true,
	}, {
		Symbol:   "google.golang.org/grpc.(*clientStream).finish",
		Entry:    "finish_entry",
		Optional: true,
	}, {
		// Trace context on the wire for h2c: the stream's header fields,
		// then its HEADERS frame being written (see bpf/grpc.c).
		Symbol:   transport + "(*http2Client).createHeaderFields",
		Return:   "fields_return",
		Optional: true,
		Requires: instrumentors.FeatureWire,
	}, {
		Symbol:   transport + "(*loopyWriter).writeHeader",
		Entry:    "write_header_entry",
		Optional: true,
		Requires: instrumentors.FeatureWire,
	}},
	Consts: append([]instrumentors.Const{
		{Name: "off_stream_method", Field: field(transport+"Stream", "method")},
		{Name: "off_stream_id", Field: field(transport+"Stream", "id")},
		{Name: "off_ss_stream", Field: field(transport+"ServerStream", "Stream"), Optional: true},
		{Name: "off_h2s_remote", Field: field(transport+"http2Server", "remoteAddr"), Optional: true},
		{Name: "off_h2s_peer", Field: field(transport+"http2Server", "peer"), Optional: true},
		{Name: "off_peer_addr", Field: field("google.golang.org/grpc/peer.Peer", "Addr"), Optional: true},
		{Name: "off_status_s", Field: field("google.golang.org/grpc/internal/status.Status", "s")},
		// A status error holds a *Status from 1.40, the proto itself before.
		{Name: "off_error_s", Field: field("google.golang.org/grpc/internal/status.Error", "s"), Optional: true},
		{Name: "off_error_e", Field: field("google.golang.org/grpc/internal/status.Error", "e"), Optional: true},
		{Name: "off_spb_code", Field: field("google.golang.org/genproto/googleapis/rpc/status.Status", "Code")},
		{Name: "off_cc_target", Field: field("google.golang.org/grpc.ClientConn", "target")},
		{Name: "off_csw_stream", Field: field("google.golang.org/grpc.clientStreamWrapper", "ClientStream"), Optional: true},
		{Name: "off_mhf_headers", Field: field("golang.org/x/net/http2.MetaHeadersFrame", "HeadersFrame")},
		{Name: "off_mhf_fields", Field: field("golang.org/x/net/http2.MetaHeadersFrame", "Fields")},
		{Name: "off_hf_header", Field: field("golang.org/x/net/http2.HeadersFrame", "FrameHeader")},
		{Name: "off_fh_stream_id", Field: field("golang.org/x/net/http2.FrameHeader", "StreamID")},
		{Name: "off_field_name", Field: field("golang.org/x/net/http2/hpack.HeaderField", "Name")},
		{Name: "off_field_value", Field: field("golang.org/x/net/http2/hpack.HeaderField", "Value")},
		{Name: "off_loopy_framer", Field: field(transport+"loopyWriter", "framer")},
		{Name: "off_framer_writer", Field: field(transport+"framer", "writer")},
		{Name: "off_bufwriter_conn", Field: field(transport+"bufWriter", "conn")},
	}, instrumentors.WireConsts...),
	Values: []instrumentors.Value{
		// 1.69–1.76 hand handleStream a *ServerStream embedding *Stream;
		// before, a *Stream; from 1.77, a ServerStream embedding Stream.
		{Name: "stream_deref", ModuleVersions: ">= 1.69, < 1.77", Value: 1},
		// operateHeaders took the frame first until 1.60 added a ctx.
		{Name: "headers_frame_arg", ModuleVersions: "< 1.60", Value: 1},
	},
	Convert:    convert,
	DialsEarly: true,
	Stats: [4]string{"server spans parented by an incoming traceparent", "client streams announced for a traceparent on the wire (h2c)",
		"app's own traceparent kept", "not on the wire: a connection of unknown type (TLS, a custom net.Conn)"},
}

type event = bpf.GrpcEvent

// The kinds of record (enum rpc_kind).
const (
	rpcServer = 1
	rpcClient = 2
)

func convert(record []byte, s *otel.Span, t instrumentors.Target) error {
	e, err := decode(record)
	if err != nil {
		return err
	}
	fill(e, s, t)
	return nil
}

// inFlight names and fills the span of a call still in flight at exit from
// what its entry read (the in-flight value starts with the event).
func inFlight(value []byte, s *otel.Span, t instrumentors.Target) error {
	e, err := decode(value)
	if err != nil {
		return err
	}
	e.HasStatus, e.ErrType = 0, 0
	fill(e, s, t)
	return nil
}

func decode(b []byte) (*event, error) {
	if len(b) < int(unsafe.Sizeof(event{})) {
		return nil, fmt.Errorf("grpc record of %d bytes, want %d", len(b), unsafe.Sizeof(event{}))
	}
	e := *(*event)(unsafe.Pointer(&b[0]))
	if e.Kind != rpcServer && e.Kind != rpcClient {
		return nil, fmt.Errorf("grpc record of kind %d", e.Kind)
	}
	return &e, nil
}

// fill makes the span of record e: named after the method
// ("package.Service/Method"), with the RPC conventions' attributes and an
// error status for the codes that are the side's failure.
func fill(e *event, s *otel.Span, t instrumentors.Target) {
	method := strings.TrimPrefix(instrumentors.CString(e.Method[:], e.MethodLen), "/")
	s.Name = method
	s.Attrs = append(s.Attrs, semconv.RPCSystemNameGRPC, semconv.RPCMethod(method))
	if e.Kind == rpcServer {
		s.Kind = trace.SpanKindServer
		if e.HasPeer != 0 {
			ip := peerIP(e.PeerIp)
			s.Attrs = append(s.Attrs, semconv.ClientAddress(ip), semconv.ClientPort(int(e.PeerPort)),
				semconv.NetworkPeerAddress(ip), semconv.NetworkPeerPort(int(e.PeerPort)))
		}
	} else {
		s.Kind = trace.SpanKindClient
		if host, port := Target(instrumentors.CString(e.Target[:], e.TargetLen)); host != "" {
			s.Attrs = append(s.Attrs, semconv.ServerAddress(host))
			if port > 0 {
				s.Attrs = append(s.Attrs, semconv.ServerPort(port))
			}
		}
	}
	s.Attrs = append(s.Attrs, semconv.NetworkTransportTCP, semconv.NetworkProtocolName("http"), semconv.NetworkProtocolVersion("2"))
	code, known, errType := status(e, t)
	if !known {
		if e.Kind == rpcServer {
			s.Attrs = append(s.Attrs, instrumentors.Unreported(string(semconv.RPCResponseStatusCodeKey)))
		}
		return
	}
	name := CodeName(code)
	s.Attrs = append(s.Attrs, semconv.RPCResponseStatusCode(name))
	if IsError(code, e.Kind == rpcServer) {
		if errType == "" {
			errType = name
		}
		s.Attrs = append(s.Attrs, semconv.ErrorTypeKey.String(errType))
		s.Status, s.StatusMsg = codes.Error, name
	}
}

// status says which gRPC code record e ended with, whether it is known,
// and, for a client error that carried no gRPC status, the error's type.
func status(e *event, t instrumentors.Target) (code uint32, known bool, errType string) {
	if e.Kind == rpcServer {
		return e.Code, e.HasStatus != 0, ""
	}
	if e.ErrType == 0 || e.ErrEof != 0 {
		return 0, true, "" // no error, or io.EOF: a stream read to its end
	}
	typ := t.TypeName(e.ErrType)
	switch {
	case typ == "*status.Error" && e.HasStatus != 0:
		return e.Code, true, ""
	case typ == "" && e.HasStatus != 0 && e.Code > 0 && e.Code <= 16:
		// The type cannot be named (no type data found): a plausible
		// code read through a status error's layout is taken as one.
		return e.Code, true, ""
	}
	// An error that is no status error: gRPC-Go's status.Code calls it
	// Unknown.
	if typ == "" {
		typ = "_OTHER"
	}
	return 2, true, typ
}

// codeNames are the gRPC status codes by number, as the conventions spell
// them (https://grpc.github.io/grpc/core/md_doc_statuscodes.html).
var codeNames = [...]string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
	"OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}

// CodeName spells a gRPC status code; a code outside the table is its
// number.
func CodeName(code uint32) string {
	if int(code) < len(codeNames) {
		return codeNames[code]
	}
	return fmt.Sprint(code)
}

// IsError says whether code fails the span: on a client every code but OK;
// on a server only the codes that are the server's fault (the conventions'
// list: UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE,
// DATA_LOSS), not the caller's (NOT_FOUND, INVALID_ARGUMENT, CANCELLED…).
func IsError(code uint32, server bool) bool {
	if !server {
		return code != 0
	}
	switch code {
	case 2, 4, 12, 13, 14, 15:
		return true
	}
	return false
}

// Target turns a ClientConn's target ("dns:///example.com:443",
// "passthrough:///10.0.0.1:50051", "example.com:443", "unix:///run/s.sock")
// into server.address and server.port (0 when the target names none).
func Target(target string) (string, int) {
	rest := target
	if scheme, after, ok := strings.Cut(target, "://"); ok && !strings.ContainsAny(scheme, "/:") {
		rest = after
		if scheme == "unix" || scheme == "unix-abstract" {
			return rest, 0
		}
		// The authority (a DNS server to ask) is not where the call goes.
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[i+1:]
		}
	} else if scheme, after, ok := strings.Cut(target, ":"); ok && (scheme == "unix" || scheme == "unix-abstract") {
		return after, 0
	}
	return instrumentors.HostPort(rest, "")
}

// peerIP spells an IPv4-mapped IPv6 address (as bpf/go_net.h reads one)
// as IPv4, and others as IPv6.
func peerIP(b [16]uint8) string {
	return netip.AddrFrom16(b).Unmap().String()
}
