package all_test

import (
	"cmp"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	version "github.com/hashicorp/go-version"

	ubinary "github.com/uranus-otel/uranus/binary"
	"github.com/uranus-otel/uranus/bpf"
	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/instrumentors/all"
	"github.com/uranus-otel/uranus/instrumentors/funcs"
	"github.com/uranus-otel/uranus/instrumentors/goroutines"
	"github.com/uranus-otel/uranus/instrumentors/httpclient"
	"github.com/uranus-otel/uranus/instrumentors/httpserver"
	"github.com/uranus-otel/uranus/internal/csource"
)

// The contract between an instrumentor's Go declaration and its C program
// is checked here from the collection spec alone: parsing the embedded ELF
// needs neither root nor a BPF-capable kernel. What the kernel alone can
// tell (the verifier, attaching) stays with the end-to-end tests.

// linked keeps in this test binary what the instrumentors' Dynamic
// functions look up in it: the TLS handshakes and the tap's Read and Write.
var linked = []any{tls.Client, tls.Server, (*tls.Conn).Read, (*tls.Conn).Write}

// traceMe is the function the funcs instrumentor is planned for.
//
//go:noinline
func traceMe(n int, s string) (int, error) { return n + len(s), nil }

// registry is every instrumentor uranus can run: the list, which holds
// funcs too (on when functions are named).
func registry() []*instrumentors.Instrumentor {
	return slices.Clone(all.List)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// dynamicSubject is what Dynamic is planned against: this test binary.
func dynamicSubject(t *testing.T) *ubinary.File {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := ubinary.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bin.Close() })
	return bin
}

// repoRoot is the module's directory, for file names in messages.
func repoRoot() string {
	root, _ := csource.Root() // newShared fails the test when it cannot be found
	return root
}

func funcFile(fn any) string {
	v := reflect.ValueOf(fn)
	if v.Kind() != reflect.Func || v.IsNil() {
		return ""
	}
	f := runtime.FuncForPC(v.Pointer())
	if f == nil {
		return ""
	}
	file, _ := f.FileLine(f.Entry())
	if !filepath.IsAbs(file) { // -trimpath: the import path of the file's package
		return strings.TrimPrefix(file, module+"/")
	}
	if rel, err := filepath.Rel(repoRoot(), file); err == nil {
		return filepath.ToSlash(rel)
	}
	return file
}

const module = "github.com/uranus-otel/uranus"

var (
	generatedGo = regexp.MustCompile(`^bpf/(\w+)_x86_bpfel\.go$`)
	bpf2goC     = regexp.MustCompile(`bpf2go .*?(\w+\.c)\b`)
)

// sources names the files to fix for in: the Go file declaring it and the
// C file of its programs.
func sources(in *instrumentors.Instrumentor) (goFile, cFile string) {
	for _, fn := range []any{in.Convert, in.Dynamic, in.Spec} {
		if f := funcFile(fn); f != "" && !strings.HasPrefix(f, "bpf/") {
			goFile = f
			break
		}
	}
	if goFile == "" { // a declaration without functions of its own
		files, _ := filepath.Glob(filepath.Join(repoRoot(), "instrumentors", "*", "*.go"))
		id := regexp.MustCompile(`\bID:\s*"` + regexp.QuoteMeta(in.ID) + `"`)
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil && id.Match(b) {
				goFile, _ = filepath.Rel(repoRoot(), f)
				break
			}
		}
	}
	if m := generatedGo.FindStringSubmatch(funcFile(in.Spec)); m != nil {
		cFile = "bpf/" + m[1] + ".c"
	} else if b, err := os.ReadFile(filepath.Join(repoRoot(), goFile)); err == nil {
		if m := bpf2goC.FindSubmatch(b); m != nil {
			cFile = "bpf/" + string(m[1])
		}
	}
	return cmp.Or(goFile, "its Go declaration"), cmp.Or(cFile, "its C program")
}

// shared is what every collection must agree on with attach and with the
// other instrumentors' collections.
type shared struct {
	statCount  uint32 // STAT_COUNT of bpf/uranus.h
	headerSize uint32 // struct event_header
	// goroutineSpans is the first goroutine_spans map seen: attach creates
	// one per target from whichever collection loads first and hands it to
	// the others, so every declaration must be the same.
	goroutineSpans *ebpf.MapSpec
	goroutineFrom  string
	// consts are the struct members behind each constant, keyed by the
	// file declaring it and its name: a header's constants, and those of a
	// C file that serves two instrumentors, must mean one thing to all.
	consts map[string]constUse
	// headerConsts maps each constant a shared header declares to it.
	headerConsts map[string]string
}

type constUse struct {
	c    instrumentors.Const
	inst string
}

func newShared() (*shared, error) {
	src, err := csource.BPFFile("uranus.h")
	if err != nil {
		return nil, err
	}
	enum, err := csource.Enum(src, "stat")
	if err != nil {
		return nil, fmt.Errorf("bpf/uranus.h: %w", err)
	}
	count := enum[len(enum)-1]
	if count.Name != "STAT_COUNT" {
		return nil, fmt.Errorf("bpf/uranus.h: enum stat ends with %s, not STAT_COUNT", count.Name)
	}
	sh := &shared{statCount: uint32(count.Value), headerSize: uint32(unsafe.Sizeof(bpf.CoreEventHeader{})),
		consts: map[string]constUse{}, headerConsts: map[string]string{}}
	headers, _ := filepath.Glob(filepath.Join(repoRoot(), "bpf", "*.h"))
	for _, h := range headers {
		src, err := csource.BPFFile(filepath.Base(h))
		if err != nil {
			return nil, err
		}
		for _, name := range csource.VolatileConsts(src) {
			sh.headerConsts[name] = "bpf/" + filepath.Base(h)
		}
	}
	if len(sh.headerConsts) == 0 {
		return nil, fmt.Errorf("no volatile const in bpf/*.h")
	}
	return sh, nil
}

// problems checks one instrumentor against its collection spec; dynamic is
// what its Dynamic planned (nil without one). Each problem names the
// instrumentor, what is wrong and the files to fix.
func (sh *shared) problems(in *instrumentors.Instrumentor, dynamic *instrumentors.Dynamic) []string {
	goFile, cFile := sources(in)
	var out []string
	report := func(format string, args ...any) {
		out = append(out, fmt.Sprintf("%s: %s (fix %s or %s)", in.ID, fmt.Sprintf(format, args...), goFile, cFile))
	}
	if in.Spec == nil {
		report("declares no Spec")
		return out
	}
	spec, err := in.Spec()
	if err != nil {
		report("loading its collection spec: %v", err)
		return out
	}

	constant := func(what, name string) *ebpf.VariableSpec {
		v := spec.Variables[name]
		switch {
		case v == nil:
			report("%s %s, which the C does not declare as a volatile const%s", what, name, didYouMean(name, spec))
		case !v.Constant():
			report("%s %s is a variable in %s, not a volatile const: its value would not be fixed at load time", what, name, v.SectionName)
		default:
			return v
		}
		return nil
	}
	seen := map[string]bool{}
	for _, c := range in.Consts {
		if seen[c.Name] {
			report("Consts names %s twice", c.Name)
		}
		seen[c.Name] = true
		if v := constant("Consts names", c.Name); v != nil && v.Size() != 8 {
			report("offset %s is %d bytes in the C; offsets are u64 so that OFFSET_ABSENT fits", c.Name, v.Size())
		}
		file := cmp.Or(sh.headerConsts[c.Name], cFile)
		key := file + ":" + c.Name
		if prev, ok := sh.consts[key]; ok && (prev.c.Field != c.Field || prev.c.Optional != c.Optional) {
			report("%s's const %s is %s (optional %v) here but %s (optional %v) in %s: one constant, one member",
				file, c.Name, c.Field, c.Optional, prev.c.Field, prev.c.Optional, prev.inst)
		} else if !ok {
			sh.consts[key] = constUse{c, in.ID}
		}
	}
	for _, val := range in.Values {
		if seen[val.Name] {
			report("Values sets %s, which Consts or Values already sets", val.Name)
		}
		seen[val.Name] = true
		if _, err := version.NewConstraint(val.GoVersions); val.GoVersions != "" && err != nil {
			report("value %s: Go versions %q: %v", val.Name, val.GoVersions, err)
		}
		if _, err := version.NewConstraint(val.ModuleVersions); val.ModuleVersions != "" && err != nil {
			report("value %s: %s versions %q: %v", val.Name, in.Module, val.ModuleVersions, err)
		}
		if val.ModuleVersions != "" && in.Module == "" {
			report("value %s constrains a module version, and the instrumentor names no Module", val.Name)
		}
		if v := constant("Values sets", val.Name); v != nil && v.Size() < 8 && val.Value>>(8*v.Size()) != 0 {
			report("value %s = %d does not fit the %d bytes the C declares", val.Name, val.Value, v.Size())
		}
	}

	attached := map[string]bool{}
	probes := in.Probes
	if dynamic != nil {
		probes = append(slices.Clone(probes), dynamic.Probes...)
		for _, name := range slices.Sorted(maps.Keys(dynamic.Consts)) {
			if seen[name] {
				report("Dynamic sets %s, which Consts or Values already sets", name)
			}
			constant("Dynamic sets", name)
		}
		for _, name := range slices.Sorted(maps.Keys(dynamic.MapEntries)) {
			entries := dynamic.MapEntries[name]
			m := spec.Maps[name]
			if m == nil {
				report("Dynamic fills map %s, which the C does not declare", name)
				continue
			}
			for _, e := range entries {
				if k := binary.Size(e.Key); k != int(m.KeySize) {
					report("map %s has %d-byte keys; Dynamic writes a %T of %d", name, m.KeySize, e.Key, k)
				}
				if v := binary.Size(e.Value); v != int(m.ValueSize) {
					report("map %s has %d-byte values; Dynamic writes a %T of %d", name, m.ValueSize, e.Value, v)
				}
			}
		}
	}
	for _, p := range probes {
		if p.Entry == "" && p.Return == "" {
			report("probe on %s names no program", p.Symbol)
		}
		for _, name := range []string{p.Entry, p.Return} {
			if name == "" {
				continue
			}
			attached[name] = true
			prog := spec.Programs[name]
			switch {
			case prog == nil:
				report("probe on %s attaches program %s, which the C does not define%s", p.Symbol, name, didYouMean(name, spec))
			case prog.Type != ebpf.Kprobe || !strings.HasPrefix(prog.SectionName, "uprobe") && !strings.HasPrefix(prog.SectionName, "uretprobe"):
				report("program %s is a %v program in section %q: uprobes take SEC(\"uprobe\") programs", name, prog.Type, prog.SectionName)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(spec.Programs)) {
		if !attached[name] {
			report("program %s is loaded but no probe attaches it", name)
		}
	}

	// The core's maps: counters, records, the active span per goroutine.
	if m := spec.Maps["stats"]; m == nil {
		report("the C declares no stats map (include bpf/uranus.h)")
	} else if m.Type != ebpf.PerCPUArray || m.KeySize != 4 || m.ValueSize != 8 || m.MaxEntries != sh.statCount {
		report("map stats is a %v of %d entries, %d-byte keys and %d-byte values; attach reads a PerCPUArray of STAT_COUNT (%d) u64s by u32",
			m.Type, m.MaxEntries, m.KeySize, m.ValueSize, sh.statCount)
	}
	writesEvents := referencesMap(spec, "events")
	switch {
	case writesEvents && in.Convert == nil:
		report("its programs write records to events but it declares no Convert to read them")
	case !writesEvents && in.Convert != nil:
		report("it declares a Convert, but no program writes to the events map")
	}
	if m := spec.Maps["events"]; writesEvents && m.Type != ebpf.RingBuf {
		report("map events is a %v; attach replaces it with its ring buffer", m.Type)
	}
	if writesEvents {
		constant("attach tags records through", "source_id")
	}
	// A call in flight at exit is read back as a value that starts with
	// an event header (attach.flushInFlight), under any key.
	if in.InFlight != "" {
		m := spec.Maps[in.InFlight]
		switch {
		case m == nil:
			report("InFlight names map %s, which the C does not declare", in.InFlight)
		case m.ValueSize < sh.headerSize || !startsWithHeader(m.Value):
			report("InFlight map %s's values do not start with struct event_header, which attach reads from them",
				in.InFlight)
		}
	}
	if m := spec.Maps["goroutine_spans"]; m != nil {
		if sh.goroutineSpans == nil {
			sh.goroutineSpans, sh.goroutineFrom = m, in.ID
		} else if g := sh.goroutineSpans; m.Type != g.Type || m.KeySize != g.KeySize || m.ValueSize != g.ValueSize || m.MaxEntries != g.MaxEntries || m.Flags != g.Flags {
			report("map goroutine_spans differs from %s's (%v/%d/%d/%d, not %v/%d/%d/%d), but one map serves both in a target",
				sh.goroutineFrom, m.Type, m.KeySize, m.ValueSize, m.MaxEntries, g.Type, g.KeySize, g.ValueSize, g.MaxEntries)
		}
	}
	return out
}

// referencesMap reports whether any program of spec uses the map.
func referencesMap(spec *ebpf.CollectionSpec, name string) bool {
	for _, p := range spec.Programs {
		for _, ins := range p.Instructions {
			if ins.IsLoadFromMap() && ins.Reference() == name {
				return true
			}
		}
	}
	return false
}

// didYouMean suggests the spec's program or constant closest to name.
func didYouMean(name string, spec *ebpf.CollectionSpec) string {
	best, bestD := "", len(name)/3+1
	for cand := range spec.Variables {
		if d := distance(name, cand); d < bestD {
			best, bestD = cand, d
		}
	}
	for cand := range spec.Programs {
		if d := distance(name, cand); d < bestD {
			best, bestD = cand, d
		}
	}
	if best == "" {
		return ""
	}
	return "; did you mean " + best + "?"
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// TestContract checks every instrumentor's declaration against its BPF
// collection spec, and the instrumentors against each other.
func TestContract(t *testing.T) {
	sh, err := newShared()
	if err != nil {
		t.Fatal(err)
	}
	bin := dynamicSubject(t)
	if len(linked) == 0 {
		t.Fatal("nothing linked")
	}
	ids := map[string]bool{}
	for _, in := range registry() {
		t.Run(in.ID, func(t *testing.T) {
			if ids[in.ID] {
				t.Errorf("two instrumentors are called %s", in.ID)
			}
			ids[in.ID] = true
			var dyn *instrumentors.Dynamic
			if in.Dynamic != nil {
				subject := in
				if in.ID == funcs.ID {
					subject = funcs.New(traceMeSpec(t), quiet)
				}
				var err error
				if dyn, err = subject.Dynamic(bin); err != nil {
					t.Fatalf("planning %s for this test binary: %v", in.ID, err)
				}
			}
			for _, p := range sh.problems(in, dyn) {
				t.Error(p)
			}
		})
	}
}

func traceMeSpec(t *testing.T) []funcs.Spec {
	s, err := funcs.ParseFunc(runtime.FuncForPC(reflect.ValueOf(traceMe).Pointer()).Name() + "(n int, s string) (int, error)")
	if err != nil {
		t.Fatal(err)
	}
	return []funcs.Spec{s}
}

// TestContractCatchesMistakes breaks real declarations the ways a newcomer
// would, and checks that each is reported with the files to fix.
func TestContractCatchesMistakes(t *testing.T) {
	server := httpserver.Instrumentor
	withSpec := func(in *instrumentors.Instrumentor, change func(*ebpf.CollectionSpec)) *instrumentors.Instrumentor {
		c := *in
		c.Spec = func() (*ebpf.CollectionSpec, error) {
			spec, err := in.Spec()
			if err == nil {
				change(spec)
			}
			return spec, err
		}
		return &c
	}
	edit := func(in *instrumentors.Instrumentor, change func(*instrumentors.Instrumentor)) *instrumentors.Instrumentor {
		c := *in
		c.Consts, c.Values, c.Probes = slices.Clone(in.Consts), slices.Clone(in.Values), slices.Clone(in.Probes)
		change(&c)
		return &c
	}
	for _, c := range []struct {
		name string
		// list is checked in order with one shared state; dyn is the
		// last one's Dynamic result.
		list []*instrumentors.Instrumentor
		dyn  *instrumentors.Dynamic
		want []string
	}{{
		name: "in-flight map misnamed",
		list: []*instrumentors.Instrumentor{edit(server, func(c *instrumentors.Instrumentor) { c.InFlight = "call" })},
		want: []string{"http-server: InFlight names map call, which the C does not declare (fix instrumentors/httpserver/httpserver.go or bpf/httpserver.c)"},
	}, {
		name: "misspelled const",
		list: []*instrumentors.Instrumentor{edit(server, func(c *instrumentors.Instrumentor) { c.Consts[0].Name = "off_req_methd" })},
		want: []string{"http-server: Consts names off_req_methd, which the C does not declare as a volatile const; did you mean off_req_method? " +
			"(fix instrumentors/httpserver/httpserver.go or bpf/httpserver.c)"},
	}, {
		name: "misspelled program",
		list: []*instrumentors.Instrumentor{edit(server, func(c *instrumentors.Instrumentor) { c.Probes[0].Entry = "server_entyr" })},
		want: []string{
			"http-server: probe on net/http.serverHandler.ServeHTTP attaches program server_entyr, which the C does not define; did you mean server_entry?",
			"http-server: program server_entry is loaded but no probe attaches it",
		},
	}, {
		name: "value too wide, bad version constraint",
		list: []*instrumentors.Instrumentor{edit(goroutines.Instrumentor, func(c *instrumentors.Instrumentor) {
			c.Values[1].Value = 1 << 40
			c.Values[0].GoVersions = "before 1.15"
		})},
		want: []string{
			"goroutines: value newproc1_arg_words = 1099511627776 does not fit the 4 bytes the C declares (fix instrumentors/goroutines/goroutines.go or bpf/goroutines.c)",
			`goroutines: value newg_in_runnext: Go versions "before 1.15": malformed constraint`,
		},
	}, {
		name: "records without Convert",
		list: []*instrumentors.Instrumentor{edit(server, func(c *instrumentors.Instrumentor) { c.Convert = nil })},
		want: []string{"http-server: its programs write records to events but it declares no Convert"},
	}, {
		name: "Convert without records",
		list: []*instrumentors.Instrumentor{edit(goroutines.Instrumentor, func(c *instrumentors.Instrumentor) { c.Convert = server.Convert })},
		want: []string{"goroutines: it declares a Convert, but no program writes to the events map"},
	}, {
		name: "shared header constant bound to two members",
		list: []*instrumentors.Instrumentor{server, edit(httpclient.Instrumentor, func(c *instrumentors.Instrumentor) {
			for i := range c.Consts {
				if c.Consts[i].Name == "off_hmap_b" {
					c.Consts[i].Field.Member = "count"
				}
			}
		})},
		want: []string{"http-client: bpf/go_header.h's const off_hmap_b is runtime.hmap.count (optional true) here but runtime.hmap.B (optional true) in http-server"},
	}, {
		name: "not a uprobe program",
		list: []*instrumentors.Instrumentor{withSpec(server, func(s *ebpf.CollectionSpec) { s.Programs["server_entry"].Type = ebpf.SocketFilter })},
		want: []string{`http-server: program server_entry is a SocketFilter program in section "uprobe": uprobes take SEC("uprobe") programs`},
	}, {
		name: "core maps changed",
		list: []*instrumentors.Instrumentor{server, withSpec(httpclient.Instrumentor, func(s *ebpf.CollectionSpec) {
			s.Maps["stats"].MaxEntries = 8
			s.Maps["goroutine_spans"].MaxEntries = 16
			delete(s.Variables, "source_id")
		})},
		want: []string{
			"http-client: map stats is a PerCPUArray of 8 entries",
			"http-client: map goroutine_spans differs from http-server's",
			"http-client: attach tags records through source_id, which the C does not declare",
		},
	}, {
		name: "in-flight map whose values hold no event header",
		list: []*instrumentors.Instrumentor{edit(funcs.New(nil, quiet), func(c *instrumentors.Instrumentor) { c.InFlight = "thread_depths" })},
		dyn:  &instrumentors.Dynamic{Probes: []instrumentors.Probe{{Symbol: "main.f", Entry: "func_entry", Return: "func_return"}}},
		want: []string{"func: InFlight map thread_depths's values do not start with struct event_header"},
	}, {
		name: "Dynamic's constants and map entries",
		list: []*instrumentors.Instrumentor{funcs.New(nil, quiet)},
		dyn: &instrumentors.Dynamic{
			Consts:     map[string]uint64{"is_goo": 1},
			MapEntries: map[string][]instrumentors.MapEntry{"func_spec": nil, "func_specs": {{Key: uint64(0), Value: uint8(1)}}},
			Probes:     []instrumentors.Probe{{Symbol: "main.f", Entry: "func_entry", Return: "func_return"}},
		},
		want: []string{
			"func: Dynamic sets is_goo, which the C does not declare as a volatile const; did you mean is_go? (fix instrumentors/funcs/funcs.go or bpf/funcs.c)",
			"func: Dynamic fills map func_spec, which the C does not declare",
			"func: map func_specs has 4-byte keys; Dynamic writes a uint64 of 8",
			"-byte values; Dynamic writes a uint8 of 1",
		},
	}} {
		t.Run(c.name, func(t *testing.T) {
			sh, err := newShared()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for i, in := range c.list {
				var dyn *instrumentors.Dynamic
				if i == len(c.list)-1 {
					dyn = c.dyn
				}
				got = append(got, sh.problems(in, dyn)...)
			}
			for _, w := range c.want {
				if !slices.ContainsFunc(got, func(g string) bool { return strings.Contains(g, w) }) {
					t.Errorf("no problem reported like %q; got:\n%s", w, strings.Join(got, "\n"))
				}
			}
			if len(got) > len(c.want) {
				t.Errorf("%d problems, want %d:\n%s", len(got), len(c.want), strings.Join(got, "\n"))
			}
		})
	}
}

// startsWithHeader tells whether a map's value type (from the object's BTF)
// is a struct whose first member is a struct event_header.
func startsWithHeader(t btf.Type) bool {
	st, ok := btf.UnderlyingType(t).(*btf.Struct)
	if !ok || len(st.Members) == 0 || st.Members[0].Offset != 0 {
		return false
	}
	h, ok := btf.UnderlyingType(st.Members[0].Type).(*btf.Struct)
	// The header itself, or a struct that starts with it (an in-flight
	// value that holds a whole record, as grpc's does).
	return ok && (h.Name == "event_header" || startsWithHeader(h))
}
