package attach

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/binary"
	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/offsets"
	"github.com/uranus-otel/uranus/otel"
	"github.com/uranus-otel/uranus/target"
)

// Target is one traced process.
type Target struct {
	a         *Attacher
	Process   target.Process
	GoVersion string
	Plans     []Plan
	probes    *probes
	proc      *otel.Process
	detach    sync.Once
	types     typeNames
	events    pendingEvents
	// views are what each instrumentor's Convert sees of this process, by
	// source id: made once, so that a record costs no allocation.
	views map[uint32]*view
}

// view is one instrumentor's records of one process: the
// instrumentors.Target its Convert sees.
type view struct {
	t     *Target
	inst  *instrumentors.Instrumentor
	state any
}

func (v *view) TypeName(addr uint64) string { return v.t.TypeName(addr) }
func (v *view) State() any                  { return v.state }

// probes are one executable's instrumentors, loaded and attached once. With
// Options.ByFile they carry no PID filter: a uprobe belongs to the file, so
// every process running it — already running or started later, from its
// first instruction — is traced by the same programs, and records name
// their process. Without it they serve one process, as --pid asks.
type probes struct {
	key       probesKey
	path      string // the file's own path; probes by file are kept while it names the file
	goVersion string
	plans     []Plan
	runtime   targetRuntime
	goSpans   *ebpf.Map
	loaded    []*loaded
	// targets and gone are guarded by Attacher.mu: the processes seen, and
	// those detached recently, whose late records are dropped and counted
	// rather than starting a second process resource.
	targets map[int]*Target
	gone    map[int]time.Time
	closed  bool
	// changed is the file's ctime when it was probed. A file written in
	// place while no process runs it would meet uprobes planned for its
	// old contents, so probes kept on an idle file go when it changes.
	changed int64
}

// probesKey names an executable file; pid is set when the probes serve
// only that process.
type probesKey struct {
	dev, ino uint64
	pid      int
}

// loaded is one instrumentor's programs for one executable.
type loaded struct {
	plan   *Plan
	source uint32
	coll   *ebpf.Collection
	links  []link.Link
	sites  int // probe sites attached
}

// Attach traces p. The first process of an executable loads and attaches
// every instrumentor that can be; later ones of the same file (ByFile) join
// its probes at no cost. Instrumentors that cannot attach are listed in the
// returned Target's Plans with their reason; an error means nothing traces p.
func (a *Attacher) Attach(ctx context.Context, p target.Process) (*Target, error) {
	key := probesKey{dev: p.Dev, ino: p.Ino}
	if !a.opts.ByFile {
		key.pid = p.PID
	}
	for try := 0; ; try++ {
		a.mu.Lock()
		pr := a.probes[key]
		a.mu.Unlock()
		if pr == nil {
			var err error
			// Read through /proc (the file the process really runs, whatever
			// mount namespace it is in); kept while p.Exe names that file.
			if pr, err = a.loadProbes(p.ExePath(), p.Exe, key, p.String()); err != nil {
				return nil, err
			}
		}
		t, err := a.target(ctx, pr, p)
		if errors.Is(err, errProbesClosed) && try == 0 {
			continue // removed meanwhile (the file changed): probe it anew
		}
		return t, err
	}
}

var errProbesClosed = errors.New("its executable's probes were removed meanwhile")

// Prepare puts probes on the executable at path before any process runs it
// (ByFile only), so that its processes are traced from their first
// instruction however briefly they run.
func (a *Attacher) Prepare(path string) error {
	if !a.opts.ByFile {
		return errors.New("attach: Prepare needs Options.ByFile")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	key := probesKey{dev: st.Dev, ino: st.Ino}
	a.mu.Lock()
	pr := a.probes[key]
	a.mu.Unlock()
	if pr != nil {
		return nil
	}
	_, err := a.loadProbes(path, path, key, path)
	return err
}

// loadProbes analyses the executable at path and attaches every
// instrumentor that can be; exe is the file's own path, for display and for
// telling when it is replaced.
func (a *Attacher) loadProbes(path, exe string, key probesKey, what string) (*probes, error) {
	start := time.Now()
	bin, err := binary.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer bin.Close()
	plans, err := MakePlans(bin, a.opts.Instrumentors, a.opts.Table)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	a.log.Debug("planned", "exe", exe, "pid", key.pid, "took", time.Since(start))

	pr := &probes{key: key, path: exe, goVersion: bin.GoVersion, plans: plans,
		targets: map[int]*Target{}, gone: map[int]time.Time{}}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err == nil {
		pr.changed = st.Ctim.Nano()
	}
	if bin.IsGo() {
		rt, err := runtimeOffsets(bin, a.opts.Table)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		pr.runtime = rt
	}
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return nil, fmt.Errorf("%s: opening the executable for probing: %w", what, err)
	}

	var reasons []string
	for i := range pr.plans {
		plan := &pr.plans[i]
		if plan.Skip != "" {
			reasons = append(reasons, plan.Inst.ID+": "+plan.Skip)
			continue
		}
		loadStart := time.Now()
		l, err := a.load(pr, plan, bin, ex)
		a.log.Debug("loaded and attached", "exe", exe, "pid", key.pid, "instrumentor", plan.Inst.ID, "took", time.Since(loadStart))
		if err != nil {
			plan.Skip = err.Error()
			reasons = append(reasons, plan.Inst.ID+": "+plan.Skip)
			continue
		}
		pr.loaded = append(pr.loaded, l)
		// Attached, but some value cannot be read from this Go version:
		// the program leaves it out, and the user must hear why.
		for _, u := range plan.Unreported {
			a.log.Warn("cannot report a value for this Go version", "exe", exe, "go", bin.GoVersion,
				"instrumentor", plan.Inst.ID, "value", u.Value, "missing", fmt.Sprint(u.Missing),
				"fix", "a newer uranus may know where this Go version keeps it; to add it, regenerate the offsets table with `"+offsets.Regenerate+"` and name the member's new place in the instrumentor's Consts")
		}
	}
	if len(pr.loaded) == 0 {
		a.closeProbes(pr)
		return nil, fmt.Errorf("%s: no instrumentor could attach: %s", what, strings.Join(reasons, "; "))
	}
	a.mu.Lock()
	a.probes[key] = pr
	a.mu.Unlock()
	return pr, nil
}

// target returns the Target of process p under pr, making it when p is new.
func (a *Attacher) target(ctx context.Context, pr *probes, p target.Process) (*Target, error) {
	a.mu.Lock()
	t := pr.targets[p.PID]
	a.mu.Unlock()
	if t != nil {
		return t, nil
	}
	t = &Target{a: a, Process: p, GoVersion: pr.goVersion, Plans: pr.plans, probes: pr, views: map[uint32]*view{}}
	for _, l := range pr.loaded {
		t.views[l.source] = &view{t: t, inst: l.plan.Inst, state: l.plan.State}
	}
	t.types = typeNames{path: p.ExePath(), layout: pr.runtime.types, names: map[uint64]string{}}
	proc, err := a.opts.Pipeline.NewProcess(ctx, otel.ProcessInfo{PID: p.PID, Executable: p.Exe, GoVersion: pr.goVersion})
	if err != nil {
		return nil, err
	}
	t.proc = proc
	a.mu.Lock()
	if other := pr.targets[p.PID]; other != nil || pr.closed {
		a.mu.Unlock()
		proc.Close(ctx)
		if other == nil {
			return nil, fmt.Errorf("%s: %w", p, errProbesClosed)
		}
		return other, nil
	}
	pr.targets[p.PID] = t
	delete(pr.gone, p.PID)
	a.targets[t] = true
	a.mu.Unlock()
	if a.wire != nil {
		if ports := a.wire.listen(p.PID); len(ports) > 0 {
			a.log.Debug("TLS connections on these ports carry trace context in a TCP option", "pid", p.PID, "ports", ports)
		}
		a.enrollEarly(pr, p.PID)
		a.adoptConnections(p.PID)
	}
	return t, nil
}

// enrollEarly enrolls process pid for the wire now, when an instrumentor
// of it opens connections before the calls that use them (DialsEarly):
// the programs enroll a process at its first call, too late for a
// connection dialled before. Only where pid is the kernel's own number for
// it (uranus in the initial PID namespace); elsewhere the first call
// enrolls it.
func (a *Attacher) enrollEarly(pr *probes, pid int) {
	if a.pidns.ino != 0 {
		return
	}
	for _, l := range pr.loaded {
		if l.plan.Inst.DialsEarly {
			a.wire.enroll(uint32(pid), l.source)
			break
		}
	}
}

// adoptConnections enrolls the connections process pid opened before
// uranus traced it (see wire.adopt): a gRPC ClientConn or an HTTP
// keep-alive pool made at start would otherwise never carry trace context.
func (a *Attacher) adoptConnections(pid int) {
	n, err := a.wire.adopt(pid)
	if err != nil {
		a.log.Debug("connections opened before uranus started are not watched", "pid", pid, "reason", err)
		return
	}
	if n > 0 {
		a.log.Debug("watching connections opened before uranus started", "pid", pid, "connections", n)
	}
}

// targetOf finds the process a record of pr came from. A process of a
// file probed as a whole may announce itself by its first record, before
// the /proc scan sees it (it may also be gone by then): it becomes a
// Target now. Records of a process detached moments ago return nil.
func (a *Attacher) targetOf(pr *probes, pid int) *Target {
	a.mu.Lock()
	t := pr.targets[pid]
	_, gone := pr.gone[pid]
	a.mu.Unlock()
	// Records can also come before Attach has made the Target: its
	// probes fire from the moment they are attached.
	if t != nil || gone || pid <= 0 || pr.key.pid != 0 && pid != pr.key.pid {
		return t
	}
	p, err := target.Lookup(pid)
	if err != nil || p.Dev != pr.key.dev || p.Ino != pr.key.ino {
		// Already gone (or exec'd something else): its spans still carry
		// what is known of it.
		p = target.Process{PID: pid, Exe: pr.path, Dev: pr.key.dev, Ino: pr.key.ino}
	}
	t, err = a.target(context.Background(), pr, p)
	if err != nil {
		return nil
	}
	a.log.Debug("process traced from its first records", "pid", pid, "exe", p.Exe)
	return t
}

// load loads one instrumentor's collection with t's constants and attaches
// its programs: RET sites first, so that no call is entered without its
// return being watched.
func (a *Attacher) load(pr *probes, plan *Plan, bin *binary.File, ex *link.Executable) (*loaded, error) {
	spec, err := plan.Inst.Spec()
	if err != nil {
		return nil, fmt.Errorf("loading the BPF spec: %w", err)
	}
	// Programs serving a feature that is off are not loaded at all: the
	// inject program, for one, may be refused under kernel lockdown.
	pruneFeatures(spec, plan, func(f string) bool { return !a.features[f] })
	l := &loaded{plan: plan, source: a.addSource(pr, plan)}
	if err := a.setConstants(spec, pr, plan, bin, l.source); err != nil {
		return nil, err
	}
	repl, err := a.mapReplacements(spec, pr)
	if err != nil {
		return nil, err
	}
	// Probes on a whole file go on in one uprobe_multi link per program
	// where the kernel has them; a program is loaded for one kind of link.
	multi := a.multi && pr.key.pid == 0
	if multi {
		for _, ps := range spec.Programs {
			if ps.Type == ebpf.Kprobe {
				ps.AttachType = ebpf.AttachTraceUprobeMulti
			}
		}
	}
	if l.coll, err = a.newCollection(pr, spec, plan, repl); err != nil {
		return nil, err
	}
	if err := l.fillMaps(); err != nil {
		l.close()
		return nil, err
	}
	for name, prog := range l.coll.Programs {
		if info, err := prog.Info(); err == nil {
			if id, ok := info.ID(); ok {
				a.log.Debug("loaded BPF program", "exe", pr.path, "pid", pr.key.pid, "instrumentor", plan.Inst.ID, "program", name, "prog_id", id)
			}
		}
	}
	if err := l.attachSites(ex, planSites(plan, spec), pr.key.pid, multi); err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

// setConstants gives the programs the core's constants (the ABI, the
// process's runtime offsets, the features, the sampler's settings) and the
// plan's.
func (a *Attacher) setConstants(spec *ebpf.CollectionSpec, pr *probes, plan *Plan, bin *binary.File, source uint32) error {
	core := map[string]any{
		"go_regabi":         boolByte(bin.RegABI),
		"source_id":         source,
		"off_g_goid":        pr.runtime.goid,
		"off_g_parent_goid": pr.runtime.parentGoid,
		"scope_pidns_dev":   a.pidns.dev,
		"scope_pidns_ino":   a.pidns.ino,
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
				return fmt.Errorf("setting %s: %w", name, err)
			}
		}
	}
	for name, v := range plan.Consts {
		vs, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("the BPF program declares no constant %s", name)
		}
		if err := setVariable(vs, v); err != nil {
			return fmt.Errorf("setting %s: %w", name, err)
		}
	}
	return nil
}

// mapReplacements are the maps the collection shares instead of creating
// its own: the ring buffer, the process's goroutine spans, and the socket
// programs' maps when propagation is network (else those are made tiny:
// never used).
func (a *Attacher) mapReplacements(spec *ebpf.CollectionSpec, pr *probes) (map[string]*ebpf.Map, error) {
	repl := map[string]*ebpf.Map{}
	if ms, ok := spec.Maps["events"]; ok {
		ms.MaxEntries = uint32(a.opts.RingBufferBytes)
		repl["events"] = a.events
	}
	if ms, ok := spec.Maps["goroutine_spans"]; ok {
		if pr.goSpans == nil {
			var err error
			if pr.goSpans, err = ebpf.NewMap(ms); err != nil {
				return nil, permissionHint("creating the goroutine span map", err)
			}
		}
		repl["goroutine_spans"] = pr.goSpans
	}
	for name, ms := range spec.Maps {
		if !strings.HasPrefix(name, "wire_") {
			continue
		}
		if m := a.wireMap(name); m != nil {
			repl[name] = m
		} else {
			ms.MaxEntries = 1
		}
	}
	return repl, nil
}

// newCollection loads spec into the kernel. A kernel may refuse a
// feature's program (bpf_probe_write_user under lockdown) and still run
// the rest: then it is loaded again without any feature.
func (a *Attacher) newCollection(pr *probes, spec *ebpf.CollectionSpec, plan *Plan, repl map[string]*ebpf.Map) (*ebpf.Collection, error) {
	opts := ebpf.CollectionOptions{MapReplacements: repl}
	coll, err := ebpf.NewCollectionWithOptions(spec, opts)
	if err != nil && pruneFeatures(spec, plan, func(string) bool { return true }) {
		a.log.Warn("loading without optional features", "exe", pr.path, "instrumentor", plan.Inst.ID, "err", err)
		coll, err = ebpf.NewCollectionWithOptions(spec, opts)
	}
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("the kernel rejected the BPF program: %+v", ve)
		}
		return nil, permissionHint("loading the BPF programs", err)
	}
	return coll, nil
}

// fillMaps writes the plan's map entries (per-function settings, say)
// before any probe is attached.
func (l *loaded) fillMaps() error {
	for name, entries := range l.plan.MapEntries {
		m := l.coll.Maps[name]
		if m == nil {
			return fmt.Errorf("the BPF collection has no map %s", name)
		}
		for _, e := range entries {
			if err := m.Put(e.Key, e.Value); err != nil {
				return fmt.Errorf("filling map %s: %w", name, err)
			}
		}
	}
	return nil
}

// planSites lists every site of the plan whose program was loaded, by
// program: RETs before entries, so that no call is entered without its
// return being watched.
func planSites(plan *Plan, spec *ebpf.CollectionSpec) []site {
	var sites []site
	for _, pp := range plan.Probes {
		if pp.Func == nil || spec.Programs[pp.Entry] == nil && spec.Programs[pp.Return] == nil {
			continue
		}
		switch {
		case pp.Return != "" && pp.Uretprobe:
			sites = append(sites, site{pp.Return, pp, 0, true})
		case pp.Return != "":
			for _, off := range pp.Func.RetOffsets {
				sites = append(sites, site{pp.Return, pp, off, false})
			}
		}
	}
	for _, pp := range plan.Probes {
		if pp.Func != nil && pp.Entry != "" && spec.Programs[pp.Entry] != nil {
			sites = append(sites, site{pp.Entry, pp, 0, false})
		}
	}
	return sites
}

// site is one place a program runs: an entry (offset 0) or a RET.
type site struct {
	prog      string
	probe     PlannedProbe
	offset    uint64 // from the function's start
	uretprobe bool
}

// attachSites attaches each program at its sites, in order: with multi,
// one uprobe_multi link per program and kind (a single unregister for
// all of them on close, where perf-event uprobes wait 140–200 ms each on
// Linux 6.18); else one perf-event uprobe per site. PID 0 is every
// process of the file.
func (l *loaded) attachSites(ex *link.Executable, sites []site, pid int, multi bool) error {
	prog := func(name string) (*ebpf.Program, error) {
		p := l.coll.Programs[name]
		if p == nil {
			return nil, fmt.Errorf("the BPF collection has no program %s", name)
		}
		return p, nil
	}
	if !multi {
		for _, s := range sites {
			p, err := prog(s.prog)
			if err != nil {
				return err
			}
			fn := s.probe.Func
			opts := &link.UprobeOptions{Address: fn.FileOffset, Offset: s.offset, PID: pid, Cookie: s.probe.Cookie}
			attach := ex.Uprobe
			if s.uretprobe {
				attach = ex.Uretprobe
			}
			lk, err := attach(fn.Name, p, opts)
			if err != nil {
				return permissionHint(fmt.Sprintf("attaching %s at %s+%#x", s.prog, fn.Name, s.offset), err)
			}
			l.links = append(l.links, lk)
			l.sites++
		}
		return nil
	}
	type group struct {
		prog      string
		uretprobe bool
	}
	var order []group
	opts := map[group]*link.UprobeMultiOptions{}
	for _, s := range sites {
		g := group{s.prog, s.uretprobe}
		o := opts[g]
		if o == nil {
			o = &link.UprobeMultiOptions{PID: uint32(pid)}
			opts[g] = o
			order = append(order, g)
		}
		o.Addresses = append(o.Addresses, s.probe.Func.FileOffset+s.offset)
		o.Cookies = append(o.Cookies, s.probe.Cookie)
	}
	for _, g := range order {
		p, err := prog(g.prog)
		if err != nil {
			return err
		}
		attach := ex.UprobeMulti
		if g.uretprobe {
			attach = ex.UretprobeMulti
		}
		lk, err := attach(nil, p, opts[g])
		if err != nil {
			return permissionHint(fmt.Sprintf("attaching %s at %d sites", g.prog, len(opts[g].Addresses)), err)
		}
		l.links = append(l.links, lk)
		l.sites += len(opts[g].Addresses)
	}
	return nil
}

func (l *loaded) close() {
	closeLinks(l.links)
	l.links = nil
	if l.coll != nil {
		l.coll.Close()
		l.coll = nil
	}
}

// Detach stops tracing t: it waits briefly for the records already in the
// ring buffer to be read, then flushes t's spans. The executable's probes
// go with its last process, unless they were put on the file as a whole and
// the file is still where it was found: the next process of it is then
// traced from its first instruction.
func (t *Target) Detach(ctx context.Context) {
	t.detach.Do(func() {
		a, pr := t.a, t.probes
		a.mu.Lock()
		last := len(pr.targets) == 1 && pr.targets[t.Process.PID] == t
		a.mu.Unlock()
		keep := pr.unchanged()
		if last && !keep {
			pr.unlink()
		}
		// Records of this process still queued must find it.
		a.drain(time.Second)
		a.mu.Lock()
		delete(a.targets, t)
		if pr.targets[t.Process.PID] == t {
			delete(pr.targets, t.Process.PID)
			pr.gone[t.Process.PID] = time.Now()
		}
		empty := len(pr.targets) == 0
		// Events still waiting for a span that will never end are lost.
		a.retiredEventsDropped += t.events.droppedCount() + t.events.pendingCount()
		a.mu.Unlock()
		a.flushInFlight(t)
		if empty && !keep {
			a.closeProbes(pr)
		}
		t.types.close()
		if t.proc != nil {
			t.proc.Close(ctx)
		}
	})
}

// flushInFlight turns t's calls that were entered and never returned into
// spans marked incomplete, ending now, and removes them from the in-flight
// maps: t's process exited, or uranus is exiting.
func (a *Attacher) flushInFlight(t *Target) {
	hdrSize := int(unsafe.Sizeof(eventHeader{}))
	now := time.Now()
	for _, l := range t.probes.loaded {
		inst := l.plan.Inst
		m := l.coll.Maps[inst.InFlight]
		if inst.InFlight == "" || m == nil || int(m.ValueSize()) < hdrSize {
			continue
		}
		key := make([]byte, m.KeySize())
		val := make([]byte, m.ValueSize())
		var mine [][]byte
		it := m.Iterate()
		for it.Next(&key, &val) {
			h := (*eventHeader)(unsafe.Pointer(&val[0]))
			if int(h.Pid) != t.Process.PID || h.Source != l.source {
				continue
			}
			mine = append(mine, append([]byte(nil), key...))
			if h.Flags&flagSampled == 0 {
				continue
			}
			span := otel.Span{
				TraceID: trace.TraceID(h.TraceId),
				SpanID:  trace.SpanID(h.SpanId),
				Parent:  trace.SpanID(h.ParentSpanId),
				Sampled: true,
				Start:   a.clock.wall(h.StartNs),
				End:     now,
				Kind:    inst.InFlightKind,
				Name:    inst.ID + " call in flight",
				Attrs:   []attribute.KeyValue{attrIncomplete},
			}
			span.RemoteParent = h.Flags&flagRemoteParent != 0
			if inst.InFlightConvert != nil {
				if err := inst.InFlightConvert(val, &span, t.views[l.source]); err != nil {
					a.log.Debug("call in flight not described", "instrumentor", inst.ID, "err", err)
				}
			}
			t.emit(&span)
		}
		for _, k := range mine {
			m.Delete(k)
		}
		if len(mine) > 0 {
			a.inFlightAtExit.Add(uint64(len(mine)))
		}
	}
}

// attrIncomplete marks a span whose call had not returned when its process
// or uranus exited: its end is that moment, and what the return would have
// told (status, response) is unknown.
var attrIncomplete = attribute.Bool("uranus.incomplete", true)

// unchanged reports whether pr's probes may stay with no process to
// trace: they are on the file as a whole, its path still names it, and it
// was not written since it was probed.
func (pr *probes) unchanged() bool {
	var st syscall.Stat_t
	return pr.key.pid == 0 && syscall.Stat(pr.path, &st) == nil &&
		st.Dev == pr.key.dev && st.Ino == pr.key.ino && st.Ctim.Nano() == pr.changed
}

// unlink removes pr's uprobes, keeping its maps and sources.
func (pr *probes) unlink() {
	var all []link.Link
	for _, l := range pr.loaded {
		all = append(all, l.links...)
		l.links = nil
	}
	closeLinks(all)
}

// closeLinks removes uprobes all at once. Closing one perf-event uprobe
// waits for the kernel to be done with it, 140–200 ms each here (Linux
// 6.18): one after another, the 42 sites of a net/http program with one
// --func took 5–11 s at SIGTERM, while calls went on being traced. Closed
// concurrently the waits partly overlap (about half the time); probes on a
// file avoid them with uprobe_multi links (attachSites). Whether an entry's probe goes before its RET's does not matter:
// a call whose return is not seen stays in flight and is reported as
// incomplete at detach.
func closeLinks(links []link.Link) {
	var wg sync.WaitGroup
	for _, l := range links {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.Close()
		}()
	}
	wg.Wait()
}

// closeProbes removes pr's uprobes and programs, and forgets its sources.
func (a *Attacher) closeProbes(pr *probes) {
	a.mu.Lock()
	if pr.closed {
		a.mu.Unlock()
		return
	}
	pr.closed = true
	if a.probes[pr.key] == pr {
		delete(a.probes, pr.key)
	}
	a.mu.Unlock()
	pr.unlink()
	a.mu.Lock()
	for _, l := range pr.loaded {
		a.retired.add(l.counters())
	}
	a.mu.Unlock()
	sources := map[uint32]bool{}
	for _, l := range pr.loaded {
		a.sources.Delete(l.source)
		sources[l.source] = true
		l.close()
	}
	if a.wire != nil {
		a.wire.forget(sources)
	}
	if pr.goSpans != nil {
		pr.goSpans.Close()
	}
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
	for _, l := range t.probes.loaded {
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
	// OutOfScope are calls of processes outside uranus's PID namespace that
	// ran a probed executable (another container of the same image): dropped
	// in the kernel.
	OutOfScope uint64
}

func (c *Counters) fields() []*uint64 {
	return []*uint64{&c.Entry, &c.Return, &c.Events, &c.RingbufFull, &c.NoEntry, &c.InflightFull, &c.ReadError, &c.Unsampled,
		&c.Extra[0], &c.Extra[1], &c.Extra[2], &c.Extra[3], &c.OutOfScope}
}

func (c *Counters) add(o Counters) {
	of := o.fields()
	for i, f := range c.fields() {
		*f += *of[i]
	}
}

// Counters returns the counters of each instrumentor by ID, summed over
// every process of t's executable when its probes serve them all.
func (t *Target) Counters() map[string]Counters {
	m := map[string]Counters{}
	for _, l := range t.probes.loaded {
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

// pruneFeatures removes from spec the programs of the plan's probes that
// serve a feature drop says to drop, and tells whether any was there.
func pruneFeatures(spec *ebpf.CollectionSpec, plan *Plan, drop func(feature string) bool) bool {
	dropped := false
	for _, pp := range plan.Probes {
		if pp.Requires == "" || !drop(pp.Requires) {
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
