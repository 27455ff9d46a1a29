// Package httpserver instruments net/http servers: one SERVER span per
// request, from serverHandler.ServeHTTP's entry to its return (2 probe hits
// per request). An incoming W3C traceparent (and tracestate) makes the span
// a child of the caller's, read from Request.Header inside the entry probe
// at no extra hit; over TLS, where a header cannot be added on the wire, the
// context a traced client sent in a TCP option (bpf/wire.h) does the same. Attributes follow the stable OTel HTTP semantic conventions.
package httpserver

import (
	"fmt"
	"strconv"
	"strings"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/bpf"
	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/instrumentors/gotls"
	"github.com/uranus-otel/uranus/offsets"
	"github.com/uranus-otel/uranus/otel"
)

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 -output-dir ../../bpf -go-package bpf -type event HttpServer ../../bpf/httpserver.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
var Instrumentor = &instrumentors.Instrumentor{
	ID:           "http-server",
	Doc:          "net/http server: a SERVER span per request",
	Library:      "net/http server",
	Spec:         bpf.LoadHttpServer,
	InFlight:     "calls",
	InFlightKind: trace.SpanKindServer,
	Probes: []instrumentors.Probe{{
		Symbol: "net/http.serverHandler.ServeHTTP",
		Entry:  "server_entry",
		Return: "server_return",
	}, {
		// golang.org/x/net/http2's server (h2c.NewHandler, ServeConn)
		// runs each stream's handler here, not through serverHandler.
		Symbol:   "golang.org/x/net/http2.(*serverConn).runHandler",
		Entry:    "xnet_stream_entry",
		Return:   "server_return",
		Optional: true,
	}},
	Consts: append([]instrumentors.Const{
		{Name: "off_req_method", Field: offsets.Field{Struct: "net/http.Request", Member: "Method"}},
		{Name: "off_req_header", Field: offsets.Field{Struct: "net/http.Request", Member: "Header"}},
		{Name: "off_req_url", Field: offsets.Field{Struct: "net/http.Request", Member: "URL"}},
		{Name: "off_req_host", Field: offsets.Field{Struct: "net/http.Request", Member: "Host"}},
		{Name: "off_req_remote_addr", Field: offsets.Field{Struct: "net/http.Request", Member: "RemoteAddr"}},
		{Name: "off_req_proto_major", Field: offsets.Field{Struct: "net/http.Request", Member: "ProtoMajor"}},
		{Name: "off_req_proto_minor", Field: offsets.Field{Struct: "net/http.Request", Member: "ProtoMinor"}},
		{Name: "off_req_tls", Field: offsets.Field{Struct: "net/http.Request", Member: "TLS"}},
		{Name: "off_req_pattern", Field: offsets.Field{Struct: "net/http.Request", Member: "Pattern"}, Optional: true},
		{Name: "off_req_pat", Field: offsets.Field{Struct: "net/http.Request", Member: "pat"}, Optional: true},
		{Name: "off_pattern_str", Field: offsets.Field{Struct: "net/http.pattern", Member: "str"}, Optional: true},
		{Name: "off_url_path", Field: offsets.Field{Struct: "net/url.URL", Member: "Path"}},
		{Name: "off_resp_req", Field: offsets.Field{Struct: "net/http.response", Member: "req"}},
		{Name: "off_resp_status", Field: offsets.Field{Struct: "net/http.response", Member: "status"}},
		// HTTP/2's response writer: bundled into net/http as http2… up to
		// Go 1.26, in net/http/internal/http2 from Go 1.27.
		h2Const("off_h2rw_rws", "responseWriter", "rws"),
		h2Const("off_h2rws_req", "responseWriterState", "req"),
		h2Const("off_h2rws_status", "responseWriterState", "status"),
		{Name: "off_cs_version", Field: offsets.Field{Struct: "crypto/tls.ConnectionState", Member: "Version"}},
		{Name: "off_cs_cipher", Field: offsets.Field{Struct: "crypto/tls.ConnectionState", Member: "CipherSuite"}},
		// An HTTP/1 TLS connection's tuple, for the context a client's
		// TCP option brought (propagation network, see bpf/wire.h).
		{Name: "off_response_conn", Field: offsets.Field{Struct: "net/http.response", Member: "conn"}},
		{Name: "off_httpconn_rwc", Field: offsets.Field{Struct: "net/http.conn", Member: "rwc"}},
		{Name: "off_httpconn_tls", Field: offsets.Field{Struct: "net/http.conn", Member: "tlsState"}},
		// x/net's HTTP/2 response writer, by x/net's version; absent in
		// binaries without x/net (its streams' spans then carry no status,
		// and uranus.unreported says so).
		{Name: "off_xrw_rws", Field: offsets.Field{Struct: "golang.org/x/net/http2.responseWriter", Member: "rws", Module: xnet}, Optional: true},
		{Name: "off_xrws_status", Field: offsets.Field{Struct: "golang.org/x/net/http2.responseWriterState", Member: "status", Module: xnet}, Optional: true},
		{Name: "off_xrws_req", Field: offsets.Field{Struct: "golang.org/x/net/http2.responseWriterState", Member: "req", Module: xnet}, Optional: true},
	}, append(instrumentors.HeaderConsts, instrumentors.WireConsts...)...),
	// From Go 1.27 the HTTP/2 server hands the handler a new *Request
	// built from the stream's ServerRequest, which responseWriterState
	// holds by value: the two cannot be compared as pointers.
	Values: []instrumentors.Value{
		{Name: "h2_req_copied", GoVersions: ">= 1.27", Value: 1},
	},
	Convert: convert,
	Stats:   [4]string{"parented from a client's TCP option"},
}

const xnet = "golang.org/x/net"

// h2Const names a member of HTTP/2's server response writer in both places
// Go has kept it.
func h2Const(name, typ, member string) instrumentors.Const {
	return instrumentors.Const{
		Name:     name,
		Field:    offsets.Field{Struct: "net/http.http2" + typ, Member: member},
		Or:       []offsets.Field{{Struct: "net/http/internal/http2." + typ, Member: member}},
		Optional: true,
		Reports:  "http.response.status_code of HTTP/2 requests",
	}
}

type event = bpf.HttpServerEvent

func convert(record []byte, s *otel.Span, _ instrumentors.Target) error {
	if len(record) < int(unsafe.Sizeof(event{})) {
		return fmt.Errorf("http-server record of %d bytes, want %d", len(record), unsafe.Sizeof(event{}))
	}
	e := (*event)(unsafe.Pointer(&record[0]))

	method := instrumentors.CString(e.Method[:], e.MethodLen)
	path := instrumentors.CString(e.Path[:], e.PathLen)
	if method == "PRI" && path == "*" {
		// HTTP/2's connection preface reaching a handler (x/net's h2c
		// takes the connection over there): not a request, and it lasts
		// as long as the connection. Its streams are spans of their own.
		return instrumentors.ErrNoSpan
	}
	route := routeOf(instrumentors.CString(e.Pattern[:], e.PatternLen))
	status := int(e.Status)
	if status == 0 {
		status = 200 // the handler wrote nothing; net/http replies 200
	}
	statusKnown := e.StatusUnknown == 0
	scheme := "http"
	if e.Tls != 0 {
		scheme = "https"
	}

	s.Kind = trace.SpanKindServer
	s.Name = method
	if route != "" {
		s.Name = method + " " + route
	}
	s.Attrs = append(s.Attrs,
		semconv.HTTPRequestMethodKey.String(method),
		semconv.URLPath(path),
		semconv.URLScheme(scheme),
		semconv.NetworkProtocolVersion(protoVersion(e.ProtoMajor, e.ProtoMinor)),
	)
	if statusKnown {
		s.Attrs = append(s.Attrs, semconv.HTTPResponseStatusCode(status))
	} else {
		// No status rather than a made-up 200: the response writer is of
		// a kind, or from a Go version, whose status the program cannot
		// read (for a Go version, attach warned).
		s.Attrs = append(s.Attrs, instrumentors.Unreported(string(semconv.HTTPResponseStatusCodeKey)))
	}
	s.Attrs = append(s.Attrs, gotls.ConnAttrs(e.TlsVersion, e.TlsCipher)...)
	if e.PathLen > uint32(len(e.Path)) {
		s.Attrs = append(s.Attrs, attribute.Int("uranus.url.path.length", int(e.PathLen)))
	}
	if route != "" {
		s.Attrs = append(s.Attrs, semconv.HTTPRoute(route))
	}
	if ua := instrumentors.CString(e.UserAgent[:], e.UserAgentLen); ua != "" {
		s.Attrs = append(s.Attrs, semconv.UserAgentOriginal(ua))
	}
	if s.RemoteParent {
		s.TraceState = instrumentors.CString(e.Tracestate[:], e.TracestateLen)
	}
	if host, port := instrumentors.HostPort(instrumentors.CString(e.Host[:], e.HostLen), scheme); host != "" {
		s.Attrs = append(s.Attrs, semconv.ServerAddress(host))
		if port > 0 {
			s.Attrs = append(s.Attrs, semconv.ServerPort(port))
		}
	}
	if host, port := instrumentors.HostPort(instrumentors.CString(e.RemoteAddr[:], e.RemoteLen), ""); host != "" {
		s.Attrs = append(s.Attrs, semconv.ClientAddress(host))
		if port > 0 {
			s.Attrs = append(s.Attrs, semconv.ClientPort(port))
		}
	}
	// Server spans are errors only for 5xx: a 4xx is the client's fault.
	if statusKnown && status >= 500 {
		s.Status = codes.Error
		s.Attrs = append(s.Attrs, semconv.ErrorTypeKey.String(strconv.Itoa(status)))
	}
	return nil
}

// routeOf returns the path part of a ServeMux pattern "[METHOD ][HOST]/path".
func routeOf(pattern string) string {
	if i := strings.IndexByte(pattern, '/'); i >= 0 {
		return pattern[i:]
	}
	return ""
}

func protoVersion(major, minor uint64) string {
	if major == 2 || major == 3 {
		return strconv.FormatUint(major, 10)
	}
	return strconv.FormatUint(major, 10) + "." + strconv.FormatUint(minor, 10)
}
