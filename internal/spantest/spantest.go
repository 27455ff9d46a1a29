// Package spantest compares the span an instrumentor's Convert built with
// the span a table of records → spans expects, for tests that run without
// a kernel: every attribute, by its exported key, with its type.
package spantest

import (
	"fmt"
	"reflect"
	"sort"

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

	seen := map[string]bool{}
	for _, kv := range got.Attrs {
		k := string(kv.Key)
		if seen[k] {
			out = append(out, fmt.Sprintf("attribute %s appears twice", k))
		}
		seen[k] = true
		g := kv.Value.AsInterface()
		if i, ok := g.(int64); ok {
			g = int(i)
		}
		w, ok := want.Attrs[k]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("unexpected attribute %s = %#v", k, g))
		case !reflect.DeepEqual(g, w):
			out = append(out, fmt.Sprintf("attribute %s = %#v, want %#v", k, g, w))
		}
	}
	for k, w := range want.Attrs {
		if !seen[k] {
			out = append(out, fmt.Sprintf("missing attribute %s = %#v", k, w))
		}
	}
	sort.Strings(out)
	return out
}
