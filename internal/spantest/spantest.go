// Package spantest compares the span an instrumentor's Convert built with
// the span a table of records → spans expects, for tests that run without
// a kernel: every attribute, by its exported key, with its type.
package spantest

import (
	"fmt"
	"reflect"
	"sort"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/otel"
)

// Want is the span a record should become.
type Want struct {
	Name       string
	Kind       trace.SpanKind
	Status     codes.Code
	StatusMsg  string
	TraceState string
	// Attrs are all of the span's attributes, none left out: values are
	// string, int (for any integer attribute), bool, float64 or []string.
	Attrs map[string]any
	// Events are all of the span's events, in order.
	Events []Event
}

// Event is an event a span should carry.
type Event struct {
	Name  string
	Attrs map[string]any // all of them, as in Want.Attrs
}

// Diff lists how got differs from want; none when they agree.
func Diff(got *otel.Span, want Want) []string {
	var out []string
	field := func(name string, g, w any) {
		if g != w {
			out = append(out, fmt.Sprintf("%s = %v, want %v", name, g, w))
		}
	}
	field("name", got.Name, want.Name)
	field("kind", got.Kind, want.Kind)
	field("status", got.Status, want.Status)
	field("status message", got.StatusMsg, want.StatusMsg)
	field("tracestate", got.TraceState, want.TraceState)
	out = append(out, DiffAttrs(got.Attrs, want.Attrs)...)
	if len(got.Events) != len(want.Events) {
		out = append(out, fmt.Sprintf("%d events, want %d", len(got.Events), len(want.Events)))
	}
	for i := range min(len(got.Events), len(want.Events)) {
		g, w := got.Events[i], want.Events[i]
		field(fmt.Sprintf("event %d's name", i), g.Name, w.Name)
		for _, d := range DiffAttrs(g.Attrs, w.Attrs) {
			out = append(out, fmt.Sprintf("event %d (%s): %s", i, g.Name, d))
		}
	}
	sort.Strings(out)
	return out
}

// DiffAttrs lists how the attributes got (a span's or an event's) differ
// from want, which holds them all (see Want.Attrs).
func DiffAttrs(got []attribute.KeyValue, want map[string]any) []string {
	var out []string
	seen := map[string]bool{}
	for _, kv := range got {
		k := string(kv.Key)
		if seen[k] {
			out = append(out, fmt.Sprintf("attribute %s appears twice", k))
		}
		seen[k] = true
		g := kv.Value.AsInterface()
		if i, ok := g.(int64); ok {
			g = int(i)
		}
		w, ok := want[k]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("unexpected attribute %s = %#v", k, g))
		case !reflect.DeepEqual(g, w):
			out = append(out, fmt.Sprintf("attribute %s = %#v, want %#v", k, g, w))
		}
	}
	for k, w := range want {
		if !seen[k] {
			out = append(out, fmt.Sprintf("missing attribute %s = %#v", k, w))
		}
	}
	sort.Strings(out)
	return out
}
