package main

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// sink is an OTLP/HTTP trace receiver that counts spans and discards them.
// It walks the protobuf wire format down to the span fields without decoding
// the spans, so that it costs little next to the exporters it measures.
type sink struct {
	URL      string // endpoint for OTEL_EXPORTER_OTLP_ENDPOINT
	srv      *http.Server
	spans    atomic.Uint64
	requests atomic.Uint64
	bad      atomic.Uint64
	lastBad  atomic.Value // string
}

func startSink() (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting the OTLP sink: %w", err)
	}
	s := &sink{URL: "http://" + ln.Addr().String()}
	ok, err := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		n, err := s.read(r)
		if err != nil {
			s.bad.Add(1)
			s.lastBad.Store(err.Error())
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.spans.Add(uint64(n))
		s.requests.Add(1)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(ok)
	})
	// The downstream service of the configurations whose server calls one.
	mux.HandleFunc("GET /downstream", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	s.srv = &http.Server{Handler: mux}
	go s.srv.Serve(ln)
	return s, nil
}

func (s *sink) read(r *http.Request) (int, error) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return 0, err
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return 0, err
	}
	return countSpans(b)
}

// reset zeroes the counters between configurations.
func (s *sink) reset() {
	s.spans.Store(0)
	s.requests.Store(0)
}

func (s *sink) close() { s.srv.Close() }

// badRequests returns how many exports the sink could not parse, and the
// last reason.
func (s *sink) badRequests() (uint64, string) {
	msg, _ := s.lastBad.Load().(string)
	return s.bad.Load(), msg
}

// Field numbers in opentelemetry/proto: ExportTraceServiceRequest.resource_spans,
// ResourceSpans.scope_spans and ScopeSpans.spans.
const (
	fieldResourceSpans = 1
	fieldScopeSpans    = 2
	fieldSpans         = 2
)

// countSpans counts the spans in an ExportTraceServiceRequest.
func countSpans(b []byte) (int, error) {
	n := 0
	err := eachField(b, fieldResourceSpans, func(rs []byte) error {
		return eachField(rs, fieldScopeSpans, func(ss []byte) error {
			return eachField(ss, fieldSpans, func([]byte) error {
				n++
				return nil
			})
		})
	})
	return n, err
}

// eachField calls fn with every length-delimited field num of message b and
// skips the other fields.
func eachField(b []byte, num protowire.Number, fn func([]byte) error) error {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return errors.New("malformed OTLP request: bad tag")
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return errors.New("malformed OTLP request: bad length")
			}
			if err := fn(v); err != nil {
				return err
			}
			b = b[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return errors.New("malformed OTLP request: bad field")
		}
		b = b[l:]
	}
	return nil
}
