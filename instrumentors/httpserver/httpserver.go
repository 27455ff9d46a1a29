// Package httpserver instruments net/http servers: one SERVER span per
// request, from serverHandler.ServeHTTP's entry to its return (2 probe hits
// per request). An incoming W3C traceparent (and tracestate) makes the span
// a child of the caller's, read from Request.Header inside the entry probe
// at no extra hit. Attributes follow the stable OTel HTTP semantic conventions.
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
	ID:   "http-server",
	Doc:  "net/http server: a SERVER span per request",
	Spec: bpf.LoadHttpServer,
	Probes: []instrumentors.Probe{{
		Symbol: "net/http.serverHandler.ServeHTTP",
		Entry:  "server_entry",
		Return: "server_return",
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
		{Name: "off_h2rw_rws", Field: offsets.Field{Struct: "net/http.http2responseWriter", Member: "rws"}, Optional: true},
		{Name: "off_h2rws_req", Field: offsets.Field{Struct: "net/http.http2responseWriterState", Member: "req"}, Optional: true},
		{Name: "off_h2rws_status", Field: offsets.Field{Struct: "net/http.http2responseWriterState", Member: "status"}, Optional: true},
		{Name: "off_cs_version", Field: offsets.Field{Struct: "crypto/tls.ConnectionState", Member: "Version"}},
		{Name: "off_cs_cipher", Field: offsets.Field{Struct: "crypto/tls.ConnectionState", Member: "CipherSuite"}},
	}, instrumentors.HeaderConsts...),
	Convert: convert,
}

type event = bpf.HttpServerEvent

func convert(record []byte, s *otel.Span, _ instrumentors.Target) error {
	if len(record) < int(unsafe.Sizeof(event{})) {
		return fmt.Errorf("http-server record of %d bytes, want %d", len(record), unsafe.Sizeof(event{}))
	}
	e := (*event)(unsafe.Pointer(&record[0]))

	method := instrumentors.CString(e.Method[:], e.MethodLen)
	path := instrumentors.CString(e.Path[:], e.PathLen)
	route := routeOf(instrumentors.CString(e.Pattern[:], e.PatternLen))
	status := int(e.Status)
	if status == 0 {
		status = 200 // the handler wrote nothing; net/http replies 200
	}
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
		semconv.HTTPResponseStatusCode(status),
		semconv.NetworkProtocolVersion(protoVersion(e.ProtoMajor, e.ProtoMinor)),
	)
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
	if status >= 500 {
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
