// Command bench measures what tracing a Go HTTP server costs: uninstrumented,
// with no-op uprobes at the places uranus probes (the floor), with uranus,
// with otelhttp in-process, and with go.opentelemetry.io/auto when given.
// The configurations run interleaved, round after round, so that noise on
// the machine hits them alike; the results are ratios between them.
//
//	sudo go run ./bench -duration 10s -rounds 3
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

func main() {
	var o options
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "length of each measured phase (saturation, then paced latency) per configuration and round")
	fs.IntVar(&o.Rounds, "rounds", 3, "rounds; each runs every configuration once, in a rotated order")
	fs.IntVar(&o.Conns, "conns", 8, "keep-alive connections of the saturation phase")
	fs.IntVar(&o.Rate, "rate", 1000, "requests per second of the latency phase (one connection)")
	fs.IntVar(&o.ServerCPU, "server-cpu", 0, "CPU the server is pinned to")
	fs.IntVar(&o.LoadCPU, "load-cpu", 1, "CPU the load generator, the OTLP sink and the sidecars are pinned to")
	fs.StringVar(&o.Uranus, "uranus", "", "uranus binary to measure (default: build ./cmd/uranus)")
	fs.StringVar(&o.UranusB, "uranus-b", "", "a second uranus binary to measure side by side, e.g. a candidate fix (config uranus-b)")
	fs.StringVar(&o.OTelAuto, "otel-auto", os.Getenv("URANUS_BENCH_OTEL_AUTO"), "go.opentelemetry.io/auto binary to compare with (or URANUS_BENCH_OTEL_AUTO); skipped when empty")
	fs.StringVar(&o.OTelAutoArgs, "otel-auto-args", "", "extra space-separated arguments for the -otel-auto binary")
	fs.StringVar(&o.PerfDir, "perf", "", "record each sidecar's stacks with perf record -g into this `directory` (to see where its CPU goes)")
	fs.BoolVar(&o.BPFStats, "bpf-stats", true, "enable the kernel's BPF run-time statistics while running, to count every tool's program runs and time")
	configs := fs.String("configs", "", "comma-separated subset of configurations (default: all): "+strings.Join(allConfigs, ", "))
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: sudo go run ./bench [flags]\n\n"+
			"Loads a one-core Go HTTP server on 127.0.0.1 under each configuration and prints\n"+
			"throughput, latency, probe hits, sidecar cost and the PASS/FAIL of issue 7's\n"+
			"targets. Exit status 1 when a target fails, 2 on errors.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.Parse(os.Args[1:])
	if *configs != "" {
		o.Configs = strings.Split(*configs, ",")
	}
	o.Progress = os.Stderr

	res, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	res.report(os.Stdout)
	if res.failed() {
		os.Exit(1)
	}
}

// The configurations, in the order the report lists them.
const (
	cfgBaseline = "baseline"
	cfgFloor    = "floor"
	cfgUranus   = "uranus"
	cfgOTelHTTP = "otelhttp"
	cfgOTelAuto = "otel-auto"
	cfgUranusB  = "uranus-b"
	// uranus started with --exe on the server's file: probes on the
	// executable, for every process of it, instead of --pid's per-process
	// probes. It must cost no more per request.
	cfgUranusExe = "uranus-exe"
	// The server calls a downstream once per request: the cost of trace
	// context on the wire is uranus-call-wire against uranus-call.
	cfgCall     = "uranus-call"
	cfgCallWire = "uranus-call-wire"
)

var allConfigs = []string{cfgBaseline, cfgFloor, cfgUranus, cfgUranusExe, cfgUranusB, cfgOTelHTTP, cfgOTelAuto, cfgCall, cfgCallWire}

var configDoc = map[string]string{
	cfgBaseline:  "uninstrumented",
	cfgFloor:     "no-op BPF at entry + every RET of " + probedFunc,
	cfgUranus:    "uranus sidecar, OTLP/HTTP to the sink",
	cfgOTelHTTP:  "otelhttp + OTel SDK in-process, OTLP/HTTP to the sink",
	cfgOTelAuto:  "go.opentelemetry.io/auto sidecar, OTLP/HTTP to the sink",
	cfgUranusB:   "a second uranus binary (-uranus-b), measured like uranus",
	cfgUranusExe: "as uranus, started with --exe on the server's file (probes on the file) instead of --pid",
	cfgCall:      "the server GETs a downstream (the harness) once per request; uranus with --propagation off",
	cfgCallWire:  "as uranus-call, with --propagation network: traceparent inserted into each downstream request at the socket",
}

type options struct {
	Duration     time.Duration
	Rounds       int
	Conns        int
	Rate         int
	ServerCPU    int
	LoadCPU      int
	Uranus       string
	UranusB      string
	OTelAuto     string
	OTelAutoArgs string
	Configs      []string
	PerfDir      string
	BPFStats     bool
	Progress     io.Writer // one line per run; nil for none
}

func (o *options) validate() error {
	var errs []error
	if o.Duration < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("-duration %s: use at least 100ms", o.Duration))
	}
	if o.Rounds < 1 {
		errs = append(errs, fmt.Errorf("-rounds %d: use at least 1", o.Rounds))
	}
	if o.Conns < 1 {
		errs = append(errs, fmt.Errorf("-conns %d: use at least 1", o.Conns))
	}
	if o.Rate < 10 || o.Rate > 100000 {
		errs = append(errs, fmt.Errorf("-rate %d: use 10 to 100000 requests per second", o.Rate))
	}
	if o.ServerCPU == o.LoadCPU {
		errs = append(errs, fmt.Errorf("-server-cpu and -load-cpu are both %d: the server needs a core of its own", o.ServerCPU))
	}
	for _, c := range o.Configs {
		known := false
		for _, k := range allConfigs {
			known = known || c == k
		}
		if !known {
			errs = append(errs, fmt.Errorf("-configs: unknown configuration %q (known: %s)", c, strings.Join(allConfigs, ", ")))
		}
	}
	return errors.Join(errs...)
}

func (o *options) progress(format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, format+"\n", args...)
	}
}
