package otel

import (
	"context"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// uploads is an otlptrace.Client that hands each request to the test.
type uploads chan []*tracepb.ResourceSpans

func (u uploads) Start(context.Context) error { return nil }
func (u uploads) Stop(context.Context) error  { return nil }
func (u uploads) UploadTraces(_ context.Context, req []*tracepb.ResourceSpans) error {
	u <- req
	return nil
}

func spanCount(req []*tracepb.ResourceSpans) int {
	n := 0
	for _, rs := range req {
		for _, ss := range rs.ScopeSpans {
			n += len(ss.Spans)
		}
	}
	return n
}

// The batcher has no timer while nothing waits: the first span added arms
// it, and each span still leaves BatchTimeout after it was added at most.
func TestOTLPBatcherTimerArmedByFirstSpan(t *testing.T) {
	u := make(uploads)
	b := newOTLPBatcher(u, &Pipeline{}, 1000, time.Millisecond)
	pr := &Process{}
	for round := 0; round < 3; round++ {
		b.add(pr, &tracepb.Span{Name: "a"})
		if n := spanCount(<-u); n != 1 {
			t.Fatalf("round %d: sent %d spans, want 1", round, n)
		}
	}
	close(u) // shutdown sends nothing more: nothing waits
	if err := b.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A full batch leaves at once, whatever the timeout.
func TestOTLPBatcherFullBatch(t *testing.T) {
	u := make(uploads, 1)
	b := newOTLPBatcher(u, &Pipeline{}, 10*otlpBatchSize, time.Hour)
	pr := &Process{}
	for i := 0; i < otlpBatchSize; i++ {
		b.add(pr, &tracepb.Span{Name: "a"})
	}
	if n := spanCount(<-u); n != otlpBatchSize {
		t.Fatalf("sent %d spans, want %d", n, otlpBatchSize)
	}
	b.add(pr, &tracepb.Span{Name: "b"})
	if err := b.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := spanCount(<-u); n != 1 {
		t.Fatalf("shutdown sent %d spans, want 1", n)
	}
}
