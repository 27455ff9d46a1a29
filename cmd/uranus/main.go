// Command uranus attaches OpenTelemetry tracing to running Go programs with
// eBPF uprobes: no restart, no rebuild.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strings"
)

const usage = `uranus — OpenTelemetry traces from running Go programs, without rebuilding them

Usage:
  uranus --exe PATH|NAME [flags]     instrument every process running that executable
  uranus --pid N [flags]             instrument one process
  uranus demo                        trace two demo services and draw the traces here
  uranus inspect BINARY|--pid N      show what would be probed and why (see inspect --help)
  uranus tls-dump --exe PATH|NAME    print a program's TLS plaintext per connection, live (see tls-dump --help)

uranus attaches eBPF uprobes to the target's functions (entry and every RET
instruction), builds a span per HTTP request, and exports it with the
OpenTelemetry SDK. It waits for the target if it is not running yet, follows
restarts, and removes every probe when it exits (SIGINT/SIGTERM). It needs
root, or CAP_SYS_ADMIN (and CAP_SYS_PTRACE for other users' processes).

Flags:
%s
Environment (OpenTelemetry standard):
  OTEL_SERVICE_NAME               service.name (default: the executable's name)
  OTEL_RESOURCE_ATTRIBUTES        extra resource attributes (k=v,k=v)
  OTEL_TRACES_EXPORTER            otlp, console or none (default: otlp when an
                                  OTLP endpoint is set, else console)
  OTEL_EXPORTER_OTLP_ENDPOINT     e.g. http://127.0.0.1:4318
  OTEL_EXPORTER_OTLP_PROTOCOL     http/protobuf (default) or grpc
  OTEL_TRACES_SAMPLER[_ARG]       e.g. parentbased_traceidratio with 0.1
  OTEL_URANUS_PROPAGATION         auto, network, memory or off (--propagation)

Examples:
  uranus --exe ./shop
  OTEL_SERVICE_NAME=shop OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 uranus --exe shop
`

func main() {
	tuneGC()
	os.Exit(realMain(os.Args[1:]))
}

// tuneGC trades a little memory for CPU: the span pipeline allocates per
// span, and at the default GOGC=100 the collector took ~12% of uranus's CPU
// under load. A soft limit keeps the heap well under the RSS budget. GOGC
// and GOMEMLIMIT, when set, win.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(40 << 20)
	}
}

func realMain(args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "demo":
			return demoMain(args[1:])
		case "demo-app":
			return demoAppMain(args[1:])
		case "inspect":
			return inspectMain(args[1:], os.Stdout, os.Stderr)
		case "tls-dump":
			return tlsDumpMain(args[1:], os.Stdout, os.Stderr)
		}
	}
	fs := flag.NewFlagSet("uranus", flag.ContinueOnError)
	var c runConfig
	runFlags(fs, &c)
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	logJSON := fs.Bool("log-json", false, "log as JSON lines instead of text")
	list := fs.Bool("list", false, "list the instrumentors, which run by default, and exit")
	fs.Usage = func() {
		var b strings.Builder
		fs.SetOutput(&b)
		fs.PrintDefaults()
		fs.SetOutput(os.Stderr)
		fmt.Fprintf(os.Stderr, usage, b.String())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *list {
		listInstrumentors(os.Stdout)
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "uranus: unexpected argument %q (see uranus --help)\n", fs.Arg(0))
		return 2
	}
	log, err := newLogger(*logLevel, *logJSON)
	if err != nil {
		fmt.Fprintln(os.Stderr, "uranus:", err)
		return 2
	}
	c.log = log
	if path := os.Getenv("URANUS_CPUPROFILE"); path != "" {
		// For finding where the sidecar's own CPU goes (go tool pprof).
		stop, err := startCPUProfile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "uranus: URANUS_CPUPROFILE:", err)
			return 2
		}
		defer stop()
	}
	if path := os.Getenv("URANUS_MEMPROFILE"); path != "" {
		defer writeHeapProfile(path, log)
	}
	ctx, cancel := signalContext()
	defer cancel()
	if err := run(ctx, c); err != nil {
		// One plain line: the cause and the fix, without log framing.
		fmt.Fprintln(os.Stderr, "uranus:", err)
		return 1
	}
	return 0
}

func newLogger(level string, json bool) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	if json {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
}

func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func writeHeapProfile(path string, log *slog.Logger) {
	f, err := os.Create(path)
	if err == nil {
		err = pprof.Lookup("allocs").WriteTo(f, 0)
		f.Close()
	}
	if err != nil {
		log.Warn("URANUS_MEMPROFILE", "err", err)
	}
}
