package all_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/attach"
	ubinary "github.com/uranus-otel/uranus/binary"
	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/instrumentors/all"
	"github.com/uranus-otel/uranus/instrumentors/funcs"
	"github.com/uranus-otel/uranus/instrumentors/gotls"
	"github.com/uranus-otel/uranus/internal/e2e"
	"github.com/uranus-otel/uranus/internal/testapp"
	"github.com/uranus-otel/uranus/offsets"
)

// TestVersionProof is the version-proofing test: for every Go release
// uranus supports it builds one program (testdata/versionproof) that
// serves HTTP/1.1, HTTP/2 over TLS and, from Go 1.24, h2c; calls itself
// with net/http's client over HTTP/1.1, HTTP/1.1 over TLS, HTTP/2 and h2c;
// handshakes TLS on both sides; and calls a function traced with --func.
//
// It checks that every instrumentor, those off by default included, finds
// every symbol it probes and every member it reports in that release (in
// its plan, and in attach's own), then runs uranus as it runs by default
// plus --func, and checks every span: one per request, call, handshake and
// function call, each with the method, path, protocol version, status and
// TLS parameters the peers saw, in the right trace, and none saying that a
// value cannot be reported.
func TestVersionProof(t *testing.T) {
	e2e.RequireBPF(t)
	for _, v := range e2e.TestVersions() {
		t.Run("go"+v, func(t *testing.T) { testVersionProof(t, v) })
	}
}

// vpMixSpec is the --func argument: the sample's Mix with its signature, so
// that Go 1.17, whose DWARF has no results, records the result too.
const vpMixSpec = "main.Mix(key string, n int) int"

func testVersionProof(t *testing.T, version string) {
	spec, err := funcs.ParseFunc(vpMixSpec)
	if err != nil {
		t.Fatal(err)
	}
	r := &vpRun{t: t, version: version, minor: vpMinor(version), mix: []funcs.Spec{spec}, conns: map[int]vpTLS{}}
	r.trace = trace.TraceID{0x7e, 0x57, 0x0f, byte(r.minor)}
	bin := e2e.BuildTarget(t, "versionproof", version, testapp.Options{})
	r.checkPlans(bin)
	r.start(bin)
	r.drive()

	want := len(r.servers()) + 2*len(r.fetches) + len(r.mixes) + len(r.conns) + 2*r.tlsFetches()
	spans := r.s.WaitSpans(want)
	if len(spans) != want {
		t.Errorf("Go %s: %d spans, want %d: %d server spans for the test's requests, a client and a server span for each of "+
			"the sample's %d calls, %d function spans, %d server handshakes for the test's TLS connections and 2 handshakes for each "+
			"of the sample's %d calls over TLS; got %s",
			version, len(spans), want, len(r.servers()), len(r.fetches), len(r.mixes), len(r.conns), r.tlsFetches(), spanNames(spans))
	}
	// No span may say that a value cannot be reported, or is incomplete.
	for _, sp := range spans {
		for _, k := range []attribute.Key{instrumentors.UnreportedKey, "uranus.not_recorded", "uranus.incomplete"} {
			if v, ok := vpAttrs(sp)[k]; ok {
				t.Errorf("Go %s: span %q (%v) has %s = %s", version, sp.Name, sp.SpanKind, k, v.String())
			}
		}
	}
	var servers, clients, serverHS, clientHS, fns []tracetest.SpanStub
	for _, sp := range spans {
		switch {
		case sp.Name == "TLS server handshake":
			serverHS = append(serverHS, sp)
		case sp.Name == "TLS client handshake":
			clientHS = append(clientHS, sp)
		case sp.SpanKind == trace.SpanKindServer:
			servers = append(servers, sp)
		case sp.SpanKind == trace.SpanKindClient:
			clients = append(clients, sp)
		case sp.Name == "main.Mix":
			fns = append(fns, sp)
		default:
			t.Errorf("Go %s: a span no call explains: %q %v", version, sp.Name, sp.Attributes)
		}
	}
	byParent, targets := r.checkServers(servers)
	byURL := r.checkClients(clients, byParent, targets)
	r.checkHandshakes(serverHS, clientHS, byURL)
	r.checkFuncs(fns, byParent)

	// Nothing warned, nothing lost.
	if strings.Contains(r.s.Log.String(), "cannot report") {
		t.Errorf("Go %s: attach warned that a value cannot be reported:\n%s", version, r.s.Log.String())
	}
	if strings.Contains(r.funcLog.String(), "level=WARN") {
		t.Errorf("Go %s: the funcs instrumentor warned:\n%s", version, r.funcLog.String())
	}
	for id, c := range r.s.Targets[0].Counters() {
		if c.RingbufFull != 0 || c.NoEntry != 0 || c.InflightFull != 0 || c.ReadError != 0 {
			t.Errorf("Go %s: %s counters %+v: want no losses and no failed reads", version, id, c)
		}
	}
	t.Logf("Go %s: %d spans: %d server, %d client, %d server and %d client handshakes, %d function",
		version, len(spans), len(servers), len(clients), len(serverHS), len(clientHS), len(fns))
}

// vpRun is the test of one Go version.
type vpRun struct {
	t       *testing.T
	version string
	minor   int
	mix     []funcs.Spec

	proc          *e2e.Proc
	plain, secure string // the sample's listeners: HTTP (and h2c), HTTPS
	h2c           bool
	s             *e2e.Session
	funcLog       *vpLog
	propagation   attach.Propagation

	trace  trace.TraceID // of every request the test sends
	nextID byte
	conns  map[int]vpTLS // the test's TLS connections, by local port

	direct  []vpRequest
	fetches []vpFetch
	mixes   []vpMix
}

// vpRequest is one HTTP request as its client saw it: what its server
// span must say.
type vpRequest struct {
	what       string // for messages
	method     string
	path       string
	scheme     string
	host       string // host:port requested
	proto      string // network.protocol.version: "1.1" or "2"
	status     int
	tls        vpTLS        // zero without TLS
	clientPort int          // 0 when the client does not say
	parent     trace.SpanID // sent in traceparent; zero for none
}

// vpTLS is a TLS connection as a peer saw it.
type vpTLS struct {
	version, cipher uint16
	alpn            string
}

func (s vpTLS) String() string {
	_, v := gotls.VersionName(s.version)
	return fmt.Sprintf("TLS %s %s ALPN %q", v, tls.CipherSuiteName(s.cipher), s.alpn)
}

// vpFetch is one call the sample made as a client, at the test's request.
type vpFetch struct {
	via    vpRequest // the test's GET /fetch
	url    string
	target vpRequest // the call, as the sample's client saw it
}

// vpMix is one call of Mix.
type vpMix struct {
	via    vpRequest // the request whose handler called it
	key    string
	n      int
	result string
}

// checkPlans plans every instrumentor uranus has, the ones off by default
// included, for the sample.
func (r *vpRun) checkPlans(bin string) {
	t := r.t
	exe, err := ubinary.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer exe.Close()
	table, err := offsets.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	// The registry as uranus --func main.Mix… configures it.
	var named []any
	for _, s := range r.mix {
		named = append(named, s)
	}
	list, _, err := instrumentors.Configure(all.List, map[string]instrumentors.Settings{funcs.ID: {"func": named}},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	plans, err := attach.MakePlans(exe, list, table)
	if err != nil {
		t.Fatalf("planning for Go %s: %v", r.version, err)
	}
	r.checkVPPlans("plan", plans)
}

// checkVPPlans fails for every instrumentor that would not attach, every
// symbol it probes that the binary lacks (optional ones too: the sample
// does everything they serve) and every value it could not report. The
// sample is the standard library's: what instrumentors probe in modules
// outside it (golang.org/x/net's HTTP/2) is tested with programs that link
// them.
func (r *vpRun) checkVPPlans(stage string, plans []attach.Plan) {
	t := r.t
	t.Helper()
	for _, p := range plans {
		if p.Skip != "" {
			if p.NotLinked && p.Inst.Module != "" {
				continue
			}
			t.Errorf("%s, Go %s: %s does not attach: %s", stage, r.version, p.Inst.ID, p.Skip)
			continue
		}
		for _, pr := range p.Probes {
			if pr.Func == nil && !stdSymbol(pr.Symbol) {
				continue
			}
			if pr.Func == nil {
				t.Errorf("%s, Go %s: %s probes %s, which the binary lacks", stage, r.version, p.Inst.ID, pr.Symbol)
			}
		}
		for _, u := range p.Unreported {
			t.Errorf("%s, Go %s: %s cannot report %s", stage, r.version, p.Inst.ID, u)
		}
	}
}

// start runs the sample and attaches uranus as it runs by default, with
// --func main.Mix.
func (r *vpRun) start(bin string) {
	t := r.t
	r.proc = e2e.Start(t, bin)
	r.plain = r.proc.Addr
	for _, line := range strings.Split(r.proc.Output(), "\n") {
		if a, ok := strings.CutPrefix(line, "tls on "); ok {
			r.secure = a
		}
		r.h2c = r.h2c || line == "h2c true"
	}
	if r.secure == "" {
		t.Fatalf("the sample did not print its TLS address:\n%s", r.proc.Output())
	}
	if r.h2c != (r.minor >= 24) {
		t.Fatalf("Go %s: the sample serves h2c: %v; it should from Go 1.24 (http.Server.Protocols)", r.version, r.h2c)
	}
	var list []*instrumentors.Instrumentor
	for _, in := range all.List {
		// A library outside the standard library (gRPC-Go) is not in
		// this sample: its own tests run programs that link it.
		if !in.OffByDefault && in.Module == "" {
			list = append(list, in)
		}
	}
	r.funcLog = &vpLog{t: t}
	list = append(list, funcs.New(r.mix, slog.New(slog.NewTextHandler(r.funcLog, nil))))
	r.s = e2e.Attach(t, list, r.proc.Cmd.Process.Pid)
	tg := r.s.Targets[0]
	r.checkVPPlans("attach", tg.Plans)
	attached := tg.Attached()
	for _, in := range list {
		if attached[in.ID] == 0 {
			t.Errorf("Go %s: %s attached at no probe site", r.version, in.ID)
		}
	}
	var why string
	r.propagation, why = r.s.Attacher.Propagation()
	t.Logf("Go %s: attached %v; propagation %s (%s)", r.version, attached, r.propagation, why)
}

// vpChannel is one way the test sends requests to the sample.
type vpChannel struct {
	name   string
	scheme string
	addr   string
	proto  string // the protocol every request must go over
	client *http.Client
}

func newVPChannel(t *testing.T, name, scheme, addr, proto string) *vpChannel {
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	switch name {
	case "h2-tls":
		tr.ForceAttemptHTTP2 = true // a Transport with its own TLS settings speaks HTTP/1.1 otherwise
	case "h2c":
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		tr.Protocols = &p
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &vpChannel{name: name, scheme: scheme, addr: addr, proto: proto, client: &http.Client{Transport: tr}}
}

// drive sends the test's requests, has the sample make its calls and call
// Mix.
func (r *vpRun) drive() {
	t := r.t
	channels := []*vpChannel{
		newVPChannel(t, "h1", "http", r.plain, "1.1"),
		newVPChannel(t, "h1-tls", "https", r.secure, "1.1"),
		newVPChannel(t, "h2-tls", "https", r.secure, "2"),
	}
	if r.h2c {
		channels = append(channels, newVPChannel(t, "h2c", "http", r.plain, "2"))
	}
	h1, h2 := channels[0], channels[2]

	// The test's requests: a 200, a 404 and a 500 on every channel.
	for _, c := range channels {
		for _, m := range []struct {
			method string
			status int
		}{{"GET", 200}, {"GET", 404}, {"POST", 500}} {
			req, _ := r.send(c, m.method, fmt.Sprintf("/status/%d/%s-%s", m.status, c.name, strings.ToLower(m.method)))
			if req.status != m.status {
				t.Fatalf("%s: status %d, want %d", req.what, req.status, m.status)
			}
			r.direct = append(r.direct, req)
		}
	}

	// The sample's own client, over every protocol it has.
	type call struct {
		proto, scheme, addr, wantProto string
		status                         int
	}
	calls := []call{
		{"h1", "http", r.plain, "1.1", 200},
		{"h1", "http", r.plain, "1.1", 500},
		{"h1", "https", r.secure, "1.1", 404},
		{"h2", "https", r.secure, "2", 200},
		{"h2", "https", r.secure, "2", 500},
	}
	if r.h2c {
		calls = append(calls, call{"h2c", "http", r.plain, "2", 404})
	}
	for i, c := range calls {
		path := fmt.Sprintf("/status/%d/fetched-%d-%s-%s", c.status, i, c.proto, c.scheme)
		u := c.scheme + "://" + c.addr + path
		via, body := r.send(h1, "GET", "/fetch?proto="+c.proto+"&url="+url.QueryEscape(u))
		target := vpRequest{what: "the sample's GET " + u + " (" + c.proto + ")", method: "GET", path: path,
			scheme: c.scheme, host: c.addr, proto: c.wantProto}
		var status, proto, version, cipher, alpn string
		if n, _ := fmt.Sscanf(body, "%s %s %s %s %s", &status, &proto, &version, &cipher, &alpn); n != 5 {
			t.Fatalf("%s: the sample replied %q", via.what, body)
		}
		target.status, _ = strconv.Atoi(status)
		major, minor, _ := http.ParseHTTPVersion(proto)
		if target.status != c.status || protoOf(major, minor) != c.wantProto {
			t.Fatalf("%s: the sample's client got %s %s, want %d over HTTP/%s", via.what, status, proto, c.status, c.wantProto)
		}
		if c.scheme == "https" {
			v, err1 := strconv.ParseUint(version, 16, 16)
			cs, err2 := strconv.ParseUint(cipher, 16, 16)
			if err1 != nil || err2 != nil {
				t.Fatalf("%s: the sample replied %q: no TLS state", via.what, body)
			}
			target.tls = vpTLS{uint16(v), uint16(cs), strings.TrimPrefix(alpn, "-")}
		}
		r.fetches = append(r.fetches, vpFetch{via: via, url: u, target: target})
	}

	// Mix, from an HTTP/1.1 and from an HTTP/2 handler.
	for _, m := range []struct {
		c   *vpChannel
		key string
		n   int
	}{{h1, "alpha", 3}, {h2, "beta", -7}} {
		via, body := r.send(m.c, "GET", fmt.Sprintf("/mix?key=%s&n=%d", m.key, m.n))
		if _, err := strconv.Atoi(body); err != nil {
			t.Fatalf("%s: the sample replied %q", via.what, body)
		}
		r.mixes = append(r.mixes, vpMix{via: via, key: m.key, n: m.n, result: body})
	}
}

// send makes one request with a traceparent of its own and returns it as
// the client saw it, and the body. target is a path with its query.
func (r *vpRun) send(c *vpChannel, method, target string) (vpRequest, string) {
	t := r.t
	t.Helper()
	r.nextID++
	parent := trace.SpanID{0x7e, 0x57, 7: r.nextID}
	var body io.Reader
	if method == "POST" {
		body = strings.NewReader("version-proof")
	}
	req, err := http.NewRequest(method, c.scheme+"://"+c.addr+target, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("traceparent", fmt.Sprintf("00-%s-%s-01", r.trace, parent))
	var port int
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(ci httptrace.GotConnInfo) { port = ci.Conn.LocalAddr().(*net.TCPAddr).Port },
	}))
	resp, err := c.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", method, target, c.name, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s over %s: reading the body: %v", method, target, c.name, err)
	}
	got := vpRequest{
		what: method + " " + target + " over " + c.name, method: method, path: req.URL.Path, scheme: c.scheme,
		host: c.addr, proto: protoOf(resp.ProtoMajor, resp.ProtoMinor), status: resp.StatusCode, clientPort: port, parent: parent,
	}
	if got.proto != c.proto {
		t.Fatalf("%s: the response came over HTTP/%s, not HTTP/%s: the test cannot check what it means to", got.what, got.proto, c.proto)
	}
	if resp.TLS != nil {
		got.tls = vpTLS{resp.TLS.Version, resp.TLS.CipherSuite, resp.TLS.NegotiatedProtocol}
		r.conns[port] = got.tls
	}
	return got, string(b)
}

func protoOf(major, minor int) string {
	if major == 2 {
		return "2"
	}
	return fmt.Sprintf("%d.%d", major, minor)
}

// servers are the test's requests, which each name their server span by
// the traceparent they sent.
func (r *vpRun) servers() []vpRequest {
	out := slices.Clone(r.direct)
	for _, f := range r.fetches {
		out = append(out, f.via)
	}
	for _, m := range r.mixes {
		out = append(out, m.via)
	}
	return out
}

func (r *vpRun) tlsFetches() int {
	n := 0
	for _, f := range r.fetches {
		if f.target.tls != (vpTLS{}) {
			n++
		}
	}
	return n
}

// checkServers finds and checks the server span of every request: the
// test's by their traceparent, which it returns them by; the sample's
// calls by their path, which it returns them by the URL called.
func (r *vpRun) checkServers(spans []tracetest.SpanStub) (byParent map[trace.SpanID]tracetest.SpanStub, targets map[string]tracetest.SpanStub) {
	t := r.t
	used := map[int]bool{}
	take := func(what string, match func(tracetest.SpanStub) bool) (tracetest.SpanStub, bool) {
		found := -1
		for i, sp := range spans {
			if !used[i] && match(sp) {
				if found >= 0 {
					t.Errorf("%s: two server spans", what)
					break
				}
				found = i
			}
		}
		if found < 0 {
			t.Errorf("%s: no server span (server spans: %s)", what, spanNames(spans))
			return tracetest.SpanStub{}, false
		}
		used[found] = true
		return spans[found], true
	}
	byParent = map[trace.SpanID]tracetest.SpanStub{}
	for _, req := range r.servers() {
		if sp, ok := take(req.what, func(sp tracetest.SpanStub) bool { return sp.Parent.SpanID() == req.parent }); ok {
			r.checkServer(req, sp)
			byParent[req.parent] = sp
		}
	}
	targets = map[string]tracetest.SpanStub{}
	for _, f := range r.fetches {
		if sp, ok := take(f.target.what, func(sp tracetest.SpanStub) bool { return vpAttr(sp, "url.path") == f.target.path }); ok {
			r.checkServer(f.target, sp)
			targets[f.url] = sp
		}
	}
	for i, sp := range spans {
		if !used[i] {
			t.Errorf("Go %s: a server span no request explains: %q %v", r.version, sp.Name, sp.Attributes)
		}
	}
	return byParent, targets
}

// checkServer checks a server span against the request as its client saw
// it.
func (r *vpRun) checkServer(req vpRequest, sp tracetest.SpanStub) {
	t := r.t
	t.Helper()
	a := vpAttrs(sp)
	check := vpChecker(t, req.what+": server span", sp, a)
	host, port, _ := net.SplitHostPort(req.host)
	check("http.request.method", req.method)
	check("url.path", req.path)
	check("url.scheme", req.scheme)
	check("network.protocol.version", req.proto)
	check("http.response.status_code", req.status)
	check("server.address", host)
	check("server.port", port)
	check("client.address", "127.0.0.1")
	if req.clientPort != 0 {
		check("client.port", req.clientPort)
	}
	if req.tls != (vpTLS{}) {
		_, v := gotls.VersionName(req.tls.version)
		check("tls.protocol.version", v)
		check("tls.cipher", tls.CipherSuiteName(req.tls.cipher))
	} else if v, ok := a["tls.protocol.version"]; ok {
		t.Errorf("%s: server span of a request without TLS says tls.protocol.version %s", req.what, v.String())
	}
	// ServeMux patterns name the route from Go 1.22.
	route := "/" + strings.SplitN(strings.TrimPrefix(req.path, "/"), "/", 2)[0]
	if strings.HasPrefix(req.path, "/status/") {
		route = "/status/"
	}
	if r.minor >= 22 {
		check("http.route", route)
		if want := req.method + " " + route; sp.Name != want {
			t.Errorf("%s: server span %q, want %q", req.what, sp.Name, want)
		}
	} else {
		if v, ok := a["http.route"]; ok {
			t.Errorf("%s: http.route %s before Go 1.22", req.what, v.String())
		}
		if sp.Name != req.method {
			t.Errorf("%s: server span %q, want %q", req.what, sp.Name, req.method)
		}
	}
	if sp.SpanKind != trace.SpanKindServer {
		t.Errorf("%s: kind %v", req.what, sp.SpanKind)
	}
	// A server's 5xx is an error; its 4xx is the client's.
	if want := vpStatus(req.status >= 500); sp.Status.Code != want {
		t.Errorf("%s: server span status %v for %d, want %v", req.what, sp.Status.Code, req.status, want)
	}
	if req.parent.IsValid() && (sp.Parent.SpanID() != req.parent || sp.SpanContext.TraceID() != r.trace) {
		t.Errorf("%s: server span in trace %s with parent %s, want the traceparent's %s, %s", req.what,
			sp.SpanContext.TraceID(), sp.Parent.SpanID(), r.trace, req.parent)
	}
}

// checkClients checks the client span of every call the sample made, and
// returns them by URL. byParent and targets are the server spans.
func (r *vpRun) checkClients(spans []tracetest.SpanStub, byParent map[trace.SpanID]tracetest.SpanStub, targets map[string]tracetest.SpanStub) map[string]tracetest.SpanStub {
	t := r.t
	byURL := map[string]tracetest.SpanStub{}
	for _, sp := range spans {
		u := vpAttr(sp, "url.full")
		if _, dup := byURL[u]; dup {
			t.Errorf("two client spans for %s", u)
		}
		byURL[u] = sp
	}
	called := map[string]bool{}
	for _, f := range r.fetches {
		called[f.url] = true
		sp, ok := byURL[f.url]
		if !ok {
			t.Errorf("%s: no client span (client spans: %s)", f.target.what, spanNames(spans))
			continue
		}
		r.checkClient(f, sp, byParent[f.via.parent])
		// The trace context crosses to the server where uranus propagates
		// it: on the wire, plain HTTP/1 only.
		srv, ok := targets[f.url]
		if ok && f.target.scheme == "http" && f.target.proto == "1.1" && r.propagation != attach.PropagationOff &&
			(srv.Parent.SpanID() != sp.SpanContext.SpanID() || srv.SpanContext.TraceID() != sp.SpanContext.TraceID()) {
			t.Errorf("%s: server span in trace %s with parent %s; want the client span %s of trace %s (propagation %s)",
				f.target.what, srv.SpanContext.TraceID(), srv.Parent.SpanID(), sp.SpanContext.SpanID(), sp.SpanContext.TraceID(), r.propagation)
		}
	}
	for u, sp := range byURL {
		if !called[u] {
			t.Errorf("Go %s: a client span no call explains: %s %v", r.version, u, sp.Attributes)
		}
	}
	return byURL
}

// checkClient checks the client span of one call the sample made; srv is
// the server span of the request whose handler made it.
func (r *vpRun) checkClient(f vpFetch, sp, srv tracetest.SpanStub) {
	t := r.t
	t.Helper()
	req := f.target
	a := vpAttrs(sp)
	check := vpChecker(t, req.what+": client span", sp, a)
	host, port, _ := net.SplitHostPort(req.host)
	check("http.request.method", "GET")
	check("url.full", f.url)
	check("url.scheme", req.scheme)
	check("server.address", host)
	check("server.port", port)
	check("network.protocol.version", req.proto)
	check("http.response.status_code", req.status)
	if req.tls != (vpTLS{}) {
		_, v := gotls.VersionName(req.tls.version)
		check("tls.protocol.version", v)
		check("tls.cipher", tls.CipherSuiteName(req.tls.cipher))
	}
	if sp.SpanKind != trace.SpanKindClient || sp.Name != "GET" {
		t.Errorf("%s: client span %q of kind %v", req.what, sp.Name, sp.SpanKind)
	}
	// A client's 4xx is a failure too.
	if want := vpStatus(req.status >= 400); sp.Status.Code != want {
		t.Errorf("%s: client span status %v for %d, want %v", req.what, sp.Status.Code, req.status, want)
	}
	if sp.Parent.SpanID() != srv.SpanContext.SpanID() || sp.SpanContext.TraceID() != r.trace {
		t.Errorf("%s: client span in trace %s with parent %s, want the server span %s of %s", req.what,
			sp.SpanContext.TraceID(), sp.Parent.SpanID(), srv.SpanContext.SpanID(), f.via.what)
	}
}

// checkHandshakes checks one handshake span per TLS connection on each
// side, each with what its peer saw. clients are the client spans by URL.
func (r *vpRun) checkHandshakes(serverHS, clientHS []tracetest.SpanStub, clients map[string]tracetest.SpanStub) {
	t := r.t
	host, tlsPort, _ := net.SplitHostPort(r.secure)
	for _, hs := range append(slices.Clone(serverHS), clientHS...) {
		what := fmt.Sprintf("%s %s", hs.Name, vpAttr(hs, gotls.ConnKey))
		want := map[attribute.Key]string{
			"tls.established":      "true",
			"tls.resumed":          "false",
			"tls.protocol.name":    "tls",
			"network.peer.address": "127.0.0.1",
		}
		if hs.Name == "TLS client handshake" {
			want["network.peer.port"] = tlsPort
			want["server.address"] = host // the name the certificate is checked against
		} else if hs.Parent.IsValid() {
			t.Errorf("%s: parent %s; a server handshake runs before any request", what, hs.Parent.SpanID())
		}
		for k, w := range want {
			if got := vpAttr(hs, k); got != w {
				t.Errorf("%s: %s = %q, want %q", what, k, got, w)
			}
		}
		if hs.SpanKind != trace.SpanKindInternal || hs.Status.Code != codes.Unset {
			t.Errorf("%s: kind %v, status %v %q", what, hs.SpanKind, hs.Status.Code, hs.Status.Description)
		}
	}

	// The server handshakes of the test's connections, by the client's
	// port; then those of the sample's calls, by what its client saw.
	var wantServer, gotServer, wantClient, gotClient []string
	for port, st := range r.conns {
		found := 0
		for _, hs := range serverHS {
			if vpAttr(hs, "network.peer.port") == strconv.Itoa(port) {
				found++
				if got := vpHandshake(hs); got != st.String() {
					t.Errorf("server handshake of the test's connection from port %d: %s; the test's client saw %s", port, got, st)
				}
			}
		}
		if found != 1 {
			t.Errorf("the test's TLS connection from port %d has %d server handshake spans, want 1", port, found)
		}
	}
	for _, hs := range serverHS {
		port, _ := strconv.Atoi(vpAttr(hs, "network.peer.port"))
		if _, ok := r.conns[port]; !ok {
			gotServer = append(gotServer, vpHandshake(hs))
		}
	}
	for _, hs := range clientHS {
		gotClient = append(gotClient, vpHandshake(hs))
	}
	for _, f := range r.fetches {
		if f.target.tls == (vpTLS{}) {
			continue
		}
		wantServer = append(wantServer, f.target.tls.String())
		wantClient = append(wantClient, f.target.tls.String())
		// A client handshake is the child of the client span whose dial
		// it serves: from Go 1.21 by g.parentGoid; before, that takes the
		// goroutines instrumentor, which is off by default.
		cl, ok := clients[f.url]
		if r.minor < 21 || !ok {
			continue
		}
		var children []tracetest.SpanStub
		for _, hs := range clientHS {
			if hs.Parent.SpanID() == cl.SpanContext.SpanID() {
				children = append(children, hs)
			}
		}
		if len(children) != 1 {
			t.Errorf("%s: %d client handshakes under its client span, want 1", f.target.what, len(children))
		} else if got := vpHandshake(children[0]); got != f.target.tls.String() || children[0].SpanContext.TraceID() != cl.SpanContext.TraceID() {
			t.Errorf("%s: client handshake %s in trace %s; the client saw %s, in trace %s", f.target.what, got,
				children[0].SpanContext.TraceID(), f.target.tls, cl.SpanContext.TraceID())
		}
	}
	sameMultiset(t, "server handshakes of the sample's calls", gotServer, wantServer)
	sameMultiset(t, "client handshakes", gotClient, wantClient)
}

// checkFuncs checks one function span per call of Mix, under its
// request's server span.
func (r *vpRun) checkFuncs(spans []tracetest.SpanStub, byParent map[trace.SpanID]tracetest.SpanStub) {
	t := r.t
	for _, m := range r.mixes {
		what := fmt.Sprintf("Mix(%q, %d) from %s", m.key, m.n, m.via.what)
		var sp tracetest.SpanStub
		n := 0
		for _, f := range spans {
			if vpAttr(f, "arg.key") == m.key {
				sp, n = f, n+1
			}
		}
		if n != 1 {
			t.Errorf("%s: %d function spans, want 1", what, n)
			continue
		}
		for k, want := range map[attribute.Key]string{
			"code.function.name": "main.Mix",
			"arg.key":            m.key,
			"arg.n":              strconv.Itoa(m.n),
			"result.0":           m.result,
		} {
			if got := vpAttr(sp, k); got != want {
				t.Errorf("%s: %s = %q, want %q", what, k, got, want)
			}
		}
		if sp.SpanKind != trace.SpanKindInternal {
			t.Errorf("%s: kind %v", what, sp.SpanKind)
		}
		if srv, ok := byParent[m.via.parent]; ok && (sp.Parent.SpanID() != srv.SpanContext.SpanID() || sp.SpanContext.TraceID() != srv.SpanContext.TraceID()) {
			t.Errorf("%s: parent %s, want the request's server span %s", what, sp.Parent.SpanID(), srv.SpanContext.SpanID())
		}
	}
	if len(spans) != len(r.mixes) {
		t.Errorf("%d function spans for %d calls", len(spans), len(r.mixes))
	}
}

// vpLog collects what the funcs instrumentor logs.
type vpLog struct {
	t  *testing.T
	mu sync.Mutex
	b  strings.Builder
}

func (l *vpLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return l.b.Write(p)
}

func (l *vpLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func vpMinor(v string) int {
	var major, minor int
	fmt.Sscanf(v, "%d.%d", &major, &minor)
	return minor
}

func vpStatus(isErr bool) codes.Code {
	if isErr {
		return codes.Error
	}
	return codes.Unset
}

// vpHandshake is a handshake span's parameters, spelt as vpTLS.String.
func vpHandshake(hs tracetest.SpanStub) string {
	return fmt.Sprintf("TLS %s %s ALPN %q", vpAttr(hs, "tls.protocol.version"), vpAttr(hs, "tls.cipher"), vpAttr(hs, "tls.next_protocol"))
}

func sameMultiset(t *testing.T, what string, got, want []string) {
	t.Helper()
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s: the spans say\n  %s\nthe peers saw\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// vpChecker returns a check that sp (whose attributes are a) has attribute
// key with the value want, spelled as fmt prints it; errors name the span
// as which.
func vpChecker(t *testing.T, which string, sp tracetest.SpanStub, a map[attribute.Key]attribute.Value) func(key attribute.Key, want any) {
	return func(key attribute.Key, want any) {
		t.Helper()
		got, ok := a[key]
		if !ok {
			t.Errorf("%s lacks %s (attributes %v)", which, key, sp.Attributes)
			return
		}
		if got.String() != fmt.Sprint(want) {
			t.Errorf("%s %s = %s, want %v", which, key, got.String(), want)
		}
	}
}

func vpAttrs(sp tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range sp.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

func vpAttr(sp tracetest.SpanStub, key attribute.Key) string {
	for _, kv := range sp.Attributes {
		if kv.Key == key {
			return kv.Value.String()
		}
	}
	return ""
}

func spanNames(spans []tracetest.SpanStub) string {
	var names []string
	for _, sp := range spans {
		names = append(names, fmt.Sprintf("%q(%s%s)", sp.Name, vpAttr(sp, "url.path"), vpAttr(sp, "url.full")))
	}
	return strings.Join(names, ", ")
}

// stdSymbol tells whether a function symbol is the standard library's (or
// the runtime's): its import path has no domain ("net/http.(*T).M", not
// "golang.org/x/net/http2.(*T).M").
func stdSymbol(sym string) bool {
	first, _, _ := strings.Cut(sym, "/")
	return !strings.Contains(first, ".") || !strings.Contains(sym, "/")
}
