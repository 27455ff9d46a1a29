package main

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/uranus-otel/uranus/internal/e2e"
)

// TestSmoke runs the whole harness briefly: every configuration must run,
// and uranus's spans must all reach the sink. It asserts nothing about
// speed; `go run ./bench` is the measurement.
func TestSmoke(t *testing.T) {
	e2e.RequireBPF(t)
	var progress strings.Builder
	o := options{
		Duration: time.Second,
		Rounds:   1,
		Conns:    2,
		Rate:     500,
		LoadCPU:  1,
		BPFStats: true,
		Progress: &progress,
	}
	res, err := run(o)
	t.Log(progress.String())
	if err != nil {
		t.Fatal(err)
	}
	var report strings.Builder
	res.report(&report)
	t.Log(report.String())

	for _, cfg := range res.configs {
		runs := res.of(cfg)
		if len(runs) != 1 {
			t.Errorf("%s: %d runs, want 1", cfg, len(runs))
			continue
		}
		r := runs[0]
		if r.SatRequests == 0 || r.PacedCount == 0 {
			t.Errorf("%s: %d requests at saturation, %d latencies", cfg, r.SatRequests, r.PacedCount)
		}
	}
	for _, want := range []string{cfgBaseline, cfgFloor, cfgUranus, cfgOTelHTTP} {
		if len(res.of(want)) == 0 {
			t.Errorf("configuration %s did not run", want)
		}
	}
	for _, cfg := range []string{cfgUranus, cfgUranusExe} {
		if len(res.of(cfg)) == 0 {
			t.Errorf("configuration %s did not run", cfg)
			continue
		}
		if u := res.of(cfg)[0]; u != nil {
			if u.Sent == 0 || u.SinkSpans != uint64(u.Sent) {
				t.Errorf("%s: the sink received %d spans for %d requests (events lost: %d)", cfg, u.SinkSpans, u.Sent, u.Lost)
			}
			if !u.HitsKnown || u.Hits == 0 {
				t.Errorf("%s reported no probe hits", cfg)
			}
		}
	}
	if f := res.of(cfgFloor)[0]; f != nil && (!f.HitsKnown || f.Hits == 0) {
		t.Errorf("the floor programs counted no hits")
	}
}

// TestCountSpans checks the sink's wire-format walk against a request the
// protobuf library encodes.
func TestCountSpans(t *testing.T) {
	req := &coltrace.ExportTraceServiceRequest{}
	want := 0
	for r := 0; r < 3; r++ {
		rs := &tracepb.ResourceSpans{SchemaUrl: "x"}
		for s := 0; s < 2; s++ {
			ss := &tracepb.ScopeSpans{SchemaUrl: "y"}
			for i := 0; i < r+s; i++ {
				ss.Spans = append(ss.Spans, &tracepb.Span{Name: "GET /hello", TraceId: make([]byte, 16), SpanId: make([]byte, 8)})
				want++
			}
			rs.ScopeSpans = append(rs.ScopeSpans, ss)
		}
		req.ResourceSpans = append(req.ResourceSpans, rs)
	}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := countSpans(b)
	if err != nil || got != want {
		t.Fatalf("countSpans = %d, %v; want %d", got, err, want)
	}
	if _, err := countSpans(b[:len(b)-3]); err == nil {
		t.Error("countSpans accepted a truncated request")
	}
}

// TestRoundTrip runs the load generator's HTTP/1.1 client against a real
// net/http server, the kind it loads.
func TestRoundTrip(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello\n")) })
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()

	c, err := dial(ln.Addr().String(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	for i := 0; i < 100; i++ { // one connection: keep-alive must work
		if err := c.roundTrip(); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	n, _, err := saturate(ln.Addr().String(), 3, 50*time.Millisecond)
	if err != nil || n == 0 {
		t.Fatalf("saturate: %d requests, %v", n, err)
	}
	lat, sent, err := paced(ln.Addr().String(), 1000, 100*time.Millisecond)
	if err != nil || sent < 50 || len(lat) == 0 {
		t.Fatalf("paced: %d sent, %d latencies, %v", sent, len(lat), err)
	}
}

func TestLogFields(t *testing.T) {
	line := `time=2026-11-22T22:30:00Z level=INFO msg="final counters" probe_hits=26 events=13 events_lost=0 spans_exported=13 spans_failed=0 targets=0`
	kv := logFields(line)
	if kv["probe_hits"] != 26 || kv["events"] != 13 || kv["spans_exported"] != 13 {
		t.Errorf("logFields = %v", kv)
	}
	if _, ok := kv["events_lost"]; !ok {
		t.Error("events_lost=0 was not parsed")
	}
}
