package funcs_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/uranus-otel/uranus/binary"
	"github.com/uranus-otel/uranus/instrumentors/funcs"
	"github.com/uranus-otel/uranus/internal/e2e"
	"github.com/uranus-otel/uranus/internal/testapp"
)

func open(t *testing.T, path string) *binary.File {
	t.Helper()
	bin, err := binary.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bin.Close() })
	return bin
}

// plan plans fs against bin and returns each function's signature (or its
// error), and every note, keyed by function.
func plan(t *testing.T, bin *binary.File, fs ...string) (map[string]string, map[string][]string) {
	t.Helper()
	planned, errs := funcs.Plan(bin, specs(t, fs...))
	sigs, notes := map[string]string{}, map[string][]string{}
	for _, f := range planned {
		sigs[f.Name] = f.Sig + " [" + f.SigFrom + ", " + f.Conv.Name + "]"
		notes[f.Name] = f.Notes
	}
	for _, err := range errs {
		var fe *funcs.FuncError
		if !errors.As(err, &fe) {
			t.Fatalf("error %v is not a FuncError", err)
		}
		sigs[fe.Func] = "error: " + fe.Err.Error()
	}
	return sigs, notes
}

// TestPlanGo reads signatures from the DWARF of the funcs sample as three
// Go releases build it: the stack ABI, Go 1.17 (whose DWARF has no
// results), and the register ABI.
func TestPlanGo(t *testing.T) {
	fs := []string{"main.Divide", "main.(*Cart).Add", "main.main.func1", "main.inspect {p.Label, pt.Y}",
		"main.tiny", "main.Divde", "main.parseMe(a1 int, a2 bool, a3 float32) (int64, int32, string)", "main.floats"}
	for _, tt := range []struct {
		version, abi string
		results      bool
	}{{"1.16.15", "Go stack ABI", true}, {"1.17.13", "Go register ABI", false}, {"1.27.4", "Go register ABI", true}} {
		t.Run("go"+tt.version, func(t *testing.T) {
			bin := open(t, e2e.BuildTarget(t, "funcs", tt.version, testapp.Options{}))
			sigs, notes := plan(t, bin, fs...)
			res := func(s string) string {
				if tt.results {
					return s
				}
				return ""
			}
			want := map[string]string{
				"main.Divide":      "main.Divide(dividend int, divisor int)" + res(" (quotient int, remainder int)") + " [DWARF, " + tt.abi + "]",
				"main.(*Cart).Add": "main.(*Cart).Add(c *main.Cart, name string, price int64, qty uint8)" + res(" int64") + " [DWARF, " + tt.abi + "]",
				"main.main.func1":  "main.main.func1(x int)" + res(" int") + " [DWARF, " + tt.abi + "]",
				"main.inspect":     "main.inspect(b []uint8, p *main.Point, pt main.Point)" + res(" (n int, err error)") + " [DWARF, " + tt.abi + "]",
				"main.parseMe":     "main.parseMe(a1 int, a2 bool, a3 float32) (int64, int32, string) [given, " + tt.abi + "]",
				"main.floats":      "main.floats(x float64, y float32)" + res(" float64") + " [DWARF, " + tt.abi + "]",
			}
			for name, w := range want {
				if sigs[name] != w {
					t.Errorf("%s: %s\n want %s", name, sigs[name], w)
				}
			}
			if !strings.HasPrefix(sigs["main.tiny"], "error: inlined into its callers (1 call site, says DWARF)") {
				t.Errorf("main.tiny: %s", sigs["main.tiny"])
			}
			if !strings.Contains(sigs["main.Divde"], "did you mean main.Divide?") {
				t.Errorf("main.Divde: %s", sigs["main.Divde"])
			}
			all := strings.Join(notes["main.floats"], "\n")
			if inRegs := tt.abi == "Go register ABI"; inRegs != strings.Contains(all, "arg.x (float64 in X0), arg.y (float32 in X1)") {
				t.Errorf("floats notes: %q", notes["main.floats"])
			}
			if !tt.results && !strings.Contains(strings.Join(notes["main.Divide"], "\n"), "results not recorded: go1.17.13's DWARF leaves them out") {
				t.Errorf("Divide notes: %q", notes["main.Divide"])
			}
		})
	}
}

func TestPlanStripped(t *testing.T) {
	bin := open(t, e2e.BuildTarget(t, "funcs", "1.27.4", testapp.Options{Stripped: true}))
	sigs, notes := plan(t, bin, "main.Divide(dividend int, divisor int) (int, int)", "main.fact",
		"main.describe(r *net/http.Request, tag string) int {r.URL.Path}", "main.inspect(b []byte, p *main.Point, pt main.Point) (int, error)")
	if sigs["main.Divide"] != "main.Divide(dividend int, divisor int) (int, int) [given, Go register ABI]" {
		t.Errorf("Divide: %s", sigs["main.Divide"])
	}
	if sigs["main.fact"] != " [, Go register ABI]" || !strings.Contains(notes["main.fact"][0], "no signature given and the binary has no DWARF: recording timing only") {
		t.Errorf("fact: %s %q", sigs["main.fact"], notes["main.fact"])
	}
	if !strings.Contains(sigs["main.describe"], "field path r.URL.Path: uranus does not know what *http.Request points to (it needs the binary's DWARF)") {
		t.Errorf("describe: %s", sigs["main.describe"])
	}
	if !strings.Contains(sigs["main.inspect"], "parameter pt: type main.Point is not predeclared") {
		t.Errorf("inspect: %s", sigs["main.inspect"])
	}
}

// TestPlanC reads C and C++ signatures from DWARF.
func TestPlanC(t *testing.T) {
	for _, b := range []struct {
		compiler string
		flags    []string
		add      string
	}{{"gcc", []string{"-g", "-O2"}, "utest_add"}, {"g++", []string{"-x", "c++", "-g", "-O2"}, "_Z9utest_addii"}} {
		bin := open(t, buildC(t, b.compiler, b.flags...))
		sigs, _ := plan(t, bin, b.add, "utest_missing")
		if sigs[b.add] != b.add+"(a int, b int) int [DWARF, System V AMD64]" {
			t.Errorf("%s: %s", b.compiler, sigs[b.add])
		}
		if !strings.Contains(sigs["utest_missing"], "error: function utest_missing not found") {
			t.Errorf("%s: utest_missing: %s", b.compiler, sigs["utest_missing"])
		}
		sigs, _ = plan(t, bin, b.add+"(a int64, b int32) int32")
		if !strings.Contains(sigs[b.add], "does not match the binary's DWARF, (a int, b int) int: parameter 1 is int, not int64") {
			t.Errorf("%s: %s", b.compiler, sigs[b.add])
		}
	}
}
