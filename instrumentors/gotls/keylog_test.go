package gotls

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/otel"
)

func keyLogRecord(label string, random, secret []byte, fill func(*keyLogEvent)) []byte {
	var e keyLogEvent
	e.LabelLen = str(e.Label[:], label)
	e.RandomLen = uint32(copy(e.Random[:], random))
	e.SecretLen = uint32(copy(e.Secret[:], secret))
	if fill != nil {
		fill(&e)
	}
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&e)), unsafe.Sizeof(e))...)
}

func TestDecodeKeyLog(t *testing.T) {
	random := bytes.Repeat([]byte{0xab}, 32)
	master := bytes.Repeat([]byte{0x01}, 48)
	s, err := DecodeKeyLog(keyLogRecord("CLIENT_RANDOM", random, master, nil))
	if err != nil {
		t.Fatal(err)
	}
	want := "CLIENT_RANDOM " + strings.Repeat("ab", 32) + " " + strings.Repeat("01", 48) + "\n"
	if got := s.NSSLine(); got != want {
		t.Errorf("NSS line %q, want %q", got, want)
	}
	traffic := bytes.Repeat([]byte{0xfe}, 32)
	if s, err := DecodeKeyLog(keyLogRecord("SERVER_TRAFFIC_SECRET_0", random, traffic, nil)); err != nil || s.NSSLine() !=
		"SERVER_TRAFFIC_SECRET_0 "+strings.Repeat("ab", 32)+" "+strings.Repeat("fe", 32)+"\n" {
		t.Errorf("TLS 1.3 secret: %q, %v", s.NSSLine(), err)
	}

	for _, c := range []struct {
		name string
		rec  []byte
		want string
	}{
		{"short", keyLogRecord("CLIENT_RANDOM", random, master, nil)[:40], "tls key log record of 40 bytes"},
		{"no label", keyLogRecord("", random, master, nil), "label of 0 bytes"},
		{"long label", keyLogRecord("CLIENT_RANDOM", random, master, func(e *keyLogEvent) { e.LabelLen = 33 }), "label of 33 bytes"},
		{"odd label", keyLogRecord("CLIENT RANDOM", random, master, nil), `label of 13 bytes "CLIENT RANDOM"`},
		{"short random", keyLogRecord("CLIENT_RANDOM", random[:16], master, nil), "client random of 16 bytes, not 32"},
		{"long secret", keyLogRecord("CLIENT_RANDOM", random, master, func(e *keyLogEvent) { e.SecretLen = 65 }), "secret of 65 bytes (1 to 64 fit)"},
		{"no secret", keyLogRecord("CLIENT_RANDOM", random, nil, nil), "secret of 0 bytes"},
	} {
		if _, err := DecodeKeyLog(c.rec); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// Secrets never become spans, whatever the record.
func TestConvertKeyLog(t *testing.T) {
	var s otel.Span
	err := convertKeyLog(keyLogRecord("CLIENT_RANDOM", make([]byte, 32), make([]byte, 48), nil), &s, names{})
	if err == nil || len(s.Attrs) != 0 || len(s.Events) != 0 || s.Name != "" {
		t.Errorf("convertKeyLog made a span: %v, %+v", err, s)
	}
}

func TestKeyLogOnlyWhenAsked(t *testing.T) {
	for _, c := range []struct {
		in *instrumentors.Instrumentor
		on bool
	}{{KeyLog, false}, {KeyLogRecording(), true}} {
		d, err := c.in.Dynamic(nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.Consts["keylog_records"]; got != boolConst(c.on) {
			t.Errorf("recording %v: keylog_records = %d", c.on, got)
		}
	}
	if !KeyLog.OffByDefault {
		t.Error("tls-keylog is on by default")
	}
}

// TestKeyLogOption: --tls-keylog FILE turns the key log on, writing to a
// file made with mode 0600, and refuses a file others can read.
func TestKeyLogOption(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.log")
	in, err := KeyLog.Configure(KeyLog, instrumentors.Settings{"tls-keylog": {path}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if in.OffByDefault {
		t.Error("--tls-keylog did not turn the key log on")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key log file: %v, %v; want mode 0600", fi, err)
	}
	rec := keyLogRecord("CLIENT_RANDOM", make([]byte, 32), []byte{1, 2, 3}, nil)
	if err := in.Convert(rec, &otel.Span{}, names{}); !errors.Is(err, instrumentors.ErrNoSpan) {
		t.Errorf("Convert: %v, want ErrNoSpan", err)
	}
	if b, _ := os.ReadFile(path); !strings.HasPrefix(string(b), "CLIENT_RANDOM 0000") || !strings.HasSuffix(string(b), " 010203\n") {
		t.Errorf("key log holds %q", b)
	}
	open := filepath.Join(dir, "open.log")
	os.WriteFile(open, nil, 0o644)
	os.Chmod(open, 0o644)
	if _, err := KeyLog.Configure(KeyLog, instrumentors.Settings{"tls-keylog": {open}}, nil); err == nil || !strings.Contains(err.Error(), "lets others read the secrets") {
		t.Errorf("a 0644 file: %v", err)
	}
}
