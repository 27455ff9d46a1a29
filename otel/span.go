// Package otel turns the spans uranus observes into OpenTelemetry spans and
// exports them with the OTel SDK: OTLP over gRPC or HTTP/protobuf, or the
// console, where each trace is drawn as a tree.
package otel

import (
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Span is one observed operation, with the identity the kernel side gave it.
type Span struct {
	Name         string
	Kind         trace.SpanKind
	TraceID      trace.TraceID
	SpanID       trace.SpanID
	Parent       trace.SpanID // zero for a root span
	RemoteParent bool         // the parent lives in another process
	TraceState   string       // W3C tracestate received with a remote parent
	Sampled      bool
	Start, End   time.Time
	Attrs        []attribute.KeyValue
	Status       codes.Code
	StatusMsg    string
	Events       []Event
	// AddTo, when valid, makes this record no span of its own: its Events
	// belong to the span with that id in the same process (the span active
	// where they happened), which is exported when it ends.
	AddTo trace.SpanID
}

// Event is a timestamped annotation on a span.
type Event struct {
	Name  string
	Time  time.Time
	Attrs []attribute.KeyValue
}
