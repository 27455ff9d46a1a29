package grpc_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/attach"
	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/instrumentors/all"
	"github.com/uranus-otel/uranus/instrumentors/grpc"
	"github.com/uranus-otel/uranus/internal/e2e"
	"github.com/uranus-otel/uranus/internal/testapp"
)

// matrix is the gRPC-Go releases the end-to-end test builds its sample
// against, one per layout (before 1.60's operateHeaders change, before
// 1.69's ServerStream, 1.69–1.76's *Stream embedding, 1.84's wrapped
// client stream), each with the oldest Go it builds with, one between and
// the newest (v1.85.0 builds only with Go 1.26 and later).
var matrix = []struct {
	grpc string
	gos  []string
}{
	{"v1.35.0", []string{"1.16.15"}}, // its status errors hold the proto itself
	{"v1.40.0", []string{"1.16.15", "1.21.13", "1.27.4"}},
	{"v1.60.0", []string{"1.19.13", "1.22.12", "1.27.4"}},
	{"v1.72.0", []string{"1.23.12", "1.25.14", "1.27.4"}},
	{"v1.85.0", []string{"1.26.8", "1.26.11", "1.27.4"}},
}

func defaults() []*instrumentors.Instrumentor {
	var list []*instrumentors.Instrumentor
	for _, in := range all.List {
		if !in.OffByDefault {
			list = append(list, in)
		}
	}
	return list
}

// TestGRPC: on real gRPC-Go servers and clients of several releases and
// Go versions, one SERVER and one CLIENT span per call, unary or
// streaming, with the status code and the error status the conventions
// give; a client call nests in the HTTP handler that made it and an HTTP
// call in the gRPC handler that made it; a traceparent sent in the call's
// metadata parents the server's span; 1,000 concurrent calls give 2,000
// spans, nothing lost.
func TestGRPC(t *testing.T) {
	e2e.RequireBPF(t)
	for _, m := range matrix {
		for _, v := range m.gos {
			t.Run(m.grpc+"/go"+v, func(t *testing.T) {
				path := e2e.BuildTarget(t, "grpc", v, testapp.Options{Require: grpc.Module + "@" + m.grpc})
				checkCalls(t, e2e.Start(t, path), v)
			})
		}
	}
}

// TestGRPCStripped: a stripped binary (no DWARF, no symbol table) gets
// its offsets from the module's table for its gRPC-Go and Go versions.
func TestGRPCStripped(t *testing.T) {
	e2e.RequireBPF(t)
	for _, c := range []struct{ grpc, goV string }{{"v1.60.0", "1.26.8"}, {"v1.85.0", "1.27.4"}} {
		t.Run(c.grpc+"/go"+c.goV, func(t *testing.T) {
			path := e2e.BuildTarget(t, "grpc", c.goV, testapp.Options{Require: grpc.Module + "@" + c.grpc, Stripped: true})
			checkCalls(t, e2e.Start(t, path), c.goV)
		})
	}
}

const (
	remoteTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	remoteSpan  = "00f067aa0ba902b7"
	fan         = 1000
)

func checkCalls(t *testing.T, p *e2e.Proc, goVersion string) {
	s := e2e.Attach(t, defaults(), p.Cmd.Process.Pid)
	base := "http://" + p.Addr
	get := func(path, want string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != want {
			t.Fatalf("%s answered %q, want %q", path, b, want)
		}
	}
	unary := []struct{ query, want string }{
		{"", "OK"},
		{"code=NotFound", "NotFound"},
		{"code=Internal", "Internal"},
		{"deadline_ms=50&sleep_ms=300", "DeadlineExceeded"},
		{"traceparent=00-" + remoteTrace + "-" + remoteSpan + "-01", "OK"},
		{"call_url=" + url.QueryEscape(base+"/grpc-addr"), "OK"},
	}
	for _, c := range unary {
		get("/unary?"+c.query, c.want)
	}
	get("/cancel?sleep_ms=500&after_ms=50", "Canceled")
	get("/stream?n=100", "OK 100")
	get("/bidi?n=100", "OK 100")
	get(fmt.Sprintf("/fan?n=%d&conc=50", fan), fmt.Sprintf("ok=%d failed=0", fan))

	calls := len(unary) + 1 + 2 + fan
	// Every call's two spans, each HTTP request's server span, and the
	// HTTP call made inside a gRPC handler (client and server spans).
	spans := s.WaitSpans(2*calls + len(unary) + 4 + 2)
	var clients, servers []tracetest.SpanStub
	httpServers := map[trace.SpanID]string{}
	var httpClient *tracetest.SpanStub
	for i, sp := range spans {
		switch {
		case attr(sp, "rpc.system.name") == "grpc" && sp.SpanKind == trace.SpanKindClient:
			clients = append(clients, sp)
		case attr(sp, "rpc.system.name") == "grpc" && sp.SpanKind == trace.SpanKindServer:
			servers = append(servers, sp)
		case sp.SpanKind == trace.SpanKindServer:
			httpServers[sp.SpanContext.SpanID()] = attr(sp, "url.path")
		case sp.SpanKind == trace.SpanKindClient:
			httpClient = &spans[i]
		}
	}
	if len(clients) != calls || len(servers) != calls {
		t.Fatalf("%d client and %d server gRPC spans for %d calls; want one each per call", len(clients), len(servers), calls)
	}

	// Client spans: by method and code; each non-fan call under the HTTP
	// handler that made it.
	minor, _ := strconv.Atoi(strings.Split(goVersion, ".")[1])
	before121 := minor < 21
	got := map[string]int{}
	for _, sp := range clients {
		code := attr(sp, "rpc.response.status_code")
		got[sp.Name+" "+code]++
		if wantErr := code != "OK"; (sp.Status.Code == codes.Error) != wantErr {
			t.Errorf("client span %s %s: status %v", sp.Name, code, sp.Status)
		}
		if attr(sp, "server.address") != "127.0.0.1" || attr(sp, "server.port") == "" {
			t.Errorf("client span %s: server %s:%s", sp.Name, attr(sp, "server.address"), attr(sp, "server.port"))
		}
		// The fan's calls run on goroutines of their own: nested from Go
		// 1.21, whose goroutines record their creator; roots before.
		_, nested := httpServers[sp.Parent.SpanID()]
		if !nested && !(before121 && !sp.Parent.IsValid()) {
			t.Errorf("client span %s %s: parent %s is no HTTP handler's span", sp.Name, code, sp.Parent.SpanID())
		}
	}
	want := map[string]int{
		"uranus.echo.Echo/Unary OK":                3 + fan,
		"uranus.echo.Echo/Unary NOT_FOUND":         1,
		"uranus.echo.Echo/Unary INTERNAL":          1,
		"uranus.echo.Echo/Unary DEADLINE_EXCEEDED": 1,
		"uranus.echo.Echo/Unary CANCELLED":         1,
		"uranus.echo.Echo/ServerStream OK":         1,
		"uranus.echo.Echo/Bidi OK":                 1,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("client spans by method and code:\n got %v\nwant %v", got, want)
	}

	// Server spans: the codes the handler returned, INTERNAL alone an
	// error among them; the traceparent's call continues its trace.
	got = map[string]int{}
	var remote, caller *tracetest.SpanStub
	for i, sp := range servers {
		code := attr(sp, "rpc.response.status_code")
		got[sp.Name+" "+code]++
		if wantErr := code == "INTERNAL" || code == "DEADLINE_EXCEEDED" || code == "UNKNOWN"; (sp.Status.Code == codes.Error) != wantErr {
			t.Errorf("server span %s %s: status %v", sp.Name, code, sp.Status)
		}
		if attr(sp, "client.address") != "127.0.0.1" {
			t.Errorf("server span %s: client.address %q", sp.Name, attr(sp, "client.address"))
		}
		if sp.SpanContext.TraceID().String() == remoteTrace {
			remote = &servers[i]
		}
		if httpClient != nil && sp.SpanContext.SpanID() == httpClient.Parent.SpanID() {
			caller = &servers[i]
		}
	}
	for _, k := range []string{"uranus.echo.Echo/Unary NOT_FOUND", "uranus.echo.Echo/Unary INTERNAL",
		"uranus.echo.Echo/ServerStream OK", "uranus.echo.Echo/Bidi OK"} {
		if got[k] != 1 {
			t.Errorf("%d server spans %s, want 1 (all: %v)", got[k], k, got)
		}
	}
	if got["uranus.echo.Echo/Unary OK"] < 3+fan {
		t.Errorf("%d OK unary server spans, want at least %d (all: %v)", got["uranus.echo.Echo/Unary OK"], 3+fan, got)
	}
	// Trace context on the wire (h2c): every server span but the one whose
	// call carried the app's own traceparent is the child of its client
	// span.
	clientIDs := map[trace.SpanID]string{}
	for _, sp := range clients {
		clientIDs[sp.SpanContext.SpanID()] = sp.Name
	}
	linked := 0
	for _, sp := range servers {
		if name, ok := clientIDs[sp.Parent.SpanID()]; ok && name == sp.Name {
			linked++
		}
	}
	if linked != calls-1 {
		t.Errorf("%d of %d server spans are children of their client spans, want %d; wire counters %+v",
			linked, calls, calls-1, s.Attacher.Stats().Wire)
	}
	switch {
	case remote == nil:
		t.Error("no server span continues the traceparent sent in the call's metadata")
	case remote.Parent.SpanID().String() != remoteSpan || !remote.Parent.IsRemote():
		t.Errorf("the traceparent's server span has parent %s (remote %v), want %s, remote", remote.Parent.SpanID(), remote.Parent.IsRemote(), remoteSpan)
	}
	switch {
	case httpClient == nil:
		t.Error("no span for the HTTP call made inside a gRPC handler")
	case caller == nil:
		t.Errorf("the HTTP call inside a gRPC handler has parent %s, no gRPC server span", httpClient.Parent.SpanID())
	default:
		// HTTP handler → gRPC call → gRPC handler → HTTP call: one trace,
		// each span the child of the one before.
		var client *tracetest.SpanStub
		for i, sp := range clients {
			if sp.SpanContext.SpanID() == caller.Parent.SpanID() {
				client = &clients[i]
			}
		}
		if client == nil || httpServers[client.Parent.SpanID()] != "/unary" ||
			client.SpanContext.TraceID() != httpClient.SpanContext.TraceID() {
			t.Errorf("HTTP handler → gRPC call → gRPC handler → HTTP call is not one trace in that order (gRPC client span %v)", client)
		}
	}
}

func attr(sp tracetest.SpanStub, key string) string {
	for _, kv := range sp.Attributes {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// TestGRPCAcrossProcesses: a call from one process to another, of other
// gRPC-Go and Go versions, links the server's span to the client's by the
// traceparent inserted into the HEADERS frame at the socket (h2c), with
// the process's memory only read; a call whose app set its own
// traceparent keeps it. The client's gRPC connection, and its HTTP
// keep-alive connection to the same server, are opened before uranus
// starts: uranus adopts them, and HTTP/1 requests on the old connection
// are linked too.
func TestGRPCAcrossProcesses(t *testing.T) {
	e2e.RequireBPF(t)
	client := e2e.Start(t, e2e.BuildTarget(t, "grpc", "1.16.15", testapp.Options{Require: grpc.Module + "@v1.40.0"}))
	server := e2e.Start(t, e2e.BuildTarget(t, "grpc", "1.27.4", testapp.Options{Require: grpc.Module + "@v1.85.0"}))
	get := func(u string) string {
		t.Helper()
		r, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		return string(b)
	}
	addr := get("http://" + server.Addr + "/grpc-addr")
	unary := "http://" + client.Addr + "/unary?target=" + url.QueryEscape(addr)
	plain := "http://" + client.Addr + "/http?url=" + url.QueryEscape("http://"+server.Addr+"/grpc-addr")
	// Connections made before uranus: a ClientConn and a keep-alive one.
	get(unary)
	get(plain)
	s := e2e.Attach(t, defaults(), client.Cmd.Process.Pid, server.Cmd.Process.Pid)
	if mode, why := s.Attacher.Propagation(); mode != attach.PropagationNetwork {
		t.Fatalf("propagation %s (%s); want network", mode, why)
	}
	const n = 20
	for i := 0; i < n; i++ {
		u := unary
		if i == 0 {
			u += "&traceparent=00-" + remoteTrace + "-" + remoteSpan + "-01"
		}
		if got := get(u); got != "OK" {
			t.Fatalf("call %d answered %q", i, got)
		}
	}
	const m = 5
	for i := 0; i < m; i++ {
		if got := get(plain); got != "200" {
			t.Fatalf("HTTP call %d answered %q", i, got)
		}
	}
	// Per call: the /unary (/http) span, the client's and the server's.
	spans := s.WaitSpans(3 * (n + m))
	httpClients := map[trace.SpanID]bool{}
	httpLinked := 0
	for _, sp := range spans {
		if sp.SpanKind == trace.SpanKindClient && attr(sp, "rpc.system.name") == "" {
			httpClients[sp.SpanContext.SpanID()] = true
		}
	}
	for _, sp := range spans {
		if sp.SpanKind == trace.SpanKindServer && attr(sp, "url.path") == "/grpc-addr" && httpClients[sp.Parent.SpanID()] {
			httpLinked++
		}
	}
	if httpLinked != m {
		t.Errorf("%d of %d HTTP requests on a connection opened before uranus are linked", httpLinked, m)
	}
	clients := map[trace.SpanID]bool{}
	for _, sp := range spans {
		if sp.SpanKind == trace.SpanKindClient && attr(sp, "rpc.system.name") == "grpc" {
			clients[sp.SpanContext.SpanID()] = true
		}
	}
	linked, kept := 0, 0
	for _, sp := range spans {
		if sp.SpanKind != trace.SpanKindServer || attr(sp, "rpc.system.name") != "grpc" {
			continue
		}
		switch {
		case clients[sp.Parent.SpanID()] && sp.Parent.IsRemote():
			linked++
		case sp.Parent.SpanID().String() == remoteSpan:
			kept++
		default:
			t.Errorf("server span %s: parent %s is neither a client span nor the app's", sp.Name, sp.Parent.SpanID())
		}
	}
	if linked != n-1 || kept != 1 {
		t.Errorf("%d server spans under their client span (want %d), %d under the app's traceparent (want 1); wire counters %+v",
			linked, n-1, kept, s.Attacher.Stats().Wire)
	}
}

// TestGRPCStackGrowth: 100,000 calls, each started at another stack depth
// so that goroutine stacks grow inside the probed functions (morestack
// restarts a function, and its entry probe fires again), give the same
// answers with uranus as without — every reply echoes its request — and
// one SERVER and one CLIENT span each, the server's the child of the
// client's; the target lives on.
func TestGRPCStackGrowth(t *testing.T) {
	e2e.RequireBPF(t)
	for _, c := range []struct{ grpc, goV string }{{"v1.40.0", "1.16.15"}, {"v1.85.0", "1.27.4"}} {
		t.Run(c.grpc+"/go"+c.goV, func(t *testing.T) {
			p := e2e.Start(t, e2e.BuildTarget(t, "grpc", c.goV, testapp.Options{Require: grpc.Module + "@" + c.grpc}))
			const batch, batches = 20000, 5
			fanOut := func() {
				t.Helper()
				resp, err := http.Get(fmt.Sprintf("http://%s/fan?n=%d&conc=64&grow=64", p.Addr, batch))
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := fmt.Sprintf("ok=%d failed=0", batch); string(b) != want {
					t.Fatalf("the fan answered %q, want %q", b, want)
				}
			}
			fanOut() // without uranus
			s := e2e.Attach(t, defaults(), p.Cmd.Process.Pid)
			for i := 0; i < batches; i++ {
				fanOut()
				spans := s.WaitSpans(2*batch + 1)
				ids := map[trace.SpanID]bool{}
				var clients, servers, linked int
				for _, sp := range spans {
					if attr(sp, "rpc.system.name") == "grpc" && sp.SpanKind == trace.SpanKindClient {
						clients++
						ids[sp.SpanContext.SpanID()] = true
					}
				}
				for _, sp := range spans {
					if attr(sp, "rpc.system.name") == "grpc" && sp.SpanKind == trace.SpanKindServer {
						servers++
						if ids[sp.Parent.SpanID()] {
							linked++
						}
					}
				}
				if clients != batch || servers != batch || linked != batch {
					t.Fatalf("batch %d: %d client spans, %d server spans, %d linked, for %d calls; probe counters %+v; wire %+v",
						i, clients, servers, linked, batch, s.Attacher.Stats().Probes, s.Attacher.Stats().Wire)
				}
				s.Exporter.Reset()
			}
			t.Logf("%d calls: probe counters %+v; wire %+v", batch*batches, s.Attacher.Stats().Probes, s.Attacher.Stats().Wire)
		})
	}
}
