package grpc

import (
	"bytes"
	"testing"
	"unsafe"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/internal/spantest"
	"github.com/uranus-otel/uranus/otel"
)

// typeNames is a target whose type descriptors have the given names.
type typeNames map[uint64]string

func (n typeNames) TypeName(addr uint64) string { return n[addr] }
func (n typeNames) State() any                  { return nil }

const (
	statusError = 0x5a1000 // where the target's *status.Error descriptor is
	eofError    = 0x5a2000 // *errors.errorString
	opError     = 0x5a3000 // *net.OpError
	unnamed     = 0x5a4000 // a descriptor uranus cannot name
	method      = "/uranus.echo.Echo/Unary"
)

func record(kind uint8, change func(e *event)) []byte {
	var e event
	e.Kind = kind
	e.MethodLen = uint32(copy(e.Method[:], method))
	if kind == rpcServer {
		e.HasPeer, e.PeerPort = 1, 40000
		copy(e.PeerIp[:], []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1})
	} else {
		e.TargetLen = uint32(copy(e.Target[:], "dns:///api.example:50051"))
	}
	if change != nil {
		change(&e)
	}
	return bytes.Clone(unsafe.Slice((*byte)(unsafe.Pointer(&e)), unsafe.Sizeof(e)))
}

func served(code uint32) func(e *event) {
	return func(e *event) { e.Code, e.HasStatus = code, 1 }
}

func failed(typ uint64, code uint32, hasStatus bool) func(e *event) {
	return func(e *event) {
		e.ErrType, e.Code = typ, code
		if hasStatus {
			e.HasStatus = 1
		}
		if typ == eofError {
			e.ErrEof = 1
		}
	}
}

// attrs are a span's attributes of that kind, with more added (or
// removed, as nil).
func attrs(kind uint8, more map[string]any) map[string]any {
	m := map[string]any{
		"rpc.system.name":          "grpc",
		"rpc.method":               "uranus.echo.Echo/Unary",
		"network.transport":        "tcp",
		"network.protocol.name":    "http",
		"network.protocol.version": "2",
	}
	if kind == rpcServer {
		m["client.address"], m["client.port"] = "127.0.0.1", 40000
		m["network.peer.address"], m["network.peer.port"] = "127.0.0.1", 40000
	} else {
		m["server.address"], m["server.port"] = "api.example", 50051
	}
	for k, v := range more {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

func want(kind uint8, status codes.Code, msg string, attrs map[string]any) spantest.Want {
	k := trace.SpanKindServer
	if kind == rpcClient {
		k = trace.SpanKindClient
	}
	return spantest.Want{Name: "uranus.echo.Echo/Unary", Kind: k, Status: status, StatusMsg: msg, Attrs: attrs}
}

// TestConvert: records → SERVER and CLIENT spans, for every rule the
// README states about them.
func TestConvert(t *testing.T) {
	names := typeNames{statusError: "*status.Error", eofError: "*errors.errorString", opError: "*net.OpError"}
	for _, c := range []struct {
		name string
		rec  []byte
		want spantest.Want
	}{{
		name: "a server's OK",
		rec:  record(rpcServer, served(0)),
		want: want(rpcServer, codes.Unset, "", attrs(rpcServer, map[string]any{"rpc.response.status_code": "OK"})),
	}, {
		name: "NOT_FOUND is the caller's doing, no server error",
		rec:  record(rpcServer, served(5)),
		want: want(rpcServer, codes.Unset, "", attrs(rpcServer, map[string]any{"rpc.response.status_code": "NOT_FOUND"})),
	}, {
		name: "CANCELLED neither",
		rec:  record(rpcServer, served(1)),
		want: want(rpcServer, codes.Unset, "", attrs(rpcServer, map[string]any{"rpc.response.status_code": "CANCELLED"})),
	}, {
		name: "INTERNAL is a server error",
		rec:  record(rpcServer, served(13)),
		want: want(rpcServer, codes.Error, "INTERNAL", attrs(rpcServer, map[string]any{
			"rpc.response.status_code": "INTERNAL", "error.type": "INTERNAL"})),
	}, {
		name: "DEADLINE_EXCEEDED too",
		rec:  record(rpcServer, served(4)),
		want: want(rpcServer, codes.Error, "DEADLINE_EXCEEDED", attrs(rpcServer, map[string]any{
			"rpc.response.status_code": "DEADLINE_EXCEEDED", "error.type": "DEADLINE_EXCEEDED"})),
	}, {
		name: "a status never written is said unreported, not taken for OK",
		rec:  record(rpcServer, nil),
		want: want(rpcServer, codes.Unset, "", attrs(rpcServer, map[string]any{"uranus.unreported": []string{"rpc.response.status_code"}})),
	}, {
		name: "a client's call without an error is OK",
		rec:  record(rpcClient, nil),
		want: want(rpcClient, codes.Unset, "", attrs(rpcClient, map[string]any{"rpc.response.status_code": "OK"})),
	}, {
		name: "a stream read to io.EOF is OK",
		rec:  record(rpcClient, failed(eofError, 0, false)),
		want: want(rpcClient, codes.Unset, "", attrs(rpcClient, map[string]any{"rpc.response.status_code": "OK"})),
	}, {
		name: "for a client every code but OK is an error",
		rec:  record(rpcClient, failed(statusError, 5, true)),
		want: want(rpcClient, codes.Error, "NOT_FOUND", attrs(rpcClient, map[string]any{
			"rpc.response.status_code": "NOT_FOUND", "error.type": "NOT_FOUND"})),
	}, {
		name: "CANCELLED too",
		rec:  record(rpcClient, failed(statusError, 1, true)),
		want: want(rpcClient, codes.Error, "CANCELLED", attrs(rpcClient, map[string]any{
			"rpc.response.status_code": "CANCELLED", "error.type": "CANCELLED"})),
	}, {
		name: "an error that is no status is UNKNOWN, typed",
		rec:  record(rpcClient, failed(opError, 7, true)),
		want: want(rpcClient, codes.Error, "UNKNOWN", attrs(rpcClient, map[string]any{
			"rpc.response.status_code": "UNKNOWN", "error.type": "*net.OpError"})),
	}, {
		name: "an unnamed type with a code in range is taken as a status",
		rec:  record(rpcClient, failed(unnamed, 4, true)),
		want: want(rpcClient, codes.Error, "DEADLINE_EXCEEDED", attrs(rpcClient, map[string]any{
			"rpc.response.status_code": "DEADLINE_EXCEEDED", "error.type": "DEADLINE_EXCEEDED"})),
	}, {
		name: "an unnamed type without a plausible code is UNKNOWN, _OTHER",
		rec:  record(rpcClient, failed(unnamed, 9999, true)),
		want: want(rpcClient, codes.Error, "UNKNOWN", attrs(rpcClient, map[string]any{
			"rpc.response.status_code": "UNKNOWN", "error.type": "_OTHER"})),
	}, {
		name: "a target without a port gives no server.port",
		rec: record(rpcClient, func(e *event) {
			e.TargetLen = uint32(copy(e.Target[:], "api.example"))
		}),
		want: want(rpcClient, codes.Unset, "", attrs(rpcClient, map[string]any{"rpc.response.status_code": "OK", "server.port": nil})),
	}} {
		t.Run(c.name, func(t *testing.T) {
			var s otel.Span
			if err := convert(c.rec, &s, names); err != nil {
				t.Fatal(err)
			}
			for _, d := range spantest.Diff(&s, c.want) {
				t.Error(d)
			}
		})
	}
}

// TestInFlight: a call in flight at exit has its method and kind, and no
// status (none was read yet).
func TestInFlight(t *testing.T) {
	var s otel.Span
	if err := inFlight(record(rpcServer, served(13)), &s, typeNames{}); err != nil {
		t.Fatal(err)
	}
	w := want(rpcServer, codes.Unset, "", attrs(rpcServer, map[string]any{"uranus.unreported": []string{"rpc.response.status_code"}}))
	for _, d := range spantest.Diff(&s, w) {
		t.Error(d)
	}
}

func TestBadRecords(t *testing.T) {
	var s otel.Span
	if err := convert(make([]byte, 10), &s, typeNames{}); err == nil {
		t.Error("a short record converted")
	}
	if err := convert(record(7, nil), &s, typeNames{}); err == nil {
		t.Error("a record of an unknown kind converted")
	}
}

func TestTarget(t *testing.T) {
	for _, c := range []struct {
		target string
		host   string
		port   int
	}{
		{"dns:///api.example:443", "api.example", 443},
		{"dns://8.8.8.8/api.example:50051", "api.example", 50051},
		{"passthrough:///10.0.0.1:50051", "10.0.0.1", 50051},
		{"127.0.0.1:50051", "127.0.0.1", 50051},
		{"[::1]:50051", "::1", 50051},
		{"api.example", "api.example", 0},
		{"unix:///run/grpc.sock", "/run/grpc.sock", 0},
		{"unix:relative.sock", "relative.sock", 0},
		{"", "", 0},
	} {
		if h, p := Target(c.target); h != c.host || p != c.port {
			t.Errorf("Target(%q) = %q, %d; want %q, %d", c.target, h, p, c.host, c.port)
		}
	}
}
