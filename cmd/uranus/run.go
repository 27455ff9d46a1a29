package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	otelapi "go.opentelemetry.io/otel"

	"github.com/uranus-otel/uranus/attach"
	"github.com/uranus-otel/uranus/binary"
	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/instrumentors/all"
	"github.com/uranus-otel/uranus/offsets"
	"github.com/uranus-otel/uranus/otel"
	"github.com/uranus-otel/uranus/selfmetrics"
	"github.com/uranus-otel/uranus/target"
)

// propagationEnv sets --propagation's default, in the style of the OTel
// SDKs' environment variables.
const propagationEnv = "OTEL_URANUS_PROPAGATION"

// runConfig is what the main job needs; the demo builds one too.
type runConfig struct {
	matcher       target.Matcher
	instrument    string // comma list of instrumentor IDs, "" for the defaults
	statsInterval time.Duration
	ringBuffer    int
	nice          int    // scheduling niceness of uranus's own threads
	propagation   string // --propagation, or OTEL_URANUS_PROPAGATION
	pipeline      otel.Config
	log           *slog.Logger
	// onAttach, when set, is called after each target is attached.
	onAttach func(*attach.Target)
	// metricsAddr, when set, serves uranus's own counters there.
	metricsAddr string
	// settings are the values of the instrumentors' own options, by
	// instrumentor ID (see instrumentors.Option).
	settings map[string]instrumentors.Settings
}

func runFlags(fs *flag.FlagSet, c *runConfig) {
	fs.Func("exe", "instrument processes running this executable: a `PATH`, or a NAME matched against the executable's base name (repeatable)", func(s string) error {
		c.matcher.Exes = append(c.matcher.Exes, s)
		return nil
	})
	fs.IntVar(&c.matcher.PID, "pid", 0, "instrument the process with this `PID`")
	fs.StringVar(&c.instrument, "instrument", "", "comma-separated instrumentor `IDs` to enable (default: all that are on by default; see --list)")
	fs.DurationVar(&c.statsInterval, "stats-interval", 10*time.Second, "how often to log the probe and export counters when they change (0: only at exit)")
	fs.IntVar(&c.ringBuffer, "ring-buffer", 4<<20, "size in `bytes` of the BPF ring buffer (a power of two)")
	fs.IntVar(&c.nice, "nice", 0, "run uranus at this `niceness` (0 to 19) to yield the CPU to the programs it watches; on a busy machine records then wait in the ring buffer and may be lost (counted)")
	fs.StringVar(&c.metricsAddr, "metrics-addr", "", "serve uranus's own counters (events lost, spans exported, …) as Prometheus text at http://`ADDR`/metrics, e.g. 127.0.0.1:9464")
	c.propagation = os.Getenv(propagationEnv)
	fs.StringVar(&c.propagation, "propagation", c.propagation, "how trace context reaches called services: `MODE` auto, network (traceparent inserted at the socket), "+
		"memory (written into the request buffer; refused under kernel lockdown) or off (default auto, or $"+propagationEnv+")")
	fs.BoolFunc("no-inject", "same as --propagation off", func(string) error {
		c.propagation = string(attach.PropagationOff)
		return nil
	})
	c.settings = instrumentors.DeclareFlags(fs, all.List)
}

// listInstrumentors prints what --instrument can name, with the options
// each takes.
func listInstrumentors(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDEFAULT\tOPTIONS\tWHAT")
	for _, in := range all.List {
		def := "on"
		if in.OffByDefault {
			def = "off"
		}
		var opts []string
		for _, o := range in.Options {
			opts = append(opts, optionSynopsis(o))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", in.ID, def, cmp.Or(strings.Join(opts, ", "), "-"), in.Doc)
	}
	tw.Flush()
}

// optionSynopsis spells an option as it is given: "--func SIGNATURE".
func optionSynopsis(o instrumentors.Option) string {
	if o.Bool {
		return "--" + o.Name
	}
	f := flag.Flag{Name: o.Name, Usage: o.Usage, Value: new(stringValue)}
	name, _ := flag.UnquoteUsage(&f)
	return "--" + o.Name + " " + cmp.Or(name, "VALUE")
}

type stringValue string

func (s *stringValue) String() string     { return string(*s) }
func (s *stringValue) Set(v string) error { *s = stringValue(v); return nil }

// chooseInstrumentors resolves --instrument against list, the registry as
// the options configured it. Without --instrument it is every instrumentor
// on by default; either way it includes those the options turned on (on),
// since asking for functions or plaintext means nothing without them.
func chooseInstrumentors(spec string, list []*instrumentors.Instrumentor, on map[string]bool) ([]*instrumentors.Instrumentor, error) {
	var out []*instrumentors.Instrumentor
	if spec == "" {
		for _, in := range list {
			if !in.OffByDefault {
				out = append(out, in)
			}
		}
		return out, nil
	}
	byID := map[string]*instrumentors.Instrumentor{}
	var ids []string
	for _, in := range list {
		byID[in.ID] = in
		ids = append(ids, in.ID)
	}
	named := map[string]bool{}
	for _, id := range strings.Split(spec, ",") {
		id = strings.TrimSpace(id)
		in, ok := byID[id]
		if !ok {
			return nil, fmt.Errorf("--instrument: unknown instrumentor %q (known: %s)", id, strings.Join(ids, ", "))
		}
		if !named[id] {
			named[id] = true
			out = append(out, in)
		}
	}
	for _, in := range list {
		if on[in.ID] && !named[in.ID] {
			out = append(out, in)
		}
	}
	return out, nil
}

// run attaches to every process the matcher selects until ctx is done or a
// --pid target exits, then detaches and flushes.
func run(ctx context.Context, c runConfig) error {
	log := c.log
	if err := c.matcher.Validate(); err != nil {
		return err
	}
	list, err := c.instrumentors()
	if err != nil {
		return err
	}
	if err := setNice(c.nice); err != nil {
		return err
	}
	if c.matcher.PID != 0 {
		// A --pid target that cannot be instrumented is bad input: say so
		// before setting anything up.
		if err := checkPID(c.matcher.PID, list); err != nil {
			return err
		}
	}
	att, pipeline, err := c.start(ctx, list)
	if err != nil {
		return err
	}
	stopMetrics, err := selfmetrics.Start(ctx, c.metricsAddr, selfmetrics.FromUranus(att, pipeline), log)
	if err != nil {
		att.Close()
		return err
	}
	defer stopMetrics() // after the final counters: the last OTLP export has them

	var last report
	runErr := c.follower(att, pipeline, &last).follow(ctx)
	att.Close()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pipeline.Shutdown(shutdownCtx); err != nil {
		log.Warn("flushing spans at exit", "err", err)
	}
	logStats(log, att, pipeline, last, true)
	return runErr
}

// instrumentors is the registry as the options configure it, narrowed to
// --instrument's choice.
func (c *runConfig) instrumentors() ([]*instrumentors.Instrumentor, error) {
	configured, on, err := instrumentors.Configure(all.List, c.settings, c.log)
	if err != nil {
		return nil, err
	}
	return chooseInstrumentors(c.instrument, configured, on)
}

// start sets up the export pipeline and the attacher for list, puts probes
// on the files named by path, and says how uranus runs.
func (c *runConfig) start(ctx context.Context, list []*instrumentors.Instrumentor) (*attach.Attacher, *otel.Pipeline, error) {
	log := c.log
	table, err := offsets.Embedded()
	if err != nil {
		return nil, nil, fmt.Errorf("reading the built-in offsets table: %w", err)
	}
	otelapi.SetErrorHandler(&sdkErrors{log: log, every: 10 * time.Second})
	pipeline, err := otel.NewPipeline(ctx, c.pipeline)
	if err != nil {
		return nil, nil, err
	}
	sampler, err := otel.SamplerFromEnv()
	if err != nil {
		return nil, nil, err
	}
	prop, err := attach.ParsePropagation(c.propagation)
	if err != nil {
		return nil, nil, err
	}
	att, err := attach.New(attach.Options{
		Instrumentors:   list,
		Table:           table,
		Pipeline:        pipeline,
		Logger:          log,
		RingBufferBytes: c.ringBuffer,
		Propagation:     prop,
		Constants:       sampler.Constants(),
		ByFile:          c.matcher.PID == 0,
	})
	if err != nil {
		return nil, nil, err
	}
	prepareFiles(log, att, c.matcher)
	mode, why := att.Propagation()
	if mode == attach.PropagationOff && prop != attach.PropagationOff {
		log.Warn("trace context is not sent to called services: "+why+"; spans still nest within each process", "propagation", mode)
	}
	log.Info("uranus started", "target", c.matcher.String(), "exporting to", pipeline.Describe(),
		"sampler", sampler.Description, "propagation", mode, "because", why)
	if w := attach.PrivilegeWarning(); w != "" && c.matcher.PID == 0 {
		log.Warn(w)
	}
	return att, pipeline, nil
}

// follower follows the matched processes, saying so in uranus's log; the
// stats ticker keeps the last report in *last.
func (c *runConfig) follower(att *attach.Attacher, pipeline *otel.Pipeline, last *report) *follower {
	log := c.log
	return &follower{
		att: att,
		m:   c.matcher,
		attached: func(t *attach.Target) {
			logAttached(log, t)
			if c.onAttach != nil {
				c.onAttach(t)
			}
		},
		exited: func(p target.Process, remaining int) {
			log.Info("target exited; its spans flushed", "pid", p.PID, "exe", p.Exe)
			if remaining == 0 && c.matcher.PID == 0 {
				log.Info("waiting for the next matching process", "target", c.matcher.String())
			}
		},
		vanished: func(p target.Process) {
			log.Info("target exited while uranus was attaching to it; nothing left to instrument", "pid", p.PID, "exe", p.Exe)
		},
		failed: func(p target.Process, err error) {
			log.Error("cannot instrument", "pid", p.PID, "err", err)
		},
		waiting: func() {
			log.Info("waiting for the target to start", "target", c.matcher.String())
		},
		watching: func(how string) { log.Debug("watching processes", "how", how) },
		every:    c.statsInterval,
		tick:     func() { *last = logStats(log, att, pipeline, *last, false) },
	}
}

// prepareFiles puts probes on each executable named by path before any
// process runs it, so that even a process that lives a few milliseconds is
// traced from its first instruction. A name (no '/') is found when its
// first process is: from then on its file keeps its probes too.
func prepareFiles(log *slog.Logger, att *attach.Attacher, m target.Matcher) {
	for _, exe := range m.Exes {
		if !strings.Contains(exe, "/") {
			continue
		}
		if _, err := os.Stat(exe); err != nil {
			continue // not deployed yet: its first process will be found
		}
		if err := att.Prepare(exe); err != nil {
			log.Warn("cannot probe the executable before it runs; its processes will be attached when found", "exe", exe, "err", err)
			continue
		}
		log.Info("probes on the executable: its processes are traced from their first instruction", "exe", exe)
	}
}

// logAttached says in one line what is attached to t, and which
// libraries its binary does not link; a WARN for each instrumentor that
// could not attach for any other reason.
func logAttached(log *slog.Logger, t *attach.Target) {
	var parts, absent []string
	for _, p := range t.Plans {
		if p.Skip != "" {
			switch {
			case t.GoVersion == "" && !p.Inst.NonGo:
				// Go instrumentors on a C program: expected, not news
			case p.NotLinked:
				absent = append(absent, "no "+p.Inst.Library)
			default:
				log.Warn("instrumentor not attached", "pid", t.Process.PID, "instrumentor", p.Inst.ID, "reason", p.Skip)
			}
			continue
		}
		part := fmt.Sprintf("%s (%d probe sites", p.Inst.ID, t.Attached()[p.Inst.ID])
		if p.OffsetsFrom != "" {
			part += ", offsets from " + p.OffsetsFrom
		}
		parts = append(parts, part+")")
	}
	goVersion := t.GoVersion
	if goVersion == "" {
		goVersion = "not Go"
	}
	args := []any{"pid", t.Process.PID, "exe", t.Process.Exe, "go", goVersion, "instrumentors", strings.Join(parts, ", ")}
	if len(absent) > 0 {
		args = append(args, "not_in_binary", strings.Join(absent, ", "))
	}
	log.Info("attached", args...)
}

// report is what the last stats line said, to log only changes.
type report struct {
	probes   attach.Counters
	dropped  uint64 // span events dropped
	exported uint64
	failed   uint64
}

func logStats(log *slog.Logger, att *attach.Attacher, p *otel.Pipeline, last report, final bool) report {
	s := att.Stats()
	ps := p.Stats()
	now := report{probes: s.Probes, dropped: s.EventsDropped, exported: ps.Exported, failed: ps.Failed}
	if now == last && !final {
		return last
	}
	msg := "counters"
	if final {
		msg = "final counters"
	}
	log.Info(msg,
		"probe_hits", s.Probes.Entry+s.Probes.Return,
		"events", s.Probes.Events,
		"events_lost", s.Probes.RingbufFull,
		"spans_exported", ps.Exported,
		"spans_failed", ps.Failed,
		"targets", s.Targets)
	if d := s.Probes.RingbufFull - last.probes.RingbufFull; d > 0 {
		log.Warn("events lost: the ring buffer was full (export slower than requests; raise --ring-buffer or check the exporter)", "lost", d, "lost_total", s.Probes.RingbufFull)
	}
	if d := ps.Failed - last.failed; d > 0 {
		log.Warn("spans not delivered by the exporter", "failed", d, "failed_total", ps.Failed, "last_error", ps.LastError)
	}
	if d := s.EventsDropped - last.dropped; d > 0 {
		log.Warn("span events dropped: their span did not end within 30s, or it already had the maximum number of events", "count", d, "total", s.EventsDropped)
	}
	if d := s.Probes.InflightFull - last.probes.InflightFull; d > 0 {
		log.Warn("calls not recorded: in-flight map full", "count", d)
	}
	if w := s.Wire; final && w != (attach.WireCounters{}) {
		log.Info("trace context on the wire", "connections_watched", w.Enrolled, "traceparent_inserted", w.Injected,
			"not_http1", w.NotHTTP1, "kernel_refused", w.Failed+w.EnrollFailed,
			"tcp_option_segments", w.OptWritten, "tcp_option_no_room", w.OptNoRoom, "tcp_option_received", w.OptRead,
			"http2_traceparent_inserted", w.H2Injected, "http2_not_whole_frames", w.H2Unparsed, "http2_no_room", w.H2NoRoom)
	}
	if n := s.InFlightAtExit; final && n > 0 {
		log.Info("calls in flight when their process or uranus exited: exported as spans marked uranus.incomplete=true (ending then, status unknown)", "calls", n)
	}
	if n := s.Probes.OutOfScope; final && n > 0 {
		log.Info("calls of processes outside uranus's PID namespace that run a probed executable (another container of the image): dropped in the kernel", "probe_hits", n)
	}
	if s.UnknownSource > 0 && final {
		log.Warn("records whose process was already detached", "count", s.UnknownSource)
	}
	if s.BadRecords > 0 && final {
		log.Warn("records that could not be decoded", "count", s.BadRecords, "last", s.LastBad)
	}
	return now
}

// sdkErrors logs the OTel SDK's errors (an exporter that is down fails every
// batch) at most once per interval, with how many were not shown.
type sdkErrors struct {
	log        *slog.Logger
	every      time.Duration
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (h *sdkErrors) Handle(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if time.Since(h.last) < h.every {
		h.suppressed++
		return
	}
	h.log.Warn("OpenTelemetry SDK error", "err", err, "not_shown_since_last", h.suppressed)
	h.last, h.suppressed = time.Now(), 0
}

func checkPID(pid int, list []*instrumentors.Instrumentor) error {
	bin, err := binary.Open(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return fmt.Errorf("pid %d: %w", pid, err)
	}
	defer bin.Close()
	if err := attach.CheckBinary(bin, list); err != nil {
		return fmt.Errorf("pid %d: %w", pid, err)
	}
	return nil
}

// signalContext is cancelled by SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// setNice lowers the priority of every thread of uranus (Linux applies
// setpriority per thread; threads started later inherit it). The programs
// uranus watches never wait for it: their probes only queue records.
func setNice(n int) error {
	if n < 0 || n > 19 {
		return fmt.Errorf("--nice %d: use 0 (normal priority) to 19 (lowest)", n)
	}
	if n == 0 {
		return nil
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("--nice: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		// A thread that exited meanwhile is no concern.
		_ = syscall.Setpriority(syscall.PRIO_PROCESS, tid, n)
	}
	return nil
}
