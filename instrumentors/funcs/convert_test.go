package funcs

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"unsafe"

	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/bpf"
	"github.com/uranus-otel/uranus/internal/spantest"
	"github.com/uranus-otel/uranus/otel"
)

// traced is a target tracing funcs, whose type descriptors have names.
type traced struct {
	funcs []*Func
	names map[uint64]string
}

func (t traced) TypeName(addr uint64) string { return t.names[addr] }
func (t traced) State() any                  { return &targetState{funcs: t.funcs} }

// call is a record of a call to the function of cookie fn.
func call(fn uint32, v *bpf.FuncsValues) []byte {
	var e event
	e.Func = fn
	if v != nil {
		e.V = *v
	}
	return bytes.Clone(unsafe.Slice((*byte)(unsafe.Pointer(&e)), unsafe.Sizeof(e)))
}

// word is a value read as one word into slot 0.
func word(raw uint64) *bpf.FuncsValues {
	v := &bpf.FuncsValues{Valid: 1}
	v.Vals[0] = raw
	return v
}

// text is a value read as bytes into string slot 0, of full length n.
func text(s string, n uint32) *bpf.FuncsValues {
	v := &bpf.FuncsValues{Valid: 1 << maxVals}
	copy(v.Str[0][:], s)
	v.StrLen[0] = n
	return v
}

const errorStringType = 0x4b0000 // where the target's *errors.errorString descriptor is

// TestConvert: call records → spans, each argument or result shown by its
// type as the README's "Tracing any function" section states.
func TestConvert(t *testing.T) {
	long := strings.Repeat("x", 200)
	typ := func(k Kind, size int64) *Type { return &Type{Kind: k, Size: size} }
	for _, c := range []struct {
		name  string
		value Value
		vals  *bpf.FuncsValues
		want  map[string]any // besides code.function.name; nil for none
	}{
		{"int8 is sign-extended", Value{Key: "arg.a", Type: typ(KindInt, 1)}, word(0xff), map[string]any{"arg.a": -1}},
		{"int64", Value{Key: "arg.a", Type: typ(KindInt, 8)}, word(uint64(math.MaxUint64 - 4)), map[string]any{"arg.a": -5}},
		{"uint16 keeps its own bytes", Value{Key: "arg.u", Type: typ(KindUint, 2)}, word(0x10005), map[string]any{"arg.u": 5}},
		{"a uint64 past int64 is a string", Value{Key: "arg.u", Type: typ(KindUint, 8)}, word(1 << 63), map[string]any{"arg.u": "9223372036854775808"}},
		{"bool is its low byte", Value{Key: "result.ok", Type: typ(KindBool, 1), Result: true}, word(0x100), map[string]any{"result.ok": false}},
		{"float32", Value{Key: "arg.f", Type: typ(KindFloat, 4)}, word(uint64(math.Float32bits(1.5))), map[string]any{"arg.f": 1.5}},
		{"float64", Value{Key: "arg.f", Type: typ(KindFloat, 8)}, word(math.Float64bits(-2.25)), map[string]any{"arg.f": -2.25}},
		{"an error by its dynamic type", Value{Key: "result.1", Type: typ(KindInterface, 16)}, word(errorStringType), map[string]any{"result.1": "*errors.errorString"}},
		{"a nil error", Value{Key: "result.1", Type: typ(KindInterface, 16)}, word(0), map[string]any{"result.1": "nil"}},
		{"an interface of a type uranus cannot name", Value{Key: "arg.v", Type: typ(KindInterface, 16)}, word(0x4c0000), map[string]any{"arg.v": "0x4c0000"}},
		{"a pointer as an address", Value{Key: "arg.p", Type: typ(KindPointer, 8)}, word(0xc000012345), map[string]any{"arg.p": "0xc000012345"}},
		{"a string", Value{Key: "arg.s", Type: typ(KindString, 16), Str: true}, text("hello", 5), map[string]any{"arg.s": "hello"}},
		{"a string longer than the record: its start and its length", Value{Key: "arg.s", Type: typ(KindString, 16), Str: true},
			text(long, 200), map[string]any{"arg.s": long[:strLen], "arg.s.length": 200}},
		{"a C string ends at its NUL", Value{Key: "arg.c", Type: typ(KindCString, 8), Str: true}, text("abc\x00def", 7), map[string]any{"arg.c": "abc"}},
		{"a value not read is left out", Value{Key: "arg.a", Type: typ(KindInt, 8)}, &bpf.FuncsValues{}, nil},
		{"a nil pointer on a field path is left out", Value{Key: "arg.r.URL.Path", Type: typ(KindString, 16), Str: true},
			&bpf.FuncsValues{Valid: 1 << maxVals, Nil: 1 << maxVals}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &Func{Name: "main.compute", Values: []Value{c.value}}
			var s otel.Span
			if err := convert(call(0, c.vals), &s, traced{funcs: []*Func{f}, names: map[uint64]string{errorStringType: "*errors.errorString"}}); err != nil {
				t.Fatal(err)
			}
			attrs := map[string]any{"code.function.name": "main.compute"}
			for k, v := range c.want {
				attrs[k] = v
			}
			for _, d := range spantest.Diff(&s, spantest.Want{Name: "main.compute", Kind: trace.SpanKindInternal, Attrs: attrs}) {
				t.Error(d)
			}
		})
	}

	// The cookie picks the function; what cannot be read on any call is
	// named on each span.
	fs := []*Func{{Name: "main.a"}, {Name: "main.b", Unreadable: []string{"arg.x"}}}
	var s otel.Span
	if err := convert(call(1, nil), &s, traced{funcs: fs}); err != nil {
		t.Fatal(err)
	}
	for _, d := range spantest.Diff(&s, spantest.Want{Name: "main.b", Kind: trace.SpanKindInternal,
		Attrs: map[string]any{"code.function.name": "main.b", "uranus.not_recorded": []string{"arg.x"}}}) {
		t.Error(d)
	}
	if err := convert(call(2, nil), &otel.Span{}, traced{funcs: fs}); err == nil {
		t.Error("a record for a function the target does not trace was converted")
	}
}
