package gotls_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/uranus-otel/uranus/attach"
	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/instrumentors/gotls"
	"github.com/uranus-otel/uranus/internal/e2e"
	"github.com/uranus-otel/uranus/offsets"
	"github.com/uranus-otel/uranus/otel"
	"github.com/uranus-otel/uranus/target"
)

// pki is a CA made for one test, and a server certificate it signed.
type pki struct {
	dir               string
	caFile, cert, key string
	pool              *x509.CertPool
	serverCert        tls.Certificate
}

// names the server certificate is valid for.
var certNames = []string{"localhost", "uranus.test"}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "uranus test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     certNames,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{dir: dir, caFile: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem"), pool: x509.NewCertPool()}
	p.pool.AddCert(caCert)
	write := func(path, typ string, b []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(p.caFile, "CERTIFICATE", caDER)
	write(p.cert, "CERTIFICATE", der)
	write(p.key, "EC PRIVATE KEY", keyDER)
	p.serverCert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return p
}

// session is uranus attached to one target, exporting in memory, with an
// optional reader of raw records (what tls-dump uses).
type session struct {
	t        *testing.T
	att      *attach.Attacher
	pipeline *otel.Pipeline
	exp      *tracetest.InMemoryExporter
	target   *attach.Target
	cancel   context.CancelFunc
	done     chan error
	once     sync.Once

	mu   sync.Mutex
	taps []tapRecord
}

type tapRecord struct {
	inst   string
	record []byte
}

func attachTo(t *testing.T, pid int, list []*instrumentors.Instrumentor, keepRecords bool) *session {
	t.Helper()
	e2e.RequireBPF(t)
	table, err := offsets.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	s := &session{t: t, exp: tracetest.NewInMemoryExporter(), done: make(chan error, 1)}
	s.pipeline, err = otel.NewPipeline(context.Background(), otel.Config{
		Exporters:    []string{"none"},
		Extra:        []sdktrace.SpanExporter{s.exp},
		BatchTimeout: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	opts := attach.Options{
		Instrumentors: list,
		Table:         table,
		Pipeline:      s.pipeline,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if keepRecords {
		opts.Records = func(_ *attach.Target, inst *instrumentors.Instrumentor, record []byte) bool {
			s.mu.Lock()
			s.taps = append(s.taps, tapRecord{inst.ID, append([]byte(nil), record...)})
			s.mu.Unlock()
			// Calls outside any span are only for this reader, as in tls-dump.
			c, err := gotls.DecodeTap(record)
			return inst.ID == gotls.Tap.ID && err == nil && !c.InSpan
		}
	}
	s.att, err = attach.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.done <- s.att.Run(ctx) }()
	t.Cleanup(s.stop)
	p, err := target.Lookup(pid)
	if err != nil {
		t.Fatal(err)
	}
	s.target, err = s.att.Attach(context.Background(), p)
	if err != nil {
		t.Fatalf("attaching: %v", err)
	}
	for _, pl := range s.target.Plans {
		if pl.Skip != "" {
			t.Fatalf("%s not attached: %s", pl.Inst.ID, pl.Skip)
		}
	}
	return s
}

func (s *session) stop() {
	s.once.Do(func() {
		s.target.Detach(context.Background())
		s.cancel()
		if err := <-s.done; err != nil {
			s.t.Errorf("event reader: %v", err)
		}
		s.att.Close()
		s.pipeline.Shutdown(context.Background())
	})
}

// waitSpans waits until pred holds for the spans exported so far and
// returns them. The bound only guards against a hung test.
func (s *session) waitSpans(what string, pred func(tracetest.SpanStubs) bool) tracetest.SpanStubs {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := s.exp.GetSpans()
		if pred(got) {
			return got
		}
		if time.Now().After(deadline) {
			st := s.att.Stats()
			var names []string
			for _, sp := range got {
				names = append(names, sp.Name)
			}
			s.t.Fatalf("waiting for %s: have %d spans %q; counters %+v, bad records %d (%s)", what, len(got), names, st.Probes, st.BadRecords, st.LastBad)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
