package attach

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/uranus-otel/uranus/binary"
	"github.com/uranus-otel/uranus/offsets"
	"github.com/uranus-otel/uranus/otel"
	"github.com/uranus-otel/uranus/target"
)

// Target is one attached process.
type Target struct {
	a         *Attacher
	Process   target.Process
	GoVersion string
	Plans     []Plan
	proc      *otel.Process
	goSpans   *ebpf.Map
	loaded    []*loaded
	detach    sync.Once
	runtime   targetRuntime
	types     typeNames
	events    pendingEvents
}

// loaded is one instrumentor's programs in one target.
type loaded struct {
	plan   *Plan
	source uint32
	coll   *ebpf.Collection
	links  []link.Link
	sites  int // probe sites attached
}

// Attach analyses p's binary and attaches every instrumentor that can be.
// Instrumentors that cannot are listed in the returned Target's Plans with
// their reason; an error means nothing was attached.
func (a *Attacher) Attach(ctx context.Context, p target.Process) (*Target, error) {
	start := time.Now()
	bin, err := binary.Open(p.ExePath())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	defer bin.Close()
	plans, err := MakePlans(bin, a.opts.Instrumentors, a.opts.Table)
	if err != nil {
		return nil, fmt.Errorf("pid %d: %w", p.PID, err)
	}
	a.log.Debug("planned", "pid", p.PID, "took", time.Since(start))

	t := &Target{a: a, Process: p, GoVersion: bin.GoVersion, Plans: plans}
	if bin.IsGo() {
		rt, err := runtimeOffsets(bin, a.opts.Table)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		t.runtime = rt
	}
	t.types = typeNames{path: p.ExePath(), layout: t.runtime.types, names: map[uint64]string{}}
	t.proc, err = a.opts.Pipeline.NewProcess(ctx, otel.ProcessInfo{PID: p.PID, Executable: p.Exe, GoVersion: bin.GoVersion})
	if err != nil {
		return nil, err
	}
	ex, err := link.OpenExecutable(p.ExePath())
	if err != nil {
		t.proc.Close(ctx)
		return nil, fmt.Errorf("%s: opening the executable for probing: %w", p, err)
	}

	var reasons []string
	for i := range t.Plans {
		plan := &t.Plans[i]
		if plan.Skip != "" {
			reasons = append(reasons, plan.Inst.ID+": "+plan.Skip)
			continue
		}
		loadStart := time.Now()
		l, err := a.load(t, plan, bin, ex)
		a.log.Debug("loaded and attached", "pid", p.PID, "instrumentor", plan.Inst.ID, "took", time.Since(loadStart))
		if err != nil {
			plan.Skip = err.Error()
			reasons = append(reasons, plan.Inst.ID+": "+plan.Skip)
			continue
		}
		t.loaded = append(t.loaded, l)
		// Attached, but some value cannot be read from this Go version:
		// the program leaves it out, and the user must hear why.
		for _, u := range plan.Unreported {
			a.log.Warn("cannot report a value for this Go version", "pid", p.PID, "go", bin.GoVersion,
				"instrumentor", plan.Inst.ID, "value", u.Value, "missing", fmt.Sprint(u.Missing),
				"fix", "a newer uranus may know where this Go version keeps it; to add it, regenerate the offsets table with `"+offsets.Regenerate+"` and name the member's new place in the instrumentor's Consts")
		}
	}
	if len(t.loaded) == 0 {
		t.Detach(ctx)
		return nil, fmt.Errorf("%s: no instrumentor could attach: %s", p, strings.Join(reasons, "; "))
	}
	a.mu.Lock()
	a.targets[t] = true
	a.mu.Unlock()
	return t, nil
}

// load loads one instrumentor's collection with t's constants and attaches
// its programs: RET sites first, so that no call is entered without its
// return being watched.
func (a *Attacher) load(t *Target, plan *Plan, bin *binary.File, ex *link.Executable) (*loaded, error) {
	spec, err := plan.Inst.Spec()
	if err != nil {
		return nil, fmt.Errorf("loading the BPF spec: %w", err)
	}
	// Programs serving a feature that is off are not loaded at all: the
	// inject program, for one, may be refused under kernel lockdown.
	for _, pp := range plan.Probes {
		if pp.Requires != "" && !a.features[pp.Requires] {
			delete(spec.Programs, pp.Entry)
			delete(spec.Programs, pp.Return)
		}
	}
	l := &loaded{plan: plan, source: a.addSource(t, plan)}
	core := map[string]any{
		"go_regabi":         boolByte(bin.RegABI),
		"source_id":         l.source,
		"off_g_goid":        t.runtime.goid,
		"off_g_parent_goid": t.runtime.parentGoid,
	}
	for name, v := range a.opts.Constants {
		core[name] = v
	}
	for name, on := range a.features {
		core["feature_"+name] = boolByte(on)
	}
	for name, v := range core {
		if vs, ok := spec.Variables[name]; ok {
			if err := setVariable(vs, v); err != nil {
				return nil, fmt.Errorf("setting %s: %w", name, err)
			}
		}
	}
	for name, v := range plan.Consts {
		vs, ok := spec.Variables[name]
		if !ok {
			return nil, fmt.Errorf("the BPF program declares no constant %s", name)
		}
		if err := setVariable(vs, v); err != nil {
			return nil, fmt.Errorf("setting %s: %w", name, err)
		}
	}

	repl := map[string]*ebpf.Map{}
	if ms, ok := spec.Maps["events"]; ok {
		ms.MaxEntries = uint32(a.opts.RingBufferBytes)
		repl["events"] = a.events
	}
	if ms, ok := spec.Maps["goroutine_spans"]; ok {
		if t.goSpans == nil {
			if t.goSpans, err = ebpf.NewMap(ms); err != nil {
				return nil, permissionHint("creating the goroutine span map", err)
			}
		}
		repl["goroutine_spans"] = t.goSpans
	}
	for name, ms := range spec.Maps {
		if !strings.HasPrefix(name, "wire_") {
			continue
		}
		if m := a.wireMap(name); m != nil {
			repl[name] = m
		} else {
			ms.MaxEntries = 1 // propagation is not network: never used
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: repl})
	if err != nil && dropFeatures(spec, plan) {
		// A kernel may refuse a feature's program (bpf_probe_write_user
		// under lockdown) and still run the rest.
		a.log.Warn("loading without optional features", "pid", t.Process.PID, "instrumentor", plan.Inst.ID, "err", err)
		coll, err = ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: repl})
	}
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("the kernel rejected the BPF program: %+v", ve)
		}
		return nil, permissionHint("loading the BPF programs", err)
	}
	l.coll = coll
	for name, entries := range plan.MapEntries {
		m := coll.Maps[name]
		if m == nil {
			l.close()
			return nil, fmt.Errorf("the BPF collection has no map %s", name)
		}
		for _, e := range entries {
			if err := m.Put(e.Key, e.Value); err != nil {
				l.close()
				return nil, fmt.Errorf("filling map %s: %w", name, err)
			}
		}
	}
	for name, prog := range coll.Programs {
		if info, err := prog.Info(); err == nil {
			if id, ok := info.ID(); ok {
				a.log.Debug("loaded BPF program", "pid", t.Process.PID, "instrumentor", plan.Inst.ID, "program", name, "prog_id", id)
			}
		}
	}

	attachAt := func(progName string, pp PlannedProbe, offset uint64, uretprobe bool) error {
		prog := coll.Programs[progName]
		if prog == nil {
			return fmt.Errorf("the BPF collection has no program %s", progName)
		}
		fn := pp.Func
		opts := &link.UprobeOptions{Address: fn.FileOffset, Offset: offset, PID: t.Process.PID, Cookie: pp.Cookie}
		attachFn := ex.Uprobe
		if uretprobe {
			attachFn = ex.Uretprobe
		}
		lk, err := attachFn(fn.Name, prog, opts)
		if err != nil {
			return permissionHint(fmt.Sprintf("attaching %s at %s+%#x", progName, fn.Name, offset), err)
		}
		l.links = append(l.links, lk)
		l.sites++
		return nil
	}
	for _, pp := range plan.Probes {
		if pp.Func == nil || spec.Programs[pp.Entry] == nil && spec.Programs[pp.Return] == nil {
			continue
		}
		switch {
		case pp.Return != "" && pp.Uretprobe:
			if err := attachAt(pp.Return, pp, 0, true); err != nil {
				l.close()
				return nil, err
			}
		case pp.Return != "":
			for _, off := range pp.Func.RetOffsets {
				if err := attachAt(pp.Return, pp, off, false); err != nil {
					l.close()
					return nil, err
				}
			}
		}
		if pp.Entry != "" {
			if err := attachAt(pp.Entry, pp, 0, false); err != nil {
				l.close()
				return nil, err
			}
		}
	}
	return l, nil
}

func (l *loaded) close() {
	for i := len(l.links) - 1; i >= 0; i-- {
		l.links[i].Close()
	}
	l.links = nil
	if l.coll != nil {
		l.coll.Close()
		l.coll = nil
	}
}

// Detach removes t's probes, waits briefly for the records already in the
// ring buffer to be read, then flushes t's spans.
func (t *Target) Detach(ctx context.Context) {
	t.detach.Do(func() {
		for _, l := range t.loaded {
			for i := len(l.links) - 1; i >= 0; i-- {
				l.links[i].Close()
			}
			l.links = nil
		}
		// Records of this target still queued must find their source.
		deadline := time.Now().Add(time.Second)
		for t.a.reader.AvailableBytes() > 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		t.a.mu.Lock()
		delete(t.a.targets, t)
		for _, l := range t.loaded {
			t.a.retired.add(l.counters())
		}
		// Events still waiting for a span that will never end are lost.
		t.a.retiredEventsDropped += t.events.droppedCount() + t.events.pendingCount()
		t.a.mu.Unlock()
		sources := map[uint32]bool{}
		for _, l := range t.loaded {
			t.a.sources.Delete(l.source)
			sources[l.source] = true
			l.close()
		}
		if t.a.wire != nil {
			t.a.wire.forget(sources)
		}
		if t.goSpans != nil {
			t.goSpans.Close()
		}
		t.types.close()
		if t.proc != nil {
			t.proc.Close(ctx)
		}
	})
}

// emit hands a span to the target's pipeline, with the events recorded for
// it earlier; a record that only carries events waits for its span.
func (t *Target) emit(s *otel.Span) {
	if s.AddTo.IsValid() {
		t.events.add(s.AddTo, s.Events)
		return
	}
	if ev := t.events.take(s.SpanID); ev != nil {
		s.Events = append(ev, s.Events...)
	}
	t.proc.Emit(s)
}

// Attached lists the instrumentors attached and their probe-site counts.
func (t *Target) Attached() map[string]int {
	m := map[string]int{}
	for _, l := range t.loaded {
		m[l.plan.Inst.ID] = l.sites
	}
	return m
}

// Counters are the BPF programs' own counters (enum stat in bpf/uranus.h,
// in that order).
type Counters struct {
	Entry        uint64 // entry probe hits
	Return       uint64 // RET probe hits
	Events       uint64 // records handed to user space
	RingbufFull  uint64 // records lost because the ring buffer was full
	NoEntry      uint64 // returns without a recorded entry
	InflightFull uint64 // calls not recorded: in-flight map full
	ReadError    uint64 // failed reads of target memory
	Unsampled    uint64 // spans the sampler dropped before they reached user space
	Extra        [4]uint64
}

func (c *Counters) fields() []*uint64 {
	return []*uint64{&c.Entry, &c.Return, &c.Events, &c.RingbufFull, &c.NoEntry, &c.InflightFull, &c.ReadError, &c.Unsampled,
		&c.Extra[0], &c.Extra[1], &c.Extra[2], &c.Extra[3]}
}

func (c *Counters) add(o Counters) {
	of := o.fields()
	for i, f := range c.fields() {
		*f += *of[i]
	}
}

// Counters returns the counters of one instrumentor in t, by ID.
func (t *Target) Counters() map[string]Counters {
	m := map[string]Counters{}
	for _, l := range t.loaded {
		m[l.plan.Inst.ID] = l.counters()
	}
	return m
}

func (l *loaded) counters() Counters {
	var c Counters
	if l.coll == nil {
		return c
	}
	m := l.coll.Maps["stats"]
	if m == nil {
		return c
	}
	var per []uint64 // one value per possible CPU; Lookup sizes it
	for i, f := range c.fields() {
		if err := m.Lookup(uint32(i), &per); err != nil {
			continue
		}
		for _, v := range per {
			*f += v
		}
	}
	return c
}

// dropFeatures removes from spec the programs of plan's feature-gated
// probes, reporting whether there were any.
func dropFeatures(spec *ebpf.CollectionSpec, plan *Plan) bool {
	dropped := false
	for _, pp := range plan.Probes {
		if pp.Requires == "" {
			continue
		}
		for _, name := range []string{pp.Entry, pp.Return} {
			if spec.Programs[name] != nil {
				delete(spec.Programs, name)
				dropped = true
			}
		}
	}
	return dropped
}

// setVariable stores v in a BPF constant of whatever integer width the C
// declares (values from Go declarations are uint64).
func setVariable(vs *ebpf.VariableSpec, v any) error {
	if u, ok := v.(uint64); ok {
		switch vs.Size() {
		case 1:
			return vs.Set(uint8(u))
		case 2:
			return vs.Set(uint16(u))
		case 4:
			return vs.Set(uint32(u))
		}
	}
	return vs.Set(v)
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
