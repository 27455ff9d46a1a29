package gotls

import (
	"bytes"
	"testing"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/internal/spantest"
	"github.com/uranus-otel/uranus/otel"
)

// Type descriptors of the target in TestConvertHandshake.
const (
	tTCPConn = iota + 1
	tTCPAddr
	tPermanent
	tAlert
	tOpError
	tErrno
	tCVE
	tHostname
	tUnknown
)

var handshakeTypes = names{
	tTCPConn: "*net.TCPConn", tTCPAddr: "*net.TCPAddr", tPermanent: "*tls.permanentError", tAlert: "tls.alert",
	tOpError: "*net.OpError", tErrno: "syscall.Errno", tCVE: "*tls.CertificateVerificationError", tHostname: "x509.HostnameError",
}

// handshake is a record of a TLS 1.3 handshake on conn 0xc000100000 with
// a TCP peer at 10.0.0.2:443; change sets what a case is about.
func handshake(client bool, change func(e *handshakeEvent)) []byte {
	return handshakeRecord(func(e *handshakeEvent) {
		e.Conn, e.Version, e.Cipher = 0xc000100000, 0x0304, 0x1301
		if client {
			e.IsClient = 1
		}
		e.ConnType, e.RaddrType = tTCPConn, tTCPAddr
		e.IpLen = uint8(copy(e.Ip[:], []byte{10, 0, 0, 2}))
		e.Port = 443
		change(e)
	})
}

func str(dst []byte, s string) uint32 { return uint32(copy(dst, s)) }

// failed makes the record a failure whose error chain is types, each with
// its string or first word.
func failed(chain ...struct {
	typ  uint64
	str  string
	word uint64
}) func(e *handshakeEvent) {
	return func(e *handshakeEvent) {
		for i, n := range chain {
			e.Err[i].Type, e.Err[i].Word[0] = n.typ, n.word
			e.Err[i].StrLen = str(e.Err[i].Str[:], n.str)
		}
	}
}

type node = struct {
	typ  uint64
	str  string
	word uint64
}

// connected are the attributes of the handshake record's connection.
func connected(more map[string]any) map[string]any {
	m := map[string]any{
		"uranus.tls.connection": "0xc000100000",
		"tls.established":       true,
		"tls.resumed":           false,
		"tls.protocol.name":     "tls",
		"tls.protocol.version":  "1.3",
		"tls.cipher":            "TLS_AES_128_GCM_SHA256",
		"network.peer.address":  "10.0.0.2",
		"network.peer.port":     443,
	}
	for k, v := range more {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

// TestConvertHandshake: handshake records → spans.
func TestConvertHandshake(t *testing.T) {
	client := func(status codes.Code, msg string, attrs map[string]any) spantest.Want {
		return spantest.Want{Name: "TLS client handshake", Kind: trace.SpanKindInternal, Status: status, StatusMsg: msg, Attrs: attrs}
	}
	server := func(attrs map[string]any) spantest.Want {
		return spantest.Want{Name: "TLS server handshake", Kind: trace.SpanKindInternal, Attrs: attrs}
	}
	failure := map[string]any{"tls.established": false, "tls.resumed": nil, "tls.protocol.name": nil, "tls.protocol.version": nil, "tls.cipher": nil}
	with := func(m map[string]any, more map[string]any) map[string]any {
		out := map[string]any{}
		for k, v := range m {
			out[k] = v
		}
		for k, v := range more {
			out[k] = v
		}
		return out
	}
	for _, c := range []struct {
		name string
		rec  []byte
		want spantest.Want
	}{{
		name: "client: SNI, the name checked, ALPN and the peer",
		rec: handshake(true, func(e *handshakeEvent) {
			e.ServerNameLen = str(e.ServerName[:], "api.example")
			e.ConfigNameLen = str(e.ConfigName[:], "api.example")
			e.AlpnLen = str(e.Alpn[:], "h2")
		}),
		want: client(codes.Unset, "", connected(map[string]any{
			"tls.client.server_name": "api.example",
			"server.address":         "api.example",
			"tls.next_protocol":      "h2",
		})),
	}, {
		name: "client to an IP address: no SNI is sent",
		rec:  handshake(true, func(e *handshakeEvent) { e.ConfigNameLen = str(e.ConfigName[:], "127.0.0.1") }),
		want: client(codes.Unset, "", connected(map[string]any{"server.address": "127.0.0.1"})),
	}, {
		name: "client of Go 1.13, which keeps the SNI only in its Config: derived, without the trailing dot",
		rec:  handshake(true, func(e *handshakeEvent) { e.ConfigNameLen = str(e.ConfigName[:], "api.example.") }),
		want: client(codes.Unset, "", connected(map[string]any{"server.address": "api.example.", "tls.client.server_name": "api.example"})),
	}, {
		name: "server, resumed, with the SNI it received",
		rec: handshake(false, func(e *handshakeEvent) {
			e.Resumed = 1
			e.ServerNameLen = str(e.ServerName[:], "shop.example")
		}),
		want: server(connected(map[string]any{"tls.resumed": true, "tls.client.server_name": "shop.example"})),
	}, {
		name: "a peer behind a connection that is not TCP is not read",
		rec:  handshake(false, func(e *handshakeEvent) { e.ConnType = tUnknown }),
		want: server(connected(map[string]any{"network.peer.address": nil, "network.peer.port": nil})),
	}, {
		name: "an alert from the peer: the alert's type and text, past crypto/tls's wrapper",
		rec: handshake(true, func(e *handshakeEvent) {
			e.Version, e.Cipher = 0, 0
			failed(node{typ: tPermanent}, node{typ: tAlert, word: 48})(e)
		}),
		want: client(codes.Error, "tls: unknown certificate authority", connected(with(failure, map[string]any{"error.type": "tls.alert"}))),
	}, {
		name: "a reset connection",
		rec: handshake(true, func(e *handshakeEvent) {
			e.Version, e.Cipher = 0, 0
			failed(node{typ: tOpError, str: "read"}, node{typ: tErrno, word: 104})(e)
		}),
		want: client(codes.Error, "read: connection reset by peer", connected(with(failure, map[string]any{"error.type": "*net.OpError"}))),
	}, {
		name: "a certificate for another name",
		rec: handshake(true, func(e *handshakeEvent) {
			e.Version, e.Cipher = 0, 0
			e.ConfigNameLen = str(e.ConfigName[:], "api.example")
			failed(node{typ: tCVE}, node{typ: tHostname})(e)
		}),
		want: client(codes.Error, "tls: failed to verify certificate: x509: certificate is not valid for api.example",
			connected(with(failure, map[string]any{
				"error.type":             "*tls.CertificateVerificationError",
				"server.address":         "api.example",
				"tls.client.server_name": "api.example",
			}))),
	}, {
		name: "an error uranus cannot name or tell",
		rec: handshake(false, func(e *handshakeEvent) {
			e.Version, e.Cipher = 0, 0
			failed(node{typ: tUnknown})(e)
		}),
		want: spantest.Want{Name: "TLS server handshake", Kind: trace.SpanKindInternal, Status: codes.Error, StatusMsg: "_OTHER",
			Attrs: connected(with(failure, map[string]any{"error.type": "_OTHER"}))},
	}} {
		t.Run(c.name, func(t *testing.T) {
			var s otel.Span
			if err := Instrumentor.Convert(c.rec, &s, handshakeTypes); err != nil {
				t.Fatal(err)
			}
			for _, d := range spantest.Diff(&s, c.want) {
				t.Error(d)
			}
		})
	}
}

// tapCall is a tap record of one call on conn 0xc000200000 made inside a
// span; captured bytes of data follow the header.
func tapCall(write bool, length uint64, data string) []byte {
	var e tapEvent
	e.Conn, e.Len, e.InSpan = 0xc000200000, length, 1
	e.ConnRead, e.ConnWritten = 1000, 2000
	if write {
		e.Dir = 1
	}
	e.Captured = uint32(len(data))
	head := int(unsafe.Offsetof(e.Data))
	return append(bytes.Clone(unsafe.Slice((*byte)(unsafe.Pointer(&e)), head)), data...)
}

// TestConvertTap: tap records → events on the span active where the call
// was made, which the record does not end.
func TestConvertTap(t *testing.T) {
	counts := func(n int, more map[string]any) map[string]any {
		m := map[string]any{
			"uranus.tls.connection":               "0xc000200000",
			"uranus.tls.bytes":                    n,
			"uranus.tls.connection.bytes_read":    1000,
			"uranus.tls.connection.bytes_written": 2000,
		}
		for k, v := range more {
			m[k] = v
		}
		return m
	}
	for _, c := range []struct {
		name string
		rec  []byte
		want spantest.Event
	}{{
		name: "a write captured whole",
		rec:  tapCall(true, 14, "GET / HTTP/1.1"),
		want: spantest.Event{Name: "tls.write", Attrs: counts(14, map[string]any{"uranus.tls.plaintext": "GET / HTTP/1.1", "uranus.tls.plaintext.truncated": false})},
	}, {
		name: "a read captured in part",
		rec:  tapCall(false, 10, "HTT"),
		want: spantest.Event{Name: "tls.read", Attrs: counts(10, map[string]any{"uranus.tls.plaintext": "HTT", "uranus.tls.plaintext.truncated": true})},
	}, {
		name: "without capture: counts only",
		rec:  tapCall(false, 10, ""),
		want: spantest.Event{Name: "tls.read", Attrs: counts(10, nil)},
	}, {
		name: "bytes that are not UTF-8 travel in base64",
		rec:  tapCall(true, 3, "\x16\x03\xff"),
		want: spantest.Event{Name: "tls.write", Attrs: counts(3, map[string]any{"uranus.tls.plaintext_base64": "FgP/", "uranus.tls.plaintext.truncated": false})},
	}} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Unix(1700000000, 0)
			s := otel.Span{SpanID: trace.SpanID{7}, Start: start}
			if err := Tap.Convert(c.rec, &s, names{}); err != nil {
				t.Fatal(err)
			}
			if s.AddTo != s.SpanID {
				t.Errorf("the events go to span %v, want the active span %v", s.AddTo, s.SpanID)
			}
			if len(s.Events) == 1 && !s.Events[0].Time.Equal(start) {
				t.Errorf("event at %v, want the call's time %v", s.Events[0].Time, start)
			}
			for _, d := range spantest.Diff(&s, spantest.Want{Events: []spantest.Event{c.want}}) {
				t.Error(d)
			}
		})
	}
	// A call outside any span reaches only a raw-record reader (tls-dump).
	rec := tapCall(true, 3, "abc")
	rec[unsafe.Offsetof(tapEvent{}.InSpan)] = 0
	if err := Tap.Convert(rec, &otel.Span{SpanID: trace.SpanID{7}}, names{}); err == nil {
		t.Error("a call outside any span became an event")
	}
}
