package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// result is one configuration measured in one round.
type result struct {
	Config string
	Round  int

	SatRequests int           // completed in the saturation phase
	SatTime     time.Duration // its length
	ServerCPU   float64       // server CPU-seconds in the saturation phase
	OtherCPU    float64       // seconds the server's CPU ran anything else meanwhile
	LoadCPU     float64       // the harness's (load generator, sink) CPU-seconds in it

	P50, P99   time.Duration // latency phase
	PacedCount int           // latencies measured
	PacedSent  int           // requests sent, warm-up included
	PacedTime  time.Duration

	Sent int // every request sent while instrumented, warm-up included

	Hits      uint64 // uprobe hits counted by the BPF programs themselves
	HitsKnown bool

	// From the kernel's BPF statistics (-bpf-stats), over the saturation
	// and latency phases: program runs and the time spent in them.
	BPFRuns, BPFNs uint64
	BPFKnown       bool
	BPFProgs       map[string]progStat // by program name

	Exports   bool   // the configuration exports spans to the sink
	SinkSpans uint64 // spans the sink received

	Sidecar     bool    // a separate instrumentation process ran
	SidecarSat  float64 // its CPU-seconds in the saturation phase
	SidecarPace float64 // … in the latency phase
	SidecarRSS  uint64  // peak resident set, bytes
	SidecarMem  string  // what the resident set was made of at the end
	SidecarLife time.Duration
	Lost        uint64 // events lost in the ring buffer (uranus)
	LostKnown   bool
	Exported    uint64 // spans the sidecar says it exported (uranus)
}

func (r *result) satRPS() float64 { return float64(r.SatRequests) / r.SatTime.Seconds() }

// harness holds what every run shares.
type harness struct {
	o      options
	server string // server binary, without OpenTelemetry code
	// serverOTel is the same server built with -tags otel, for otelhttp.
	serverOTel string
	uranus     string // uranus binary
	sink       *sink
}

const warmup = 500 * time.Millisecond

// serverName is the server's executable name, distinct enough for tools
// that select their target by name.
const serverName = "uranus-bench-server"

func run(o options) (*results, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	configs := o.Configs
	if len(configs) == 0 {
		configs = allConfigs
	}
	var skipped []string
	var list []string
	for _, c := range configs {
		if c == cfgOTelAuto && o.OTelAuto == "" {
			skipped = append(skipped, "otel-auto: skipped (give its binary with -otel-auto PATH or URANUS_BENCH_OTEL_AUTO)")
			continue
		}
		if c == cfgUranusB && o.UranusB == "" {
			continue
		}
		list = append(list, c)
	}
	if err := checkPrivileges(); err != nil {
		return nil, err
	}
	if o.BPFStats {
		stats, err := enableBPFStats()
		if err != nil {
			return nil, err
		}
		defer stats.Close()
	}
	if n := runtime.NumCPU(); o.ServerCPU >= n || o.LoadCPU >= n {
		return nil, fmt.Errorf("-server-cpu %d / -load-cpu %d: this machine has CPUs 0-%d", o.ServerCPU, o.LoadCPU, n-1)
	}

	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "uranus-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	h := &harness{o: o}
	o.progress("building the server (%s) …", runtime.Version())
	if h.server, err = goBuild(root, "./bench/server", dir, serverName); err != nil {
		return nil, err
	}
	if h.serverOTel, err = goBuild(root, "./bench/server", dir, serverName+"-otel", "-tags", "otel"); err != nil {
		return nil, err
	}
	h.uranus = o.Uranus
	if h.uranus == "" {
		o.progress("building uranus …")
		if h.uranus, err = goBuild(root, "./cmd/uranus", dir, "uranus"); err != nil {
			return nil, err
		}
	}

	// Everything but the server shares the load CPU, so that the server's
	// core does only the server's work (and the probes it triggers).
	var mask unix.CPUSet
	if err := unix.SchedGetaffinity(0, &mask); err != nil {
		return nil, err
	}
	if err := pinProcess(os.Getpid(), o.LoadCPU); err != nil {
		return nil, err
	}
	defer setProcessAffinity(os.Getpid(), &mask)
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)

	if h.sink, err = startSink(); err != nil {
		return nil, err
	}
	defer h.sink.close()

	res := &results{opts: o, configs: list, skipped: skipped, started: time.Now()}
	for round := 0; round < o.Rounds; round++ {
		// Rotate the order so that no configuration always runs first
		// or right after a particular other one.
		for i := range list {
			cfg := list[(i+round)%len(list)]
			r, err := h.measure(cfg, round)
			if err != nil {
				return nil, fmt.Errorf("round %d, %s: %w", round+1, cfg, err)
			}
			res.runs = append(res.runs, r)
			o.progress("round %d/%d %-9s %s", round+1, o.Rounds, cfg, r.oneLine())
		}
	}
	res.finished = time.Now()
	return res, nil
}

func checkPrivileges() error {
	if os.Geteuid() != 0 {
		return errors.New("the floor and uranus configurations load BPF programs: run as root (sudo go run ./bench)")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("raising the locked-memory limit for BPF maps: %w", err)
	}
	return nil
}

// instrumentation is what one configuration adds to the server.
type instrumentation struct {
	floor   *floorProbes
	sidecar *child
	// stopSidecar ends the sidecar and fills in what only its exit tells.
	stopSidecar func(*result) error
}

// measure runs one configuration once: a fresh server, the instrumentation,
// a warm-up, the saturation phase and the latency phase.
func (h *harness) measure(cfg string, round int) (res *result, err error) {
	o := h.o
	r := &result{Config: cfg, Round: round}
	h.sink.reset()

	var args, env []string
	server := h.server
	if cfg == cfgOTelHTTP {
		server = h.serverOTel
		args = append(args, "-otel")
		env = append(env, h.otlpEnv()...)
	}
	if cfg == cfgCall || cfg == cfgCallWire {
		args = append(args, "-downstream", h.sink.URL+"/downstream")
	}
	srv, err := startChild("server", server, args, env, o.ServerCPU)
	if err != nil {
		return nil, err
	}
	serverStopped := false
	defer func() {
		if !serverStopped {
			srv.kill()
		}
	}()
	line, err := srv.waitLine(func(l string) bool { return strings.HasPrefix(l, "listening on ") }, 30*time.Second)
	if err != nil {
		return nil, err
	}
	addr := strings.TrimPrefix(line, "listening on ")
	pid := srv.cmd.Process.Pid
	// Threads the runtime started before the line inherited the mask; pin
	// again anyway so that no thread escapes the server's core.
	if err := pinProcess(pid, o.ServerCPU); err != nil {
		return nil, err
	}
	if got := allowedCPUs(pid); got != strconv.Itoa(o.ServerCPU) {
		return nil, fmt.Errorf("server pid %d may run on CPUs %s, want %d", pid, got, o.ServerCPU)
	}

	var inst instrumentation
	defer func() {
		if inst.floor != nil {
			inst.floor.close()
		}
		if inst.sidecar != nil && err != nil {
			inst.sidecar.kill()
		}
	}()
	switch cfg {
	case cfgFloor:
		if inst.floor, err = attachFloor(h.server, pid); err != nil {
			return nil, err
		}
	case cfgUranus, cfgUranusB:
		bin := h.uranus
		if cfg == cfgUranusB {
			bin = o.UranusB
		}
		if err := h.startUranus(&inst, bin, "--pid", strconv.Itoa(pid)); err != nil {
			return nil, err
		}
	case cfgUranusExe:
		if err := h.startUranus(&inst, h.uranus, "--exe", h.server); err != nil {
			return nil, err
		}
	case cfgCall, cfgCallWire:
		prop := map[string]string{cfgCall: "off", cfgCallWire: "network"}[cfg]
		if err := h.startUranus(&inst, h.uranus, "--pid", strconv.Itoa(pid), "--propagation", prop); err != nil {
			return nil, err
		}
	case cfgOTelAuto:
		if err := h.startOTelAuto(&inst, addr, r); err != nil {
			return nil, err
		}
	}

	// profile records the sidecar during one phase when -perf is given.
	profile := func(phase string) (stop func(), err error) {
		if o.PerfDir == "" || inst.sidecar == nil {
			return func() {}, nil
		}
		file := filepath.Join(o.PerfDir, fmt.Sprintf("%s-round%d-%s.perf.data", cfg, round+1, phase))
		return perfRecord(inst.sidecar.cmd.Process.Pid, file, o.LoadCPU)
	}

	n, _, err := saturate(addr, o.Conns, warmup)
	if err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	r.Sent += n

	var sideBefore, sideAfter float64
	sideCPU := func() float64 {
		if inst.sidecar == nil {
			return 0
		}
		v, _ := cpuSeconds(inst.sidecar.cmd.Process.Pid)
		return v
	}
	srvBefore, err := cpuSeconds(pid)
	if err != nil {
		return nil, err
	}
	loadBefore, err := cpuSeconds(os.Getpid())
	if err != nil {
		return nil, err
	}
	coreBefore, err := cpuBusy(o.ServerCPU)
	if err != nil {
		return nil, err
	}
	// holder is the process whose descriptors keep the programs loaded.
	holder := 0
	switch {
	case inst.floor != nil:
		holder = os.Getpid()
	case inst.sidecar != nil:
		holder = inst.sidecar.cmd.Process.Pid
	}
	var progsBefore map[uint64]progStat
	if o.BPFStats && holder != 0 {
		if progsBefore, err = progStats(holder); err != nil {
			return nil, err
		}
	}

	stopProfile, err := profile("saturation")
	if err != nil {
		return nil, err
	}
	sideBefore = sideCPU()
	n, took, err := saturate(addr, o.Conns, o.Duration)
	stopProfile()
	if err != nil {
		return nil, fmt.Errorf("saturation: %w", err)
	}
	srvAfter, err := cpuSeconds(pid)
	if err != nil {
		return nil, err
	}
	sideAfter = sideCPU()
	loadAfter, err := cpuSeconds(os.Getpid())
	if err != nil {
		return nil, err
	}
	coreAfter, err := cpuBusy(o.ServerCPU)
	if err != nil {
		return nil, err
	}
	r.Sent += n
	r.SatRequests, r.SatTime = n, took
	r.ServerCPU = srvAfter - srvBefore
	// The probes run in the server's threads and count as its time; what
	// else the core did is other load on the machine (or interrupts).
	r.OtherCPU = max(0, coreAfter-coreBefore-r.ServerCPU)
	r.LoadCPU = loadAfter - loadBefore
	r.SidecarSat = sideAfter - sideBefore

	if stopProfile, err = profile("paced"); err != nil {
		return nil, err
	}
	sideBefore = sideCPU()
	start := time.Now()
	lat, sent, err := paced(addr, o.Rate, o.Duration)
	r.PacedTime = time.Since(start)
	stopProfile()
	r.Sent += sent
	r.PacedSent = sent
	if err != nil {
		return nil, fmt.Errorf("latency phase: %w", err)
	}
	r.SidecarPace = sideCPU() - sideBefore
	if o.BPFStats && holder != 0 {
		after, err := progStats(holder)
		if err != nil {
			return nil, err
		}
		r.BPFProgs = progDelta(progsBefore, after)
		for _, p := range r.BPFProgs {
			r.BPFRuns += p.runs
			r.BPFNs += p.ns
		}
		r.BPFKnown = true
	}
	r.PacedCount = len(lat)
	r.P50, r.P99 = latencySummary(lat)

	if inst.floor != nil {
		if r.Hits, err = inst.floor.hits(); err != nil {
			return nil, err
		}
		r.HitsKnown = true
		inst.floor.close()
		inst.floor = nil
	}
	if inst.stopSidecar != nil {
		if err := inst.stopSidecar(r); err != nil {
			return nil, err
		}
	}
	// The in-process exporter flushes on SIGTERM; a sidecar has flushed
	// by now. Either way every span has reached the sink once the process
	// that sent it has exited.
	serverStopped = true
	if err := srv.stop(40 * time.Second); err != nil {
		return nil, err
	}
	r.Exports = cfg != cfgBaseline && cfg != cfgFloor
	r.SinkSpans = h.sink.spans.Load()
	if bad, msg := h.sink.badRequests(); bad > 0 {
		return nil, fmt.Errorf("the OTLP sink rejected %d exports: %s", bad, msg)
	}
	return r, nil
}

func (h *harness) otlpEnv() []string {
	return []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + h.sink.URL,
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_TRACES_EXPORTER=otlp",
		"OTEL_SERVICE_NAME=bench-server",
	}
}

// startUranus runs the uranus binary with args (which name the server, by
// --pid or --exe) on the load CPU and waits until it has attached. Running
// it as its own process, as users do, lets the kernel account its CPU and
// memory separately from the harness.
func (h *harness) startUranus(inst *instrumentation, bin string, args ...string) error {
	c, err := startChild("uranus", bin, args, h.otlpEnv(), h.o.LoadCPU)
	if err != nil {
		return err
	}
	inst.sidecar = c
	started := time.Now()
	if _, err := c.waitLine(func(l string) bool {
		return strings.Contains(l, "msg=attached") || strings.Contains(l, "cannot instrument")
	}, 60*time.Second); err != nil {
		return err
	}
	if strings.Contains(c.output(), "cannot instrument") {
		return fmt.Errorf("uranus could not attach:\n%s", c.output())
	}
	inst.stopSidecar = func(r *result) error {
		r.Sidecar = true
		rss, _ := peakRSS(c.cmd.Process.Pid)
		r.SidecarMem = rssParts(c.cmd.Process.Pid)
		if err := c.stop(30 * time.Second); err != nil {
			return err
		}
		r.SidecarLife = time.Since(started)
		r.SidecarRSS = max(rss, c.maxRSS())
		line, err := c.waitLine(func(l string) bool { return strings.Contains(l, `msg="final counters"`) }, time.Second)
		if err != nil {
			return fmt.Errorf("uranus logged no final counters: %w", err)
		}
		kv := logFields(line)
		for _, k := range []string{"probe_hits", "events_lost", "spans_exported"} {
			if _, ok := kv[k]; !ok {
				return fmt.Errorf("uranus's final counters lack %s: %s", k, line)
			}
		}
		r.Hits, r.HitsKnown = kv["probe_hits"], true
		r.Lost, r.LostKnown = kv["events_lost"], true
		r.Exported = kv["spans_exported"]
		return nil
	}
	return nil
}

// startOTelAuto runs go.opentelemetry.io/auto's command against the server
// binary. Its start-up differs between releases, so readiness is judged by
// what matters: a request's span arriving at the sink.
func (h *harness) startOTelAuto(inst *instrumentation, addr string, r *result) error {
	env := append(h.otlpEnv(),
		"OTEL_GO_AUTO_TARGET_EXE="+h.server,
		"OTEL_BSP_SCHEDULE_DELAY=1000") // uranus's batch timeout
	c, err := startChild("otel-auto", h.o.OTelAuto, strings.Fields(h.o.OTelAutoArgs), env, h.o.LoadCPU)
	if err != nil {
		return err
	}
	inst.sidecar = c
	started := time.Now()
	cn, err := dial(addr, false)
	if err != nil {
		return err
	}
	defer cn.close()
	deadline := started.Add(90 * time.Second)
	for h.sink.spans.Load() == 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("otel-auto: no span reached the sink %s after it started; output:\n%s",
				time.Since(started).Round(time.Second), c.output())
		}
		select {
		case <-c.done:
			return fmt.Errorf("otel-auto exited (%v); output:\n%s", c.err, c.output())
		case <-time.After(200 * time.Millisecond):
		}
		if err := cn.roundTrip(); err != nil {
			return err
		}
		r.Sent++
	}
	// Requests sent before the probes were in place have no span: let
	// the last batch arrive, then count from zero.
	time.Sleep(2 * time.Second)
	h.sink.reset()
	r.Sent = 0
	inst.stopSidecar = func(r *result) error {
		r.Sidecar = true
		rss, _ := peakRSS(c.cmd.Process.Pid)
		r.SidecarMem = rssParts(c.cmd.Process.Pid)
		if err := c.stop(30 * time.Second); err != nil {
			// Its exit status on SIGTERM is its own business; the spans
			// it flushed are what is compared.
			fmt.Fprintln(os.Stderr, "bench: otel-auto:", err)
		}
		r.SidecarLife = time.Since(started)
		r.SidecarRSS = max(rss, c.maxRSS())
		return nil
	}
	return nil
}

// logFields parses the numeric key=value pairs of a slog text line.
func logFields(line string) map[string]uint64 {
	kv := map[string]uint64{}
	for _, f := range strings.Fields(line) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(v, 10, 64); err == nil {
			kv[k] = n
		}
	}
	return kv
}

// perfRecord samples pid's stacks with perf into file until the returned
// function is called; for finding where a sidecar's time goes.
func perfRecord(pid int, file string, cpu int) (stop func(), err error) {
	c, err := startChild("perf", "perf", []string{"record", "-g", "-F", "1999", "-p", strconv.Itoa(pid), "-o", file}, nil, cpu)
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, errors.New("-perf needs the perf command (apt-get install linux-perf)")
		}
		return nil, err
	}
	time.Sleep(300 * time.Millisecond) // perf opens its events after start
	return func() {
		c.cmd.Process.Signal(os.Interrupt)
		select {
		case <-c.done:
		case <-time.After(30 * time.Second):
			c.kill()
		}
	}, nil
}
