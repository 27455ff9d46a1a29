package httpserver_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/instrumentors/httpserver"
	"github.com/uranus-otel/uranus/internal/e2e"
	"github.com/uranus-otel/uranus/internal/testapp"
)

// h2Versions are the toolchains TestHTTP2Server builds servers with: the
// stack ABI, the register ABI before and after swiss maps, the last release
// with HTTP/2 bundled into net/http and the first with it in
// net/http/internal/http2. URANUS_GO_VERSIONS overrides them.
func h2Versions() []string {
	if os.Getenv("URANUS_GO_VERSIONS") != "" {
		return e2e.TestVersions()
	}
	return []string{"1.16.15", "1.21.13", "1.24.13", "1.26.8", "1.27.4"}
}

// TestHTTP2Server hits servers over HTTP/2 — over TLS (ALPN h2) and, from
// Go 1.24, without TLS (h2c with prior knowledge) — with a Go client and
// with curl, and checks that every request gets one span with the status
// the server sent: 500 an error, 404 not, and no made-up 200.
func TestHTTP2Server(t *testing.T) {
	e2e.RequireBPF(t)
	for _, v := range h2Versions() {
		t.Run("go"+v+"-tls", func(t *testing.T) { testHTTP2(t, v, false) })
		if minor(v) >= 24 {
			t.Run("go"+v+"-h2c", func(t *testing.T) { testHTTP2(t, v, true) })
		}
	}
}

// h2sent is one request as its client saw it.
type h2sent struct {
	path       string
	status     int
	proto      int    // the response's ProtoMajor
	clientPort int    // 0 when the client (curl) does not say
	parent     string // span ID sent in traceparent
}

// h2client sends requests over one HTTP/2 connection and records the
// connection's local port for each.
type h2client struct {
	t      *testing.T
	base   string
	c      *http.Client
	trace  trace.TraceID
	mu     sync.Mutex
	nextID int
}

func newH2Client(t *testing.T, addr string, h2c bool) *h2client {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: true, // a custom TLSClientConfig turns HTTP/2 off otherwise
	}
	base := "https://" + addr
	if h2c {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		tr.Protocols = &p
		base = "http://" + addr
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &h2client{t: t, base: base, c: &http.Client{Transport: tr}, trace: trace.TraceID{0x2a, 0x11}}
}

// parent returns a new traceparent: this test's trace ID and a span ID that
// names the request.
func (h *h2client) parent() (header, spanID string) {
	h.mu.Lock()
	h.nextID++
	id := h.nextID
	h.mu.Unlock()
	spanID = fmt.Sprintf("%016x", 0xab0000+id)
	return fmt.Sprintf("00-%s-%s-01", h.trace, spanID), spanID
}

func (h *h2client) get(path string) h2sent {
	tp, spanID := h.parent()
	req, _ := http.NewRequest("GET", h.base+path, nil)
	req.Header.Set("traceparent", tp)
	var port int
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(ci httptrace.GotConnInfo) { port = ci.Conn.LocalAddr().(*net.TCPAddr).Port },
	}))
	resp, err := h.c.Do(req)
	if err != nil {
		h.t.Errorf("GET %s: %v", path, err)
		return h2sent{path: path, parent: spanID}
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return h2sent{path: path, status: resp.StatusCode, proto: resp.ProtoMajor, clientPort: port, parent: spanID}
}

// curl sends one request with curl --http2 (TLS) or --http2-prior-knowledge
// (h2c), when curl is installed.
func (h *h2client) curl(path string, h2c bool) (h2sent, bool) {
	bin, err := exec.LookPath("curl")
	if err != nil {
		return h2sent{}, false
	}
	tp, spanID := h.parent()
	mode := []string{"--http2", "-k"}
	if h2c {
		mode = []string{"--http2-prior-knowledge"}
	}
	args := append(mode, "-sS", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", "-H", "traceparent: "+tp, h.base+path)
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		h.t.Errorf("curl %v: %v: %s", args, err, out)
		return h2sent{}, false
	}
	var s h2sent
	var httpVersion string
	if _, err := fmt.Sscanf(string(out), "%d %s", &s.status, &httpVersion); err != nil {
		h.t.Errorf("curl printed %q: %v", out, err)
		return h2sent{}, false
	}
	if httpVersion == "2" {
		s.proto = 2
	}
	s.path, s.parent = path, spanID
	return s, true
}

func testHTTP2(t *testing.T, version string, h2c bool) {
	bin := e2e.BuildTarget(t, "httpserver", version, testapp.Options{})
	flag := "-tls"
	if h2c {
		flag = "-h2c"
	}
	proc := e2e.Start(t, bin, flag)
	s := e2e.Attach(t, []*instrumentors.Instrumentor{httpserver.Instrumentor}, proc.Cmd.Process.Pid)
	h := newH2Client(t, proc.Addr, h2c)

	var reqs []h2sent
	for _, p := range []string{"/status/500", "/status/404", "/hello", "/silent", "/status/503"} {
		reqs = append(reqs, h.get(p))
	}
	// Ten streams at once on the connection the requests above opened.
	concurrent := make([]h2sent, 10)
	var wg sync.WaitGroup
	for i := range concurrent {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			concurrent[i] = h.get(fmt.Sprintf("/sleep/%d", 20+i))
		}(i)
	}
	wg.Wait()
	reqs = append(reqs, concurrent...)
	port := reqs[0].clientPort
	for _, r := range reqs {
		if r.proto != 2 {
			t.Fatalf("GET %s: the client got HTTP/%d, not HTTP/2; the test cannot check HTTP/2 spans", r.path, r.proto)
		}
		if r.clientPort != port {
			t.Errorf("GET %s went over the connection from port %d, want every request on one connection (port %d)", r.path, r.clientPort, port)
		}
	}
	for _, p := range []string{"/status/500", "/status/404"} {
		if r, ok := h.curl(p, h2c); ok {
			if r.proto != 2 {
				t.Errorf("curl %s: HTTP version not 2", p)
			}
			reqs = append(reqs, r)
		}
	}

	spans := s.WaitSpans(len(reqs))
	if len(spans) != len(reqs) {
		t.Errorf("got %d spans for %d requests", len(spans), len(reqs))
	}
	t.Logf("%d HTTP/2 requests (%d by curl), %d spans", len(reqs), len(reqs)-15, len(spans))
	byParent := map[string]tracetest.SpanStub{}
	for _, sp := range spans {
		if sp.Parent.TraceID() != h.trace {
			t.Errorf("span %q: parent trace %v, want the caller's %v", sp.Name, sp.Parent.TraceID(), h.trace)
			continue
		}
		id := sp.Parent.SpanID().String()
		if _, dup := byParent[id]; dup {
			t.Errorf("two spans for the request with parent %s", id)
		}
		byParent[id] = sp
	}
	scheme := "https"
	if h2c {
		scheme = "http"
	}
	for _, r := range reqs {
		sp, ok := byParent[r.parent]
		if !ok {
			t.Errorf("GET %s: no span with parent %s", r.path, r.parent)
			continue
		}
		a := attrs(sp)
		check := func(key attribute.Key, want any) {
			t.Helper()
			got, ok := a[key]
			if !ok {
				t.Errorf("GET %s: span lacks %s (attributes %v)", r.path, key, sp.Attributes)
				return
			}
			if fmt.Sprint(got.AsInterface()) != fmt.Sprint(want) {
				t.Errorf("GET %s: %s = %v, want %v", r.path, key, got.AsInterface(), want)
			}
		}
		check("http.request.method", "GET")
		check("url.path", r.path)
		check("url.scheme", scheme)
		check("http.response.status_code", r.status)
		check("network.protocol.version", "2")
		check("client.address", "127.0.0.1")
		if r.clientPort != 0 {
			check("client.port", r.clientPort)
		}
		if u, ok := a[instrumentors.UnreportedKey]; ok {
			t.Errorf("GET %s: span says %v cannot be reported", r.path, u.AsStringSlice())
		}
		if sp.SpanKind != trace.SpanKindServer {
			t.Errorf("GET %s: kind %v", r.path, sp.SpanKind)
		}
		if r.status >= 500 {
			if sp.Status.Code != codes.Error {
				t.Errorf("GET %s: span status %v, want Error for %d", r.path, sp.Status.Code, r.status)
			}
		} else if sp.Status.Code == codes.Error {
			t.Errorf("GET %s: span status Error for %d", r.path, r.status)
		}
	}
	if strings.Contains(s.Log.String(), "cannot report") {
		t.Errorf("attach warned that a value cannot be reported:\n%s", s.Log.String())
	}
	assertCounters(t, s, len(reqs))
}

// TestHTTP2StatusUnreported is the rule "no silent absence" end to end: an
// instrumentor that knows HTTP/2's members only by their names before Go
// 1.27 (as uranus did when 1.27 moved them) attaches to a 1.27 server. Attach
// must warn, HTTP/2 spans must carry no status code and say so — a 500 not
// disguised as a 200 — and HTTP/1.1 spans, whose members are known, keep
// theirs.
func TestHTTP2StatusUnreported(t *testing.T) {
	e2e.RequireBPF(t)
	const version = "1.27.4"
	stale := *httpserver.Instrumentor
	stale.Consts = nil
	for _, c := range httpserver.Instrumentor.Consts {
		c.Or = nil
		stale.Consts = append(stale.Consts, c)
	}
	bin := e2e.BuildTarget(t, "httpserver", version, testapp.Options{})
	proc := e2e.Start(t, bin, "-tls")
	s := e2e.Attach(t, []*instrumentors.Instrumentor{&stale}, proc.Cmd.Process.Pid)
	if log := s.Log.String(); !strings.Contains(log, "cannot report") || !strings.Contains(log, "http.response.status_code of HTTP/2 requests") {
		t.Errorf("attach did not warn that HTTP/2 status codes cannot be reported; log:\n%s", log)
	}

	h2 := newH2Client(t, proc.Addr, false)
	h1tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // no ForceAttemptHTTP2: HTTP/1.1
	t.Cleanup(h1tr.CloseIdleConnections)
	h1 := &h2client{t: t, base: h2.base, c: &http.Client{Transport: h1tr}, trace: h2.trace}
	h1.nextID = 100
	var reqs []h2sent
	for _, c := range []*h2client{h2, h1} {
		for _, p := range []string{"/status/500", "/status/404", "/hello"} {
			reqs = append(reqs, c.get(p))
		}
	}
	spans := s.WaitSpans(len(reqs))
	if len(spans) != len(reqs) {
		t.Errorf("got %d spans for %d requests", len(spans), len(reqs))
	}
	byParent := map[string]tracetest.SpanStub{}
	for _, sp := range spans {
		byParent[sp.Parent.SpanID().String()] = sp
	}
	for _, r := range reqs {
		sp, ok := byParent[r.parent]
		if !ok {
			t.Errorf("GET %s over HTTP/%d: no span", r.path, r.proto)
			continue
		}
		a := attrs(sp)
		code, hasCode := a["http.response.status_code"]
		unreported := a[instrumentors.UnreportedKey].AsStringSlice()
		switch r.proto {
		case 2:
			if hasCode {
				t.Errorf("GET %s over HTTP/2: status code %d, want none (this instrumentor cannot read it)", r.path, code.AsInt64())
			}
			if len(unreported) != 1 || unreported[0] != "http.response.status_code" {
				t.Errorf("GET %s over HTTP/2: %s = %v, want [http.response.status_code]", r.path, instrumentors.UnreportedKey, unreported)
			}
			if sp.Status.Code == codes.Error {
				t.Errorf("GET %s over HTTP/2: span status Error without a known status", r.path)
			}
		case 1:
			if !hasCode || int(code.AsInt64()) != r.status {
				t.Errorf("GET %s over HTTP/1.1: status code %v (present %v), want %d", r.path, code.AsInt64(), hasCode, r.status)
			}
			if len(unreported) != 0 {
				t.Errorf("GET %s over HTTP/1.1: %s = %v", r.path, instrumentors.UnreportedKey, unreported)
			}
			if (sp.Status.Code == codes.Error) != (r.status >= 500) {
				t.Errorf("GET %s over HTTP/1.1: span status %v for %d", r.path, sp.Status.Code, r.status)
			}
		default:
			t.Errorf("GET %s: the client got HTTP/%d", r.path, r.proto)
		}
	}
}
