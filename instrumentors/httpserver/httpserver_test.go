package httpserver_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/instrumentors/httpserver"
	"github.com/uranus-otel/uranus/internal/e2e"
	"github.com/uranus-otel/uranus/internal/testapp"
)

// sent is one request as the client saw it.
type sent struct {
	method, path string
	status       int
	clientPort   int
	start, end   time.Time
}

// client records each connection's local port so spans can be matched to
// the request that caused them by client.port.
func client() (*http.Client, func() int) {
	var mu sync.Mutex
	var last int
	d := &net.Dialer{}
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				mu.Lock()
				last = c.LocalAddr().(*net.TCPAddr).Port
				mu.Unlock()
			}
			return c, err
		},
	}
	return &http.Client{Transport: tr}, func() int { mu.Lock(); defer mu.Unlock(); return last }
}

func do(t *testing.T, c *http.Client, port func() int, method, url string) sent {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(""))
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	end := time.Now()
	return sent{method: method, path: req.URL.Path, status: resp.StatusCode, clientPort: port(), start: start, end: end}
}

func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestServerSpans(t *testing.T) {
	e2e.RequireBPF(t)
	for _, v := range e2e.TestVersions() {
		for _, stripped := range []bool{false, true} {
			opts := testapp.Options{Stripped: stripped}
			t.Run("go"+v+"-"+opts.String(), func(t *testing.T) {
				testServerSpans(t, v, opts)
			})
		}
	}
}

func minor(v string) int {
	var a, b int
	fmt.Sscanf(v, "%d.%d", &a, &b)
	return b
}

func testServerSpans(t *testing.T, version string, opts testapp.Options) {
	bin := e2e.BuildTarget(t, "httpserver", version, opts)
	proc := e2e.Start(t, bin)
	s := e2e.Attach(t, []*instrumentors.Instrumentor{httpserver.Instrumentor}, proc.Cmd.Process.Pid)
	base := "http://" + proc.Addr

	c, port := client()
	var reqs []sent
	reqs = append(reqs,
		do(t, c, port, "GET", base+"/hello"),
		do(t, c, port, "POST", base+"/hello"),
		do(t, c, port, "GET", base+"/status/503"),
		do(t, c, port, "GET", base+"/status/404"),
		do(t, c, port, "GET", base+"/silent"),
		do(t, c, port, "DELETE", base+"/users/42"),
		do(t, c, port, "GET", base+"/users/42"),
		do(t, c, port, "GET", base+"/sleep/30"),
		do(t, c, port, "GET", base+"/no/such/page"),
	)
	spans := s.WaitSpans(len(reqs))
	if len(spans) != len(reqs) {
		t.Fatalf("got %d spans for %d requests", len(spans), len(reqs))
	}
	byPort := map[int]tracetest.SpanStub{}
	for _, sp := range spans {
		port, ok := attrs(sp)["client.port"]
		if !ok {
			t.Fatalf("span %q has no client.port: %v", sp.Name, sp.Attributes)
		}
		byPort[int(port.AsInt64())] = sp
	}
	hasPatterns := minor(version) >= 22
	for _, r := range reqs {
		sp, ok := byPort[r.clientPort]
		if !ok {
			t.Errorf("%s %s: no span with client.port %d", r.method, r.path, r.clientPort)
			continue
		}
		a := attrs(sp)
		check := func(key attribute.Key, want any) {
			t.Helper()
			got, ok := a[key]
			if !ok {
				t.Errorf("%s %s: span lacks %s", r.method, r.path, key)
				return
			}
			if fmt.Sprint(got.AsInterface()) != fmt.Sprint(want) {
				t.Errorf("%s %s: %s = %v, want %v", r.method, r.path, key, got.AsInterface(), want)
			}
		}
		check("http.request.method", r.method)
		check("url.path", r.path)
		check("url.scheme", "http")
		check("http.response.status_code", r.status)
		check("client.address", "127.0.0.1")
		check("network.protocol.version", "1.1")
		check("server.address", "127.0.0.1")
		if sp.SpanKind != trace.SpanKindServer {
			t.Errorf("%s %s: kind %v", r.method, r.path, sp.SpanKind)
		}
		wantRoute := ""
		if hasPatterns {
			switch {
			case r.path == "/users/42" && r.method == "GET":
				wantRoute = "/users/{id}"
			case r.path == "/hello":
				wantRoute = "/hello"
			case strings.HasPrefix(r.path, "/status/"):
				wantRoute = "/status/"
			}
		}
		if wantRoute != "" {
			check("http.route", wantRoute)
			if want := r.method + " " + wantRoute; sp.Name != want {
				t.Errorf("%s %s: span name %q, want %q", r.method, r.path, sp.Name, want)
			}
		} else if !hasPatterns && sp.Name != r.method {
			t.Errorf("%s %s: span name %q, want %q", r.method, r.path, sp.Name, r.method)
		}
		if r.status >= 500 {
			if sp.Status.Code != codes.Error {
				t.Errorf("%s %s: status %v, want Error for %d", r.method, r.path, sp.Status.Code, r.status)
			}
		} else if sp.Status.Code == codes.Error {
			t.Errorf("%s %s: status Error for %d", r.method, r.path, r.status)
		}
		// The span lies within what the client measured (1ms of slack for
		// converting the kernel's monotonic clock to wall time).
		const slack = time.Millisecond
		if sp.StartTime.Before(r.start.Add(-slack)) || sp.EndTime.After(r.end.Add(slack)) || sp.EndTime.Before(sp.StartTime) {
			t.Errorf("%s %s: span [%v, %v] outside the request [%v, %v]", r.method, r.path,
				sp.StartTime.Format(time.StampMicro), sp.EndTime.Format(time.StampMicro),
				r.start.Format(time.StampMicro), r.end.Format(time.StampMicro))
		}
		if r.path == "/sleep/30" && sp.EndTime.Sub(sp.StartTime) < 30*time.Millisecond {
			t.Errorf("GET /sleep/30: span lasted %v, the handler sleeps 30ms", sp.EndTime.Sub(sp.StartTime))
		}
		if sp.Parent.IsValid() {
			t.Errorf("%s %s: a request without traceparent got parent %v", r.method, r.path, sp.Parent.SpanID())
		}
	}
	ids := map[trace.TraceID]bool{}
	for _, sp := range spans {
		ids[sp.SpanContext.TraceID()] = true
	}
	if len(ids) != len(spans) {
		t.Errorf("%d spans share %d trace ids; each request is its own trace", len(spans), len(ids))
	}
	assertCounters(t, s, len(reqs))
}

// assertCounters checks the programs' own counters: 2 hits per request,
// nothing lost.
func assertCounters(t *testing.T, s *e2e.Session, requests int) {
	t.Helper()
	c := s.Targets[0].Counters()[httpserver.Instrumentor.ID]
	if c.Entry != uint64(requests) || c.Return != uint64(requests) || c.Events != uint64(requests) {
		t.Errorf("counters %+v: want %d entries, returns and events", c, requests)
	}
	if c.RingbufFull != 0 || c.NoEntry != 0 || c.InflightFull != 0 || c.ReadError != 0 {
		t.Errorf("counters %+v: want no losses or read errors", c)
	}
}

// TestConcurrentRequests sends requests on many connections at once: each
// span must carry its own request's path, so entry and return pair per
// goroutine.
func TestConcurrentRequests(t *testing.T) {
	e2e.RequireBPF(t)
	for _, v := range []string{"1.16.15", "1.27.4"} {
		t.Run("go"+v, func(t *testing.T) {
			bin := e2e.BuildTarget(t, "httpserver", v, testapp.Options{})
			proc := e2e.Start(t, bin)
			s := e2e.Attach(t, []*instrumentors.Instrumentor{httpserver.Instrumentor}, proc.Cmd.Process.Pid)
			const workers, each = 8, 25
			var wg sync.WaitGroup
			var mu sync.Mutex
			var want []string
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					c := &http.Client{}
					for i := 0; i < each; i++ {
						path := fmt.Sprintf("/echo/w%d/r%d", w, i)
						resp, err := c.Get("http://" + proc.Addr + path)
						if err != nil {
							t.Error(err)
							return
						}
						body, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if string(body) != path {
							t.Errorf("response body %q, want %q: the target misbehaved", body, path)
						}
						mu.Lock()
						want = append(want, path)
						mu.Unlock()
					}
				}(w)
			}
			wg.Wait()
			spans := s.WaitSpans(len(want))
			var got []string
			for _, sp := range spans {
				got = append(got, attrs(sp)["url.path"].AsString())
			}
			sort.Strings(got)
			sort.Strings(want)
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("span paths differ from request paths:\n got %v\nwant %v", got, want)
			}
			assertCounters(t, s, len(want))
		})
	}
}
