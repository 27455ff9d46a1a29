package gotls

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/otel"
)

// names is an instrumentors.Target whose types are a fixed table.
type names map[uint64]string

func (n names) TypeName(addr uint64) string { return n[addr] }
func (n names) State() any                  { return nil }

func TestErrorText(t *testing.T) {
	str := func(typ, s string) errNode { return errNode{typ: typ, str: s} }
	word := func(typ string, w0, w1 uint64) errNode { return errNode{typ: typ, words: [2]uint64{w0, w1}} }
	for _, c := range []struct {
		chain []errNode
		want  string
	}{
		{[]errNode{str("*tls.permanentError", ""), str("*net.OpError", "remote error"), word("tls.alert", 42, 0)}, "remote error: tls: bad certificate"},
		{[]errNode{str("*net.OpError", "local error"), word("tls.alert", 70, 0)}, "local error: tls: protocol version not supported"},
		{[]errNode{str("*tls.CertificateVerificationError", ""), word("x509.UnknownAuthorityError", 0, 0)}, "tls: failed to verify certificate: x509: certificate signed by unknown authority"},
		{[]errNode{word("x509.HostnameError", 0, 0)}, "x509: certificate is not valid for wrong.test"},
		{[]errNode{word("x509.CertificateInvalidError", 0, 1)}, "x509: certificate has expired or is not yet valid"},
		{[]errNode{str("*net.OpError", "read"), str("*os.SyscallError", "read"), word("syscall.Errno", 104, 0)}, "read: read: connection reset by peer"},
		{[]errNode{str("*errors.errorString", "tls: client offered only unsupported versions: [303]")}, "tls: client offered only unsupported versions: [303]"},
		{[]errNode{{typ: "*errors.errorString", str: "long", cut: true}}, "long…"},
		{[]errNode{word("context.deadlineExceededError", 0, 0)}, "context deadline exceeded"},
		{[]errNode{str("*net.OpError", "remote error"), str("main.custom", "")}, "remote error"},
		{[]errNode{str("main.custom", "ignored")}, ""},
		{nil, ""},
	} {
		if got := errorText(c.chain, "wrong.test"); got != c.want {
			t.Errorf("%v: %q, want %q", c.chain, got, c.want)
		}
	}
}

func TestVersionName(t *testing.T) {
	for v, want := range map[uint16][2]string{0: {"", ""}, 0x0300: {"ssl", "3.0"}, 0x0301: {"tls", "1.0"}, 0x0303: {"tls", "1.2"}, 0x0304: {"tls", "1.3"}, 0x7f1c: {"tls", "0x7f1c"}} {
		if n, ver := VersionName(v); n != want[0] || ver != want[1] {
			t.Errorf("%#x: %s %s, want %v", v, n, ver, want)
		}
	}
	if got := ConnAttrs(0, 0x1301); got != nil {
		t.Errorf("no version: %v", got)
	}
}

func TestCaptureBytesOption(t *testing.T) {
	for _, bad := range []string{"-1", "x", "4097"} {
		if _, err := parseCaptureBytes(bad); err == nil || !strings.Contains(err.Error(), "from 0 (off) to 4096") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	for _, c := range []struct {
		value string
		on    bool
	}{{"64", true}, {"0", false}} {
		v, err := parseCaptureBytes(c.value)
		if err != nil {
			t.Fatal(err)
		}
		in, err := Tap.Configure(Tap, instrumentors.Settings{"tls-capture-bytes": {v}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if in.OffByDefault == c.on {
			t.Errorf("--tls-capture-bytes %s: off by default %v", c.value, in.OffByDefault)
		}
	}
	if !Tap.OffByDefault {
		t.Error("configuring the tap changed its declaration")
	}
}

// TestPrograms: each instrumentor loads only its programs and their maps.
func TestPrograms(t *testing.T) {
	for _, c := range []struct {
		spec          func() (*ebpf.CollectionSpec, error)
		want, foreign []string
	}{
		{Instrumentor.Spec, []string{"handshake_entry", "handshake_return", "dial_tls_entry", "hs_calls", "dial_spans", "events", "stats"}, []string{"read_entry", "reads", "tap_scratch", "conn_bytes"}},
		{Tap.Spec, []string{"read_entry", "read_return", "write_entry", "reads", "tap_scratch", "conn_bytes", "events", "goroutine_spans"}, []string{"handshake_entry", "hs_calls", "dial_spans"}},
	} {
		spec, err := c.spec()
		if err != nil {
			t.Fatal(err)
		}
		has := func(name string) bool { return spec.Programs[name] != nil || spec.Maps[name] != nil }
		for _, n := range c.want {
			if !has(n) {
				t.Errorf("missing %s", n)
			}
		}
		for _, n := range c.foreign {
			if has(n) {
				t.Errorf("has the other instrumentor's %s", n)
			}
		}
	}
}

func handshakeRecord(fill func(*handshakeEvent)) []byte {
	var e handshakeEvent
	fill(&e)
	return unsafe.Slice((*byte)(unsafe.Pointer(&e)), unsafe.Sizeof(e))
}

func TestDecodeHandshake(t *testing.T) {
	rec := handshakeRecord(func(e *handshakeEvent) {
		e.Conn, e.IsClient, e.Version, e.Cipher = 0xc000100000, 1, 0x0304, 0x1301
		copy(e.ConfigName[:], "127.0.0.1")
		e.ConfigNameLen = 9
		e.ConnType, e.RaddrType = 1, 2
		copy(e.Ip[:], []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1})
		e.IpLen, e.Port = 16, 8443
		e.Err[0].Type = 3
		e.Err[1].Type = 4
		e.Err[1].Word[0] = 48
	})
	h, err := DecodeHandshake(rec, names{1: "*net.TCPConn", 2: "*net.TCPAddr", 3: "*tls.permanentError", 4: "tls.alert"})
	if err != nil {
		t.Fatal(err)
	}
	if h.ServerName != "" || h.Requested != "127.0.0.1" || h.PeerIP != "127.0.0.1" || h.PeerPort != 8443 ||
		h.Err != "tls: unknown certificate authority" || h.ErrType != "tls.alert" || !h.Failed {
		t.Errorf("%+v", h)
	}
	// A peer behind another net.Conn is not read as a TCP address.
	h, _ = DecodeHandshake(rec, names{1: "*main.pipeConn", 2: "*net.TCPAddr"})
	if h.PeerIP != "" {
		t.Errorf("peer %q from a non-TCP connection", h.PeerIP)
	}
	if _, err := DecodeHandshake(rec[:100], names{}); err == nil {
		t.Error("short record accepted")
	}
}

func tapRecord(captured uint32, length uint64, data string) []byte {
	var e tapEvent
	e.Captured, e.Len, e.InSpan, e.Dir = captured, length, 1, 1
	e.H.SpanId = [8]byte{1}
	head := int(unsafe.Offsetof(e.Data))
	b := append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&e)), head)...)
	return append(b, data...)
}

func TestDecodeTap(t *testing.T) {
	for _, c := range []struct {
		rec []byte
		ok  bool
	}{
		{tapRecord(3, 10, "abc"), true},
		{tapRecord(0, 10, ""), true},
		{tapRecord(4, 10, "abc"), false},   // claims more than it holds
		{tapRecord(5, 3, "abcde"), false},  // more captured than the call had
		{tapRecord(5000, 9000, ""), false}, // more than any record holds
		{tapRecord(0, 0, "")[:10], false},
	} {
		call, err := DecodeTap(c.rec)
		if (err == nil) != c.ok {
			t.Errorf("record of %d bytes: %v", len(c.rec), err)
		}
		if err == nil && int(call.Len) < len(call.Data) {
			t.Errorf("%d bytes captured of %d", len(call.Data), call.Len)
		}
	}
	// Invalid UTF-8 is carried in base64, byte for byte.
	var s otel.Span
	s.SpanID = [8]byte{1}
	if err := convertTap(tapRecord(2, 2, "\xff\xfe"), &s, names{}); err != nil {
		t.Fatal(err)
	}
	if s.AddTo != s.SpanID || len(s.Events) != 1 || s.Events[0].Attrs[4].Key != Plaintext64Key || s.Events[0].Attrs[4].Value.AsString() != "//4=" {
		t.Errorf("%+v", s)
	}
}

// FuzzRecords: records from the ring buffer are decoded without panics and
// never yield more plaintext than they hold.
func FuzzRecords(f *testing.F) {
	f.Add(tapRecord(3, 10, "abc"))
	f.Add(handshakeRecord(func(e *handshakeEvent) {
		e.ServerNameLen = 1 << 30
		e.IpLen = 16
		e.Err[0].Type = 1
		e.Err[0].StrLen = 999
	}))
	f.Add(bytes.Repeat([]byte{0xff}, 2000))
	f.Fuzz(func(t *testing.T, rec []byte) {
		n := names{}
		for i := 0; i+8 <= len(rec) && i < 64; i += 8 {
			n[binary.LittleEndian.Uint64(rec[i:])] = []string{"*net.OpError", "tls.alert", "*tls.permanentError", "*net.TCPConn", "*net.TCPAddr"}[i/8%5]
		}
		var s otel.Span
		convertHandshake(rec, &s, n)
		s = otel.Span{}
		convertTap(rec, &s, n)
		if c, err := DecodeTap(rec); err == nil && (len(c.Data) > MaxCaptureBytes || uint64(len(c.Data)) > c.Len) {
			t.Errorf("%d bytes of plaintext from a call of %d", len(c.Data), c.Len)
		}
	})
}
