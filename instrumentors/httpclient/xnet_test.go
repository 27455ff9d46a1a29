package httpclient_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/url"
	"testing"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/internal/e2e"
	"github.com/uranus-otel/uranus/internal/testapp"
)

// TestXNetClient: golang.org/x/net/http2's Transport (v0.30.0) gives one
// CLIENT span per request, with HTTP/2's protocol version, the status and
// its error status (4xx and 5xx, for a client), nested in the handler that
// called — used on its own,
// and inside net/http's Transport upgraded by http2.ConfigureTransport,
// where net/http's call is the only span (not one for each).
func TestXNetClient(t *testing.T) {
	e2e.RequireBPF(t)
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, v := range []string{"1.22.12", "1.27.4"} {
		t.Run(v, func(t *testing.T) {
			p := e2e.Start(t, e2e.BuildTarget(t, "xnet", v, testapp.Options{}))
			s := e2e.Attach(t, all, p.Cmd.Process.Pid)
			cases := []struct{ via, status string }{{"xnet", "500"}, {"configured", "404"}, {"xnet", "200"}}
			for _, c := range cases {
				u := "https://" + p.Addr + "/call?" + url.Values{"via": {c.via}, "url": {"https://" + p.Addr + "/status/" + c.status}}.Encode()
				resp, err := insecure.Get(u)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := c.status + " HTTP/2.0"; string(b) != want {
					t.Fatalf("via %s: the sample answered %q, want %q", c.via, b, want)
				}
			}
			// Per call: the /call server span, one client span, the
			// /status server span.
			spans := s.WaitSpans(3 * len(cases))
			callers := map[trace.SpanID]bool{}
			var clients []tracetest.SpanStub
			for _, sp := range spans {
				switch {
				case sp.SpanKind == trace.SpanKindServer && attr(sp, "url.path") == "/call":
					callers[sp.SpanContext.SpanID()] = true
				case sp.SpanKind == trace.SpanKindClient:
					clients = append(clients, sp)
				}
			}
			if len(clients) != len(cases) {
				t.Fatalf("%d client spans for %d calls (one each, also through ConfigureTransport)", len(clients), len(cases))
			}
			for i, sp := range clients {
				status := attr(sp, "http.response.status_code")
				if attr(sp, "network.protocol.version") != "2" || !callers[sp.Parent.SpanID()] {
					t.Errorf("client span %d: protocol %q, parent %s; want 2, under its /call span", i, attr(sp, "network.protocol.version"), sp.Parent.SpanID())
				}
				// A client span's error status covers 4xx too.
				if wantErr := status != "200"; (sp.Status.Code == codes.Error) != wantErr {
					t.Errorf("client span with status %s: span status %v", status, sp.Status)
				}
			}
			got := map[string]int{}
			for _, sp := range clients {
				got[attr(sp, "http.response.status_code")]++
			}
			if got["500"] != 1 || got["404"] != 1 || got["200"] != 1 {
				t.Errorf("client spans by status: %v; want one each of 500, 404, 200", got)
			}
		})
	}
}
