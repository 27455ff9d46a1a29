// Package e2e runs uranus against real processes on the real kernel, for the
// end-to-end tests of every instrumentor: it starts a target built by a real
// toolchain, attaches the real BPF programs, and collects the exported spans
// in memory.
package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/uranus-otel/uranus/attach"
	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/internal/testapp"
	"github.com/uranus-otel/uranus/offsets"
	"github.com/uranus-otel/uranus/otel"
	"github.com/uranus-otel/uranus/target"
)

// Versions are the toolchains the end-to-end tests build targets with: the
// newest patch of every minor release uranus supports. Go 1.13–1.16 use the
// stack ABI, 1.17 on the register ABI.
var Versions = []string{
	"1.13.15", "1.14.15", "1.15.15", "1.16.15", "1.17.13", "1.18.10", "1.19.13",
	"1.20.14", "1.21.13", "1.22.12", "1.23.12", "1.24.13", "1.25.14", "1.26.8", "1.27.4",
}

// Short is the subset for -short runs: both ABIs, both map implementations,
// the newest release.
var Short = []string{"1.16.15", "1.17.13", "1.22.12", "1.24.13", "1.27.4"}

// TestVersions returns Versions, or Short under -short, or the comma list in
// URANUS_GO_VERSIONS.
func TestVersions() []string {
	if v := os.Getenv("URANUS_GO_VERSIONS"); v != "" {
		return strings.Split(v, ",")
	}
	if testing.Short() {
		return Short
	}
	return Versions
}

// RequireBPF stops the test when this machine cannot run uprobe BPF
// programs: it fails in CI (CI=true), where the tests must run, and skips
// elsewhere with the reason.
func RequireBPF(t testing.TB) {
	t.Helper()
	if err := bpfUsable(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("eBPF is required in CI: %v", err)
		}
		t.Skipf("skipping: eBPF uprobes unavailable here: %v", err)
	}
}

var (
	bpfOnce sync.Once
	bpfErr  error
)

func bpfUsable() error {
	bpfOnce.Do(func() {
		if os.Geteuid() != 0 {
			bpfErr = errors.New("not running as root")
			return
		}
		if err := rlimit.RemoveMemlock(); err != nil {
			bpfErr = err
			return
		}
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 4096})
		if err != nil {
			bpfErr = fmt.Errorf("creating a ring buffer: %w", err)
			return
		}
		m.Close()
		if _, err := os.Stat("/sys/bus/event_source/devices/uprobe/type"); err != nil {
			bpfErr = fmt.Errorf("kernel has no uprobe PMU: %w", err)
		}
	})
	return bpfErr
}

// BuildTarget builds sample name with Go version, failing the test on error.
func BuildTarget(t testing.TB, name, version string, opts testapp.Options) string {
	t.Helper()
	path, err := testapp.Build(name, version, opts, t.Logf)
	if err != nil {
		t.Fatalf("building %s with Go %s: %v", name, version, err)
	}
	return path
}

// Proc is a running target.
type Proc struct {
	Cmd  *exec.Cmd
	Addr string // what the target printed after "listening on "
	mu   sync.Mutex
	out  strings.Builder
}

// Output is everything the target printed so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Start runs path with args and waits for its "listening on ADDR" line.
// The process is killed when the test ends.
func Start(t testing.TB, path string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(path, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &Proc{Cmd: cmd}
	cmd.Stderr = &lockedWriter{p}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.out.WriteString(line + "\n")
			p.mu.Unlock()
			if a, ok := strings.CutPrefix(line, "listening on "); ok {
				select {
				case addr <- a:
				default:
				}
			}
		}
	}()
	select {
	case p.Addr = <-addr:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not print its address; output:\n%s", path, p.Output())
	}
	return p
}

type lockedWriter struct{ p *Proc }

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.out.Write(b)
}

// Session is uranus attached to one or more targets, exporting in memory.
type Session struct {
	t        testing.TB
	Attacher *attach.Attacher
	Pipeline *otel.Pipeline
	Exporter *tracetest.InMemoryExporter
	Targets  []*attach.Target
	Log      *strings.Builder
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
}

// Attach starts uranus with the given instrumentors and attaches it to pids,
// with trace-context propagation auto and the sampler from the environment,
// as the uranus command runs by default.
func Attach(t testing.TB, list []*instrumentors.Instrumentor, pids ...int) *Session {
	t.Helper()
	return attachWith(t, list, false, pids...)
}

// AttachNoInject is Attach with propagation off (--propagation off).
func AttachNoInject(t testing.TB, list []*instrumentors.Instrumentor, pids ...int) *Session {
	t.Helper()
	return attachWith(t, list, true, pids...)
}

func attachWith(t testing.TB, list []*instrumentors.Instrumentor, noInject bool, pids ...int) *Session {
	t.Helper()
	RequireBPF(t)
	table, err := offsets.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	exp := tracetest.NewInMemoryExporter()
	pipeline, err := otel.NewPipeline(context.Background(), otel.Config{
		Exporters:    []string{"none"},
		Extra:        []sdktrace.SpanExporter{exp},
		BatchTimeout: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	sampler, err := otel.SamplerFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	logBuf := &strings.Builder{}
	propagation := attach.PropagationAuto
	if noInject {
		propagation = attach.PropagationOff
	}
	att, err := attach.New(attach.Options{
		Instrumentors: list,
		Table:         table,
		Pipeline:      pipeline,
		Logger:        slog.New(slog.NewTextHandler(io.MultiWriter(logBuf, testWriter{t}), nil)),
		Propagation:   propagation,
		Constants:     sampler.Constants(),
	})
	if err != nil {
		t.Fatalf("attach.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Session{t: t, Attacher: att, Pipeline: pipeline, Exporter: exp, Log: logBuf, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- att.Run(ctx) }()
	t.Cleanup(s.Stop)
	for _, pid := range pids {
		p, err := target.Lookup(pid)
		if err != nil {
			t.Fatal(err)
		}
		tg, err := att.Attach(context.Background(), p)
		if err != nil {
			t.Fatalf("attaching to pid %d: %v", pid, err)
		}
		for _, pl := range tg.Plans {
			if pl.Skip != "" {
				t.Logf("pid %d: %s not attached: %s", pid, pl.Inst.ID, pl.Skip)
			}
		}
		s.Targets = append(s.Targets, tg)
	}
	return s
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// WaitSpans waits until at least n spans were exported and returns them all.
// The wait is bounded generously: it only guards against a hung test.
func (s *Session) WaitSpans(n int) tracetest.SpanStubs {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := s.Exporter.GetSpans()
		if len(got) >= n {
			// Give stragglers a moment, so that "exactly n" checks see extras.
			time.Sleep(200 * time.Millisecond)
			return s.Exporter.GetSpans()
		}
		if time.Now().After(deadline) {
			st := s.Attacher.Stats()
			s.t.Fatalf("got %d spans, want %d; probe counters %+v; unknown-source records %d, bad records %d (%s)",
				len(got), n, st.Probes, st.UnknownSource, st.BadRecords, st.LastBad)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop detaches, drains and flushes.
func (s *Session) Stop() {
	s.stopOnce.Do(func() {
		for _, tg := range s.Targets {
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
