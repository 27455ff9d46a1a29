// Package funcs traces functions the user names (uranus --func, --config):
// one INTERNAL span per call, named after the function, with its arguments
// (arg.NAME) read at entry and its results (result.NAME) at return, nested
// under the span active in the calling goroutine (an HTTP request's, say)
// and itself the parent of spans started deeper in the call.
//
// Go functions are read per Go's calling conventions (the register ABI from
// Go 1.17, the stack ABI before); C and C++ functions of programs that are
// not Go per System V AMD64. The signature comes from the user or from the
// binary's DWARF; without either, a span records only timing.
//
// What the user names is planned per binary (Plan): each function that
// cannot be traced — not found, inlined, a signature that disagrees with
// DWARF — is reported by name and left out; the others are traced.
package funcs

import (
	"bytes"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/binary"
	"github.com/uranus-otel/uranus/bpf"
	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/otel"
)

// ID names the instrumentor in logs and counters.
const ID = "func"

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 -output-dir ../../bpf -go-package bpf -type event -type func_spec -type fetch -type values Funcs ../../bpf/funcs.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror

// Instrumentor is funcs in the registry: off, and tracing nothing, until
// --func or --config name functions, which turn it on (see Configure).
var Instrumentor = declare()

func declare() *instrumentors.Instrumentor {
	in := New(nil, nil)
	in.OffByDefault = true
	in.Options = []instrumentors.Option{{
		Name: "func",
		Usage: "trace this function: a span per call with its arguments and results; a `SIGNATURE` in Go syntax, " +
			"e.g. 'main.Divide(a int, b int) (q int, r int)', or only the name to read it from DWARF (repeatable; see the README)",
		Parse: func(s string) (any, error) { return ParseFunc(s) },
	}, {
		Name:  "config",
		Usage: "trace the functions listed in this YAML or JSON `FILE` (as --func; see the README)",
		Parse: func(path string) (any, error) { return LoadConfig(path) },
	}}
	in.Configure = configure
	return in
}

// Specs are the functions that settings name: each --func, then the
// functions of each --config file.
func Specs(s instrumentors.Settings) []Spec {
	var out []Spec
	for _, v := range s["func"] {
		if spec, ok := v.(Spec); ok {
			out = append(out, spec)
		}
	}
	for _, v := range s["config"] {
		if list, ok := v.([]Spec); ok {
			out = append(out, list...)
		}
	}
	return out
}

func configure(decl *instrumentors.Instrumentor, s instrumentors.Settings, log *slog.Logger) (*instrumentors.Instrumentor, error) {
	specs := Specs(s)
	if len(specs) == 0 {
		return decl, nil
	}
	in := New(specs, log)
	in.Options, in.Configure = decl.Options, decl.Configure
	return in, nil
}

// New returns the instrumentor that traces specs in every target, on. log
// gets one line per function that cannot be traced, or only in part.
func New(specs []Spec, log *slog.Logger) *instrumentors.Instrumentor {
	if log == nil {
		log = slog.Default()
	}
	tr := &tracer{specs: specs, log: log}
	return &instrumentors.Instrumentor{
		ID:      ID,
		Doc:     "functions named with --func or --config: a span per call, with arguments and results",
		Spec:    bpf.LoadFuncs,
		Dynamic: tr.plan,
		Convert: convert,
		// A call still in flight when its process or uranus exits is a
		// span too, with the arguments read at entry.
		InFlight:        "frames",
		InFlightKind:    trace.SpanKindInternal,
		InFlightConvert: convertInFlight,
		NonGo:           true,
		Stats: [4]string{
			"calls not traced: 32 traced calls already in flight in the goroutine",
			"calls whose return was never seen (a panic unwound them)",
			"entries run again after the stack grew or the goroutine was preempted",
		},
	}
}

type tracer struct {
	specs []Spec
	log   *slog.Logger
}

// targetState is what Convert needs for one target: its functions, by the
// index the BPF program reports (the probe's cookie).
type targetState struct {
	funcs []*Func
}

func (tr *tracer) plan(bin *binary.File) (*instrumentors.Dynamic, error) {
	if len(tr.specs) == 0 {
		return nil, fmt.Errorf("no function named: give --func or --config")
	}
	funcs, errs := Plan(bin, tr.specs)
	var reasons []string
	for _, err := range errs {
		reasons = append(reasons, err.Error())
		tr.log.Warn("function not traced: "+err.Error(), "exe", bin.Path)
	}
	for _, f := range funcs {
		if f.Sig != "" {
			tr.log.Info("tracing function", "exe", bin.Path, "func", f.Name, "signature", f.Sig, "from", f.SigFrom, "abi", f.Conv.Name)
		}
		for _, n := range f.Notes {
			tr.log.Warn(f.Name+": "+n, "exe", bin.Path)
		}
	}
	if len(funcs) == 0 {
		return nil, fmt.Errorf("no function can be traced: %s", strings.Join(reasons, "; "))
	}
	d := &instrumentors.Dynamic{
		Consts:     map[string]uint64{"is_go": uint64(boolByte(bin.IsGo()))},
		MapEntries: map[string][]instrumentors.MapEntry{},
		State:      &targetState{funcs: funcs},
	}
	for i, f := range funcs {
		d.Probes = append(d.Probes, instrumentors.Probe{
			Symbol:    f.Name,
			Entry:     "func_entry",
			Return:    "func_return",
			Cookie:    uint64(i),
			Uretprobe: !bin.IsGo(),
		})
		d.MapEntries["func_specs"] = append(d.MapEntries["func_specs"], instrumentors.MapEntry{Key: uint32(i), Value: f.spec})
	}
	return d, nil
}

type event = bpf.FuncsEvent

func convert(record []byte, s *otel.Span, t instrumentors.Target) error {
	if len(record) < int(unsafe.Sizeof(event{})) {
		return fmt.Errorf("func record of %d bytes, want %d", len(record), unsafe.Sizeof(event{}))
	}
	e := (*event)(unsafe.Pointer(&record[0]))
	f, err := nameSpan(s, t, e.Func)
	if err != nil {
		return fmt.Errorf("func record: %w", err)
	}
	s.Kind = trace.SpanKindInternal
	for _, v := range f.Values {
		s.Attrs = v.attrs(&e.V, t, s.Attrs)
	}
	if len(f.Unreadable) > 0 {
		s.Attrs = append(s.Attrs, attribute.StringSlice("uranus.not_recorded", f.Unreadable))
	}
	return nil
}

// nameSpan finds function i among those traced in t (the BPF program's
// cookie) and names s after it.
func nameSpan(s *otel.Span, t instrumentors.Target, i uint32) (*Func, error) {
	st, _ := t.State().(*targetState)
	if st == nil || int(i) >= len(st.funcs) {
		return nil, fmt.Errorf("function %d, which this target does not trace", i)
	}
	f := st.funcs[i]
	s.Name = f.Name
	s.Attrs = append(s.Attrs, semconv.CodeFunctionName(f.Name))
	return f, nil
}

type frame = bpf.FuncsFrame

// convertInFlight names the span of a call that never returned and records
// what its entry read: the arguments (results were never read).
func convertInFlight(value []byte, s *otel.Span, t instrumentors.Target) error {
	if len(value) < int(unsafe.Sizeof(frame{})) {
		return fmt.Errorf("func frame of %d bytes, want %d", len(value), unsafe.Sizeof(frame{}))
	}
	fr := (*frame)(unsafe.Pointer(&value[0]))
	f, err := nameSpan(s, t, fr.Func)
	if err != nil {
		return fmt.Errorf("func frame: %w", err)
	}
	for _, v := range f.Values {
		if !v.Result {
			s.Attrs = v.attrs(&fr.V, t, s.Attrs)
		}
	}
	return nil
}

// attrs appends v's attribute for one call to out: nothing when it was not
// read (a failed read, or a nil pointer on a field path).
func (v *Value) attrs(vals *bpf.FuncsValues, t instrumentors.Target, out []attribute.KeyValue) []attribute.KeyValue {
	bit := uint(v.Slot)
	if v.Str {
		bit += maxVals
	}
	if vals.Valid&(1<<bit) == 0 {
		return out
	}
	isNil := vals.Nil&(1<<bit) != 0
	key := attribute.Key(v.Key)
	if v.Str {
		if isNil {
			return out
		}
		n := vals.StrLen[v.Slot]
		buf := vals.Str[v.Slot][:]
		if v.Type.Kind == KindCString {
			if i := bytes.IndexByte(buf, 0); i >= 0 {
				buf = buf[:i]
			}
		}
		out = append(out, key.String(instrumentors.CString(buf, n)))
		if v.Type.Kind != KindCString && n > strLen {
			out = append(out, attribute.Int(v.Key+".length", int(n)))
		}
		return out
	}
	raw := vals.Vals[v.Slot]
	if isNil && v.Type.Kind != KindInterface {
		return out
	}
	switch v.Type.Kind {
	case KindInt:
		shift := 64 - 8*uint(v.Type.Size)
		return append(out, key.Int64(int64(raw<<shift)>>shift))
	case KindUint:
		if v.Type.Size < 8 {
			raw &= 1<<(8*uint(v.Type.Size)) - 1
		}
		if raw > math.MaxInt64 {
			// OTel has no unsigned 64-bit attribute.
			return append(out, key.String(fmt.Sprint(raw)))
		}
		return append(out, key.Int64(int64(raw)))
	case KindBool:
		return append(out, key.Bool(raw&0xff != 0))
	case KindFloat:
		if v.Type.Size == 4 {
			return append(out, key.Float64(float64(math.Float32frombits(uint32(raw)))))
		}
		return append(out, key.Float64(math.Float64frombits(raw)))
	case KindInterface:
		if isNil || raw == 0 {
			return append(out, key.String("nil"))
		}
		if name := t.TypeName(raw); name != "" {
			return append(out, key.String(name))
		}
		return append(out, key.String(fmt.Sprintf("%#x", raw)))
	}
	return append(out, key.String(fmt.Sprintf("%#x", raw)))
}
