package httpserver

import (
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/otel"
)

// TestConvertStatus: a status the program read becomes the status code (a
// 5xx an error, 0 the 200 net/http sends); a status it could not read is
// left out and named as unreported, never shown as 200.
func TestConvertStatus(t *testing.T) {
	for _, c := range []struct {
		status  uint64
		unknown bool
		want    int64 // 0: no status code attribute
		err     bool
	}{
		{200, false, 200, false},
		{0, false, 200, false},
		{404, false, 404, false},
		{500, false, 500, true},
		{0, true, 0, false},
		{500, true, 0, false},
	} {
		var e event
		e.Status = c.status
		if c.unknown {
			e.StatusUnknown = 1
		}
		e.ProtoMajor = 2
		e.MethodLen = uint32(copy(e.Method[:], "GET"))
		e.PathLen = uint32(copy(e.Path[:], "/status"))
		var s otel.Span
		if err := convert(record(&e), &s, nil); err != nil {
			t.Fatal(err)
		}
		a := map[attribute.Key]attribute.Value{}
		for _, kv := range s.Attrs {
			a[kv.Key] = kv.Value
		}
		got, has := a["http.response.status_code"]
		switch {
		case c.want == 0 && has:
			t.Errorf("status %d unknown=%v: status code %v, want none", c.status, c.unknown, got.AsInt64())
		case c.want != 0 && (!has || got.AsInt64() != c.want):
			t.Errorf("status %d unknown=%v: status code %v (present %v), want %d", c.status, c.unknown, got.AsInt64(), has, c.want)
		}
		un, hasUn := a[instrumentors.UnreportedKey]
		if hasUn != c.unknown || (hasUn && (len(un.AsStringSlice()) != 1 || un.AsStringSlice()[0] != "http.response.status_code")) {
			t.Errorf("status %d unknown=%v: %s = %v", c.status, c.unknown, instrumentors.UnreportedKey, un.AsStringSlice())
		}
		if (s.Status == codes.Error) != c.err {
			t.Errorf("status %d unknown=%v: span status %v, want error %v", c.status, c.unknown, s.Status, c.err)
		}
		if a["network.protocol.version"].AsString() != "2" {
			t.Errorf("network.protocol.version = %q", a["network.protocol.version"].AsString())
		}
	}
}
