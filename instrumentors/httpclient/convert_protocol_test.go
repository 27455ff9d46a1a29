package httpclient

import (
	"testing"
	"unsafe"

	"github.com/uranus-otel/uranus/otel"
)

// TestConvertProtocolVersion: network.protocol.version comes from the
// response's Proto, spelled as the conventions want, and is left out when
// there was no response.
func TestConvertProtocolVersion(t *testing.T) {
	for proto, want := range map[string]string{
		"HTTP/1.1": "1.1",
		"HTTP/1.0": "1.0",
		"HTTP/2.0": "2",
		"HTTP/3.0": "3",
		"":         "",
		"junk":     "",
	} {
		var e event
		e.MethodLen = uint32(copy(e.Method[:], "GET"))
		e.ProtoLen = uint32(copy(e.Proto[:], proto))
		rec := unsafe.Slice((*byte)(unsafe.Pointer(&e)), unsafe.Sizeof(e))
		var s otel.Span
		if err := (converter{}).convert(rec, &s, nil); err != nil {
			t.Fatal(err)
		}
		got, has := "", false
		for _, kv := range s.Attrs {
			if kv.Key == "network.protocol.version" {
				got, has = kv.Value.AsString(), true
			}
		}
		if got != want || has != (want != "") {
			t.Errorf("Proto %q: network.protocol.version %q (present %v), want %q", proto, got, has, want)
		}
	}
}
