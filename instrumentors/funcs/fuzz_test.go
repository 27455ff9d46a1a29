package funcs

import (
	"testing"
)

// FuzzParseFunc: any --func value parses or fails cleanly, and what parses
// is spelled back (Spec.String) in a form that parses to the same.
func FuzzParseFunc(f *testing.F) {
	for _, s := range []string{
		"main.Divide(dividend int, divisor int) (quotient int, remainder int)",
		"main.(*Cart).Add(c *main.Cart, name string, price int64, qty uint8) int64",
		"main.H(m map[string][]*net/http.Request, f func(int) (string, error), ch <-chan struct{}, x interface{}) {m.X}",
		"main.Map[go.shape.int](x ...int) (a, b int)",
		"_Z9utest_addii(a int32, b int32) int32",
		"main.F(x [3]chan<- pkg.List[int, string]) func() error",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := ParseFunc(s)
		if err != nil {
			return
		}
		again, err := ParseFunc(spec.String())
		if err != nil {
			t.Fatalf("%q parsed, but its spelling %q does not: %v", s, spec.String(), err)
		}
		if again.String() != spec.String() {
			t.Fatalf("%q: %q reparses as %q", s, spec.String(), again.String())
		}
	})
}

// FuzzParseConfig: any --config file parses or fails cleanly.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("functions:\n  - main.Divide(a int, b int) (int, int)\n  - func: main.h\n    fields: [r.URL.Path]\n"))
	f.Add([]byte(`{"functions": ["main.F", {"func": "main.G(r *http.Request)", "fields": ["r.Method"]}]}`))
	f.Add([]byte("functions: &a [*a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		specs, err := ParseConfig(data)
		if err == nil && len(specs) == 0 {
			t.Fatal("no error and no functions")
		}
	})
}
