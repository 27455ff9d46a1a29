package httpclient_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"testing"

	"go.opentelemetry.io/otel/codes"

	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/instrumentors/httpclient"
	"github.com/uranus-otel/uranus/internal/e2e"
	"github.com/uranus-otel/uranus/internal/testapp"
)

// TestClientProtocolVersion: a client span says whether the request went
// over HTTP/1.1 or HTTP/2 (Go's Transport over TLS with ForceAttemptHTTP2),
// with the status the server sent. The target calls its own HTTPS server.
func TestClientProtocolVersion(t *testing.T) {
	e2e.RequireBPF(t)
	versions := []string{"1.16.15", "1.21.13", "1.24.13", "1.26.8", "1.27.4"}
	if os.Getenv("URANUS_GO_VERSIONS") != "" {
		versions = e2e.TestVersions()
	}
	for _, v := range versions {
		t.Run("go"+v, func(t *testing.T) {
			proc := e2e.Start(t, e2e.BuildTarget(t, "httpserver", v, testapp.Options{}), "-tls")
			s := e2e.Attach(t, []*instrumentors.Instrumentor{httpclient.Instrumentor}, proc.Cmd.Process.Pid)
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
			for i, r := range []struct {
				h2     bool
				status int
				want   string
			}{
				{true, 404, "2"},
				{true, 500, "2"},
				{false, 404, "1.1"},
				{false, 500, "1.1"},
			} {
				target := fmt.Sprintf("https://%s/status/%d", proc.Addr, r.status)
				h2 := "0"
				if r.h2 {
					h2 = "1"
				}
				resp, err := c.Get("https://" + proc.Addr + "/fetch?h2=" + h2 + "&url=" + url.QueryEscape(target))
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				wantProto := "HTTP/1.1"
				if r.h2 {
					wantProto = "HTTP/2.0"
				}
				if got := string(body); got != fmt.Sprintf("%d %s", r.status, wantProto) {
					t.Fatalf("the target's client got %q, want %d %s", got, r.status, wantProto)
				}
				spans := s.WaitSpans(i + 1)
				if len(spans) != i+1 {
					t.Fatalf("%d spans after %d requests", len(spans), i+1)
				}
				sp := spans[i]
				if got := attr(sp, "url.full"); got != target {
					t.Errorf("span for %s: url.full %q", target, got)
				}
				if got := attr(sp, "network.protocol.version"); got != r.want {
					t.Errorf("%s over %s: network.protocol.version %q, want %q", target, wantProto, got, r.want)
				}
				if got := attr(sp, "http.response.status_code"); got != fmt.Sprint(r.status) {
					t.Errorf("%s over %s: status code %q, want %d", target, wantProto, got, r.status)
				}
				if sp.Status.Code != codes.Error {
					t.Errorf("%s over %s: span status %v; a client's %d is an error", target, wantProto, sp.Status.Code, r.status)
				}
			}
		})
	}
}
