package httpserver

import (
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/internal/spantest"
	"github.com/uranus-otel/uranus/otel"
)

// request is a record of GET path with the fields every request has; each
// case of TestConvert changes what it is about.
func request(path string, change func(e *event)) *event {
	var e event
	e.ProtoMajor, e.ProtoMinor = 1, 1
	e.MethodLen = uint32(copy(e.Method[:], "GET"))
	e.PathLen = uint32(copy(e.Path[:], path))
	if change != nil {
		change(&e)
	}
	return &e
}

// base are the attributes of every server span, for a plain-HTTP/1.1 GET
// of path answered with status.
func base(path string, status int, more map[string]any) map[string]any {
	m := map[string]any{
		"http.request.method":       "GET",
		"url.path":                  path,
		"url.scheme":                "http",
		"http.response.status_code": status,
		"network.protocol.version":  "1.1",
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

// TestConvert: records → SERVER spans, for every rule the README states
// about them.
func TestConvert(t *testing.T) {
	long := "/" + strings.Repeat("a", 300)
	for _, c := range []struct {
		name         string
		rec          *event
		remoteParent bool
		want         spantest.Want
	}{{
		name: "a handler that writes nothing answers 200",
		rec:  request("/", nil),
		want: spantest.Want{Name: "GET", Kind: trace.SpanKindServer, Attrs: base("/", 200, nil)},
	}, {
		name: "4xx is the client's fault: not an error",
		rec:  request("/missing", func(e *event) { e.Status = 404 }),
		want: spantest.Want{Name: "GET", Kind: trace.SpanKindServer, Attrs: base("/missing", 404, nil)},
	}, {
		name: "5xx is an error, with its status as error.type",
		rec:  request("/boom", func(e *event) { e.Status = 503 }),
		want: spantest.Want{Name: "GET", Kind: trace.SpanKindServer, Status: codes.Error,
			Attrs: base("/boom", 503, map[string]any{"error.type": "503"})},
	}, {
		name: "the route is the pattern's path, in the name too",
		rec: request("/users/42", func(e *event) {
			e.Status = 200
			e.PatternLen = uint32(copy(e.Pattern[:], "GET /users/{id}"))
		}),
		want: spantest.Want{Name: "GET /users/{id}", Kind: trace.SpanKindServer,
			Attrs: base("/users/42", 200, map[string]any{"http.route": "/users/{id}"})},
	}, {
		name: "a pattern with a host keeps only its path",
		rec:  request("/static/a.css", func(e *event) { e.PatternLen = uint32(copy(e.Pattern[:], "example.com/static/")) }),
		want: spantest.Want{Name: "GET /static/", Kind: trace.SpanKindServer,
			Attrs: base("/static/a.css", 200, map[string]any{"http.route": "/static/"})},
	}, {
		name: "HTTP/2 is version 2, HTTP/1.0 keeps its minor",
		rec:  request("/", func(e *event) { e.ProtoMajor, e.ProtoMinor = 2, 0 }),
		want: spantest.Want{Name: "GET", Kind: trace.SpanKindServer, Attrs: base("/", 200, map[string]any{"network.protocol.version": "2"})},
	}, {
		name: "HTTP/1.0",
		rec:  request("/", func(e *event) { e.ProtoMajor, e.ProtoMinor = 1, 0 }),
		want: spantest.Want{Name: "GET", Kind: trace.SpanKindServer, Attrs: base("/", 200, map[string]any{"network.protocol.version": "1.0"})},
	}, {
		name: "TLS: https, its default port, protocol and cipher",
		rec: request("/", func(e *event) {
			e.Tls, e.TlsVersion, e.TlsCipher = 1, 0x0304, 0x1301
			e.HostLen = uint32(copy(e.Host[:], "shop.example"))
		}),
		want: spantest.Want{Name: "GET", Kind: trace.SpanKindServer, Attrs: base("/", 200, map[string]any{
			"url.scheme":           "https",
			"server.address":       "shop.example",
			"server.port":          443,
			"tls.protocol.name":    "tls",
			"tls.protocol.version": "1.3",
			"tls.cipher":           "TLS_AES_128_GCM_SHA256",
		})},
	}, {
		name: "host and client address, IPv6 without brackets",
		rec: request("/", func(e *event) {
			e.HostLen = uint32(copy(e.Host[:], "[::1]:8080"))
			e.RemoteLen = uint32(copy(e.RemoteAddr[:], "10.1.2.3:51234"))
			e.UserAgentLen = uint32(copy(e.UserAgent[:], "curl/8.5.0"))
		}),
		want: spantest.Want{Name: "GET", Kind: trace.SpanKindServer, Attrs: base("/", 200, map[string]any{
			"server.address":      "::1",
			"server.port":         8080,
			"client.address":      "10.1.2.3",
			"client.port":         51234,
			"user_agent.original": "curl/8.5.0",
		})},
	}, {
		name: "plain HTTP without a port in Host: port 80",
		rec:  request("/", func(e *event) { e.HostLen = uint32(copy(e.Host[:], "shop.example")) }),
		want: spantest.Want{Name: "GET", Kind: trace.SpanKindServer, Attrs: base("/", 200, map[string]any{
			"server.address": "shop.example",
			"server.port":    80,
		})},
	}, {
		name: "a path longer than the record keeps its start and its length",
		rec:  request(long, func(e *event) { e.PathLen = uint32(len(long)) }),
		want: spantest.Want{Name: "GET", Kind: trace.SpanKindServer, Attrs: base(long[:256], 200, map[string]any{
			"uranus.url.path.length": 301,
		})},
	}, {
		name: "invalid UTF-8 becomes U+FFFD",
		rec:  request("/caf\xc3", nil),
		want: spantest.Want{Name: "GET", Kind: trace.SpanKindServer, Attrs: base("/caf\uFFFD", 200, nil)},
	}, {
		name:         "tracestate is kept with a remote parent",
		rec:          request("/", func(e *event) { e.TracestateLen = uint32(copy(e.Tracestate[:], "vendor=1")) }),
		remoteParent: true,
		want:         spantest.Want{Name: "GET", Kind: trace.SpanKindServer, TraceState: "vendor=1", Attrs: base("/", 200, nil)},
	}, {
		name: "and ignored without one",
		rec:  request("/", func(e *event) { e.TracestateLen = uint32(copy(e.Tracestate[:], "vendor=1")) }),
		want: spantest.Want{Name: "GET", Kind: trace.SpanKindServer, Attrs: base("/", 200, nil)},
	}} {
		t.Run(c.name, func(t *testing.T) {
			s := otel.Span{RemoteParent: c.remoteParent}
			if err := Instrumentor.Convert(record(c.rec), &s, nil); err != nil {
				t.Fatal(err)
			}
			for _, d := range spantest.Diff(&s, c.want) {
				t.Error(d)
			}
		})
	}
}
