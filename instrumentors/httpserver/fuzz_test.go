package httpserver

import (
	"bytes"
	"testing"
	"unicode/utf8"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/otel"
)

// record returns e as the bytes the BPF program submits.
func record(e *event) []byte {
	return bytes.Clone(unsafe.Slice((*byte)(unsafe.Pointer(e)), unsafe.Sizeof(*e)))
}

func fuzzSeeds() [][]byte {
	var e event
	e.Status = 200
	e.ProtoMajor, e.ProtoMinor = 1, 1
	e.MethodLen = uint32(copy(e.Method[:], "GET"))
	e.PathLen = uint32(copy(e.Path[:], "/users/42"))
	e.HostLen = uint32(copy(e.Host[:], "example.com:8080"))
	e.RemoteLen = uint32(copy(e.RemoteAddr[:], "[::1]:51234"))
	e.PatternLen = uint32(copy(e.Pattern[:], "GET /users/{id}"))
	valid := record(&e)

	// Lengths past the buffers (a truncated value), invalid UTF-8 (a
	// request for /%ff, or a value cut inside a character), odd status
	// and protocol numbers.
	e.PathLen = 1 << 20
	copy(e.Path[:], "/\xff\xfe/caf\xc3")
	e.Status = 1 << 63
	e.ProtoMajor = 2
	e.MethodLen = 0xffffffff
	odd := record(&e)

	ff := bytes.Repeat([]byte{0xff}, len(valid))
	return [][]byte{valid, odd, ff, valid[:len(valid)-1], valid[:64], nil, append(bytes.Clone(valid), 1, 2, 3)}
}

// FuzzConvert decodes arbitrary ring-buffer records: a short record is an
// error, never a panic, and a span holds only valid UTF-8 (one invalid
// string makes OTLP refuse the whole batch it travels in).
func FuzzConvert(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	size := int(unsafe.Sizeof(event{}))
	f.Fuzz(func(t *testing.T, rec []byte) {
		var s otel.Span
		err := Instrumentor.Convert(rec, &s, nil)
		if len(rec) < size {
			if err == nil {
				t.Fatalf("a %d-byte record was accepted; a record is %d bytes", len(rec), size)
			}
			return
		}
		if err != nil {
			t.Fatalf("a full record was rejected: %v", err)
		}
		if s.Kind != trace.SpanKindServer {
			t.Errorf("kind %v", s.Kind)
		}
		strs := map[string]string{"name": s.Name, "status message": s.StatusMsg, "tracestate": s.TraceState}
		for _, kv := range s.Attrs {
			if kv.Value.Type() == attribute.STRING {
				strs[string(kv.Key)] = kv.Value.AsString()
			}
		}
		for k, v := range strs {
			if !utf8.ValidString(v) {
				t.Errorf("%s is not valid UTF-8: %q", k, v)
			}
		}
	})
}
