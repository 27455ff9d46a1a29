package httpclient

import (
	"bytes"
	"strings"
	"testing"
	"unsafe"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/internal/spantest"
	"github.com/uranus-otel/uranus/otel"
)

// typeNames is a target whose type descriptors have the given names.
type typeNames map[uint64]string

func (n typeNames) TypeName(addr uint64) string { return n[addr] }
func (n typeNames) State() any                  { return nil }

// get is a record of a GET to scheme://host/path?query; change sets what
// a case is about.
func get(scheme, host, path, query string, change func(e *event)) []byte {
	var e event
	e.MethodLen = uint32(copy(e.Method[:], "GET"))
	e.SchemeLen = uint32(copy(e.Scheme[:], scheme))
	e.HostLen = uint32(copy(e.Host[:], host))
	e.PathLen = uint32(copy(e.Path[:], path))
	e.QueryLen = uint32(copy(e.Query[:], query))
	if change != nil {
		change(&e)
	}
	return bytes.Clone(unsafe.Slice((*byte)(unsafe.Pointer(&e)), unsafe.Sizeof(e)))
}

func status(code uint64) func(e *event) { return func(e *event) { e.Status = code } }

// attrs are a client span's attributes for url and the server it names,
// with more added (or removed, as nil).
func attrs(url, host string, port int, more map[string]any) map[string]any {
	m := map[string]any{
		"http.request.method": "GET",
		"url.full":            url,
		"url.scheme":          "http",
		"server.address":      host,
		"server.port":         port,
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

func client(status codes.Code, msg string, attrs map[string]any) spantest.Want {
	return spantest.Want{Name: "GET", Kind: trace.SpanKindClient, Status: status, StatusMsg: msg, Attrs: attrs}
}

const (
	opError  = 0x4a1000 // where the target's *net.OpError descriptor is
	unnamed  = 0x4a2000 // a descriptor uranus cannot name
	longPath = 300
)

// TestConvert: records → CLIENT spans, for every rule the README states
// about them.
func TestConvert(t *testing.T) {
	names := typeNames{opError: "*net.OpError"}
	long := "/" + strings.Repeat("p", longPath-1)
	for _, c := range []struct {
		name string
		rec  []byte
		want spantest.Want
	}{{
		name: "a 2xx is no error",
		rec:  get("http", "api:8080", "/items", "", status(200)),
		want: client(codes.Unset, "", attrs("http://api:8080/items", "api", 8080, map[string]any{"http.response.status_code": 200})),
	}, {
		name: "for a client a 4xx is an error",
		rec:  get("http", "api:8080", "/items", "", status(404)),
		want: client(codes.Error, "", attrs("http://api:8080/items", "api", 8080, map[string]any{
			"http.response.status_code": 404, "error.type": "404"})),
	}, {
		name: "and so is a 5xx",
		rec:  get("http", "api:8080", "/items", "", status(502)),
		want: client(codes.Error, "", attrs("http://api:8080/items", "api", 8080, map[string]any{
			"http.response.status_code": 502, "error.type": "502"})),
	}, {
		name: "a returned error is named by its type, without a status",
		rec:  get("http", "api:8080", "/items", "", func(e *event) { e.ErrType = opError }),
		want: client(codes.Error, "*net.OpError", attrs("http://api:8080/items", "api", 8080, map[string]any{"error.type": "*net.OpError"})),
	}, {
		name: "an error of a type the binary cannot name is _OTHER",
		rec:  get("http", "api:8080", "/items", "", func(e *event) { e.ErrType = unnamed }),
		want: client(codes.Error, "_OTHER", attrs("http://api:8080/items", "api", 8080, map[string]any{"error.type": "_OTHER"})),
	}, {
		name: "query values are redacted, keys kept",
		rec:  get("http", "api", "/search", "q=secret&empty=&flag", status(200)),
		want: client(codes.Unset, "", attrs("http://api/search?q=REDACTED&empty=REDACTED&flag", "api", 80, map[string]any{
			"http.response.status_code": 200})),
	}, {
		name: "credentials in the URL are redacted",
		rec:  get("http", "api", "/", "", func(e *event) { e.Status, e.Userinfo = 200, 1 }),
		want: client(codes.Unset, "", attrs("http://REDACTED:REDACTED@api/", "api", 80, map[string]any{
			"http.response.status_code": 200})),
	}, {
		name: "no path is /, no scheme is http without url.scheme",
		rec:  get("", "api", "", "", status(200)),
		want: client(codes.Unset, "", attrs("http://api/", "api", 80, map[string]any{
			"http.response.status_code": 200, "url.scheme": nil})),
	}, {
		name: "https: its default port, the connection's TLS",
		rec: get("https", "[2001:db8::1]", "/", "", func(e *event) {
			e.Status, e.TlsVersion, e.TlsCipher = 200, 0x0303, 0xc02f
		}),
		want: client(codes.Unset, "", attrs("https://[2001:db8::1]/", "2001:db8::1", 443, map[string]any{
			"http.response.status_code": 200,
			"url.scheme":                "https",
			"tls.protocol.name":         "tls",
			"tls.protocol.version":      "1.2",
			"tls.cipher":                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
		})),
	}, {
		name: "an injected traceparent is marked",
		rec:  get("http", "api:8080", "/", "", func(e *event) { e.Status, e.Injected = 200, 1 }),
		want: client(codes.Unset, "", attrs("http://api:8080/", "api", 8080, map[string]any{
			"http.response.status_code": 200, "uranus.traceparent.injected": true})),
	}, {
		name: "a path longer than the record keeps its start",
		rec:  get("http", "api:8080", long, "", func(e *event) { e.Status, e.PathLen = 200, longPath }),
		want: client(codes.Unset, "", attrs("http://api:8080"+long[:256], "api", 8080, map[string]any{
			"http.response.status_code": 200})),
	}} {
		t.Run(c.name, func(t *testing.T) {
			var s otel.Span
			if err := Instrumentor.Convert(c.rec, &s, names); err != nil {
				t.Fatal(err)
			}
			for _, d := range spantest.Diff(&s, c.want) {
				t.Error(d)
			}
		})
	}
	if err := Instrumentor.Convert(get("http", "api", "/", "", nil)[:100], &otel.Span{}, names); err == nil {
		t.Error("a short record was converted")
	}
}

// TestConvertKeepQueryValues: with --keep-query-values a whole query is
// kept, but a query cut short by the record is still redacted, since its
// last value may be a cut token that no longer looks like one.
func TestConvertKeepQueryValues(t *testing.T) {
	in, err := Instrumentor.Configure(Instrumentor, instrumentors.Settings{"keep-query-values": {true}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	longQuery := "a=" + strings.Repeat("v", 300)
	for _, c := range []struct {
		rec  []byte
		want string
	}{
		{get("http", "api", "/s", "q=kept&x=1", status(200)), "http://api/s?q=kept&x=1"},
		{get("http", "api", "/s", longQuery, func(e *event) { e.Status, e.QueryLen = 200, uint32(len(longQuery)) }), "http://api/s?a=REDACTED"},
	} {
		var s otel.Span
		if err := in.Convert(c.rec, &s, typeNames{}); err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, kv := range s.Attrs {
			if kv.Key == "url.full" {
				got = kv.Value.AsString()
			}
		}
		if got != c.want {
			t.Errorf("url.full = %q, want %q", got, c.want)
		}
	}
}
