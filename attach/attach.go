// Package attach is uranus's core: for one target process it resolves what
// each instrumentor declared (functions, RET sites, struct offsets), loads the
// instrumentor's BPF program with those values as constants, attaches it at
// function entry and at every RET instruction, and turns the ring-buffer
// records that come back into spans.
package attach

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	ebpffeatures "github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/bpf"
	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/offsets"
	"github.com/uranus-otel/uranus/otel"
	"github.com/uranus-otel/uranus/target"
)

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 -output-dir ../bpf -go-package bpf -type event_header -type span_ctx Core ../bpf/core.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
type eventHeader = bpf.CoreEventHeader

// Options configure an Attacher.
type Options struct {
	Instrumentors []*instrumentors.Instrumentor
	Table         *offsets.Table
	Pipeline      *otel.Pipeline
	Logger        *slog.Logger
	// RingBufferBytes sizes the ring buffer shared by every probe (a power
	// of two, default 4 MiB: about 3,000 server events, a few hundred ms at
	// the highest request rates a probed server reaches).
	RingBufferBytes int
	// Features switch optional probes on (see instrumentors.Probe.Requires);
	// the propagation features follow Propagation instead.
	Features map[string]bool
	// Propagation is how trace context reaches called services; "" is
	// auto. New resolves it, and fails when the mode asked for cannot run.
	Propagation Propagation
	// Constants are given to every BPF program that declares them, e.g. the
	// sampler's (sampler_bound, sampler_parent_based).
	Constants map[string]uint64
	// ByFile puts each probe on the executable file once, with no PID
	// filter, for every process that runs it (uranus --exe); otherwise
	// probes serve the one process attached (--pid, tests).
	ByFile bool
	// Records, when set, sees every record before it becomes a span, and
	// takes it by returning true (uranus tls-dump prints the TLS tap's).
	// record is reused once Records returns.
	Records func(t *Target, inst *instrumentors.Instrumentor, record []byte) bool
}

// Attacher attaches instrumentors to target processes and reads their events.
type Attacher struct {
	opts   Options
	log    *slog.Logger
	events *ebpf.Map
	reader *ringbuf.Reader
	clock  *clock

	features    map[string]bool
	propagation Propagation
	propWhy     string
	wire        *wire // the socket programs, when propagation is network
	// multi: the kernel has uprobe_multi links (Linux 6.6), which put all
	// of a program's sites on a file in one link (see attachSites).
	multi bool

	nextSource atomic.Uint32
	sources    sync.Map // uint32 → *source

	// pidns is uranus's PID namespace, when it is not the initial one: the
	// probes drop calls of processes outside it.
	pidns struct{ dev, ino uint64 }

	mu      sync.Mutex
	probes  map[probesKey]*probes
	targets map[*Target]bool
	retired Counters // counters of targets already detached
	// retiredEventsDropped counts span events dropped by detached targets.
	retiredEventsDropped uint64

	// running is set while Run reads; drains are requests to it to say
	// when every record queued before the request has been handled.
	running atomic.Bool
	drains  chan chan struct{}

	unknownSource  atomic.Uint64 // records whose source is gone
	inFlightAtExit atomic.Uint64 // calls still in flight when their process or uranus exited
	badRecords     atomic.Uint64 // records an instrumentor could not decode
	lastBad        atomic.Value  // string
}

// source is one instrumentor loaded for one executable: the origin of a
// record, whose header names the process.
type source struct {
	probes *probes
	inst   *instrumentors.Instrumentor
}

// New prepares the shared ring buffer. It fails, with the reason and the
// fix, when this process may not load BPF programs.
func New(opts Options) (*Attacher, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RingBufferBytes == 0 {
		opts.RingBufferBytes = 4 << 20
	}
	if opts.RingBufferBytes&(opts.RingBufferBytes-1) != 0 || opts.RingBufferBytes < os.Getpagesize() {
		return nil, fmt.Errorf("ring buffer size %d: must be a power of two of at least one page", opts.RingBufferBytes)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		if !hasCap(capSysAdmin) {
			// Whether the limit applies at all is found by creating a map:
			// without the right to, the library asks for CAP_SYS_RESOURCE,
			// which would not help.
			return nil, fmt.Errorf("creating BPF maps: %v (%s)", err, privilegeAdvice())
		}
		return nil, fmt.Errorf("raising the locked-memory limit for BPF maps: %w (run as root, or grant CAP_SYS_RESOURCE)", err)
	}
	if err := checkTracefs(); err != nil {
		opts.Logger.Debug("tracefs check", "err", err)
	}
	// CO-RE relocations need the kernel's BTF, which takes ~0.1 s to parse:
	// do it now rather than inside the first target's attach.
	go btf.LoadKernelSpec()
	events, err := ebpf.NewMap(&ebpf.MapSpec{
		Name:       "events",
		Type:       ebpf.RingBuf,
		MaxEntries: uint32(opts.RingBufferBytes),
	})
	if err != nil {
		return nil, permissionHint("creating the BPF ring buffer", err)
	}
	reader, err := ringbuf.NewReader(events)
	if err != nil {
		events.Close()
		return nil, fmt.Errorf("opening the ring buffer reader: %w", err)
	}
	if opts.Propagation == "" {
		opts.Propagation = PropagationAuto
	}
	prop, w, why, err := resolvePropagation(opts.Propagation)
	if err != nil {
		reader.Close()
		events.Close()
		return nil, err
	}
	features := map[string]bool{}
	for name, on := range opts.Features {
		features[name] = on
	}
	for name, on := range prop.features() {
		features[name] = on
	}
	if w != nil {
		for _, p := range []*ebpf.Program{w.objs.Sockops, w.objs.Msg} {
			if info, err := p.Info(); err == nil {
				if id, ok := info.ID(); ok {
					opts.Logger.Debug("loaded BPF program", "program", info.Name, "prog_id", id)
				}
			}
		}
	}
	a := &Attacher{
		opts:        opts,
		log:         opts.Logger,
		events:      events,
		reader:      reader,
		clock:       newClock(),
		targets:     map[*Target]bool{},
		probes:      map[probesKey]*probes{},
		drains:      make(chan chan struct{}, 256),
		features:    features,
		propagation: prop,
		propWhy:     why,
		wire:        w,
		multi:       ebpffeatures.HaveBPFLinkUprobeMulti() == nil && os.Getenv("URANUS_NO_UPROBE_MULTI") == "",
	}
	a.pidns.dev, a.pidns.ino = target.PIDNamespace()
	return a, nil
}

// permissionHint turns EPERM or EACCES from bpf() or perf_event_open()
// into an error naming the missing capability.
func permissionHint(doing string, err error) error {
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("%s: %w (%s)", doing, err, privilegeAdvice())
	}
	return fmt.Errorf("%s: %w", doing, err)
}

// Run reads events until ctx is done or the Attacher is closed, handing each
// span to its target's pipeline.
//
// The BPF programs do not wake the reader for each record (that costs the
// target ~15 us a request), so the reader polls, and is woken early only
// when the ring is filling up. The poll interval doubles while the ring is
// found empty, up to maxPollInterval, or idlePollInterval once nothing has
// come for idleAfter (see nextPollInterval), and drops back to
// minPollInterval as soon as records arrive. When ctx is done it reads
// what is left, then returns.
//
// With ByFile, the reaper runs on the reader's wakeups (see reap): an idle
// sidecar wakes once per poll, not once per poll and once per reap.
func (a *Attacher) Run(ctx context.Context) error {
	a.running.Store(true)
	defer func() {
		a.running.Store(false)
		a.releaseDrains()
	}()
	var reapNow chan struct{}
	if a.opts.ByFile {
		reapNow = make(chan struct{}, 1)
		go a.reap(ctx, reapNow)
	}
	lastReap := time.Now()
	// A cancelled ctx wakes the reader at once, not at its poll deadline
	// (up to idlePollInterval when idle): uranus's exit waits for it.
	readDone := make(chan struct{})
	defer close(readDone)
	go func() {
		select {
		case <-ctx.Done():
			a.reader.Flush()
		case <-readDone:
		}
	}()
	var rec ringbuf.Record
	hdrSize := int(unsafe.Sizeof(eventHeader{}))
	stopping := false
	interval := minPollInterval
	var idleFor time.Duration // how long the ring has been found empty
	for {
		if reapNow != nil && time.Since(lastReap) >= reapInterval {
			lastReap = time.Now()
			select {
			case reapNow <- struct{}{}:
			default: // still reaping
			}
		}
		if stopping {
			a.reader.SetDeadline(time.Unix(1, 0)) // drain without waiting
		} else {
			a.reader.SetDeadline(time.Now().Add(interval))
		}
		if err := a.reader.ReadInto(&rec); err != nil {
			switch {
			case errors.Is(err, ringbuf.ErrFlushed):
				a.releaseDrains() // every record queued before the flush is handled
				stopping = stopping || ctx.Err() != nil
				continue
			case errors.Is(err, os.ErrDeadlineExceeded):
				a.releaseDrains() // the ring was found empty
				if stopping {
					return nil
				}
				stopping = ctx.Err() != nil
				idleFor += interval
				interval = nextPollInterval(interval, idleFor)
				continue
			case errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed):
				return nil
			}
			return fmt.Errorf("reading the ring buffer: %w", err)
		}
		interval, idleFor = minPollInterval, 0
		// Not before the wait: an idle reader does not measure a clock
		// it has no record to convert with.
		a.clock.refresh()
		if len(rec.RawSample) < hdrSize {
			a.noteBad(fmt.Sprintf("record of %d bytes is shorter than the header", len(rec.RawSample)))
			continue
		}
		h := (*eventHeader)(unsafe.Pointer(&rec.RawSample[0]))
		v, ok := a.sources.Load(h.Source)
		if !ok {
			a.unknownSource.Add(1)
			continue
		}
		src := v.(*source)
		t := a.targetOf(src.probes, int(h.Pid))
		if t == nil {
			a.unknownSource.Add(1)
			continue
		}
		if a.opts.Records != nil && a.opts.Records(t, src.inst, rec.RawSample) {
			continue
		}
		span := otel.Span{
			TraceID: trace.TraceID(h.TraceId),
			SpanID:  trace.SpanID(h.SpanId),
			Parent:  trace.SpanID(h.ParentSpanId),
			Sampled: h.Flags&flagSampled != 0,
			Start:   a.clock.wall(h.StartNs),
			End:     a.clock.wall(h.EndNs),
		}
		span.RemoteParent = h.Flags&flagRemoteParent != 0
		if src.inst.Convert == nil {
			a.noteBad(fmt.Sprintf("%s: emits records but declares no Convert", src.inst.ID))
			continue
		}
		switch err := src.inst.Convert(rec.RawSample, &span, t.views[h.Source]); {
		case errors.Is(err, instrumentors.ErrNoSpan):
		case err != nil:
			a.noteBad(fmt.Sprintf("%s: %v", src.inst.ID, err))
			continue
		default:
			t.emit(&span)
		}
		if len(a.drains) > 0 && a.reader.AvailableBytes() == 0 {
			a.releaseDrains()
		}
	}
}

// drain waits until every record queued now has been handled (read from
// the ring and turned into a span), or timeout.
func (a *Attacher) drain(timeout time.Duration) {
	if !a.running.Load() {
		return
	}
	done := make(chan struct{})
	select {
	case a.drains <- done:
	default:
		return // too many waiting: do not block a detach on it
	}
	// Wake the reader rather than wait for its next poll: it reads what
	// is queued, then reports the flush.
	a.reader.Flush()
	select {
	case <-done:
	case <-time.After(timeout):
	}
}

// releaseDrains answers every drain request made so far: the reader found
// the ring empty after handling what it had read.
func (a *Attacher) releaseDrains() {
	for {
		select {
		case done := <-a.drains:
			close(done)
		default:
			return
		}
	}
}

// reap detaches, every reapInterval, the processes that exited: those that
// announced themselves by their records may be gone before anyone else
// noticed them. It removes the probes of an executable no process runs
// once its file is replaced or written to. Records of a pid detached over
// a minute ago are no longer held for dropping: the pid may be reused.
//
// It has no timer of its own: Run, which wakes at least every poll
// interval, asks for a reap (on now) once reapInterval has passed, so an
// idle sidecar's reaps share the reader's wakeups. A reap is then at most
// max(reapInterval, idlePollInterval) apart.
func (a *Attacher) reap(ctx context.Context, now <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-now:
		}
		var dead []*Target
		var idle []*probes
		a.mu.Lock()
		for t := range a.targets {
			dead = append(dead, t)
		}
		for _, pr := range a.probes {
			for pid, when := range pr.gone {
				if time.Since(when) > time.Minute {
					delete(pr.gone, pid)
				}
			}
			if len(pr.targets) == 0 {
				idle = append(idle, pr)
			}
		}
		a.mu.Unlock()
		for _, t := range dead {
			if !t.Process.Running() {
				a.log.Debug("process exited; its spans flushed", "pid", t.Process.PID, "exe", t.Process.Exe)
				t.Detach(context.Background())
			}
		}
		for _, pr := range idle {
			if !pr.unchanged() {
				a.log.Info("probes removed: the executable was replaced or written to", "exe", pr.path)
				a.closeProbes(pr)
			}
		}
	}
}

// reapInterval: the /proc watch tells run.go of most exits as they happen;
// the reaper catches the processes it never named, and idle files changed.
const reapInterval = 2 * time.Second

// The poll interval bounds how long a record waits in the ring buffer. Each
// poll that finds the ring empty costs the sidecar ~0.1 ms of CPU (a
// blocking epoll_wait and the Go scheduler around it), so polls are spaced
// out; a ring a quarter full wakes the reader at once whatever the interval,
// and a drain (a target detached, uranus exiting) wakes it at once too.
//
// A target that has served nothing for idleAfter is polled every
// idlePollInterval: one sidecar runs per pod, and its idle wakeups are paid
// on every pod of a node. Only the records of the first calls after such a
// pause wait longer (up to idlePollInterval, against maxPollInterval); the
// first record read brings the interval back to minPollInterval. The BPF
// side gives no cheaper signal: it submits with BPF_RB_NO_WAKEUP.
const (
	minPollInterval  = 25 * time.Millisecond
	maxPollInterval  = time.Second
	idleAfter        = 10 * time.Second
	idlePollInterval = 4 * time.Second
)

// nextPollInterval is the wait after a poll of interval that found the
// ring empty, the ring having been found empty for idle in all.
func nextPollInterval(interval, idle time.Duration) time.Duration {
	limit := maxPollInterval
	if idle >= idleAfter {
		limit = idlePollInterval
	}
	return min(2*interval, limit)
}

// Mirrors SPAN_FLAG_* in bpf/uranus.h.
const (
	flagSampled      = 0x01
	flagRemoteParent = 0x02
)

func (a *Attacher) noteBad(msg string) {
	a.badRecords.Add(1)
	a.lastBad.Store(msg)
}

// Close detaches every target, removes every probe and releases the ring
// buffer.
func (a *Attacher) Close() error {
	a.RemoveProbes()
	targets, _ := a.snapshot()
	for _, t := range targets {
		t.Detach(context.Background())
	}
	_, kept := a.snapshot()
	for _, pr := range kept {
		a.closeProbes(pr)
	}
	if a.wire != nil {
		a.wire.close()
	}
	a.reader.Close()
	return a.events.Close()
}

// RemoveProbes takes every uprobe out, keeping what is needed to read
// what they recorded: from here on no call starts or ends, and what is in
// flight is reported as such when each target is detached.
func (a *Attacher) RemoveProbes() {
	// Unlinking takes a while per site: not under the lock the reader
	// needs.
	_, all := a.snapshot()
	for _, pr := range all {
		pr.unlink()
	}
}

// snapshot copies the targets and the probes, to work on them without
// holding the lock.
func (a *Attacher) snapshot() ([]*Target, []*probes) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Collect(maps.Keys(a.targets)), slices.Collect(maps.Values(a.probes))
}

// Propagation says how trace context reaches called services, and why
// that mode was chosen.
func (a *Attacher) Propagation() (mode Propagation, why string) {
	return a.propagation, a.propWhy
}

func (a *Attacher) addSource(pr *probes, plan *Plan) uint32 {
	id := a.nextSource.Add(1)
	a.sources.Store(id, &source{probes: pr, inst: plan.Inst})
	return id
}

// Stats are the counters of the whole pipeline.
type Stats struct {
	Targets       int
	ProbeSites    int      // uprobes attached now: function entries and RET sites
	Probes        Counters // summed over every program loaded since start
	UnknownSource uint64   // records that arrived after their process was detached
	// InFlightAtExit are calls entered and not returned when their process
	// or uranus exited; the sampled ones became spans marked incomplete.
	InFlightAtExit uint64
	BadRecords     uint64 // records an instrumentor could not decode
	LastBad        string
	// EventsDropped are span events (TLS plaintext, byte counts) whose span
	// never ended in time, or that exceeded the per-span cap.
	EventsDropped uint64
	// Wire counts what the socket programs did (propagation network).
	Wire WireCounters
}

// Stats sums the counters of every attached target.
func (a *Attacher) Stats() Stats {
	s := Stats{UnknownSource: a.unknownSource.Load(), BadRecords: a.badRecords.Load(), InFlightAtExit: a.inFlightAtExit.Load()}
	if a.wire != nil {
		s.Wire = a.wire.counters()
	}
	if v, ok := a.lastBad.Load().(string); ok {
		s.LastBad = v
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s.Probes = a.retired
	s.EventsDropped = a.retiredEventsDropped
	for t := range a.targets {
		s.Targets++
		s.EventsDropped += t.events.droppedCount()
	}
	for _, pr := range a.probes {
		for _, l := range pr.loaded {
			s.Probes.add(l.counters())
			s.ProbeSites += l.sites
		}
	}
	return s
}

func checkTracefs() error {
	if _, err := os.Stat("/sys/kernel/tracing/uprobe_events"); err == nil {
		return nil
	}
	if _, err := os.Stat("/sys/kernel/debug/tracing/uprobe_events"); err == nil {
		return nil
	}
	return errors.New("tracefs is not mounted (uranus prefers perf-event uprobes and does not need it; " +
		"if attaching fails, mount it: mount -t tracefs tracefs /sys/kernel/tracing)")
}

// clock converts the kernel's CLOCK_MONOTONIC timestamps to wall-clock time.
// The offset between the two clocks moves when NTP steps the wall clock, so
// the reader measures it again when a second has passed since the last
// time: no timer of its own wakes an idle sidecar.
type clock struct {
	offset   atomic.Int64 // realtime - monotonic, ns
	measured int64        // monotonic ns of the last measure; reader only
}

func newClock() *clock {
	c := &clock{}
	c.measure()
	return c
}

// refresh measures again if a second has passed (called by the reader).
func (c *clock) refresh() {
	if now := monotonicNow(); now-c.measured >= int64(time.Second) {
		c.measure()
	}
}

func (c *clock) measure() {
	// Bracket a realtime reading between two monotonic ones and keep the
	// tightest of a few tries, so a preemption between reads does not skew it.
	best, bestGap := int64(0), int64(-1)
	for i := 0; i < 5; i++ {
		m1 := monotonicNow()
		r := time.Now().UnixNano()
		m2 := monotonicNow()
		if gap := m2 - m1; bestGap < 0 || gap < bestGap {
			best, bestGap = r-(m1+gap/2), gap
		}
	}
	c.offset.Store(best)
	c.measured = monotonicNow()
}

func (c *clock) wall(mono uint64) time.Time {
	return time.Unix(0, int64(mono)+c.offset.Load())
}
