package reliability

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/attach"
	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/internal/e2e"
	"github.com/uranus-otel/uranus/offsets"
	"github.com/uranus-otel/uranus/otel"
	"github.com/uranus-otel/uranus/target"
)

// session is uranus's core run inside the test process, so that tests can
// read its counters directly and shape its pipeline (ring buffer size,
// queue size, a slow exporter).
type session struct {
	t        testing.TB
	Attacher *attach.Attacher
	Pipeline *otel.Pipeline
	Spans    *spanTally
	targets  []*attach.Target
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
	log      *strings.Builder
}

type sessionOptions struct {
	RingBufferBytes int
	QueueSize       int
	// Instrumentors to attach; nil for every covered one.
	Instrumentors []*instrumentors.Instrumentor
}

func startSession(t testing.TB, opts sessionOptions) *session {
	t.Helper()
	e2e.RequireBPF(t)
	if opts.Instrumentors == nil {
		opts.Instrumentors = coveredList()
	}
	table, err := offsets.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	tally := newSpanTally()
	pipeline, err := otel.NewPipeline(context.Background(), otel.Config{
		Exporters:    []string{"none"},
		Extra:        []sdktrace.SpanExporter{tally},
		BatchTimeout: 50 * time.Millisecond,
		QueueSize:    opts.QueueSize,
	})
	if err != nil {
		t.Fatal(err)
	}
	logBuf := &strings.Builder{}
	att, err := attach.New(attach.Options{
		Instrumentors:   opts.Instrumentors,
		Table:           table,
		Pipeline:        pipeline,
		Logger:          slog.New(slog.NewTextHandler(io.MultiWriter(logBuf, testLogWriter{t}), nil)),
		RingBufferBytes: opts.RingBufferBytes,
	})
	if err != nil {
		t.Fatalf("attach.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{t: t, Attacher: att, Pipeline: pipeline, Spans: tally, cancel: cancel, done: make(chan error, 1), log: logBuf}
	go func() { s.done <- att.Run(ctx) }()
	t.Cleanup(s.stop)
	return s
}

// attach attaches every covered instrumentor to pid, failing the test when
// one of them cannot attach.
func (s *session) attach(pid int) *attach.Target {
	s.t.Helper()
	p, err := target.Lookup(pid)
	if err != nil {
		s.t.Fatal(err)
	}
	tg, err := s.Attacher.Attach(context.Background(), p)
	if err != nil {
		s.t.Fatalf("attaching to pid %d: %v", pid, err)
	}
	for _, pl := range tg.Plans {
		if pl.Skip != "" {
			s.t.Fatalf("pid %d: %s not attached: %s", pid, pl.Inst.ID, pl.Skip)
		}
	}
	s.targets = append(s.targets, tg)
	return tg
}

// waitSpans waits until n spans were exported. The bound only guards
// against a hung test.
func (s *session) waitSpans(n int) {
	s.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for s.Spans.total() < n {
		if time.Now().After(deadline) {
			st := s.Attacher.Stats()
			s.t.Fatalf("got %d spans, want %d; probe counters %+v; unknown-source records %d, bad records %d (%s)",
				s.Spans.total(), n, st.Probes, st.UnknownSource, st.BadRecords, st.LastBad)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Stragglers would show up as more than n.
	time.Sleep(300 * time.Millisecond)
}

func (s *session) stop() {
	s.stopOnce.Do(func() {
		for _, tg := range s.targets {
			tg.Detach(context.Background())
		}
		s.cancel()
		if err := <-s.done; err != nil {
			s.t.Errorf("event reader: %v", err)
		}
		s.Attacher.Close()
		s.Pipeline.Shutdown(context.Background())
	})
}

type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// spanTally is an exporter that keeps counts, not spans (a test exports
// hundreds of thousands), and checks each span as it passes.
type spanTally struct {
	mu  sync.Mutex
	n   int
	ids map[trace.SpanID]bool
	bad []string
}

func newSpanTally() *spanTally {
	return &spanTally{ids: map[trace.SpanID]bool{}}
}

func (s *spanTally) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sp := range spans {
		s.n++
		path, status := "", ""
		for _, kv := range sp.Attributes() {
			switch kv.Key {
			case "url.path":
				path = kv.Value.AsString()
			case "http.response.status_code":
				status = kv.Value.String()
			}
		}
		id := sp.SpanContext().SpanID()
		if s.ids[id] {
			s.note(fmt.Sprintf("span id %s exported twice", id))
		}
		s.ids[id] = true
		if sp.SpanKind() == trace.SpanKindServer && status != "200" {
			s.note(fmt.Sprintf("%s %s: status %q", sp.Name(), path, status))
		}
		if sp.EndTime().Before(sp.StartTime()) {
			s.note(fmt.Sprintf("%s %s ends before it starts", sp.Name(), path))
		}
	}
	return nil
}

func (s *spanTally) note(msg string) {
	if len(s.bad) < 20 {
		s.bad = append(s.bad, msg)
	}
}

func (s *spanTally) Shutdown(context.Context) error { return nil }

func (s *spanTally) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func (s *spanTally) problems() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bad...)
}
