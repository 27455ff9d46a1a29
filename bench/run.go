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
	r := &result{Config: cfg, Round: round}
	h.sink.reset()
	srv, addr, err := h.startServer(cfg)
	if err != nil {
		return nil, err
	}
	serverStopped := false
	defer func() {
		if !serverStopped {
			srv.kill()
		}
	}()
	pid := srv.cmd.Process.Pid
	var inst instrumentation
	defer func() {
		if inst.floor != nil {
			inst.floor.close()
		}
		if inst.sidecar != nil && err != nil {
			inst.sidecar.kill()
		}
	}()
	if err := h.instrument(&inst, cfg, pid, addr, r); err != nil {
		return nil, err
	}
	n, _, err := saturate(addr, h.o.Conns, warmup)
	if err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	r.Sent += n
	ph := phases{h: h, r: r, cfg: cfg, round: round, pid: pid, addr: addr, inst: &inst}
	if err := ph.run(); err != nil {
		return nil, err
	}
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

// startServer starts the configuration's server pinned to its core, and
// returns its address once it listens.
func (h *harness) startServer(cfg string) (srv *child, addr string, err error) {
	o := h.o
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
	srv, err = startChild("server", server, args, env, o.ServerCPU)
	if err != nil {
		return nil, "", err
	}
	line, err := srv.waitLine(func(l string) bool { return strings.HasPrefix(l, "listening on ") }, 30*time.Second)
	if err == nil {
		// Threads the runtime started before the line inherited the
		// mask; pin again anyway so that no thread escapes the core.
		err = pinProcess(srv.cmd.Process.Pid, o.ServerCPU)
	}
	if err == nil {
		if got := allowedCPUs(srv.cmd.Process.Pid); got != strconv.Itoa(o.ServerCPU) {
			err = fmt.Errorf("server pid %d may run on CPUs %s, want %d", srv.cmd.Process.Pid, got, o.ServerCPU)
		}
	}
	if err != nil {
		srv.kill()
		return nil, "", err
	}
	return srv, strings.TrimPrefix(line, "listening on "), nil
}

// instrument adds the configuration's instrumentation to the server pid.
func (h *harness) instrument(inst *instrumentation, cfg string, pid int, addr string, r *result) (err error) {
	switch cfg {
	case cfgFloor:
		inst.floor, err = attachFloor(h.server, pid)
		return err
	case cfgUranus, cfgUranusB:
		bin := h.uranus
		if cfg == cfgUranusB {
			bin = h.o.UranusB
		}
		return h.startUranus(inst, bin, "--pid", strconv.Itoa(pid))
	case cfgUranusExe:
		return h.startUranus(inst, h.uranus, "--exe", h.server)
	case cfgCall, cfgCallWire:
		prop := map[string]string{cfgCall: "off", cfgCallWire: "network"}[cfg]
		return h.startUranus(inst, h.uranus, "--pid", strconv.Itoa(pid), "--propagation", prop)
	case cfgOTelAuto:
		return h.startOTelAuto(inst, addr, r)
	}
	return nil
}

// phases is one configuration's measured phases: saturation, then paced
// requests for latency, with CPU and BPF time around them.
type phases struct {
	h          *harness
	r          *result
	cfg        string
	round, pid int
	addr       string
	inst       *instrumentation
}

// cpuMarks are the CPU readings taken around the saturation phase.
type cpuMarks struct {
	server, load, core float64
}

func (ph *phases) marks() (m cpuMarks, err error) {
	if m.server, err = cpuSeconds(ph.pid); err != nil {
		return m, err
	}
	if m.load, err = cpuSeconds(os.Getpid()); err != nil {
		return m, err
	}
	m.core, err = cpuBusy(ph.h.o.ServerCPU)
	return m, err
}

// sidecarCPU is the sidecar's CPU time so far; 0 without a sidecar.
func (ph *phases) sidecarCPU() float64 {
	if ph.inst.sidecar == nil {
		return 0
	}
	v, _ := cpuSeconds(ph.inst.sidecar.cmd.Process.Pid)
	return v
}

// profile records the sidecar during one phase when -perf is given.
func (ph *phases) profile(phase string) (stop func(), err error) {
	o := ph.h.o
	if o.PerfDir == "" || ph.inst.sidecar == nil {
		return func() {}, nil
	}
	file := filepath.Join(o.PerfDir, fmt.Sprintf("%s-round%d-%s.perf.data", ph.cfg, ph.round+1, phase))
	return perfRecord(ph.inst.sidecar.cmd.Process.Pid, file, o.LoadCPU)
}

// holder is the process whose descriptors keep the programs loaded, whose
// BPF statistics are read; 0 for none.
func (ph *phases) holder() int {
	switch {
	case ph.inst.floor != nil:
		return os.Getpid()
	case ph.inst.sidecar != nil:
		return ph.inst.sidecar.cmd.Process.Pid
	}
	return 0
}

func (ph *phases) run() error {
	o, r := ph.h.o, ph.r
	holder := ph.holder()
	var progsBefore map[uint64]progStat
	var err error
	if o.BPFStats && holder != 0 {
		if progsBefore, err = progStats(holder); err != nil {
			return err
		}
	}
	if err := ph.saturation(); err != nil {
		return err
	}
	if err := ph.paced(); err != nil {
		return err
	}
	if o.BPFStats && holder != 0 {
		after, err := progStats(holder)
		if err != nil {
			return err
		}
		r.BPFProgs = progDelta(progsBefore, after)
		for _, p := range r.BPFProgs {
			r.BPFRuns += p.runs
			r.BPFNs += p.ns
		}
		r.BPFKnown = true
	}
	return nil
}

// saturation sends as fast as the connections allow for the duration.
func (ph *phases) saturation() error {
	o, r := ph.h.o, ph.r
	before, err := ph.marks()
	if err != nil {
		return err
	}
	stopProfile, err := ph.profile("saturation")
	if err != nil {
		return err
	}
	sideBefore := ph.sidecarCPU()
	n, took, err := saturate(ph.addr, o.Conns, o.Duration)
	stopProfile()
	if err != nil {
		return fmt.Errorf("saturation: %w", err)
	}
	after, err := ph.marks()
	if err != nil {
		return err
	}
	r.SidecarSat = ph.sidecarCPU() - sideBefore
	r.Sent += n
	r.SatRequests, r.SatTime = n, took
	r.ServerCPU = after.server - before.server
	// The probes run in the server's threads and count as its time; what
	// else the core did is other load on the machine (or interrupts).
	r.OtherCPU = max(0, after.core-before.core-r.ServerCPU)
	r.LoadCPU = after.load - before.load
	return nil
}

// paced sends at the configured rate and records each latency.
func (ph *phases) paced() error {
	o, r := ph.h.o, ph.r
	stopProfile, err := ph.profile("paced")
	if err != nil {
		return err
	}
	sideBefore := ph.sidecarCPU()
	start := time.Now()
	lat, sent, err := paced(ph.addr, o.Rate, o.Duration)
	r.PacedTime = time.Since(start)
	stopProfile()
	r.Sent += sent
	r.PacedSent = sent
	if err != nil {
		return fmt.Errorf("latency phase: %w", err)
	}
	r.SidecarPace = ph.sidecarCPU() - sideBefore
	r.PacedCount = len(lat)
	r.P50, r.P99 = latencySummary(lat)
	return nil
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
