package httpserver_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/instrumentors/httpserver"
	"github.com/uranus-otel/uranus/internal/e2e"
	"github.com/uranus-otel/uranus/internal/testapp"
)

// TestXNetH2C: a server on golang.org/x/net/http2/h2c (x/net v0.30.0) hit
// with curl --http2-prior-knowledge gives one SERVER span per stream, with
// the status the handler wrote (500 with error status, 404 without),
// network.protocol.version=2 and the incoming traceparent; ten streams on
// one connection give ten spans; the connection preface (PRI *) gives
// none. The status is read at offsets keyed by x/net's version: from the
// module's table for Go 1.26 (also stripped), from DWARF for the others;
// a stripped Go 1.27 binary, which neither covers, says it cannot report
// the status rather than report 200.
func TestXNetH2C(t *testing.T) {
	e2e.RequireBPF(t)
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("curl is required in CI: %v", err)
		}
		t.Skip("skipping: curl is not installed")
	}
	for _, c := range []struct {
		version    string
		stripped   bool
		statusKnow bool
	}{
		{"1.22.12", false, true},
		{"1.26.8", true, true},
		{"1.27.4", false, true},
		{"1.27.4", true, false},
	} {
		t.Run(fmt.Sprintf("%s/stripped=%v", c.version, c.stripped), func(t *testing.T) {
			p := e2e.Start(t, e2e.BuildTarget(t, "xnet", c.version, testapp.Options{Stripped: c.stripped}))
			var h2cAddr string
			for _, line := range strings.Split(p.Output(), "\n") {
				if a, ok := strings.CutPrefix(line, "h2c on "); ok {
					h2cAddr = a
				}
			}
			if h2cAddr == "" {
				t.Fatalf("the sample did not print its h2c address:\n%s", p.Output())
			}
			s := e2e.Attach(t, []*instrumentors.Instrumentor{httpserver.Instrumentor}, p.Cmd.Process.Pid)
			const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
			for _, code := range []string{"500", "404"} {
				out, err := exec.Command(curl, "--http2-prior-knowledge", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
					"-H", "traceparent: 00-"+traceID+"-00f067aa0ba902b7-01", "http://"+h2cAddr+"/status/"+code).CombinedOutput()
				if err != nil || string(out) != code+" 2" {
					t.Fatalf("curl: %v: %q, want %q", err, out, code+" 2")
				}
			}
			// Ten streams on one h2c connection, from the sample itself
			// (through its TLS listener's /fan, served by net/http).
			out, err := exec.Command(curl, "-sSk", "https://"+p.Addr+"/fan?n=10&url=http://"+h2cAddr+"/status/200").CombinedOutput()
			if err != nil || strings.Count(string(out), "200") != 10 {
				t.Fatalf("fan-out: %v: %q", err, out)
			}
			// 2 curl streams + the /fan request + 10 streams.
			spans := s.WaitSpans(13)
			byStatus := map[string]int{}
			for _, sp := range spans {
				a := attrs(sp)
				if a["http.request.method"].AsString() == "PRI" {
					t.Errorf("a span for the connection preface: %v", sp.Name)
				}
				if a["url.path"].AsString() == "/fan" {
					continue
				}
				if a["network.protocol.version"].AsString() != "2" || sp.SpanKind != trace.SpanKindServer {
					t.Errorf("h2c span %s: protocol %q, kind %v", sp.Name, a["network.protocol.version"].AsString(), sp.SpanKind)
				}
				status := fmt.Sprint(a["http.response.status_code"].AsInt64())
				if !c.statusKnow {
					if _, ok := a["http.response.status_code"]; ok || !strings.Contains(a[instrumentors.UnreportedKey].String(), "http.response.status_code") {
						t.Errorf("span %s: status %s without the means to read it; want none and uranus.unreported", sp.Name, status)
					}
					continue
				}
				byStatus[status]++
				if (sp.Status.Code == codes.Error) != (status == "500") {
					t.Errorf("span with status %s: span status %v", status, sp.Status)
				}
				if status != "200" && (sp.SpanContext.TraceID().String() != traceID || !sp.Parent.IsRemote()) {
					t.Errorf("curl's stream (status %s) is not in the traceparent's trace: %s", status, sp.SpanContext.TraceID())
				}
			}
			if c.statusKnow && (byStatus["500"] != 1 || byStatus["404"] != 1 || byStatus["200"] != 10) {
				t.Errorf("stream spans by status: %v; want 500: 1, 404: 1, 200: 10", byStatus)
			}
			if len(spans) != 13 {
				t.Errorf("%d spans, want 13", len(spans))
			}
		})
	}
}
