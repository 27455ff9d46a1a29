package otel

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

type stub struct {
	id, parent byte
	name       string
	kind       trace.SpanKind
	service    string
	from, to   time.Duration
	attrs      []attribute.KeyValue
	err        string
}

func spans(trace1 byte, stubs ...stub) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range stubs {
		tid := trace.TraceID{0: trace1, 15: trace1}
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{7: s.id}, TraceFlags: trace.FlagsSampled})
		var parent trace.SpanContext
		if s.parent != 0 {
			parent = trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{7: s.parent}})
		}
		st := tracetest.SpanStub{
			Name: s.name, SpanContext: sc, Parent: parent, SpanKind: s.kind,
			StartTime: t0.Add(s.from), EndTime: t0.Add(s.to), Attributes: s.attrs,
			Resource: resource.NewSchemaless(semconv.ServiceName(s.service)),
		}
		if s.err != "" {
			st.Status = sdktrace.Status{Code: codes.Error, Description: s.err}
		}
		out = append(out, st.Snapshot())
	}
	return out
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./otel -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("rendering differs from %s:\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func TestRenderNested(t *testing.T) {
	ms := time.Millisecond
	got := RenderTrace(spans(1,
		// Deliberately out of order: children arrive before their parents.
		stub{id: 3, parent: 2, name: "GET /stock/{sku}", kind: trace.SpanKindServer, service: "stock", from: 3 * ms, to: 9 * ms,
			attrs: []attribute.KeyValue{semconv.HTTPResponseStatusCode(200), semconv.URLPath("/stock/42"), semconv.ClientAddress("10.0.0.5")}},
		stub{id: 2, parent: 1, name: "GET", kind: trace.SpanKindClient, service: "shop", from: 2 * ms, to: 10 * ms,
			attrs: []attribute.KeyValue{semconv.HTTPResponseStatusCode(200), semconv.URLFull("http://stock:8080/stock/42")}},
		stub{id: 1, name: "GET /checkout", kind: trace.SpanKindServer, service: "shop", from: 0, to: 16 * ms,
			attrs: []attribute.KeyValue{semconv.HTTPResponseStatusCode(200), semconv.URLPath("/checkout")}},
		stub{id: 4, parent: 1, name: "main.Divide", kind: trace.SpanKindInternal, service: "shop", from: 11 * ms, to: 11*ms + 300*time.Microsecond},
	))
	golden(t, "nested", got)
}

func TestRenderConcurrentAndFailed(t *testing.T) {
	ms := time.Millisecond
	got := RenderTrace(spans(2,
		stub{id: 1, name: "POST /orders", kind: trace.SpanKindServer, service: "shop", from: 0, to: 1200 * ms,
			attrs: []attribute.KeyValue{semconv.HTTPResponseStatusCode(502), semconv.URLPath("/orders")}, err: "502"},
		stub{id: 2, parent: 1, name: "POST", kind: trace.SpanKindClient, service: "shop", from: 10 * ms, to: 600 * ms,
			attrs: []attribute.KeyValue{semconv.HTTPResponseStatusCode(200), semconv.URLFull("http://billing/charge")}},
		stub{id: 3, parent: 1, name: "GET", kind: trace.SpanKindClient, service: "shop", from: 10 * ms, to: 1100 * ms,
			attrs: []attribute.KeyValue{semconv.URLFull("http://stock/reserve")}, err: "dial tcp 10.0.0.9:80: connect: connection refused"},
		stub{id: 5, parent: 9, name: "orphan whose parent was not exported", kind: trace.SpanKindInternal, service: "shop", from: 1150 * ms, to: 1160 * ms},
	))
	golden(t, "concurrent_failed", got)
}

func TestConsoleGroupsByTraceAndWaits(t *testing.T) {
	var buf bytes.Buffer
	c := NewConsole(&buf, 50*time.Millisecond)
	a := spans(3, stub{id: 1, name: "A", kind: trace.SpanKindServer, service: "s", to: time.Millisecond})
	b := spans(4, stub{id: 2, parent: 1, name: "B-child", service: "s", to: time.Millisecond})
	b2 := spans(4, stub{id: 1, name: "B-root", kind: trace.SpanKindServer, service: "s", to: 2 * time.Millisecond})
	c.ExportSpans(context.Background(), append(a, b...))
	c.ExportSpans(context.Background(), b2)
	c.Shutdown(context.Background())
	out := buf.String()
	if strings.Count(out, "trace ") != 2 {
		t.Fatalf("want two trace blocks, got:\n%s", out)
	}
	if !strings.Contains(out, "B-root") || !strings.Contains(out, "└─ B-child") {
		t.Errorf("B-child is not drawn under B-root:\n%s", out)
	}
}
