// Package httpclient instruments net/http clients: one CLIENT span per
// request a Transport sends (two probe hits), a child of the span active in
// the sending goroutine, and a W3C traceparent written into the outgoing
// request so the server it calls continues the trace: inserted by the
// kernel as the request leaves the socket (one more hit; the feature
// "wire"), or written into the request's buffer (one more hit; the feature
// "inject", where the kernel allows BPF to write process memory).
package httpclient

import (
	"cmp"
	"fmt"
	"log/slog"
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

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 -output-dir ../../bpf -go-package bpf -type event HttpClient ../../bpf/httpclient.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
var Instrumentor = &instrumentors.Instrumentor{
	ID:           "http-client",
	Doc:          "net/http client: a CLIENT span per request, with traceparent injected",
	Library:      "net/http client",
	Spec:         bpf.LoadHttpClient,
	InFlight:     "calls",
	InFlightKind: trace.SpanKindClient,
	Probes: []instrumentors.Probe{{
		Symbol: "net/http.(*Transport).roundTrip",
		Entry:  "client_entry",
		Return: "client_return",
	}, {
		Symbol:   "net/http.(*transferWriter).writeHeader",
		Entry:    "inject_traceparent",
		Requires: instrumentors.FeatureInject,
	}, {
		Symbol:   "net/http.(*persistConn).roundTrip",
		Entry:    "client_wire",
		Requires: instrumentors.FeatureWire,
		Optional: true,
	}, {
		// golang.org/x/net/http2's Transport, used on its own (inside
		// net/http's Transport, through ConfigureTransport, net/http's
		// call is the span). In binaries that link it.
		Symbol:   "golang.org/x/net/http2.(*Transport).RoundTripOpt",
		Entry:    "xnet_entry",
		Return:   "xnet_return",
		Optional: true,
	}},
	Consts: append([]instrumentors.Const{
		{Name: "off_req_method", Field: offsets.Field{Struct: "net/http.Request", Member: "Method"}},
		{Name: "off_req_url", Field: offsets.Field{Struct: "net/http.Request", Member: "URL"}},
		{Name: "off_req_header", Field: offsets.Field{Struct: "net/http.Request", Member: "Header"}},
		{Name: "off_url_scheme", Field: offsets.Field{Struct: "net/url.URL", Member: "Scheme"}},
		{Name: "off_url_user", Field: offsets.Field{Struct: "net/url.URL", Member: "User"}},
		{Name: "off_url_host", Field: offsets.Field{Struct: "net/url.URL", Member: "Host"}},
		{Name: "off_url_path", Field: offsets.Field{Struct: "net/url.URL", Member: "Path"}},
		{Name: "off_url_rawquery", Field: offsets.Field{Struct: "net/url.URL", Member: "RawQuery"}},
		{Name: "off_resp_status", Field: offsets.Field{Struct: "net/http.Response", Member: "StatusCode"}},
		{Name: "off_resp_tls", Field: offsets.Field{Struct: "net/http.Response", Member: "TLS"}},
		{Name: "off_resp_proto", Field: offsets.Field{Struct: "net/http.Response", Member: "Proto"}},
		{Name: "off_cs_version", Field: offsets.Field{Struct: "crypto/tls.ConnectionState", Member: "Version"}},
		{Name: "off_cs_cipher", Field: offsets.Field{Struct: "crypto/tls.ConnectionState", Member: "CipherSuite"}},
		{Name: "off_tw_header", Field: offsets.Field{Struct: "net/http.transferWriter", Member: "Header"}},
		{Name: "off_bufio_err", Field: offsets.Field{Struct: "bufio.Writer", Member: "err"}},
		{Name: "off_bufio_buf", Field: offsets.Field{Struct: "bufio.Writer", Member: "buf"}},
		{Name: "off_bufio_n", Field: offsets.Field{Struct: "bufio.Writer", Member: "n"}},
		{Name: "off_pc_conn", Field: offsets.Field{Struct: "net/http.persistConn", Member: "conn"}},
		{Name: "off_pc_tls_state", Field: offsets.Field{Struct: "net/http.persistConn", Member: "tlsState"}},
	}, append(instrumentors.HeaderConsts, instrumentors.WireConsts...)...),
	// RoundTripOpt(t, req, opt): three argument words before its results
	// under the stack ABI.
	Values: []instrumentors.Value{
		{Name: "xnet_arg_words", GoVersions: "< 1.17", Value: 3},
	},
	Convert: converter{}.convert,
	Options: []instrumentors.Option{{
		Name:  "keep-query-values",
		Usage: "keep query-string values in url.full (by default each value is replaced with REDACTED, since query strings often carry tokens)",
		Bool:  true,
	}},
	Configure: func(decl *instrumentors.Instrumentor, s instrumentors.Settings, _ *slog.Logger) (*instrumentors.Instrumentor, error) {
		c := *decl
		c.Convert = converter{keepQuery: s.Bool("keep-query-values")}.convert
		return &c, nil
	},
	Stats: [4]string{"traceparent injected", "app's own traceparent kept", "not injected: no room in the write buffer",
		"not sent on the wire: HTTP/2, or a connection opened before uranus started"},
}

type event = bpf.HttpClientEvent

// converter turns records into spans as the options ask.
type converter struct {
	keepQuery bool // --keep-query-values
}

func (cv converter) convert(record []byte, s *otel.Span, t instrumentors.Target) error {
	if len(record) < int(unsafe.Sizeof(event{})) {
		return fmt.Errorf("http-client record of %d bytes, want %d", len(record), unsafe.Sizeof(event{}))
	}
	e := (*event)(unsafe.Pointer(&record[0]))
	method := instrumentors.CString(e.Method[:], e.MethodLen)
	scheme := instrumentors.CString(e.Scheme[:], e.SchemeLen)
	host := instrumentors.CString(e.Host[:], e.HostLen)
	path := instrumentors.CString(e.Path[:], e.PathLen)
	query := instrumentors.CString(e.Query[:], e.QueryLen)

	s.Kind = trace.SpanKindClient
	s.Name = method
	s.Attrs = append(s.Attrs,
		semconv.HTTPRequestMethodKey.String(method),
		semconv.URLFull(fullURL(scheme, host, path, query, e.Userinfo != 0, e.QueryLen > uint32(len(e.Query)), cv.keepQuery)),
	)
	if h, port := instrumentors.HostPort(host, cmp.Or(scheme, "http")); h != "" {
		s.Attrs = append(s.Attrs, semconv.ServerAddress(h))
		if port > 0 {
			s.Attrs = append(s.Attrs, semconv.ServerPort(port))
		}
	}
	if e.Status != 0 {
		s.Attrs = append(s.Attrs, semconv.HTTPResponseStatusCode(int(e.Status)))
	}
	if scheme != "" {
		s.Attrs = append(s.Attrs, semconv.URLScheme(scheme))
	}
	if v := protoVersion(instrumentors.CString(e.Proto[:], e.ProtoLen)); v != "" {
		s.Attrs = append(s.Attrs, semconv.NetworkProtocolVersion(v))
	}
	s.Attrs = append(s.Attrs, gotls.ConnAttrs(e.TlsVersion, e.TlsCipher)...)
	if e.Injected != 0 {
		s.Attrs = append(s.Attrs, attribute.Bool("uranus.traceparent.injected", true))
	}
	switch {
	case e.ErrType != 0:
		typ := t.TypeName(e.ErrType)
		if typ == "" {
			typ = "_OTHER"
		}
		s.Attrs = append(s.Attrs, semconv.ErrorTypeKey.String(typ))
		s.Status, s.StatusMsg = codes.Error, typ
	case e.Status >= 400:
		// For a client, 4xx is a failure too.
		s.Attrs = append(s.Attrs, semconv.ErrorTypeKey.String(strconv.Itoa(int(e.Status))))
		s.Status = codes.Error
	}
	return nil
}

// protoVersion turns the response's Proto ("HTTP/1.1", "HTTP/2.0") into
// network.protocol.version as the conventions spell it ("1.1", "2"); "" when
// there was no response or Proto is not of that form.
func protoVersion(proto string) string {
	v, ok := strings.CutPrefix(proto, "HTTP/")
	if !ok || v == "" {
		return ""
	}
	if major, minor, ok := strings.Cut(v, "."); ok && minor == "0" && major != "0" && major != "1" {
		return major // HTTP/2 and 3 have no minor version
	}
	return v
}

// fullURL rebuilds the request URL without credentials and, unless
// keepQuery is set, with every query value replaced by REDACTED.
func fullURL(scheme, host, path, query string, userinfo, truncated, keepQuery bool) string {
	var b strings.Builder
	if scheme == "" {
		scheme = "http"
	}
	b.WriteString(scheme + "://")
	if userinfo {
		b.WriteString("REDACTED:REDACTED@")
	}
	b.WriteString(host)
	if path == "" {
		path = "/"
	}
	b.WriteString(path)
	if query == "" {
		return b.String()
	}
	b.WriteByte('?')
	if keepQuery && !truncated {
		b.WriteString(query)
		return b.String()
	}
	for i, kv := range strings.Split(query, "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		k, _, hasValue := strings.Cut(kv, "=")
		b.WriteString(k)
		if hasValue {
			b.WriteString("=REDACTED")
		}
	}
	return b.String()
}
