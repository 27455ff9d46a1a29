package otel

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// receiver is a real OTLP/HTTP endpoint keeping what it is sent.
type receiver struct {
	mu       sync.Mutex
	requests []*coltracepb.ExportTraceServiceRequest
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	var m coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.requests = append(r.requests, &m)
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Write(out)
}

func TestOTLPDirect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rcv := &receiver{}
	srv := &http.Server{Handler: rcv}
	go srv.Serve(ln)
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+ln.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_SERVICE_NAME", "shop")

	ctx := context.Background()
	p, err := NewPipeline(ctx, Config{Exporters: []string{"otlp"}})
	if err != nil {
		t.Fatal(err)
	}
	pr, err := p.NewProcess(ctx, ProcessInfo{PID: 4242, Executable: "/srv/shop", GoVersion: "go1.27.4"})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	tid := trace.TraceID{0: 1, 15: 9}
	spans := []Span{{
		Name: "GET /users/{id}", Kind: trace.SpanKindServer, TraceID: tid, SpanID: trace.SpanID{7: 1},
		Parent: trace.SpanID{7: 0xAA}, RemoteParent: true, TraceState: "rojo=00f067aa0ba902b7", Sampled: true,
		Start: t0, End: t0.Add(5 * time.Millisecond),
		Attrs: []attribute.KeyValue{attribute.String("http.request.method", "GET"), attribute.Int("http.response.status_code", 200),
			attribute.Bool("b", true), attribute.Float64("f", 1.5), attribute.StringSlice("s", []string{"x", "y"})},
		Events: []Event{{Name: "tls.read", Time: t0.Add(time.Millisecond), Attrs: []attribute.KeyValue{attribute.Int("tls.bytes", 17)}}},
	}, {
		Name: "GET", Kind: trace.SpanKindClient, TraceID: tid, SpanID: trace.SpanID{7: 2}, Parent: trace.SpanID{7: 1}, Sampled: true,
		Start: t0.Add(time.Millisecond), End: t0.Add(2 * time.Millisecond), Status: codes.Error, StatusMsg: "*net.OpError",
	}, {
		Name: "dropped by the sampler", TraceID: tid, SpanID: trace.SpanID{7: 3}, Start: t0, End: t0,
	}}
	for i := range spans {
		pr.Emit(&spans[i])
	}
	if err := pr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	var got []*tracepb.Span
	for _, req := range rcv.requests {
		for _, rs := range req.ResourceSpans {
			res := map[string]string{}
			for _, kv := range rs.Resource.Attributes {
				res[kv.Key] = kv.Value.String()
			}
			for k, want := range map[string]string{"service.name": "shop", "process.pid": "4242", "process.runtime.version": "go1.27.4"} {
				if !strings.Contains(res[k], want) {
					t.Errorf("resource %s = %s, want %s", k, res[k], want)
				}
			}
			for _, ss := range rs.ScopeSpans {
				if ss.Scope.GetName() != scopeName {
					t.Errorf("scope %q", ss.Scope.GetName())
				}
				got = append(got, ss.Spans...)
			}
		}
	}
	if len(got) != 2 {
		t.Fatalf("received %d spans, want the 2 sampled ones", len(got))
	}
	if s := p.Stats(); s.Exported != 2 || s.Failed != 0 {
		t.Errorf("stats %+v, want 2 exported", s)
	}
	server, client := got[0], got[1]
	if server.Name != "GET /users/{id}" || server.Kind != tracepb.Span_SPAN_KIND_SERVER ||
		trace.TraceID(server.TraceId) != tid || trace.SpanID(server.ParentSpanId) != (trace.SpanID{7: 0xAA}) ||
		server.TraceState != "rojo=00f067aa0ba902b7" || server.StartTimeUnixNano != uint64(t0.UnixNano()) ||
		server.EndTimeUnixNano != uint64(t0.Add(5*time.Millisecond).UnixNano()) {
		t.Errorf("server span converted wrong: %v", server)
	}
	if server.Flags != 0x301 || client.Flags != 0x101 {
		t.Errorf("flags %#x and %#x: want sampled, and remote only for the server's parent", server.Flags, client.Flags)
	}
	if len(server.Attributes) != 5 || server.Attributes[1].Value.GetIntValue() != 200 || !server.Attributes[2].Value.GetBoolValue() ||
		server.Attributes[3].Value.GetDoubleValue() != 1.5 || len(server.Attributes[4].Value.GetArrayValue().GetValues()) != 2 {
		t.Errorf("attributes converted wrong: %v", server.Attributes)
	}
	if len(server.Events) != 1 || server.Events[0].Name != "tls.read" || server.Events[0].Attributes[0].Value.GetIntValue() != 17 {
		t.Errorf("events converted wrong: %v", server.Events)
	}
	if client.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || client.Status.GetMessage() != "*net.OpError" || client.Kind != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("client span converted wrong: %v", client)
	}
}
