package otel

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
)

// Version is uranus's version, reported as telemetry.distro.version.
var Version = "0.1.0-dev"

// Config chooses where spans go.
type Config struct {
	// Exporters: "otlp", "console", "none". Empty reads OTEL_TRACES_EXPORTER;
	// when that is unset too, "otlp" if an OTLP endpoint is configured in the
	// environment, else "console" (a first run shows traces without a collector).
	Exporters []string
	// Console receives the console exporter's trace trees (default stdout).
	Console io.Writer
	// ConsoleLinger is how long the console waits after a trace's last span
	// before drawing it (default 1s), so late children join their tree.
	ConsoleLinger time.Duration
	// Extra exporters, e.g. an in-memory one for tests.
	Extra []sdktrace.SpanExporter
	// QueueSize bounds the spans waiting for export (default 4096): for OTLP
	// in all, for each SDK exporter per target. When full, reading events
	// waits; the ring buffer then counts what the kernel side could not
	// hand over.
	QueueSize int
	// BatchTimeout is the longest a span waits before export (default 1s,
	// or OTEL_BSP_SCHEDULE_DELAY).
	BatchTimeout time.Duration
}

// Pipeline owns the exporters shared by every target: OTLP, sent straight
// from uranus's spans (otlp.go), and SDK exporters (the console, tests').
type Pipeline struct {
	cfg       Config
	otlp      *otlpBatcher
	exporters []sdktrace.SpanExporter // through the SDK
	console   *Console
	exported  atomic.Uint64
	failed    atomic.Uint64
	lastErr   atomic.Value // string
	names     []string
}

// NewPipeline builds the exporters named by cfg or the environment.
func NewPipeline(ctx context.Context, cfg Config) (*Pipeline, error) {
	names := cfg.Exporters
	if len(names) == 0 {
		names = exportersFromEnv()
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 4096
	}
	if cfg.BatchTimeout <= 0 && os.Getenv("OTEL_BSP_SCHEDULE_DELAY") == "" {
		cfg.BatchTimeout = time.Second
	}
	p := &Pipeline{cfg: cfg}
	for _, name := range names {
		switch name {
		case "none":
		case "console":
			w := cfg.Console
			if w == nil {
				w = os.Stdout
			}
			p.console = NewConsole(w, cfg.ConsoleLinger)
			p.exporters = append(p.exporters, p.console)
			p.names = append(p.names, "console")
		case "otlp":
			client, desc, err := otlpClient(ctx)
			if err != nil {
				return nil, err
			}
			p.otlp = newOTLPBatcher(client, p, cfg.QueueSize, scheduleDelay(cfg.BatchTimeout))
			p.names = append(p.names, desc)
		default:
			return nil, fmt.Errorf("OTEL_TRACES_EXPORTER: unknown exporter %q (use otlp, console or none)", name)
		}
	}
	p.exporters = append(p.exporters, cfg.Extra...)
	for range cfg.Extra {
		p.names = append(p.names, "extra")
	}
	return p, nil
}

// Describe says where spans go, for the start-up log line.
func (p *Pipeline) Describe() string {
	if len(p.names) == 0 {
		return "nowhere (OTEL_TRACES_EXPORTER=none)"
	}
	return strings.Join(p.names, ", ")
}

func exportersFromEnv() []string {
	if v := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); v != "" {
		var out []string
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		if os.Getenv(k) != "" {
			return []string{"otlp"}
		}
	}
	return []string{"console"}
}

// otlpClient is the OTLP exporter's transport, as OTEL_EXPORTER_OTLP_*
// configures it, started.
func otlpClient(ctx context.Context) (otlptrace.Client, string, error) {
	if err := checkOTLPEnv(os.Getenv); err != nil {
		return nil, "", err
	}
	proto := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	endpoint := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if endpoint == "" {
		endpoint = os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	var client otlptrace.Client
	switch proto {
	case "", "http/protobuf":
		client, proto = otlptracehttp.NewClient(), "http/protobuf"
		if endpoint == "" {
			endpoint = "http://localhost:4318"
		}
	case "grpc":
		client = otlptracegrpc.NewClient()
		if endpoint == "" {
			endpoint = "http://localhost:4317"
		}
	default:
		return nil, "", fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q is not supported (use grpc or http/protobuf)", proto)
	}
	if err := client.Start(ctx); err != nil {
		return nil, "", fmt.Errorf("starting the OTLP %s exporter: %w (check OTEL_EXPORTER_OTLP_ENDPOINT)", proto, err)
	}
	return client, "otlp " + proto + " " + endpoint, nil
}

// scheduleDelay is how long a span may wait before export: OTEL_BSP_SCHEDULE_DELAY
// (milliseconds) when set, as for the SDK's batch processor, else d.
func scheduleDelay(d time.Duration) time.Duration {
	if ms, err := strconv.Atoi(os.Getenv("OTEL_BSP_SCHEDULE_DELAY")); err == nil && ms > 0 {
		return time.Duration(ms) * time.Millisecond
	}
	return d
}

// Stats counts what left the pipeline.
type Stats struct {
	Exported  uint64 // spans delivered, summed over exporters
	Failed    uint64 // spans an exporter reported as not delivered
	LastError string
}

// Stats returns the export counters.
func (p *Pipeline) Stats() Stats {
	s := Stats{Exported: p.exported.Load(), Failed: p.failed.Load()}
	if e, ok := p.lastErr.Load().(string); ok {
		s.LastError = e
	}
	return s
}

// Shutdown flushes and stops the exporters. Close every Process first.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	var errs []error
	if p.otlp != nil {
		errs = append(errs, p.otlp.shutdown(ctx))
	}
	for _, e := range p.exporters {
		errs = append(errs, e.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// ProcessInfo describes one target process for its resource.
type ProcessInfo struct {
	PID         int
	Executable  string // path as the target sees it
	GoVersion   string // "go1.22.12"; empty for non-Go targets
	ServiceName string // default when OTEL_SERVICE_NAME is unset
}

// Process emits the spans of one target process: it has its own resource
// (process.pid, …) and so its own TracerProvider over the shared exporters.
type Process struct {
	p          *Pipeline
	provider   *sdktrace.TracerProvider // nil without SDK exporters
	tracer     trace.Tracer
	resourcePB *resourcepb.Resource
	schemaURL  string
}

// NewProcess starts the span pipeline for one target.
func (p *Pipeline) NewProcess(ctx context.Context, info ProcessInfo) (*Process, error) {
	attrs := []attribute.KeyValue{
		semconv.ProcessPID(info.PID),
		semconv.ProcessExecutablePath(info.Executable),
		semconv.ProcessExecutableName(baseName(info.Executable)),
		semconv.TelemetryDistroName("uranus"),
		semconv.TelemetryDistroVersion(Version),
	}
	if info.GoVersion != "" {
		attrs = append(attrs,
			semconv.ProcessRuntimeName("go"),
			semconv.ProcessRuntimeVersion(info.GoVersion),
			semconv.TelemetrySDKLanguageGo)
	}
	name := info.ServiceName
	if name == "" {
		name = baseName(info.Executable)
	}
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (WithFromEnv) win over
	// the executable's name, as users of OTel expect.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(name)),
		resource.WithAttributes(attrs...),
		resource.WithHost(),
		resource.WithFromEnv(),
	)
	if err != nil && res == nil {
		return nil, fmt.Errorf("building the resource for pid %d: %w", info.PID, err)
	}
	pr := &Process{p: p, resourcePB: resourceProto(res), schemaURL: res.SchemaURL()}
	if len(p.exporters) == 0 {
		return pr, nil
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithIDGenerator(kernelIDs{}),
	}
	for _, e := range p.exporters {
		bopts := []sdktrace.BatchSpanProcessorOption{
			sdktrace.WithMaxQueueSize(p.cfg.QueueSize),
			sdktrace.WithBlocking(),
		}
		if p.cfg.BatchTimeout > 0 {
			bopts = append(bopts, sdktrace.WithBatchTimeout(p.cfg.BatchTimeout))
		}
		opts = append(opts, sdktrace.WithSpanProcessor(
			sdktrace.NewBatchSpanProcessor(&countingExporter{e, p}, bopts...)))
	}
	pr.provider = sdktrace.NewTracerProvider(opts...)
	pr.tracer = pr.provider.Tracer(scopeName)
	return pr, nil
}

// Emit exports s: to OTLP as it is, and through the SDK to the other
// exporters, where the sampler (OTEL_TRACES_SAMPLER) applies again and, for
// a trace id, reaches the kernel's verdict.
func (pr *Process) Emit(s *Span) {
	if pr.p.otlp != nil && s.Sampled {
		pr.p.otlp.add(pr, spanProto(s))
	}
	if pr.provider != nil {
		pr.emitSDK(s)
	}
}

func (pr *Process) emitSDK(s *Span) {
	ctx := context.WithValue(context.Background(), idsKey{}, ids{s.TraceID, s.SpanID})
	if s.Parent.IsValid() {
		flags := trace.TraceFlags(0)
		if s.Sampled {
			flags = trace.FlagsSampled
		}
		var ts trace.TraceState
		if s.TraceState != "" {
			// An invalid tracestate is dropped, as the W3C spec asks.
			ts, _ = trace.ParseTraceState(s.TraceState)
		}
		ctx = trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: s.TraceID, SpanID: s.Parent, TraceFlags: flags, TraceState: ts, Remote: true,
		}))
	}
	_, span := pr.tracer.Start(ctx, s.Name,
		trace.WithSpanKind(s.Kind),
		trace.WithTimestamp(s.Start),
		trace.WithAttributes(s.Attrs...))
	for _, ev := range s.Events {
		span.AddEvent(ev.Name, trace.WithTimestamp(ev.Time), trace.WithAttributes(ev.Attrs...))
	}
	if s.Status != 0 {
		span.SetStatus(s.Status, s.StatusMsg)
	}
	span.End(trace.WithTimestamp(s.End))
}

// Close flushes this target's spans and stops its provider; the shared
// exporters stay open for other targets.
func (pr *Process) Close(ctx context.Context) error {
	if pr.provider == nil {
		return nil
	}
	return pr.provider.Shutdown(ctx)
}

// kernelIDs makes the SDK use the trace and span IDs the BPF programs chose,
// so that parents and children recorded separately link up.
type kernelIDs struct{}

type idsKey struct{}

type ids struct {
	trace trace.TraceID
	span  trace.SpanID
}

func (kernelIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if v, ok := ctx.Value(idsKey{}).(ids); ok && v.trace.IsValid() && v.span.IsValid() {
		return v.trace, v.span
	}
	var t trace.TraceID
	var s trace.SpanID
	rand.Read(t[:])
	rand.Read(s[:])
	return t, s
}

func (kernelIDs) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if v, ok := ctx.Value(idsKey{}).(ids); ok && v.span.IsValid() {
		return v.span
	}
	var s trace.SpanID
	rand.Read(s[:])
	return s
}

// countingExporter counts delivered and failed spans; each target's
// provider shuts its processors down, but the shared exporter must outlive
// them, so Shutdown here only flushes.
type countingExporter struct {
	sdktrace.SpanExporter
	p *Pipeline
}

func (c *countingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := c.SpanExporter.ExportSpans(ctx, spans)
	if err != nil {
		c.p.failed.Add(uint64(len(spans)))
		c.p.lastErr.Store(err.Error())
	} else {
		c.p.exported.Add(uint64(len(spans)))
	}
	return err
}

func (c *countingExporter) Shutdown(ctx context.Context) error { return nil }

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}
