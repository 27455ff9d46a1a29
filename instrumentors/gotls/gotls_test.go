package gotls_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-version"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/attach"
	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/instrumentors/goroutines"
	"github.com/uranus-otel/uranus/instrumentors/gotls"
	"github.com/uranus-otel/uranus/instrumentors/httpclient"
	"github.com/uranus-otel/uranus/instrumentors/httpserver"
	"github.com/uranus-otel/uranus/internal/e2e"
	"github.com/uranus-otel/uranus/internal/testapp"
)

// tlsVersions: the stack ABI (1.16), the last release before parentGoid
// (1.20), the first with it (1.21), swiss maps (1.24) and the newest; with
// -short the four the issue names. URANUS_GO_VERSIONS overrides both.
func tlsVersions() []string {
	if os.Getenv("URANUS_GO_VERSIONS") == "" && testing.Short() {
		return []string{"1.16.15", "1.20.14", "1.24.13", "1.27.4"}
	}
	return e2e.TestVersions()
}

// app is a running tlsapp.
type app struct {
	*e2e.Proc
	pki    *pki
	port   string // of the main server
	strict string // address of the TLS 1.3-only server
	client *http.Client
}

func startApp(t *testing.T, v string) *app {
	t.Helper()
	p := newPKI(t)
	proc := e2e.Start(t, e2e.BuildTarget(t, "tlsapp", v, testapp.Options{}), "-cert", p.cert, "-key", p.key, "-ca", p.caFile)
	a := &app{Proc: proc, pki: p}
	_, a.port, _ = net.SplitHostPort(proc.Addr)
	for _, line := range strings.Split(proc.Output(), "\n") {
		if s, ok := strings.CutPrefix(line, "strict on "); ok {
			a.strict = s
		}
	}
	// The test's own client: keeps its connection, so only its first
	// request handshakes, and sends SNI "localhost".
	a.client = &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.pool, ServerName: "localhost"},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, proc.Addr)
		},
	}}
	t.Cleanup(a.client.CloseIdleConnections)
	return a
}

// get requests path on the app and returns the body and the TLS state the
// test's client saw.
func (a *app) get(t *testing.T, path string) (string, *tls.ConnectionState) {
	t.Helper()
	resp, err := a.client.Get("https://localhost:" + a.port + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), resp.TLS
}

func attr(s tracetest.SpanStub, key attribute.Key) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value.String()
		}
	}
	return ""
}

// state is what tlsapp's describe prints.
type state struct {
	version, cipher uint16
	sni, alpn       string
	resumed         bool
}

func parseState(t *testing.T, s string) state {
	t.Helper()
	var st state
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "version", "cipher":
			n, err := strconv.ParseUint(v, 16, 16)
			if err != nil {
				t.Fatalf("bad %s in %q", k, s)
			}
			if k == "version" {
				st.version = uint16(n)
			} else {
				st.cipher = uint16(n)
			}
		case "sni":
			st.sni = v
		case "alpn":
			st.alpn = v
		case "resumed":
			st.resumed = v == "true"
		}
	}
	if st.version == 0 {
		t.Fatalf("no TLS state in %q", s)
	}
	return st
}

// checkTLSAttrs checks the protocol and cipher a span reports.
func checkTLSAttrs(t *testing.T, what string, s tracetest.SpanStub, st state) {
	t.Helper()
	_, ver := gotls.VersionName(st.version)
	if got := attr(s, "tls.protocol.version"); got != ver {
		t.Errorf("%s: tls.protocol.version %q, want %q", what, got, ver)
	}
	if got, want := attr(s, "tls.cipher"), tls.CipherSuiteName(st.cipher); got != want {
		t.Errorf("%s: tls.cipher %q, want %q", what, got, want)
	}
}

// spanSet splits new spans by kind of operation.
type spanSet struct {
	all                []tracetest.SpanStub
	servers, clients   []tracetest.SpanStub
	clientHS, serverHS []tracetest.SpanStub
}

func classify(spans []tracetest.SpanStub) spanSet {
	var s spanSet
	s.all = spans
	for _, sp := range spans {
		switch {
		case sp.Name == "TLS client handshake":
			s.clientHS = append(s.clientHS, sp)
		case sp.Name == "TLS server handshake":
			s.serverHS = append(s.serverHS, sp)
		case sp.SpanKind == trace.SpanKindServer:
			s.servers = append(s.servers, sp)
		case sp.SpanKind == trace.SpanKindClient:
			s.clients = append(s.clients, sp)
		}
	}
	return s
}

// recorder hands out the spans exported since its last call.
type recorder struct {
	s    *session
	seen int
}

func (r *recorder) next(t *testing.T, what string, n int) spanSet {
	t.Helper()
	got := r.s.waitSpans(what, func(all tracetest.SpanStubs) bool { return len(all) >= r.seen+n })
	if len(got) != r.seen+n {
		var names []string
		for _, s := range got[r.seen:] {
			names = append(names, s.Name)
		}
		t.Fatalf("%s: %d new spans %q, want %d", what, len(got)-r.seen, names, n)
	}
	out := classify(got[r.seen:])
	r.seen = len(got)
	return out
}

func atLeast(v string, minor int64) bool {
	return version.Must(version.NewVersion(v)).Segments64()[1] >= minor
}

// TestHandshakes: handshake spans on both sides, with the protocol, cipher,
// SNI and peer each side printed; parented to the HTTP client span whose
// dial they serve; failures with the error text; HTTP spans over TLS with
// the connection's protocol and cipher; and the probe hits it all costs.
func TestHandshakes(t *testing.T) {
	e2e.RequireBPF(t)
	for _, v := range tlsVersions() {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			a := startApp(t, v)
			list := []*instrumentors.Instrumentor{httpserver.Instrumentor, httpclient.Instrumentor, gotls.Instrumentor}
			free := atLeast(v, 21) // g.parentGoid: no goroutines instrumentor needed
			if !free {
				list = append(list, goroutines.Instrumentor)
			}
			s := attachTo(t, a.Cmd.Process.Pid, list, false)
			r := &recorder{s: s}

			// The test's client → the app: a server handshake, no parent
			// (it runs before any request is read), then the server span.
			body, seen := a.get(t, "/state")
			st := parseState(t, body)
			got := r.next(t, "GET /state", 2)
			if len(got.serverHS) != 1 || len(got.servers) != 1 {
				t.Fatalf("GET /state: %d server handshakes, %d server spans", len(got.serverHS), len(got.servers))
			}
			hs, srv := got.serverHS[0], got.servers[0]
			if hs.Parent.IsValid() {
				t.Errorf("server handshake has a parent %s", hs.Parent.SpanID())
			}
			checkTLSAttrs(t, "server handshake", hs, st)
			checkTLSAttrs(t, "server span", srv, st)
			if st.version != seen.Version || st.cipher != seen.CipherSuite || st.sni != "localhost" {
				t.Errorf("app saw %+v, test's client saw version %04x cipher %04x", st, seen.Version, seen.CipherSuite)
			}
			for k, want := range map[attribute.Key]string{
				"tls.client.server_name": "localhost",
				"tls.resumed":            "false",
				"tls.established":        "true",
				"network.peer.address":   "127.0.0.1",
				"tls.protocol.name":      "tls",
			} {
				if got := attr(hs, k); got != want {
					t.Errorf("server handshake %s = %q, want %q", k, got, want)
				}
			}
			if attr(srv, "url.scheme") != "https" {
				t.Errorf("server span url.scheme %q", attr(srv, "url.scheme"))
			}

			// Keep-alive requests: no handshake, two hits each.
			before := s.target.Counters()
			const n = 20
			for i := 0; i < n; i++ {
				a.get(t, "/state")
			}
			r.next(t, "keep-alive requests", n)
			after := s.target.Counters()
			hsHits := hits(after[gotls.Instrumentor.ID]) - hits(before[gotls.Instrumentor.ID])
			srvHits := hits(after[httpserver.Instrumentor.ID]) - hits(before[httpserver.Instrumentor.ID])
			t.Logf("Go %s: %d keep-alive HTTPS requests: %d http-server hits, %d tls hits", v, n, srvHits, hsHits)
			if hsHits != 0 || srvHits != 2*n {
				t.Errorf("%d keep-alive requests cost %d tls and %d http-server probe hits, want 0 and %d", n, hsHits, srvHits, 2*n)
			}

			// The app's own net/http client → the app: a client handshake
			// under the client span, in a goroutine two away from it.
			before = s.target.Counters()
			body, _ = a.get(t, "/fetch?url="+url.QueryEscape("https://127.0.0.1:"+a.port+"/state")+"&host=uranus.test")
			served, client, ok := strings.Cut(body, "\nclient ")
			if !ok {
				t.Fatalf("/fetch: %q", body)
			}
			sst, cst := parseState(t, served), parseState(t, client)
			got = r.next(t, "/fetch", 5)
			after = s.target.Counters()
			if len(got.clientHS) != 1 || len(got.serverHS) != 1 || len(got.clients) != 1 || len(got.servers) != 2 {
				t.Fatalf("/fetch: %d client and %d server handshakes, %d client and %d server spans; want 1, 1, 1, 2",
					len(got.clientHS), len(got.serverHS), len(got.clients), len(got.servers))
			}
			chs, cl := got.clientHS[0], got.clients[0]
			checkTLSAttrs(t, "client handshake", chs, cst)
			checkTLSAttrs(t, "server handshake of /fetch's call", got.serverHS[0], sst)
			checkTLSAttrs(t, "client span", cl, cst)
			// A client's ConnectionState has its ServerName from Go 1.15.
			if sst.sni != "uranus.test" || cst.sni != "uranus.test" && (cst.sni != "" || atLeast(v, 15)) {
				t.Errorf("app saw SNI %q as server, %q as client", sst.sni, cst.sni)
			}
			for k, want := range map[attribute.Key]string{
				"tls.client.server_name": "uranus.test",
				"server.address":         "uranus.test",
				"network.peer.address":   "127.0.0.1",
				"network.peer.port":      a.port,
			} {
				if got := attr(chs, k); got != want {
					t.Errorf("client handshake %s = %q, want %q", k, got, want)
				}
			}
			if attr(got.serverHS[0], "tls.client.server_name") != "uranus.test" {
				t.Errorf("server handshake SNI %q", attr(got.serverHS[0], "tls.client.server_name"))
			}
			if !underOrRaced(t, v, chs, cl) {
				t.Errorf("client handshake's parent is %s, want the client span %s", chs.Parent.SpanID(), cl.SpanContext.SpanID())
			}
			if attr(cl, "url.scheme") != "https" {
				t.Errorf("client span url.scheme %q", attr(cl, "url.scheme"))
			}
			c := after[gotls.Instrumentor.ID]
			t.Logf("Go %s: /fetch over a new connection: %d tls hits (two handshakes and the dial), %d handshakes parented through the dial",
				v, hits(c)-hits(before[gotls.Instrumentor.ID]), c.Extra[1])
			if free && c.Extra[1] == 0 {
				t.Errorf("Go %s: the client handshake was not parented through the dial's goroutine", v)
			}

			// Failures: the text each side would print.
			cases := []struct {
				name, query                    string
				clientWant, serverWant, clType []string
			}{
				{"untrusted CA", "url=" + url.QueryEscape("https://127.0.0.1:"+a.port+"/state") + "&host=uranus.test&ca=none",
					[]string{"x509: certificate signed by unknown authority"},
					[]string{"remote error: tls: bad certificate", "remote error: tls: unknown certificate authority"},
					[]string{"*tls.CertificateVerificationError", "x509.UnknownAuthorityError"}},
				{"version mismatch", "url=" + url.QueryEscape("https://"+a.strict+"/state") + "&host=uranus.test&maxver=12",
					[]string{"remote error: tls: protocol version not supported"},
					[]string{"tls: client offered only unsupported versions"},
					[]string{"*net.OpError"}},
				{"wrong name", "url=" + url.QueryEscape("https://127.0.0.1:"+a.port+"/state") + "&host=wrong.test",
					[]string{"x509: certificate is not valid for wrong.test"},
					[]string{"remote error: tls: bad certificate"},
					[]string{"*tls.CertificateVerificationError", "x509.HostnameError"}},
			}
			for _, tc := range cases {
				body, _ := a.get(t, "/fetch?"+tc.query)
				if !strings.HasPrefix(body, "error: ") {
					t.Fatalf("%s: /fetch replied %q", tc.name, body)
				}
				got := r.next(t, tc.name, 4) // /fetch, its client span, two handshakes
				if len(got.clientHS) != 1 || len(got.serverHS) != 1 {
					t.Fatalf("%s: %d client and %d server handshakes", tc.name, len(got.clientHS), len(got.serverHS))
				}
				ch, sh := got.clientHS[0], got.serverHS[0]
				t.Logf("Go %s %s: app's error %q; client handshake span: %q (%s); server handshake span: %q (%s)",
					v, tc.name, strings.TrimPrefix(body, "error: "), ch.Status.Description, attr(ch, "error.type"), sh.Status.Description, attr(sh, "error.type"))
				if ch.Status.Code != codes.Error || !contains(ch.Status.Description, tc.clientWant...) || !contains(attr(ch, "error.type"), tc.clType...) {
					t.Errorf("%s: client handshake status %v %q, error.type %q; want an error naming %q", tc.name, ch.Status.Code, ch.Status.Description, attr(ch, "error.type"), tc.clientWant)
				}
				if !strings.Contains(body, strings.TrimSuffix(ch.Status.Description, "…")) && tc.name != "wrong name" {
					t.Errorf("%s: the span says %q, the app got %q", tc.name, ch.Status.Description, body)
				}
				if sh.Status.Code != codes.Error || !contains(sh.Status.Description, tc.serverWant...) {
					t.Errorf("%s: server handshake status %v %q; want an error naming %q", tc.name, sh.Status.Code, sh.Status.Description, tc.serverWant)
				}
				if attr(ch, "tls.established") != "false" || attr(sh, "tls.established") != "false" {
					t.Errorf("%s: tls.established %q / %q on failed handshakes", tc.name, attr(ch, "tls.established"), attr(sh, "tls.established"))
				}
				if !underOrRaced(t, v, ch, got.clients[0]) {
					t.Errorf("%s: failed client handshake not under the client span", tc.name)
				}
			}
			for id, c := range s.target.Counters() {
				if c.NoEntry != 0 || c.RingbufFull != 0 || c.InflightFull != 0 {
					t.Errorf("%s counters show losses: %+v", id, c)
				}
			}
		})
	}
}

func hits(c attach.Counters) uint64 { return c.Entry + c.Return }

// underOrRaced tells whether the handshake span is the client span's child.
// Before Go 1.15 the handshake's goroutine learns its span from the dial's
// through bpf/goroutines.c, which reads the new goroutine from the P's
// runnext slot at newproc1's RET: another P may steal it first, and on a
// loaded machine sometimes does (seen in CI on Go 1.13 and 1.14). The
// span is then a root of its own, never under a wrong parent: that, and
// only that, is tolerated there, and logged.
func underOrRaced(t *testing.T, v string, hs, client tracetest.SpanStub) bool {
	t.Helper()
	if hs.Parent.SpanID() == client.SpanContext.SpanID() && hs.SpanContext.TraceID() == client.SpanContext.TraceID() {
		return true
	}
	if !atLeast(v, 15) && !hs.Parent.IsValid() {
		t.Logf("Go %s: a handshake's goroutine was stolen before newproc1 returned; its span is a root (the documented race before Go 1.15)", v)
		return true
	}
	return false
}
