package httpclient_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/attach"
	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/instrumentors/goroutines"
	"github.com/uranus-otel/uranus/instrumentors/httpclient"
	"github.com/uranus-otel/uranus/instrumentors/httpserver"
	"github.com/uranus-otel/uranus/internal/e2e"
	"github.com/uranus-otel/uranus/internal/testapp"
)

var all = []*instrumentors.Instrumentor{httpserver.Instrumentor, httpclient.Instrumentor, goroutines.Instrumentor}

func attr(s tracetest.SpanStub, key attribute.Key) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value.String()
		}
	}
	return ""
}

func pid(s tracetest.SpanStub) string {
	v, _ := s.Resource.Set().Value("process.pid")
	return v.String()
}

// get requests url with extra headers and returns the body.
func get(t *testing.T, u string, headers map[string]string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// pair is two relays, A calling B, watched by one uranus.
type pair struct {
	a, b     *e2e.Proc
	s        *e2e.Session
	inject   bool
	aPID     string
	bPID     string
	received int // spans seen so far
}

func startPair(t *testing.T, va, vb string) *pair {
	a := e2e.Start(t, e2e.BuildTarget(t, "relay", va, testapp.Options{}))
	b := e2e.Start(t, e2e.BuildTarget(t, "relay", vb, testapp.Options{Stripped: true}))
	p := &pair{a: a, b: b, aPID: fmt.Sprint(a.Cmd.Process.Pid), bPID: fmt.Sprint(b.Cmd.Process.Pid)}
	p.s = e2e.Attach(t, all, a.Cmd.Process.Pid, b.Cmd.Process.Pid)
	mode, why := p.s.Attacher.Propagation()
	p.inject = mode != attach.PropagationOff
	if !p.inject && os.Getenv("CI") == "true" {
		t.Fatalf("propagation off in CI, where this kernel allows it on the wire: %s", why)
	}
	if !p.inject {
		t.Logf("propagation off (%s): checking in-process nesting, and that B is a trace of its own", why)
	} else {
		t.Logf("propagation %s (%s)", mode, why)
	}
	return p
}

// next waits for n more spans and returns them.
func (p *pair) next(t *testing.T, n int) []tracetest.SpanStub {
	t.Helper()
	got := p.s.WaitSpans(p.received + n)
	if len(got) != p.received+n {
		t.Fatalf("got %d new spans, want %d", len(got)-p.received, n)
	}
	spans := got[p.received:]
	p.received = len(got)
	return spans
}

// checkCalls checks one request to A whose handler made `calls` calls to
// B's /echo-traceparent: A's server span is the root, every A client span
// its child, and each B server span the child of one A client span — with
// B's handler having seen a traceparent naming that client span — or, where
// the kernel forbids injection, a root of its own with no traceparent seen.
func (p *pair) checkCalls(t *testing.T, path string, calls int, body string) {
	t.Helper()
	spans := p.next(t, 1+2*calls)
	var server tracetest.SpanStub
	var clients, downstream []tracetest.SpanStub
	for _, s := range spans {
		switch {
		case pid(s) == p.aPID && s.SpanKind == trace.SpanKindServer:
			server = s
		case pid(s) == p.aPID && s.SpanKind == trace.SpanKindClient:
			clients = append(clients, s)
		case pid(s) == p.bPID && s.SpanKind == trace.SpanKindServer:
			downstream = append(downstream, s)
		}
	}
	if attr(server, "url.path") != path || len(clients) != calls || len(downstream) != calls {
		t.Fatalf("%s: A server %q, %d A client spans, %d B server spans; want 1, %d, %d", path, attr(server, "url.path"), len(clients), len(downstream), calls, calls)
	}
	if server.Parent.IsValid() {
		t.Errorf("%s: A's server span has parent %s", path, server.Parent.SpanID())
	}
	tid := server.SpanContext.TraceID()
	byID := map[trace.SpanID]tracetest.SpanStub{}
	for _, c := range clients {
		byID[c.SpanContext.SpanID()] = c
		if c.SpanContext.TraceID() != tid || c.Parent.SpanID() != server.SpanContext.SpanID() {
			t.Errorf("%s: client span %s in trace %s with parent %s; want trace %s, parent %s (A's server span)",
				path, c.SpanContext.SpanID(), c.SpanContext.TraceID(), c.Parent.SpanID(), tid, server.SpanContext.SpanID())
		}
		if got := attr(c, "http.response.status_code"); got != "200" {
			t.Errorf("%s: client span status code %q", path, got)
		}
	}
	seen := strings.Split(body, "\n")
	if len(seen) != calls {
		t.Fatalf("%s: body has %d lines for %d calls: %q", path, len(seen), calls, body)
	}
	used := map[trace.SpanID]bool{}
	for _, d := range downstream {
		if !p.inject {
			if d.Parent.IsValid() {
				t.Errorf("%s: B span has a parent without injection", path)
			}
			continue
		}
		c, ok := byID[d.Parent.SpanID()]
		if !ok || d.SpanContext.TraceID() != tid || used[c.SpanContext.SpanID()] {
			t.Errorf("%s: B server span in trace %s with parent %s: not a child of one of A's client spans", path, d.SpanContext.TraceID(), d.Parent.SpanID())
		}
		used[d.Parent.SpanID()] = true
	}
	for _, line := range seen {
		if !p.inject {
			if line != "" {
				t.Errorf("%s: B saw traceparent %q though injection is off", path, line)
			}
			continue
		}
		var trace32, span16 string
		if n, _ := fmt.Sscanf(strings.ReplaceAll(line, "-", " "), "00 %32s %16s 01", &trace32, &span16); n != 2 || trace32 != tid.String() {
			t.Errorf("%s: B saw traceparent %q, want 00-%s-<client span>-01", path, line, tid)
			continue
		}
		found := false
		for id := range byID {
			found = found || id.String() == span16
		}
		if !found {
			t.Errorf("%s: B saw parent id %s, which is none of A's client spans", path, span16)
		}
	}
}

// TestPropagation: A → B with the same and with different Go versions
// (1.13 to 1.27 on both sides), stack and register ABI, both map
// implementations, calls made from the handler, from goroutines it spawns,
// an errgroup and a 50-way fan-out. Under this project's lockdown kernel
// the context travels on the wire; where memory writes are allowed and the
// socket programs are not, in memory.
func TestPropagation(t *testing.T) {
	e2e.RequireBPF(t)
	for _, vs := range [][2]string{{"1.22.12", "1.22.12"}, {"1.16.15", "1.27.4"}, {"1.27.4", "1.13.15"}, {"1.17.13", "1.24.13"}, {"1.21.13", "1.16.15"}} {
		t.Run(vs[0]+"->"+vs[1], func(t *testing.T) {
			p := startPair(t, vs[0], vs[1])
			echo := url.QueryEscape("http://" + p.b.Addr + "/echo-traceparent")
			for _, c := range []struct {
				path  string
				query string
				calls int
			}{
				{"/call", "", 1},
				{"/call-go", "", 1},
				{"/call-go-go", "", 1},
				{"/call-errgroup", "", 3},
				{"/fanout", "&n=50", 50},
			} {
				body := get(t, "http://"+p.a.Addr+c.path+"?url="+echo+c.query, nil)
				p.checkCalls(t, c.path, c.calls, body)
			}
			c := p.s.Targets[0].Counters()[httpclient.Instrumentor.ID]
			if p.inject && c.Extra[0] != 56 {
				t.Errorf("A injected %d traceparents, want 56 (counters %+v)", c.Extra[0], c)
			}
			if c.RingbufFull != 0 || c.NoEntry != 0 || c.ReadError != 0 {
				t.Errorf("A's client counters show losses: %+v", c)
			}
		})
	}
}

// TestIncomingTraceparent: a request from an uninstrumented caller that
// carries traceparent and tracestate joins the caller's trace, and the
// tracestate is kept.
func TestIncomingTraceparent(t *testing.T) {
	e2e.RequireBPF(t)
	for _, v := range []string{"1.16.15", "1.23.12", "1.24.13", "1.27.4"} { // both sides of 1.24's maps
		t.Run(v, func(t *testing.T) {
			p := startPair(t, v, v)
			const tid, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
			get(t, "http://"+p.a.Addr+"/call?url="+url.QueryEscape("http://"+p.b.Addr+"/echo-traceparent"), map[string]string{
				"Traceparent": "00-" + tid + "-" + parent + "-01",
				"Tracestate":  "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
				// Enough other headers to push the map past one bucket/group.
				"X-A": "1", "X-B": "2", "X-C": "3", "X-D": "4", "X-E": "5", "X-F": "6", "X-G": "7", "User-Agent": "uranus-test/1",
			})
			spans := p.next(t, 3)
			for _, s := range spans {
				if pid(s) != p.aPID {
					continue
				}
				if s.SpanContext.TraceID().String() != tid {
					t.Errorf("%v span in trace %s, want the caller's %s", s.SpanKind, s.SpanContext.TraceID(), tid)
				}
				if s.SpanKind == trace.SpanKindServer {
					if s.Parent.SpanID().String() != parent || !s.Parent.IsRemote() {
						t.Errorf("server span parent %s (remote %v), want remote %s", s.Parent.SpanID(), s.Parent.IsRemote(), parent)
					}
					if got := s.SpanContext.TraceState().String(); got != "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7" {
						t.Errorf("tracestate %q", got)
					}
					if got := attr(s, "user_agent.original"); got != "uranus-test/1" {
						t.Errorf("user_agent.original %q", got)
					}
				}
			}
			// A malformed traceparent starts a new trace.
			get(t, "http://"+p.a.Addr+"/echo-traceparent", map[string]string{"Traceparent": "00-" + tid + "-0000000000000000-01"})
			bad := p.next(t, 1)[0]
			if bad.Parent.IsValid() || bad.SpanContext.TraceID().String() == tid {
				t.Errorf("a traceparent with a zero parent id was accepted: parent %s", bad.Parent.SpanID())
			}
		})
	}
}

// TestAppTraceparentKept: a traceparent the app set itself reaches B as is.
func TestAppTraceparentKept(t *testing.T) {
	e2e.RequireBPF(t)
	p := startPair(t, "1.24.13", "1.24.13")
	const own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	body := get(t, "http://"+p.a.Addr+"/call-own-traceparent?url="+url.QueryEscape("http://"+p.b.Addr+"/echo-traceparent"), nil)
	if body != own {
		t.Errorf("B saw %q, want the app's own %q", body, own)
	}
	spans := p.next(t, 3)
	if c := p.s.Targets[0].Counters()[httpclient.Instrumentor.ID]; p.inject && (c.Extra[1] != 1 || c.Extra[0] != 0) {
		t.Errorf("counters %+v: want 1 kept, 0 injected", c)
	}
	// On the wire, uranus's client span joins the app's context: B's
	// server span and it share the app's trace, as children of its span.
	if mode, _ := p.s.Attacher.Propagation(); mode == attach.PropagationNetwork {
		for _, s := range spans {
			if s.SpanKind == trace.SpanKindServer && pid(s) == p.aPID {
				continue
			}
			if s.SpanContext.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" || s.Parent.SpanID().String() != "b7ad6b7169203331" {
				t.Errorf("%v span of pid %s in trace %s with parent %s; want the app's trace and span", s.SpanKind, pid(s), s.SpanContext.TraceID(), s.Parent.SpanID())
			}
		}
	}
}

// TestClientErrors: refused connections and timeouts are error spans with
// error.type; credentials and query values never reach url.full; nothing
// is lost: every request is one span.
func TestClientErrors(t *testing.T) {
	e2e.RequireBPF(t)
	for _, v := range []string{"1.13.15", "1.20.14", "1.27.4"} {
		t.Run(v, func(t *testing.T) {
			p := startPair(t, v, v)
			cases := []struct {
				path, target, errType, full string
			}{
				{"/call", "http://127.0.0.1:1/", "*net.OpError", "http://127.0.0.1:1/"},
				{"/call-timeout", "http://" + p.b.Addr + "/sleep?ms=400&token=secret", "", "http://" + p.b.Addr + "/sleep?ms=REDACTED&token=REDACTED"},
				{"/call", "http://user:pw@" + p.b.Addr + "/echo-traceparent?q", "", "http://REDACTED:REDACTED@" + p.b.Addr + "/echo-traceparent?q"},
			}
			for _, c := range cases {
				get(t, "http://"+p.a.Addr+c.path+"?url="+url.QueryEscape(c.target), nil)
				want := 2
				if !strings.Contains(c.target, ":1/") {
					want = 3 // B answered (late, for the timeout)
				}
				var client *tracetest.SpanStub
				for _, s := range p.next(t, want) {
					if s.SpanKind == trace.SpanKindClient {
						s := s
						client = &s
					}
				}
				if client == nil {
					t.Fatalf("%s: no client span", c.target)
				}
				if got := attr(*client, "url.full"); got != c.full {
					t.Errorf("url.full = %q, want %q", got, c.full)
				}
				if c.path == "/call-timeout" || c.errType != "" {
					typ := attr(*client, "error.type")
					if client.Status.Code != codes.Error || typ == "" || typ == "_OTHER" || (c.errType != "" && typ != c.errType) {
						t.Errorf("%s: status %v, error.type %q; want an error span typed %q", c.target, client.Status.Code, typ, c.errType)
					}
				}
			}
		})
	}
}

// TestGoroutineInheritance on every version: the newproc1 probe differs
// before 1.16 (no result), in 1.16 (stack ABI) and after (registers).
func TestGoroutineInheritance(t *testing.T) {
	e2e.RequireBPF(t)
	for _, v := range e2e.TestVersions() {
		t.Run("go"+v, func(t *testing.T) {
			a := e2e.Start(t, e2e.BuildTarget(t, "relay", v, testapp.Options{}))
			s := e2e.AttachNoInject(t, all, a.Cmd.Process.Pid)
			get(t, "http://"+a.Addr+"/call-go-go?url="+url.QueryEscape("http://"+a.Addr+"/sleep"), nil)
			spans := s.WaitSpans(3)
			var outer, client tracetest.SpanStub
			for _, sp := range spans {
				switch {
				case sp.SpanKind == trace.SpanKindClient:
					client = sp
				case attr(sp, "url.path") == "/call-go-go":
					outer = sp
				}
			}
			if client.Parent.SpanID() != outer.SpanContext.SpanID() || client.SpanContext.TraceID() != outer.SpanContext.TraceID() {
				t.Errorf("client span (two goroutines away) has parent %s, want the handler's span %s", client.Parent.SpanID(), outer.SpanContext.SpanID())
			}
			if c := s.Targets[0].Counters()[goroutines.Instrumentor.ID]; c.Extra[0] < 2 {
				t.Errorf("goroutines counters %+v: want at least 2 inheritances", c)
			}
		})
	}
}

// TestSampling: OTEL_TRACES_SAMPLER=parentbased_traceidratio with ratio 0
// drops every trace that starts here — in the kernel, counted, before it
// costs a ring-buffer record — but a caller's sampled flag is honoured,
// down to the client spans, and its unsampled flag too.
func TestSampling(t *testing.T) {
	e2e.RequireBPF(t)
	t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
	t.Setenv("OTEL_TRACES_SAMPLER_ARG", "0")
	p := startPair(t, "1.24.13", "1.24.13")
	call := "http://" + p.a.Addr + "/call?url=" + url.QueryEscape("http://"+p.b.Addr+"/echo-traceparent")
	const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	get(t, call, nil)
	get(t, call, map[string]string{"Traceparent": "00-" + tid + "-00f067aa0ba902b7-00"})
	get(t, call, map[string]string{"Traceparent": "00-" + tid + "-00f067aa0ba902b7-01"})
	want := 2 // A's server and client spans of the sampled request
	if p.inject {
		want = 3 // and B's, which follows the injected sampled flag
	}
	for _, s := range p.next(t, want) {
		if s.SpanContext.TraceID().String() != tid || !s.SpanContext.IsSampled() {
			t.Errorf("%v span of pid %s in trace %s exported; only the sampled caller's trace should be", s.SpanKind, pid(s), s.SpanContext.TraceID())
		}
	}
	c := p.s.Targets[0].Counters()
	if got := c[httpserver.Instrumentor.ID].Unsampled + c[httpclient.Instrumentor.ID].Unsampled; got != 4 {
		t.Errorf("A dropped %d unsampled spans in the kernel, want 4 (server and client of two requests)", got)
	}
}

// TestDefaultNesting runs the default instrumentors (no goroutines probe):
// a server request costs 2 hits, and from Go 1.21 (g.parentGoid) a call
// one goroutine away from the handler still nests, at no cost; deeper ones
// and older versions need --instrument goroutines.
func TestDefaultNesting(t *testing.T) {
	e2e.RequireBPF(t)
	for _, c := range []struct {
		version       string
		oneLevelNests bool
		twoLevelsNest bool
	}{
		{"1.20.14", false, false},
		{"1.21.13", true, false},
		{"1.27.4", true, false},
	} {
		t.Run(c.version, func(t *testing.T) {
			a := e2e.Start(t, e2e.BuildTarget(t, "relay", c.version, testapp.Options{}))
			s := e2e.AttachNoInject(t, []*instrumentors.Instrumentor{httpserver.Instrumentor, httpclient.Instrumentor}, a.Cmd.Process.Pid)
			sleep := url.QueryEscape("http://" + a.Addr + "/sleep")
			received := 0
			for _, path := range []string{"/call-go", "/call-go-go"} {
				get(t, "http://"+a.Addr+path+"?url="+sleep, nil)
				spans := s.WaitSpans(received + 3)[received:]
				received += 3
				var outer, client tracetest.SpanStub
				for _, sp := range spans {
					switch {
					case sp.SpanKind == trace.SpanKindClient:
						client = sp
					case attr(sp, "url.path") == path:
						outer = sp
					}
				}
				nested := client.Parent.SpanID() == outer.SpanContext.SpanID()
				want := c.oneLevelNests
				if path == "/call-go-go" {
					want = c.twoLevelsNest
				}
				if nested != want {
					t.Errorf("%s: client span nested under the handler = %v, want %v", path, nested, want)
				}
				if !nested && client.Parent.IsValid() {
					t.Errorf("%s: client span has a parent %s that is not the handler's", path, client.Parent.SpanID())
				}
			}
			// The server's two hits per request: /sleep twice, /call-go,
			// /call-go-go: four requests.
			if c := s.Targets[0].Counters()[httpserver.Instrumentor.ID]; c.Entry != 4 || c.Return != 4 {
				t.Errorf("server counters %+v: want 4 entries and 4 returns", c)
			}
		})
	}
}
