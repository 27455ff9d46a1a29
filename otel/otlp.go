package otel

import (
	"context"
	"sync"
	"time"

	otelapi "go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// otlpBatcher sends spans to the collector as OTLP protobuf straight from
// uranus's records, through the OTLP exporter's own client (HTTP or gRPC,
// configured by the standard OTEL_EXPORTER_OTLP_* variables, with its
// retries). It skips the SDK's span objects, which buy nothing here —
// sampling was decided in the kernel, the span is complete when it
// arrives — and cost most of the sidecar's CPU: measured on this machine,
// ~18 µs of CPU per span through the SDK and its exporter, ~8 µs this way.
//
// Spans wait per process (each has its own resource) and leave together
// BatchTimeout after the first of them was added, or sooner when a batch is
// full; with no span waiting there is no timer (an idle sidecar sleeps). When QueueSize spans
// are waiting, add blocks: the ring-buffer reader then waits, and the
// kernel side counts what it could not hand over, as with the SDK path.
type otlpBatcher struct {
	client  otlptrace.Client
	p       *Pipeline
	limit   int
	timeout time.Duration

	mu      sync.Mutex
	room    *sync.Cond
	pending map[*Process][]*tracepb.Span
	count   int
	full    chan struct{}
	first   chan struct{} // a span waits where none did
	stop    chan struct{}
	done    chan struct{}
}

const otlpBatchSize = 512

func newOTLPBatcher(client otlptrace.Client, p *Pipeline, limit int, timeout time.Duration) *otlpBatcher {
	if timeout <= 0 {
		timeout = 5 * time.Second // the SDK's default schedule delay
	}
	b := &otlpBatcher{
		client: client, p: p, limit: limit, timeout: timeout,
		pending: map[*Process][]*tracepb.Span{},
		full:    make(chan struct{}, 1),
		first:   make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	b.room = sync.NewCond(&b.mu)
	go b.loop()
	return b
}

func (b *otlpBatcher) add(pr *Process, s *tracepb.Span) {
	b.mu.Lock()
	for b.count >= b.limit {
		b.room.Wait()
	}
	b.pending[pr] = append(b.pending[pr], s)
	b.count++
	n := b.count
	b.mu.Unlock()
	if n == 1 {
		select {
		case b.first <- struct{}{}:
		default:
		}
	}
	if n >= otlpBatchSize {
		select {
		case b.full <- struct{}{}:
		default:
		}
	}
}

// loop sends what waits BatchTimeout after the first span arrived, or
// when a batch is full. A signal left from spans a flush already took
// costs one empty flush, nothing more.
func (b *otlpBatcher) loop() {
	defer close(b.done)
	for {
		select {
		case <-b.stop:
			return
		case <-b.first:
		case <-b.full:
			b.flush(context.Background())
			continue
		}
		t := time.NewTimer(b.timeout)
		select {
		case <-b.stop:
			t.Stop()
			return
		case <-t.C:
		case <-b.full:
			t.Stop()
		}
		b.flush(context.Background())
	}
}

// flush sends everything waiting, in one request.
func (b *otlpBatcher) flush(ctx context.Context) {
	b.mu.Lock()
	pending, n := b.pending, b.count
	b.pending, b.count = map[*Process][]*tracepb.Span{}, 0
	b.room.Broadcast()
	b.mu.Unlock()
	if n == 0 {
		return
	}
	req := make([]*tracepb.ResourceSpans, 0, len(pending))
	for pr, spans := range pending {
		req = append(req, &tracepb.ResourceSpans{
			Resource:  pr.resourcePB,
			SchemaUrl: pr.schemaURL,
			ScopeSpans: []*tracepb.ScopeSpans{{
				Scope: &commonpb.InstrumentationScope{Name: scopeName, Version: Version},
				Spans: spans,
			}},
		})
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := b.client.UploadTraces(ctx, req); err != nil {
		b.p.failed.Add(uint64(n))
		b.p.lastErr.Store(err.Error())
		otelapi.Handle(err)
		return
	}
	b.p.exported.Add(uint64(n))
}

func (b *otlpBatcher) shutdown(ctx context.Context) error {
	close(b.stop)
	<-b.done
	b.flush(ctx)
	return b.client.Stop(ctx)
}

const scopeName = "github.com/uranus-otel/uranus"

// spanProto converts a span to OTLP.
func spanProto(s *Span) *tracepb.Span {
	flags := uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK)
	if s.Sampled {
		flags |= uint32(trace.FlagsSampled)
	}
	if s.RemoteParent {
		flags |= uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)
	}
	p := &tracepb.Span{
		TraceId:           append([]byte(nil), s.TraceID[:]...),
		SpanId:            append([]byte(nil), s.SpanID[:]...),
		TraceState:        s.TraceState,
		Flags:             flags,
		Name:              s.Name,
		Kind:              kindProto(s.Kind),
		StartTimeUnixNano: uint64(s.Start.UnixNano()),
		EndTimeUnixNano:   uint64(s.End.UnixNano()),
		Attributes:        attrsProto(s.Attrs),
	}
	if s.Parent.IsValid() {
		p.ParentSpanId = append([]byte(nil), s.Parent[:]...)
	}
	for _, ev := range s.Events {
		p.Events = append(p.Events, &tracepb.Span_Event{
			TimeUnixNano: uint64(ev.Time.UnixNano()),
			Name:         ev.Name,
			Attributes:   attrsProto(ev.Attrs),
		})
	}
	switch s.Status {
	case codes.Error:
		p.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: s.StatusMsg}
	case codes.Ok:
		p.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_OK}
	}
	return p
}

func kindProto(k trace.SpanKind) tracepb.Span_SpanKind {
	switch k {
	case trace.SpanKindServer:
		return tracepb.Span_SPAN_KIND_SERVER
	case trace.SpanKindClient:
		return tracepb.Span_SPAN_KIND_CLIENT
	case trace.SpanKindProducer:
		return tracepb.Span_SPAN_KIND_PRODUCER
	case trace.SpanKindConsumer:
		return tracepb.Span_SPAN_KIND_CONSUMER
	}
	return tracepb.Span_SPAN_KIND_INTERNAL
}

func resourceProto(r *resource.Resource) *resourcepb.Resource {
	return &resourcepb.Resource{Attributes: attrsProto(r.Attributes())}
}

func attrsProto(kvs []attribute.KeyValue) []*commonpb.KeyValue {
	// One allocation per kind of object rather than three per attribute:
	// this runs for every attribute of every span.
	out := make([]*commonpb.KeyValue, len(kvs))
	slab := make([]commonpb.KeyValue, len(kvs))
	values := make([]commonpb.AnyValue, len(kvs))
	var strs []commonpb.AnyValue_StringValue
	for i, kv := range kvs {
		out[i] = &slab[i]
		slab[i].Key = string(kv.Key)
		if kv.Value.Type() == attribute.STRING {
			if strs == nil {
				strs = make([]commonpb.AnyValue_StringValue, len(kvs))
			}
			strs[i].StringValue = kv.Value.AsString()
			values[i].Value = &strs[i]
			slab[i].Value = &values[i]
			continue
		}
		slab[i].Value = valueProto(kv.Value)
	}
	return out
}

func valueProto(v attribute.Value) *commonpb.AnyValue {
	switch v.Type() {
	case attribute.BOOL:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: v.AsBool()}}
	case attribute.INT64:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v.AsInt64()}}
	case attribute.FLOAT64:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: v.AsFloat64()}}
	case attribute.BOOLSLICE, attribute.INT64SLICE, attribute.FLOAT64SLICE, attribute.STRINGSLICE:
		var vals []*commonpb.AnyValue
		switch v.Type() {
		case attribute.BOOLSLICE:
			for _, x := range v.AsBoolSlice() {
				vals = append(vals, valueProto(attribute.BoolValue(x)))
			}
		case attribute.INT64SLICE:
			for _, x := range v.AsInt64Slice() {
				vals = append(vals, valueProto(attribute.Int64Value(x)))
			}
		case attribute.FLOAT64SLICE:
			for _, x := range v.AsFloat64Slice() {
				vals = append(vals, valueProto(attribute.Float64Value(x)))
			}
		default:
			for _, x := range v.AsStringSlice() {
				vals = append(vals, valueProto(attribute.StringValue(x)))
			}
		}
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: vals}}}
	}
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v.AsString()}}
}
