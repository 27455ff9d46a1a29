package gotls

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"
	"unsafe"

	"github.com/uranus-otel/uranus/binary"
	"github.com/uranus-otel/uranus/bpf"
	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/otel"
)

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 -output-dir ../../bpf -go-package bpf -type keylog_event Tlskeylog ../../bpf/tlskeylog.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror

// KeyLog ("tls-keylog", off by default) reads each secret a handshake
// derives, for uranus tls-dump --keylog, which writes them in the NSS key
// log format. Its records never become spans: secrets are not exported.
var KeyLog = &instrumentors.Instrumentor{
	ID:      "tls-keylog",
	Doc:     "crypto/tls secrets, for a key log file (--tls-keylog FILE, or uranus tls-dump --keylog): records nothing otherwise, never exported (off by default)",
	Library: "crypto/tls",
	Spec:    bpf.LoadTlskeylog,
	Probes: []instrumentors.Probe{{
		// Called for every secret of every handshake, client and server,
		// TLS 1.2 and 1.3, whether or not Config.KeyLogWriter is set.
		Symbol: "crypto/tls.(*Config).writeKeyLog",
		Entry:  "keylog_entry",
	}},
	Dynamic: keyLogDynamic(false),
	Options: []instrumentors.Option{{
		Name: "tls-keylog",
		Usage: "append the TLS secrets of the target's connections to `FILE` in the NSS key log format, for Wireshark/tshark " +
			"(created with mode 0600; turns the tls-keylog instrumentor on; whoever holds the file and a capture reads the traffic: see the README)",
	}},
	Configure:    configureKeyLog,
	Convert:      convertKeyLog,
	Stats:        [4]string{"secrets not recorded (only --tls-keylog or tls-dump --keylog ask for them)", "secrets longer than a record holds"},
	OffByDefault: true,
}

// KeyLogRecording returns the key log instrumentor that records the
// secrets it sees, on: only uranus tls-dump --keylog runs it, and reads the
// records itself (attach.Options.Records). The declared KeyLog records
// nothing.
func KeyLogRecording() *instrumentors.Instrumentor {
	c := *KeyLog
	c.Dynamic = keyLogDynamic(true)
	c.OffByDefault = false
	return &c
}

func keyLogDynamic(record bool) func(*binary.File) (*instrumentors.Dynamic, error) {
	return func(*binary.File) (*instrumentors.Dynamic, error) {
		return &instrumentors.Dynamic{Consts: map[string]uint64{"keylog_records": boolConst(record)}}, nil
	}
}

type keyLogEvent = bpf.TlskeylogKeylogEvent

// Secret is one secret of a handshake, as crypto/tls passed it to
// (*Config).writeKeyLog.
type Secret struct {
	Label        string // CLIENT_RANDOM (TLS 1.2), CLIENT_TRAFFIC_SECRET_0, …
	ClientRandom []byte // the ClientHello's random: names the connection
	Secret       []byte
}

// DecodeKeyLog reads a key log record.
func DecodeKeyLog(record []byte) (Secret, error) {
	if len(record) < int(unsafe.Sizeof(keyLogEvent{})) {
		return Secret{}, fmt.Errorf("tls key log record of %d bytes, want %d", len(record), unsafe.Sizeof(keyLogEvent{}))
	}
	e := (*keyLogEvent)(unsafe.Pointer(&record[0]))
	switch {
	case e.LabelLen == 0 || e.LabelLen > uint32(len(e.Label)) || !isLabel(e.Label[:e.LabelLen]):
		return Secret{}, fmt.Errorf("tls key log record with a label of %d bytes %q", e.LabelLen, e.Label[:min(e.LabelLen, uint32(len(e.Label)))])
	case e.RandomLen != uint32(len(e.Random)):
		return Secret{}, fmt.Errorf("tls key log record with a client random of %d bytes, not %d", e.RandomLen, len(e.Random))
	case e.SecretLen == 0 || e.SecretLen > uint32(len(e.Secret)):
		return Secret{}, fmt.Errorf("tls key log record with a secret of %d bytes (1 to %d fit)", e.SecretLen, len(e.Secret))
	}
	return Secret{
		Label:        string(e.Label[:e.LabelLen]),
		ClientRandom: append([]byte(nil), e.Random[:]...),
		Secret:       append([]byte(nil), e.Secret[:e.SecretLen]...),
	}, nil
}

// isLabel accepts what an NSS key log label is made of: capitals, digits
// and underscores.
func isLabel(b []byte) bool {
	for _, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// NSSLine is the secret as a line of the NSS key log format, which
// Wireshark and tshark read (tls.keylog_file): label, client random and
// secret, the last two in lower-case hex, newline-terminated.
func (s Secret) NSSLine() string {
	return fmt.Sprintf("%s %x %x\n", s.Label, s.ClientRandom, s.Secret)
}

var errKeyLogSpan = errors.New("tls key log records are read by uranus tls-dump --keylog or --tls-keylog; secrets never become spans")

// writeKeyLog is Convert when the sidecar writes a key log (--tls-keylog):
// each secret becomes a line of w, never a span. One write per line,
// unbuffered: a reader of the file (Wireshark live) sees each secret as
// soon as it is known.
func writeKeyLog(w io.Writer) func([]byte, *otel.Span, instrumentors.Target) error {
	return func(record []byte, _ *otel.Span, _ instrumentors.Target) error {
		s, err := DecodeKeyLog(record)
		if err != nil {
			return err
		}
		if _, err := io.WriteString(w, s.NSSLine()); err != nil {
			return fmt.Errorf("writing the key log: %w", err)
		}
		return instrumentors.ErrNoSpan
	}
}

// OpenKeyLogFile opens the key log file for appending, creating it with
// mode 0600; an existing file must be a regular file that only its owner
// can read or write. flag names the option, for the errors.
func OpenKeyLogFile(flag, path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
		err = fmt.Errorf("%s: %w", flag, err)
	case !fi.Mode().IsRegular():
		err = fmt.Errorf("%s %s: not a regular file", flag, path)
	case fi.Mode().Perm()&0o077 != 0:
		err = fmt.Errorf("%s %s: the file exists with mode %04o, which lets others read the secrets; remove it or chmod 600 it first", flag, path, fi.Mode().Perm())
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// configureKeyLog turns the key log on when --tls-keylog names a file.
func configureKeyLog(decl *instrumentors.Instrumentor, s instrumentors.Settings, log *slog.Logger) (*instrumentors.Instrumentor, error) {
	path, _ := s.Last("tls-keylog").(string)
	if path == "" {
		return decl, nil
	}
	f, err := OpenKeyLogFile("--tls-keylog", path)
	if err != nil {
		return nil, err
	}
	if log != nil {
		log.Warn("writing TLS secrets to " + path + ": with it, anyone holding a capture of this traffic can read it; delete it when done")
	}
	c := *decl
	c.Dynamic = keyLogDynamic(true)
	c.Convert = writeKeyLog(f)
	c.OffByDefault = false
	return &c, nil
}

func convertKeyLog(record []byte, _ *otel.Span, _ instrumentors.Target) error {
	if _, err := DecodeKeyLog(record); err != nil {
		return err
	}
	return errKeyLogSpan
}
