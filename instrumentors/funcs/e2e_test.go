package funcs_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/attach"
	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/instrumentors/funcs"
	"github.com/uranus-otel/uranus/instrumentors/httpserver"
	"github.com/uranus-otel/uranus/internal/e2e"
	"github.com/uranus-otel/uranus/internal/testapp"
)

// call is one line the targets print for a traced call: the function and
// the attributes uranus should record.
type call map[string]string

func parseCalls(t *testing.T, out string) []call {
	t.Helper()
	var calls []call
	for _, line := range strings.Split(out, "\n") {
		js, ok := strings.CutPrefix(line, "CALL ")
		if !ok {
			continue
		}
		var c call
		if err := json.Unmarshal([]byte(js), &c); err != nil {
			t.Fatalf("bad CALL line %q: %v", line, err)
		}
		calls = append(calls, c)
	}
	return calls
}

// values are the arg.* and result.* attributes of a span, as strings.
func values(s tracetest.SpanStub) call {
	out := call{}
	for _, kv := range s.Attributes {
		k := string(kv.Key)
		if strings.HasPrefix(k, "arg.") || strings.HasPrefix(k, "result.") {
			out[k] = kv.Value.String()
		}
	}
	return out
}

func attr(s tracetest.SpanStub, key string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// want is what a span should hold for c: its arg./result. values except
// those dropped, strings longer than uranus keeps cut, with their length.
func want(c call, drop func(key string) bool) call {
	out := call{}
	for k, v := range c {
		if (strings.HasPrefix(k, "arg.") || strings.HasPrefix(k, "result.")) && !drop(k) {
			out[k] = v
			if len(v) > keptBytes {
				out[k] = v[:keptBytes]
				out[k+".length"] = strconv.Itoa(len(v))
			}
		}
	}
	return out
}

// keptBytes is how much of a string a span keeps (STR_LEN in bpf/funcs.c).
const keptBytes = 128

func sameCall(a, b call) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// logBuffer collects what the instrumentor logs, for checking its messages.
type logBuffer struct {
	t  testing.TB
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLog(t testing.TB) (*slog.Logger, *logBuffer) {
	lb := &logBuffer{t: t}
	return slog.New(slog.NewTextHandler(lb, nil)), lb
}

func specs(t testing.TB, fs ...string) []funcs.Spec {
	t.Helper()
	var out []funcs.Spec
	for _, f := range fs {
		s, err := funcs.ParseFunc(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// goTarget is the funcs sample running under uranus.
type goTarget struct {
	t        *testing.T
	proc     *e2e.Proc
	s        *e2e.Session
	log      *logBuffer
	received int
}

func startGo(t *testing.T, version string, opts testapp.Options, fs ...string) *goTarget {
	t.Helper()
	p := e2e.Start(t, e2e.BuildTarget(t, "funcs", version, opts))
	log, lb := newLog(t)
	in := funcs.New(specs(t, fs...), log)
	s := e2e.Attach(t, []*instrumentors.Instrumentor{httpserver.Instrumentor, in}, p.Cmd.Process.Pid)
	return &goTarget{t: t, proc: p, s: s, log: lb}
}

// request GETs path and returns the calls the handler reported, the
// server span and the function spans (n of them) it produced.
func (g *goTarget) request(path string, n int) ([]call, tracetest.SpanStub, []tracetest.SpanStub) {
	g.t.Helper()
	resp, err := http.Get("http://" + g.proc.Addr + path)
	if err != nil {
		g.t.Fatalf("GET %s: %v", path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	calls := parseCalls(g.t, string(body))
	got := g.s.WaitSpans(g.received + 1 + n)
	if len(got) != g.received+1+n {
		g.t.Fatalf("%s: %d spans, want 1 server span and %d function spans", path, len(got)-g.received, n)
	}
	var server tracetest.SpanStub
	var fns []tracetest.SpanStub
	for _, s := range got[g.received:] {
		if s.SpanKind == trace.SpanKindServer {
			server = s
		} else {
			fns = append(fns, s)
		}
	}
	g.received = len(got)
	if !server.SpanContext.IsValid() || len(fns) != n {
		g.t.Fatalf("%s: no server span, or %d function spans instead of %d", path, len(fns), n)
	}
	return calls, server, fns
}

func (g *goTarget) counters() attach.Counters {
	return g.s.Targets[0].Counters()[funcs.ID]
}

// TestGoFunctions traces the funcs sample's functions with every Go
// version: each call's arguments and results must be what the program
// printed, and each span must sit under the request's server span, or
// under the traced call that made it.
func TestGoFunctions(t *testing.T) {
	e2e.RequireBPF(t)
	for _, v := range e2e.TestVersions() {
		t.Run("go"+v, func(t *testing.T) { testGoFunctions(t, v) })
	}
}

func testGoFunctions(t *testing.T, version string) {
	g := startGo(t, version, testapp.Options{},
		"main.Divide(dividend int, divisor int) (quotient int, remainder int)",
		"main.parseMe", "main.widths", "main.(*Cart).Add",
		"main.inspect {p.Y, p.Label, pt.X, pt.Label}",
		"main.floats", "main.sum4", "main.fact", "main.deep", "main.outer",
		"main.guard", "main.risky", "main.describe {r.URL.Path, r.Method}", "main.main.func1")
	regABI := minor(version) >= 17
	// Go 1.17's DWARF leaves results out: without a given signature they
	// are not recorded.
	noResults := strings.HasPrefix(version, "1.17.")
	// What the register ABI passes in X registers, which uranus cannot read.
	floatsInRegs := map[string]bool{"main.parseMe arg.a3": true, "main.floats arg.x": true, "main.floats arg.y": true, "main.floats result.0": true}
	drop := func(fn string) func(string) bool {
		return func(k string) bool {
			if strings.HasPrefix(k, "result.") && noResults && fn != "main.Divide" {
				return true
			}
			return regABI && floatsInRegs[fn+" "+k]
		}
	}
	// check compares one function span with the call the program printed.
	check := func(path string, c call, s tracetest.SpanStub) {
		t.Helper()
		fn := c["fn"]
		if s.Name != fn || attr(s, "code.function.name") != fn {
			t.Errorf("%s: span %q, want %s", path, s.Name, fn)
		}
		if s.SpanKind != trace.SpanKindInternal {
			t.Errorf("%s: %s span kind %v", path, fn, s.SpanKind)
		}
		if got, w := values(s), want(c, drop(fn)); !sameCall(got, w) {
			t.Errorf("%s: %s recorded\n  %v\nthe program printed\n  %v", path, fn, got, w)
		}
	}
	childOf := func(path string, s, parent tracetest.SpanStub) {
		t.Helper()
		if s.Parent.SpanID() != parent.SpanContext.SpanID() || s.SpanContext.TraceID() != parent.SpanContext.TraceID() {
			t.Errorf("%s: %s's parent is %s, want %s (%s)", path, s.Name, s.Parent.SpanID(), parent.SpanContext.SpanID(), parent.Name)
		}
	}
	// one checks a request that makes one traced call.
	one := func(path string) tracetest.SpanStub {
		t.Helper()
		calls, server, fns := g.request(path, 1)
		if len(calls) != 1 {
			t.Fatalf("%s: the program reported %d calls", path, len(calls))
		}
		check(path, calls[0], fns[0])
		childOf(path, fns[0], server)
		return fns[0]
	}

	one("/divide?a=7&b=3")
	one("/divide?a=-17&b=5")
	s := one("/parse?a1=42&a2=true&a3=1.25")
	if regABI && !strings.Contains(attr(s, "uranus.not_recorded"), "arg.a3 (float32 in X0)") {
		t.Errorf("parseMe: uranus.not_recorded = %q, want it to name arg.a3 in X0", attr(s, "uranus.not_recorded"))
	}
	one("/parse?a1=-3&a2=false&a3=-0.5")
	one("/widths?a=-5&b=-300&c=-70000&d=-5000000000&e=250&f=65000&g=4000000000&h=18446744073709551615&i=12345&j=true&k=-9")
	one("/widths?a=100&b=7&c=8&d=9&e=1&f=2&g=3&h=4&i=5&j=false&k=6")
	one("/cart?name=apple&price=120&qty=3")
	one("/cart?name=" + strings.Repeat("x", 200) + "&price=1&qty=1") // a string longer than uranus keeps
	one("/inspect?b=hello&px=1&py=2&label=pl&x=10&y=20")
	one("/inspect?b=&px=1&py=2&label=&x=10&y=20") // an error result
	s = one("/floats?x=2.5&y=0.75")
	if regABI {
		if got := attr(s, "uranus.not_recorded"); !strings.Contains(got, "arg.x (float64 in X0)") || !strings.Contains(got, "arg.y (float32 in X1)") {
			t.Errorf("floats: uranus.not_recorded = %q", got)
		}
		if !strings.Contains(g.log.String(), "float args in registers cannot be read by uprobes") {
			t.Error("no warning about float arguments in registers")
		}
	}
	one("/sum4?k=5") // k comes after an array and a complex
	one("/describe/some/path?tag=xy")
	one("/scale?x=6")

	// Nesting: outer calls Divide.
	calls, server, fns := g.request("/outer?a=9&b=2", 2)
	byName := map[string]tracetest.SpanStub{}
	for _, s := range fns {
		byName[s.Name] = s
	}
	for _, c := range calls {
		check("/outer", c, byName[c["fn"]])
	}
	childOf("/outer", byName["main.outer"], server)
	childOf("/outer", byName["main.Divide"], byName["main.outer"])

	// Recursion: fact(5) is five nested spans.
	recursion := func(path string, n int, topIsServer bool) {
		t.Helper()
		calls, server, fns := g.request(path, n)
		byArg := map[string]tracetest.SpanStub{}
		for _, s := range fns {
			byArg[attr(s, "arg.n")] = s
		}
		for i, c := range calls {
			s, ok := byArg[c["arg.n"]]
			if !ok {
				t.Fatalf("%s: no span for %s(n=%s)", path, c["fn"], c["arg.n"])
			}
			check(path, c, s)
			if i > 0 {
				childOf(path, s, byArg[calls[i-1]["arg.n"]])
			} else if topIsServer {
				childOf(path, s, server)
			}
		}
	}
	recursion("/fact?n=5", 5, true)
	counters := g.counters()
	// deep runs in a goroutine of its own, whose stack is copied to a
	// bigger one several times while the calls are in flight: every call
	// must still pair with its own return.
	recursion("/deep?n=24&seed=7", 25, false)
	after := g.counters()
	if after.Extra[2] == counters.Extra[2] {
		t.Errorf("no entry ran twice during /deep: the stack did not grow, so the test proves nothing (counters %+v)", after)
	}
	t.Logf("re-entries after stack growth during /deep: %d", after.Extra[2]-counters.Extra[2])

	// A panic unwinds risky without its RET: guard still pairs, and the
	// spans after it still nest right.
	calls, server, fns = g.request("/guard?n=-1", 1)
	check("/guard?n=-1", calls[0], fns[0])
	childOf("/guard?n=-1", fns[0], server)
	if c := g.counters(); c.Extra[1] == after.Extra[1] {
		t.Errorf("risky's frame, unwound by a panic, was not counted: %+v", c)
	}
	calls, server, fns = g.request("/guard?n=4", 2)
	byName = map[string]tracetest.SpanStub{}
	for _, s := range fns {
		byName[s.Name] = s
	}
	childOf("/guard?n=4", byName["main.guard"], server)
	childOf("/guard?n=4", byName["main.risky"], byName["main.guard"])
	check("/guard?n=4", calls[0], byName["main.guard"])
	one("/divide?a=100&b=7")

	c := g.counters()
	if c.NoEntry != 0 || c.ReadError != 0 || c.InflightFull != 0 || c.Extra[0] != 0 {
		t.Errorf("counters %+v: want no returns without entry, read errors, map failures or calls too deep", c)
	}
}

// TestGoStripped traces a binary without DWARF or symbol table: a given
// signature is used as is, and without one a span records timing only.
func TestGoStripped(t *testing.T) {
	e2e.RequireBPF(t)
	for _, v := range []string{"1.16.15", "1.27.4"} {
		t.Run("go"+v, func(t *testing.T) {
			g := startGo(t, v, testapp.Options{Stripped: true},
				"main.Divide(dividend int, divisor int) (quotient int, remainder int)",
				"main.(*Cart).Add(c *main.Cart, name string, price int64, qty uint8) (total int64)",
				"main.fact")
			calls, server, fns := g.request("/divide?a=29&b=4", 1)
			if got, w := values(fns[0]), want(calls[0], func(string) bool { return false }); !sameCall(got, w) {
				t.Errorf("Divide recorded %v, printed %v", got, w)
			}
			if fns[0].Parent.SpanID() != server.SpanContext.SpanID() {
				t.Error("Divide is not the server span's child")
			}
			calls, _, fns = g.request("/cart?name=pear&price=3&qty=2", 1)
			w := want(calls[0], func(string) bool { return false })
			w["result.total"] = w["result.0"]
			delete(w, "result.0")
			if got := values(fns[0]); !sameCall(got, w) {
				t.Errorf("(*Cart).Add recorded %v, printed %v", got, w)
			}
			_, _, fns = g.request("/fact?n=3", 3)
			for _, s := range fns {
				if len(values(s)) != 0 || s.Name != "main.fact" {
					t.Errorf("fact without signature or DWARF: %s %v, want timing only", s.Name, values(s))
				}
			}
			if !strings.Contains(g.log.String(), "main.fact: no signature given and the binary has no DWARF: recording timing only") {
				t.Error("no message saying main.fact is timed only")
			}
		})
	}
}

// TestBadInput names functions that cannot be traced next to one that
// can: each gets one message naming it, and the rest of the run works.
func TestBadInput(t *testing.T) {
	e2e.RequireBPF(t)
	g := startGo(t, "1.27.4", testapp.Options{},
		"main.Divide",
		"main.Divde",
		"main.tiny",
		"main.fact(n string) int",
		"main.inspect {p.Nope}",
		"main.outer {a.X}",
		"main.(*Cart).Add(name string, price int64, qty uint8) int64", // receiver left out: fine with DWARF
		"main.sum4",
	)
	log := g.log.String()
	for _, msg := range []string{
		"function not traced: main.Divde: function main.Divde not found in ",
		"did you mean main.Divide?",
		"function not traced: main.tiny: inlined into its callers",
		"function not traced: main.fact: the signature given does not match the binary's DWARF, (n int) int: parameter 1 is int, not string",
		"function not traced: main.inspect: field path p.Nope: main.Point has no field Nope (it has X, Y, Label)",
		"function not traced: main.outer: field path a.X: arg.a (int) has no field X",
		"main.sum4: arg.v ([4]int) not recorded: uranus records integers, bools, floats, strings, []byte, pointers",
		"main.sum4: arg.c (complex128) not recorded",
	} {
		if !strings.Contains(log, msg) {
			t.Errorf("log lacks %q", msg)
		}
	}
	for _, name := range []string{"main.Divde", "main.tiny", "main.fact"} {
		if n := strings.Count(log, "function not traced: "+name+":"); n != 1 {
			t.Errorf("%d messages for %s, want 1", n, name)
		}
	}
	calls, server, fns := g.request("/divide?a=8&b=3", 1)
	if got, w := values(fns[0]), want(calls[0], func(string) bool { return false }); !sameCall(got, w) {
		t.Errorf("Divide (signature from DWARF) recorded %v, printed %v", got, w)
	}
	if fns[0].Parent.SpanID() != server.SpanContext.SpanID() {
		t.Error("Divide is not the server span's child")
	}
	calls, _, fns = g.request("/cart?name=fig&price=5&qty=4", 1)
	if got, w := values(fns[0]), want(calls[0], func(string) bool { return false }); !sameCall(got, w) {
		t.Errorf("(*Cart).Add, receiver left out of the signature, recorded %v, printed %v", got, w)
	}
	calls, _, fns = g.request("/sum4?k=2", 1)
	if got, w := values(fns[0]), want(calls[0], func(string) bool { return false }); !sameCall(got, w) {
		t.Errorf("sum4 recorded %v, printed %v", got, w)
	}
	g.request("/fact?n=3", 0) // not traced: only the server span
}

// TestNothingTraceable: when no function can be traced, the func
// instrumentor is not attached, says why, and the others still are.
func TestNothingTraceable(t *testing.T) {
	e2e.RequireBPF(t)
	g := startGo(t, "1.27.4", testapp.Options{}, "main.Nope", "main.tiny")
	var skip string
	for _, p := range g.s.Targets[0].Plans {
		if p.Inst.ID == funcs.ID {
			skip = p.Skip
		}
	}
	if !strings.Contains(skip, "no function can be traced: main.Nope: ") || !strings.Contains(skip, "main.tiny: inlined") {
		t.Errorf("func instrumentor skip reason %q", skip)
	}
	g.request("/divide?a=1&b=1", 0)
}

// cBuild is one way of building testdata/utest.c.
type cBuild struct {
	name     string
	compiler string
	flags    []string
	// symbol maps the C name to the symbol to trace.
	symbol func(string) string
	specs  []string
}

var mangled = map[string]string{
	"utest_add": "_Z9utest_addii", "utest_sub": "_Z9utest_subii", "utest_calc": "_Z10utest_calcli",
	"utest_fact": "_Z10utest_factj", "utest_greet": "_Z11utest_greetPKcs", "utest_scale": "_Z11utest_scaledi",
}

// TestCFunctions traces the C program built with gcc (with DWARF, and
// without it from given signatures) and with g++ (mangled names): every
// call's arguments and results, nesting and recursion.
func TestCFunctions(t *testing.T) {
	e2e.RequireBPF(t)
	plain := func(s string) string { return s }
	builds := []cBuild{
		{"gcc-dwarf", "gcc", []string{"-g", "-O2"}, plain,
			[]string{"utest_add", "utest_sub", "utest_calc", "utest_fact", "utest_greet", "utest_scale"}},
		{"gcc-nodwarf", "gcc", []string{"-O2"}, plain,
			[]string{"utest_add(a int32, b int32) int32", "utest_sub(a int32, b int32) int32", "utest_calc(x int64, y int32) int64",
				"utest_fact(n uint32) uint64", "utest_greet", "utest_scale(x float64, k int32) float64"}},
		{"g++-dwarf", "g++", []string{"-x", "c++", "-g", "-O2"}, func(s string) string { return mangled[s] },
			[]string{"_Z9utest_addii", "_Z9utest_subii", "_Z10utest_calcli", "_Z10utest_factj", "_Z11utest_greetPKcs", "_Z11utest_scaledi"}},
	}
	for _, b := range builds {
		t.Run(b.name, func(t *testing.T) { testC(t, b) })
	}
}

func testC(t *testing.T, b cBuild) {
	exe := buildC(t, b.compiler, b.flags...)
	p := e2e.Start(t, exe)
	log, lb := newLog(t)
	s := e2e.Attach(t, []*instrumentors.Instrumentor{funcs.New(specs(t, b.specs...), log)}, p.Cmd.Process.Pid)
	received := 0
	for round := 1; round <= 2; round++ {
		before := len(parseCalls(t, p.Output()))
		if err := p.Cmd.Process.Signal(sigusr1); err != nil {
			t.Fatal(err)
		}
		// add, sub, calc (with add and sub inside), greet, scale, and
		// fact(n) for n = 3 + round%3 down to 1.
		n := 7 + 3 + round%3
		got := s.WaitSpans(received + n)
		spans := got[received:]
		received = len(got)
		calls := waitCalls(t, p, before, n)
		if len(spans) != n {
			t.Fatalf("round %d: %d spans, want %d", round, len(spans), n)
		}
		matched := make([]bool, len(spans))
		for _, c := range calls {
			sym := b.symbol(c["fn"])
			found := -1
			for i, sp := range spans {
				if matched[i] || sp.Name != sym {
					continue
				}
				drop := func(k string) bool {
					return c["fn"] == "utest_greet" && b.name == "gcc-nodwarf" // no signature: timing only
				}
				if sameCall(values(sp), want(c, drop)) {
					found = i
					break
				}
			}
			if found < 0 {
				t.Errorf("round %d: no span %s with %v; spans:\n%s", round, sym, want(c, func(string) bool { return false }), dump(spans))
				continue
			}
			matched[found] = true
		}
		// Nesting by thread: utest_calc's add and sub are its children;
		// fact's recursion is a chain.
		var calc tracetest.SpanStub
		facts := map[string]tracetest.SpanStub{}
		for _, sp := range spans {
			switch sp.Name {
			case b.symbol("utest_calc"):
				calc = sp
			case b.symbol("utest_fact"):
				facts[attr(sp, "arg.n")] = sp
			}
		}
		children := 0
		for _, sp := range spans {
			if sp.Parent.SpanID() == calc.SpanContext.SpanID() {
				children++
			}
		}
		if children != 2 {
			t.Errorf("round %d: utest_calc has %d child spans, want 2 (add and sub)", round, children)
		}
		for n, sp := range facts {
			if up, ok := facts[strconv.Itoa(atoi(n)+1)]; ok && sp.Parent.SpanID() != up.SpanContext.SpanID() {
				t.Errorf("round %d: fact(%s) is not fact(%d)'s child", round, n, atoi(n)+1)
			}
		}
		for _, sp := range spans {
			if nr := attr(sp, "uranus.not_recorded"); sp.Name == b.symbol("utest_scale") &&
				!(strings.Contains(nr, "arg.x (") && strings.Contains(nr, "result.0 (") && strings.Count(nr, " in XMM0)") == 2) {
				t.Errorf("utest_scale: uranus.not_recorded = %s, want arg.x and result.0 in XMM0", nr)
			}
		}
	}
	if !strings.Contains(lb.String(), "float args in registers cannot be read by uprobes") {
		t.Error("no warning about utest_scale's float argument")
	}
	c := s.Targets[0].Counters()[funcs.ID]
	if c.NoEntry != 0 || c.ReadError != 0 || c.Extra != [4]uint64{} {
		t.Errorf("counters %+v", c)
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func dump(spans []tracetest.SpanStub) string {
	var lines []string
	for _, s := range spans {
		lines = append(lines, fmt.Sprintf("  %s %v", s.Name, values(s)))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
