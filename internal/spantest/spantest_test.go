package spantest

import (
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/otel"
)

func TestDiff(t *testing.T) {
	span := &otel.Span{Name: "GET", Kind: trace.SpanKindServer, Status: codes.Error, Attrs: []attribute.KeyValue{
		attribute.String("s", "x"), attribute.Int("i", 5), attribute.Bool("b", true), attribute.StringSlice("l", []string{"a"}),
	}}
	want := Want{Name: "GET", Kind: trace.SpanKindServer, Status: codes.Error, Attrs: map[string]any{"s": "x", "i": 5, "b": true, "l": []string{"a"}}}
	if d := Diff(span, want); len(d) != 0 {
		t.Errorf("equal spans differ: %v", d)
	}
	span.Events = []otel.Event{{Name: "e", Attrs: []attribute.KeyValue{attribute.Int("n", 1)}}, {Name: "f"}}
	want.Events = []Event{{Name: "e", Attrs: map[string]any{"n": 2}}}
	span.Attrs = append(span.Attrs, attribute.String("i", "5"), attribute.Int("extra", 1))
	span.Name = "POST"
	delete(want.Attrs, "b")
	want.Attrs["missing"] = "m"
	got := strings.Join(Diff(span, want), "\n")
	for _, w := range []string{
		`name = POST, want GET`,
		`attribute i appears twice`,
		`attribute i = "5", want 5`,
		`unexpected attribute extra = 1`,
		`unexpected attribute b = true`,
		`missing attribute missing = "m"`,
		`2 events, want 1`,
		`event 0 (e): attribute n = 1, want 2`,
	} {
		if !strings.Contains(got, w) {
			t.Errorf("no %q in:\n%s", w, got)
		}
	}
}
