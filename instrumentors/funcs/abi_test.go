package funcs

import (
	"fmt"
	"strings"
	"testing"
)

// types lays out the predeclared types of a comma list ("int, bool").
func types(t *testing.T, list string) []*Type {
	t.Helper()
	if list == "" {
		return nil
	}
	s, err := ParseFunc("f(" + list + ")")
	if err != nil {
		t.Fatal(err)
	}
	var out []*Type
	for _, p := range s.Params {
		ty, err := exprType(p.Type)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ty)
	}
	return out
}

func locString(locs []Location) string {
	var parts []string
	for _, l := range locs {
		if l.Stack {
			parts = append(parts, fmt.Sprintf("+%d", l.Offset))
			continue
		}
		var regs []string
		for _, r := range l.Regs {
			regs = append(regs, r.Name)
		}
		parts = append(parts, strings.Join(regs, "+"))
	}
	return strings.Join(parts, " ")
}

var (
	point = &Type{Kind: KindStruct, Name: "main.Point", Size: 32, Align: 8, Fields: []Field{
		{Name: "X", Offset: 0, Type: goBuiltin("int")},
		{Name: "Y", Offset: 8, Type: goBuiltin("int")},
		{Name: "Label", Offset: 16, Type: goBuiltin("string")},
	}}
	empty = &Type{Kind: KindStruct, Name: "struct {}", Align: 1}
)

func TestAssign(t *testing.T) {
	tests := []struct {
		conv             *Convention
		params, results  string
		extra            []*Type // appended to params
		wantArgs, wantRe string
	}{
		// parseMe(a1 int, a2 bool, a3 float32) (int64, int32, string):
		// SP+8, SP+16, SP+20 under the stack ABI, as the seed says.
		{conv: GoStackABI, params: "int, bool, float32", results: "int64, int32, string",
			wantArgs: "+0 +8 +12", wantRe: "+16 +24 +32"},
		{conv: GoRegABI, params: "int, bool, float32", results: "int64, int32, string",
			wantArgs: "AX BX X0", wantRe: "AX BX CX+DI"},
		// Nine integer registers, then the stack.
		{conv: GoRegABI, params: "int8, int16, int32, int64, uint8, uint16, uint32, uint64, uintptr, bool, int", results: "int8, uint64",
			wantArgs: "AX BX CX DI SI R8 R9 R10 R11 +0 +8", wantRe: "AX BX"},
		{conv: GoStackABI, params: "int8, int16, int32, int64, uint8, uint16, uint32, uint64, uintptr, bool, int", results: "int8, uint64",
			wantArgs: "+0 +2 +4 +8 +16 +18 +20 +24 +32 +40 +48", wantRe: "+56 +64"},
		// An array of more than one element always goes on the stack; the
		// registers stay free for what follows.
		{conv: GoRegABI, params: "[4]int, complex128, int", results: "int", wantArgs: "+0 X0+X1 AX", wantRe: "AX"},
		{conv: GoStackABI, params: "[4]int, complex128, int", results: "int", wantArgs: "+0 +32 +48", wantRe: "+56"},
		// A string that no longer fits goes whole to the stack; a later
		// int still gets the last register.
		{conv: GoRegABI, params: "int, int, int, int, int, int, int, int, string, int", wantArgs: "AX BX CX DI SI R8 R9 R10 +0 R11"},
		{conv: GoRegABI, params: "[]byte, [1]string, [0]int, error", wantArgs: "AX+BX+CX DI+SI +0 R8+R9"}, // [0]int: zero size, on the (empty) stack sequence,
		// Fifteen float registers.
		{conv: GoRegABI, params: strings.Repeat("float64, ", 15) + "float32, int",
			wantArgs: "X0 X1 X2 X3 X4 X5 X6 X7 X8 X9 X10 X11 X12 X13 X14 +0 AX"},
		// Structs by value: field by field.
		{conv: GoRegABI, params: "int", extra: []*Type{point, empty}, results: "bool", wantArgs: "AX BX+CX+DI+SI +0", wantRe: "AX"},
		{conv: GoRegABI, params: "int, int, int, int, int, int", extra: []*Type{point}, wantArgs: "AX BX CX DI SI R8 +0"},
		{conv: GoStackABI, params: "bool", extra: []*Type{point}, results: "bool", wantArgs: "+0 +8", wantRe: "+40"},
		// System V: six integer registers, then 8-byte stack slots.
		{conv: SysV, params: "int32, int64, uint8, *int, int16, int32, int32, int64", results: "int32",
			wantArgs: "DI SI DX CX R8 R9 +0 +8", wantRe: "AX"},
		{conv: SysV, params: "float64, int32, float32", results: "float64", wantArgs: "XMM0 DI XMM1", wantRe: "XMM0"},
	}
	for _, tt := range tests {
		params := append(types(t, tt.params), tt.extra...)
		args, res, err := tt.conv.Assign(params, types(t, tt.results))
		if err != nil {
			t.Errorf("%s (%s): %v", tt.conv.Name, tt.params, err)
			continue
		}
		if got := locString(args); got != tt.wantArgs {
			t.Errorf("%s (%s): arguments at %q, want %q", tt.conv.Name, tt.params, got, tt.wantArgs)
		}
		if got := locString(res); got != tt.wantRe {
			t.Errorf("%s (%s) %s: results at %q, want %q", tt.conv.Name, tt.params, tt.results, got, tt.wantRe)
		}
	}
}

func TestAssignSysVRejects(t *testing.T) {
	if _, _, err := SysV.Assign([]*Type{point}, nil); err == nil || !strings.Contains(err.Error(), "main.Point by value") {
		t.Errorf("struct by value: %v", err)
	}
	if _, _, err := SysV.Assign(nil, types(t, "int, int")); err == nil || !strings.Contains(err.Error(), "one result") {
		t.Errorf("two results: %v", err)
	}
}

func TestSubLocation(t *testing.T) {
	args, _, _ := GoRegABI.Assign([]*Type{goBuiltin("int"), point}, nil)
	for _, tt := range []struct {
		field string
		want  string
	}{{"X", "BX"}, {"Y", "CX"}, {"Label", "DI+SI"}} {
		f, _ := field(point, tt.field)
		loc, err := subLocation(point, args[1], f.Offset, f.Type)
		if err != nil || locString([]Location{loc}) != tt.want {
			t.Errorf("pt.%s in %v, %v; want %s", tt.field, locString([]Location{loc}), err, tt.want)
		}
	}
	stack := Location{Stack: true, Offset: 16}
	loc, _ := subLocation(point, stack, 8, goBuiltin("int"))
	if locString([]Location{loc}) != "+24" {
		t.Errorf("pt.Y on the stack at %s, want +24", locString([]Location{loc}))
	}
}

// TestCompile checks what the BPF program is told to read for a field path
// through pointers: the first pointer from its register, one hop per
// further pointer, the value's offset last.
func TestCompile(t *testing.T) {
	url := &Type{Kind: KindStruct, Name: "url.URL", Size: 144, Align: 8, Fields: []Field{
		{Name: "Scheme", Offset: 0, Type: goBuiltin("string")},
		{Name: "Path", Offset: 56, Type: goBuiltin("string")},
	}}
	urlPtr := &Type{Kind: KindPointer, Name: "*url.URL", Size: 8, Align: 8, target: func() (*Type, error) { return url, nil }}
	req := &Type{Kind: KindStruct, Name: "http.Request", Size: 256, Align: 8, Fields: []Field{
		{Name: "Method", Offset: 0, Type: goBuiltin("string")},
		{Name: "URL", Offset: 16, Type: urlPtr},
		{Name: "Proto", Offset: 24, Type: goBuiltin("string")},
	}}
	reqPtr := &Type{Kind: KindPointer, Name: "*http.Request", Size: 8, Align: 8, target: func() (*Type, error) { return req, nil }}
	pf := &Func{Name: "main.describe", Conv: GoRegABI}
	err := pf.compile([]param{{"w", goBuiltin("error"), false}, {"r", reqPtr, false}, {"0", goBuiltin("int"), true}},
		[]string{"r.URL.Path", "r.Method", "r.URL"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, v := range pf.Values {
		f := pf.spec.Fetch[i]
		got = append(got, fmt.Sprintf("%s kind=%d loc=%d reg=%d deref=%d hops=%v final=%d slot=%d ret=%d",
			v.Key, f.Kind, f.Loc, f.Reg, f.Deref, f.Hops[:f.Nhops], f.FinalOff, f.Slot, f.AtReturn))
	}
	want := []string{
		"arg.w kind=1 loc=1 reg=0 deref=1 hops=[] final=8 slot=0 ret=0", // itab in AX; its type at +8
		"arg.r kind=1 loc=1 reg=2 deref=0 hops=[] final=0 slot=1 ret=0", // CX
		"result.0 kind=1 loc=1 reg=0 deref=0 hops=[] final=0 slot=2 ret=1",
		"arg.r.URL.Path kind=2 loc=1 reg=2 deref=1 hops=[16] final=56 slot=0 ret=0",
		"arg.r.Method kind=2 loc=1 reg=2 deref=1 hops=[] final=0 slot=1 ret=0",
		"arg.r.URL kind=1 loc=1 reg=2 deref=1 hops=[] final=16 slot=3 ret=0",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("compiled\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if pf.spec.Nfetch != uint32(len(want)) {
		t.Errorf("nfetch %d", pf.spec.Nfetch)
	}

	for path, msg := range map[string]string{
		"r.Body":         "http.Request has no field Body (it has Method, URL, Proto)",
		"r.Method.X":     "string has no field X",
		"w.X":            "arg.w (error) has no field X",
		"q.X":            "q names no parameter or result (they are w, r, 0)",
		"r.URL.Path.Len": "string has no field Len",
	} {
		pf := &Func{Name: "main.describe", Conv: GoRegABI}
		err := pf.compile([]param{{"w", goBuiltin("error"), false}, {"r", reqPtr, false}, {"0", goBuiltin("int"), true}}, []string{path})
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: %v, want %q", path, err, msg)
		}
	}
}

// TestLimits: values past what a span holds are named in a note.
func TestLimits(t *testing.T) {
	var params []param
	for i := 0; i < 20; i++ {
		params = append(params, param{fmt.Sprint("s", i), goBuiltin("string"), false})
	}
	pf := &Func{Name: "main.many", Conv: GoStackABI}
	if err := pf.compile(params, nil); err != nil {
		t.Fatal(err)
	}
	if len(pf.Values) != maxStrs || len(pf.Notes) != 20-maxStrs || !strings.Contains(pf.Notes[0], "arg.s4 not recorded: a span records at most 16 values, 4 of them strings") {
		t.Errorf("%d values, notes %q", len(pf.Values), pf.Notes)
	}
}

func TestIsMethod(t *testing.T) {
	for name, want := range map[string]bool{
		"main.(*Cart).Add": true, "main.Cart.Total": true, "net/http.Header.Get": true, "net/http.(*Client).Do": true,
		"main.Divide": false, "main.main.func1": false, "main.F.gowrap1": false, "main.init.0": false, "github.com/a/b.F": false,
	} {
		if isMethod(name) != want {
			t.Errorf("isMethod(%q) = %v", name, !want)
		}
	}
}
