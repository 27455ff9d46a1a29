// Package gotls instruments crypto/tls.
//
// Instrumentor ("tls") records a span per TLS handshake, client and server:
// protocol version, cipher suite, server name (SNI), whether the session was
// resumed, ALPN, the peer's address and, when it fails, the error text. Two
// probe hits per handshake, plus one per TLS connection a net/http Transport
// dials (see bpf/tls.c for why).
//
// Tap ("tls-tap", off by default) reads the plaintext of (*Conn).Write and
// (*Conn).Read: byte counts per connection always, and with CaptureBytes > 0
// the first bytes of each call, as events on the span active where the call
// happened. One probe hit per Write, two per Read.
package gotls

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"
	"unsafe"

	"github.com/cilium/ebpf"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/binary"
	"github.com/uranus-otel/uranus/bpf"
	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/offsets"
	"github.com/uranus-otel/uranus/otel"
)

// MaxCaptureBytes bounds CaptureBytes: what one record can carry.
const MaxCaptureBytes = 4096

// parseCaptureBytes reads --tls-capture-bytes.
func parseCaptureBytes(s string) (any, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil || n > MaxCaptureBytes {
		return nil, fmt.Errorf("%q is not a byte count from 0 (off) to %d", s, MaxCaptureBytes)
	}
	return uint32(n), nil
}

// TapWith returns the tap copying the first capture bytes of each Read and
// Write (0: none, it only counts), on. everyCall makes it record calls made
// outside any span too, for a reader of raw records (uranus tls-dump);
// spans never receive those.
func TapWith(capture uint32, everyCall bool) *instrumentors.Instrumentor {
	c := *Tap
	c.Dynamic = tapDynamic(capture, everyCall)
	c.OffByDefault = false
	return &c
}

func tapDynamic(capture uint32, everyCall bool) func(bin *binary.File) (*instrumentors.Dynamic, error) {
	return func(bin *binary.File) (*instrumentors.Dynamic, error) {
		fn, err := bin.Func("crypto/tls.(*Conn).Write")
		if err != nil {
			return nil, err
		}
		return &instrumentors.Dynamic{Consts: map[string]uint64{
			"write_fn_size":  fn.Size,
			"capture_bytes":  uint64(min(capture, MaxCaptureBytes)),
			"tap_every_call": boolConst(everyCall),
		}}, nil
	}
}

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 -output-dir ../../bpf -go-package bpf -type handshake_event -type tap_event Tls ../../bpf/tls.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
var Instrumentor = &instrumentors.Instrumentor{
	ID:           "tls",
	Doc:          "crypto/tls: a span per handshake (client and server)",
	Library:      "crypto/tls",
	Spec:         programs("handshake_entry", "handshake_return", "dial_tls_entry"),
	InFlight:     "hs_calls",
	InFlightKind: trace.SpanKindInternal,
	Probes: []instrumentors.Probe{{
		Symbol:   "crypto/tls.(*Conn).clientHandshake",
		Entry:    "handshake_entry",
		Return:   "handshake_return",
		Optional: true,
	}, {
		Symbol:   "crypto/tls.(*Conn).serverHandshake",
		Entry:    "handshake_entry",
		Return:   "handshake_return",
		Optional: true,
	}, {
		Symbol:   "net/http.(*persistConn).addTLS",
		Entry:    "dial_tls_entry",
		Optional: true,
	}},
	Consts: []instrumentors.Const{
		{Name: "off_conn_conn", Field: offsets.Field{Struct: "crypto/tls.Conn", Member: "conn"}},
		{Name: "off_conn_is_client", Field: offsets.Field{Struct: "crypto/tls.Conn", Member: "isClient"}},
		{Name: "off_conn_vers", Field: offsets.Field{Struct: "crypto/tls.Conn", Member: "vers"}},
		{Name: "off_conn_cipher", Field: offsets.Field{Struct: "crypto/tls.Conn", Member: "cipherSuite"}},
		{Name: "off_conn_did_resume", Field: offsets.Field{Struct: "crypto/tls.Conn", Member: "didResume"}},
		{Name: "off_conn_server_name", Field: offsets.Field{Struct: "crypto/tls.Conn", Member: "serverName"}},
		{Name: "off_conn_config", Field: offsets.Field{Struct: "crypto/tls.Conn", Member: "config"}},
		{Name: "off_conn_alpn", Field: offsets.Field{Struct: "crypto/tls.Conn", Member: "clientProtocol"}},
		{Name: "off_config_server_name", Field: offsets.Field{Struct: "crypto/tls.Config", Member: "ServerName"}},
		{Name: "off_tcpconn_conn", Field: offsets.Field{Struct: "net.TCPConn", Member: "conn"}},
		{Name: "off_netconn_fd", Field: offsets.Field{Struct: "net.conn", Member: "fd"}},
		{Name: "off_netfd_raddr", Field: offsets.Field{Struct: "net.netFD", Member: "raddr"}},
		{Name: "off_tcpaddr_ip", Field: offsets.Field{Struct: "net.TCPAddr", Member: "IP"}},
		{Name: "off_tcpaddr_port", Field: offsets.Field{Struct: "net.TCPAddr", Member: "Port"}},
		{Name: "off_operror_err", Field: offsets.Field{Struct: "net.OpError", Member: "Err"}},
		{Name: "off_syscallerr_err", Field: offsets.Field{Struct: "os.SyscallError", Member: "Err"}},
		// CertificateVerificationError arrived in Go 1.20.
		{Name: "off_cve_err", Field: offsets.Field{Struct: "crypto/tls.CertificateVerificationError", Member: "Err"}, Optional: true},
	},
	Values: []instrumentors.Value{
		// Before the register ABI, (c *Conn) clientHandshake() took one
		// word of arguments: its results follow it on the stack.
		{Name: "hs_arg_words", GoVersions: "< 1.17", Value: 1},
	},
	Dynamic: handshakePlan,
	Convert: convertHandshake,
	Stats:   [4]string{"handshakes that failed", "handshakes parented through a net/http dial"},
}

// Tap is the opt-in plaintext tap.
var Tap = &instrumentors.Instrumentor{
	ID:      "tls-tap",
	Doc:     "crypto/tls plaintext: bytes per connection, and with --tls-capture-bytes the first bytes of each Read/Write as span events (off by default)",
	Library: "crypto/tls",
	Spec:    programs("read_entry", "read_return", "write_entry"),
	Probes: []instrumentors.Probe{{
		Symbol: "crypto/tls.(*Conn).Read",
		Entry:  "read_entry",
		Return: "read_return",
	}, {
		Symbol: "crypto/tls.(*Conn).Write",
		Entry:  "write_entry",
	}},
	Consts: []instrumentors.Const{
		{Name: "off_conn_conn", Field: offsets.Field{Struct: "crypto/tls.Conn", Member: "conn"}},
		{Name: "off_conn_active_call", Field: offsets.Field{Struct: "crypto/tls.Conn", Member: "activeCall"}},
		{Name: "off_g_sched", Field: offsets.Field{Struct: "runtime.g", Member: "sched"}},
		{Name: "off_gobuf_pc", Field: offsets.Field{Struct: "runtime.gobuf", Member: "pc"}},
	},
	Values: []instrumentors.Value{
		// (c *Conn) Read(b []byte): four words of arguments on the stack.
		{Name: "rw_arg_words", GoVersions: "< 1.17", Value: 4},
	},
	Dynamic: tapDynamic(0, false),
	// Asking for plaintext means nothing without the tap: a positive
	// --tls-capture-bytes turns it on.
	Options: []instrumentors.Option{{
		Name: "tls-capture-bytes",
		Usage: "export the first `N` bytes of each TLS Read and Write as events of the span they happen in " +
			"(0: off; turns the tls-tap instrumentor on; exposes plaintext: see the README)",
		Parse: parseCaptureBytes,
	}},
	Configure: func(decl *instrumentors.Instrumentor, s instrumentors.Settings, _ *slog.Logger) (*instrumentors.Instrumentor, error) {
		n, _ := s.Last("tls-capture-bytes").(uint32)
		if n == 0 {
			return decl, nil
		}
		c := *decl
		c.Dynamic = tapDynamic(n, false)
		c.OffByDefault = false
		return &c, nil
	},
	Convert:      convertTap,
	Stats:        [4]string{"calls outside any span (no event)", "Reads and Writes without data", "Write entries repeated by stack growth (skipped)", "Writes on closed connections"},
	OffByDefault: true,
}

// wrappers are the error types whose cause the handshake program follows,
// by the constant that receives their Error method's address. Go 1.15
// spelt the first one permamentError.
var wrappers = map[string][]string{
	"fn_permanent_error": {"crypto/tls.(*permanentError).Error", "crypto/tls.(*permamentError).Error"},
	"fn_op_error":        {"net.(*OpError).Error"},
	"fn_cve_error":       {"crypto/tls.(*CertificateVerificationError).Error"},
	"fn_syscall_error":   {"os.(*SyscallError).Error"},
}

func handshakePlan(bin *binary.File) (*instrumentors.Dynamic, error) {
	_, cerr := bin.Func("crypto/tls.(*Conn).clientHandshake")
	_, serr := bin.Func("crypto/tls.(*Conn).serverHandshake")
	if cerr != nil && serr != nil {
		return nil, fmt.Errorf("the program does not use crypto/tls (%v)", cerr)
	}
	d := &instrumentors.Dynamic{Consts: map[string]uint64{}}
	for name, fns := range wrappers {
		d.Consts[name] = 0 // a type the program lacks: no itab holds 0
		for _, fn := range fns {
			if f, err := bin.Func(fn); err == nil {
				d.Consts[name] = f.Addr
			}
		}
	}
	return d, nil
}

func boolConst(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// programs loads bpf/tls.c keeping only the named programs and the maps
// they use: both instrumentors come from one object file.
func programs(names ...string) func() (*ebpf.CollectionSpec, error) {
	return func() (*ebpf.CollectionSpec, error) {
		spec, err := bpf.LoadTls()
		if err != nil {
			return nil, err
		}
		keep := map[string]bool{}
		for _, n := range names {
			keep[n] = true
		}
		used := map[string]bool{}
		for name, p := range spec.Programs {
			if !keep[name] {
				delete(spec.Programs, name)
				continue
			}
			for _, ins := range p.Instructions {
				if ref := ins.Reference(); ref != "" {
					used[ref] = true
				}
			}
		}
		for name := range spec.Maps {
			if !used[name] && !strings.HasPrefix(name, ".") {
				delete(spec.Maps, name)
			}
		}
		return spec, nil
	}
}

type (
	handshakeEvent = bpf.TlsHandshakeEvent
	tapEvent       = bpf.TlsTapEvent
)

// Handshake is one handshake as a record tells it.
type Handshake struct {
	Conn       uint64 // the *tls.Conn's address: names the connection while it lives
	Client     bool
	Version    uint16
	Cipher     uint16
	Resumed    bool
	ServerName string // the SNI sent or received; "" when none
	Requested  string // client: the name the certificate was checked against (Config.ServerName)
	ALPN       string
	PeerIP     string
	PeerPort   int
	ErrType    string // the returned error's dynamic type; "" on success
	Err        string // its text, as far as uranus can tell it
	Failed     bool
}

// DecodeHandshake reads a handshake record.
func DecodeHandshake(record []byte, t instrumentors.Target) (Handshake, error) {
	if len(record) < int(unsafe.Sizeof(handshakeEvent{})) {
		return Handshake{}, fmt.Errorf("tls handshake record of %d bytes, want %d", len(record), unsafe.Sizeof(handshakeEvent{}))
	}
	e := (*handshakeEvent)(unsafe.Pointer(&record[0]))
	h := Handshake{
		Conn:       e.Conn,
		Client:     e.IsClient != 0,
		Version:    e.Version,
		Cipher:     e.Cipher,
		Resumed:    e.Resumed != 0,
		ServerName: instrumentors.CString(e.ServerName[:], e.ServerNameLen),
		ALPN:       instrumentors.CString(e.Alpn[:], e.AlpnLen),
	}
	if h.Client {
		h.Requested = instrumentors.CString(e.ConfigName[:], e.ConfigNameLen)
		if h.ServerName == "" { // Go 1.13 keeps the SNI it sent only in the Config
			h.ServerName = sniOf(h.Requested)
		}
	}
	if e.ConnType != 0 && e.RaddrType != 0 && t.TypeName(e.ConnType) == "*net.TCPConn" && t.TypeName(e.RaddrType) == "*net.TCPAddr" {
		if e.IpLen == 4 || e.IpLen == 16 {
			h.PeerIP = net.IP(e.Ip[:e.IpLen]).String()
		}
		if e.Port < 1<<16 {
			h.PeerPort = int(e.Port)
		}
	}
	if e.Err[0].Type != 0 {
		h.Failed = true
		var nodes [len(e.Err)]errNode
		for i, n := range e.Err {
			if n.Type != 0 {
				nodes[i] = errNode{typ: t.TypeName(n.Type), words: n.Word, str: instrumentors.CString(n.Str[:], n.StrLen), cut: n.StrLen > uint32(len(n.Str))}
			}
		}
		// %T of the returned error, past crypto/tls's unexported wrapper.
		h.ErrType = nodes[0].typ
		if isPermanentError(h.ErrType) && nodes[1].typ != "" {
			h.ErrType = nodes[1].typ
		}
		h.Err = errorText(nodes[:], h.Requested)
	}
	return h, nil
}

func isPermanentError(typ string) bool {
	return typ == "*tls.permanentError" || typ == "*tls.permamentError"
}

// sniOf is the server name a client sends for a Config.ServerName, as
// crypto/tls derives it: none for an IP address, no trailing dot.
func sniOf(name string) string {
	host := name
	if len(host) > 0 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	if i := strings.LastIndex(host, "%"); i > 0 {
		host = host[:i]
	}
	if net.ParseIP(host) != nil {
		return ""
	}
	return strings.TrimSuffix(name, ".")
}

// errNode is one value of a failed handshake's error chain.
type errNode struct {
	typ   string
	words [2]uint64
	str   string // the string words make, when the type has one there
	cut   bool   // str is the start of a longer string
}

func (n errNode) text() string {
	if n.cut {
		return n.str + "…"
	}
	return n.str
}

// errorText rebuilds an error's text from its chain (n[0] the error,
// n[i+1] the cause of n[i] when n[i] wraps one), for the types a handshake
// returns; "" when it cannot.
func errorText(n []errNode, requested string) string {
	if len(n) == 0 {
		return ""
	}
	cause := func() string { return errorText(n[1:], requested) }
	join := func(prefix, rest string) string {
		switch {
		case prefix == "":
			return rest
		case rest == "":
			return prefix
		}
		return prefix + ": " + rest
	}
	switch n[0].typ {
	case "*errors.errorString", "*fmt.wrapError", "*fmt.wrapErrors", "tls.RecordHeaderError":
		return n[0].text()
	case "*tls.permanentError", "*tls.permamentError":
		return cause()
	case "*net.OpError":
		// Op only: the addresses it would add are on the span already.
		return join(n[0].text(), cause())
	case "*os.SyscallError":
		return join(n[0].text(), cause())
	case "*tls.CertificateVerificationError":
		return join("tls: failed to verify certificate", cause())
	case "syscall.Errno":
		return syscall.Errno(n[0].words[0]).Error()
	case "tls.alert", "tls.AlertError":
		return tls.AlertError(uint8(n[0].words[0])).Error()
	case "x509.UnknownAuthorityError":
		return x509.UnknownAuthorityError{}.Error()
	case "x509.HostnameError":
		return "x509: certificate is not valid for " + requested
	case "x509.CertificateInvalidError":
		return strings.TrimSuffix(x509.CertificateInvalidError{Reason: x509.InvalidReason(n[0].words[1])}.Error(), ": ")
	case "context.deadlineExceededError":
		return "context deadline exceeded"
	}
	return ""
}

// VersionName splits a TLS protocol version into the semantic conventions'
// tls.protocol.name and tls.protocol.version.
func VersionName(v uint16) (name, version string) {
	switch v {
	case 0:
		return "", ""
	case 0x0300:
		return "ssl", "3.0"
	case 0x0301, 0x0302, 0x0303, 0x0304:
		return "tls", "1." + strconv.Itoa(int(v-0x0301))
	}
	return "tls", fmt.Sprintf("0x%04x", v)
}

// ConnAttrs are what an HTTP span over TLS gets: the protocol and cipher of
// its connection. None when version is 0 (no TLS, or not known).
func ConnAttrs(version, cipher uint16) []attribute.KeyValue {
	name, ver := VersionName(version)
	if name == "" {
		return nil
	}
	attrs := []attribute.KeyValue{semconv.TLSProtocolNameKey.String(name), semconv.TLSProtocolVersion(ver)}
	if cipher != 0 {
		attrs = append(attrs, semconv.TLSCipher(tls.CipherSuiteName(cipher)))
	}
	return attrs
}

// ConnID names a connection in spans and in tls-dump: the *tls.Conn's
// address, unique among the process's live connections.
func ConnID(conn uint64) string { return fmt.Sprintf("%#x", conn) }

// Attribute keys uranus adds where the conventions have none.
const (
	ConnKey        = attribute.Key("uranus.tls.connection")
	SNIKey         = attribute.Key("tls.client.server_name")
	BytesKey       = attribute.Key("uranus.tls.bytes")
	ConnReadKey    = attribute.Key("uranus.tls.connection.bytes_read")
	ConnWrittenKey = attribute.Key("uranus.tls.connection.bytes_written")
	PlaintextKey   = attribute.Key("uranus.tls.plaintext")
	Plaintext64Key = attribute.Key("uranus.tls.plaintext_base64")
	TruncatedKey   = attribute.Key("uranus.tls.plaintext.truncated")
)

// Span names of handshakes.
const (
	handshakeClient = "TLS client handshake"
	handshakeServer = "TLS server handshake"
)

func convertHandshake(record []byte, s *otel.Span, t instrumentors.Target) error {
	h, err := DecodeHandshake(record, t)
	if err != nil {
		return err
	}
	s.Kind = trace.SpanKindInternal
	s.Name = handshakeServer
	if h.Client {
		s.Name = handshakeClient
	}
	s.Attrs = append(s.Attrs, ConnKey.String(ConnID(h.Conn)), semconv.TLSEstablished(!h.Failed))
	s.Attrs = append(s.Attrs, ConnAttrs(h.Version, h.Cipher)...)
	if !h.Failed {
		s.Attrs = append(s.Attrs, semconv.TLSResumed(h.Resumed))
	}
	if h.ServerName != "" {
		s.Attrs = append(s.Attrs, SNIKey.String(h.ServerName))
	}
	if h.Client && h.Requested != "" {
		s.Attrs = append(s.Attrs, semconv.ServerAddress(h.Requested))
	}
	if h.ALPN != "" {
		s.Attrs = append(s.Attrs, semconv.TLSNextProtocol(h.ALPN))
	}
	if h.PeerIP != "" {
		s.Attrs = append(s.Attrs, semconv.NetworkPeerAddress(h.PeerIP), semconv.NetworkPeerPort(h.PeerPort))
	}
	if h.Failed {
		typ := h.ErrType
		if typ == "" {
			typ = "_OTHER"
		}
		s.Attrs = append(s.Attrs, semconv.ErrorTypeKey.String(typ))
		s.Status, s.StatusMsg = codes.Error, h.Err
		if s.StatusMsg == "" {
			s.StatusMsg = typ
		}
	}
	return nil
}

// TapCall is one Read or Write the tap saw.
type TapCall struct {
	Conn        uint64
	Write       bool
	Len         uint64 // bytes read, or given to Write
	Data        []byte // the first captured bytes (a copy)
	ConnRead    uint64 // the connection's totals, this call included
	ConnWritten uint64
	InSpan      bool // the record names the span active in the calling goroutine
}

var errShortTap = errors.New("tls tap record shorter than its header")

// DecodeTap reads a tap record.
func DecodeTap(record []byte) (TapCall, error) {
	head := int(unsafe.Offsetof(tapEvent{}.Data))
	if len(record) < head {
		return TapCall{}, errShortTap
	}
	e := (*tapEvent)(unsafe.Pointer(&record[0])) // only the fields before Data are read through it
	if e.Captured > MaxCaptureBytes || int(e.Captured) > len(record)-head || uint64(e.Captured) > e.Len {
		return TapCall{}, fmt.Errorf("tls tap record claims %d captured bytes of %d in a record of %d", e.Captured, e.Len, len(record))
	}
	return TapCall{
		Conn:        e.Conn,
		Write:       e.Dir == 1,
		Len:         e.Len,
		Data:        append([]byte(nil), record[head:head+int(e.Captured)]...),
		ConnRead:    e.ConnRead,
		ConnWritten: e.ConnWritten,
		InSpan:      e.InSpan != 0,
	}, nil
}

func convertTap(record []byte, s *otel.Span, _ instrumentors.Target) error {
	c, err := DecodeTap(record)
	if err != nil {
		return err
	}
	if !c.InSpan || !s.SpanID.IsValid() {
		return errors.New("tls tap record outside any span (only a raw-record reader such as tls-dump asks for those)")
	}
	name := "tls.read"
	if c.Write {
		name = "tls.write"
	}
	attrs := []attribute.KeyValue{
		ConnKey.String(ConnID(c.Conn)),
		BytesKey.Int64(int64(c.Len)),
		ConnReadKey.Int64(int64(c.ConnRead)),
		ConnWrittenKey.Int64(int64(c.ConnWritten)),
	}
	if len(c.Data) > 0 {
		if utf8.Valid(c.Data) {
			attrs = append(attrs, PlaintextKey.String(string(c.Data)))
		} else {
			attrs = append(attrs, Plaintext64Key.String(base64.StdEncoding.EncodeToString(c.Data)))
		}
		attrs = append(attrs, TruncatedKey.Bool(uint64(len(c.Data)) < c.Len))
	}
	s.AddTo = s.SpanID
	s.Events = []otel.Event{{Name: name, Time: s.Start, Attrs: attrs}}
	return nil
}
