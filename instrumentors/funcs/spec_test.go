package funcs

import (
	"strings"
	"testing"
)

func TestParseFunc(t *testing.T) {
	tests := []struct {
		in      string
		name    string
		params  string // "name type, …" with canonical types
		results string
		fields  string
		noSig   bool
	}{
		{in: "main.Divide(dividend int, divisor int) (quotient int, remainder int)", name: "main.Divide",
			params: "dividend int, divisor int", results: "quotient int, remainder int"},
		{in: "main.(*Cart).Add(c *main.Cart, name string, price int64, qty uint8) int64", name: "main.(*Cart).Add",
			params: "c *main.Cart, name string, price int64, qty uint8", results: "int64"},
		{in: "main.F(a, b int, s ...string) (n int, err error)", name: "main.F",
			params: "a int, b int, s []string", results: "n int, err error"},
		{in: "main.G(int, []byte, rune) error", name: "main.G", params: "int, []uint8, int32", results: "error"},
		{in: "main.H(m map[string][]*net/http.Request, f func(int) (string, error), ch <-chan struct{}, x interface{}, y any, a [3]uint8, g func())",
			name: "main.H", params: "m map[string][]*http.Request, f func(int) (string, error), ch <-chan struct {}, x interface {}, y interface {}, a [3]uint8, g func()"},
		{in: "main.I(c chan<- int, d chan github.com/org/repo-x/pkg.T, e pkg.List[int, string])", name: "main.I",
			params: "c chan<- int, d chan pkg.T, e pkg.List[int,string]"},
		{in: "main.J() func() error", name: "main.J", results: "func() error"},
		{in: "main.K(a int,) (int,)", name: "main.K", params: "a int", results: "int"},
		{in: "main.main.func1", name: "main.main.func1", noSig: true},
		{in: "  utest_add  ", name: "utest_add", noSig: true},
		{in: "_Z9utest_addii(a int32, b int32) int32", name: "_Z9utest_addii", params: "a int32, b int32", results: "int32"},
		{in: "main.handle {r.URL.Path, r.Method}", name: "main.handle", noSig: true, fields: "r.URL.Path, r.Method"},
		{in: "main.handle(w http.ResponseWriter, r *http.Request) {r.URL.Path r.Method}", name: "main.handle",
			params: "w http.ResponseWriter, r *http.Request", fields: "r.URL.Path, r.Method"},
		{in: "main.Map[go.shape.int](x int)", name: "main.Map[go.shape.int]", params: "x int"},
		{in: "main.(*List[...]).Push(l *main.List[int], v int)", name: "main.(*List[...]).Push", params: "l *main.List[int], v int"},
		{in: "main.E() interface { Error() string }", name: "main.E", results: "interface { Error() string }"},
		{in: "main.F()", name: "main.F"},
	}
	for _, tt := range tests {
		s, err := ParseFunc(tt.in)
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if s.Name != tt.name || s.HasSig == tt.noSig || join(s.Params) != tt.params || join(s.Results) != tt.results ||
			strings.Join(s.Fields, ", ") != tt.fields {
			t.Errorf("%q parsed as name %q sig %v params %q results %q fields %q", tt.in, s.Name, s.HasSig, join(s.Params), join(s.Results), s.Fields)
		}
		// What String spells parses back to the same.
		again, err := ParseFunc(s.String())
		if err != nil || again.String() != s.String() {
			t.Errorf("%q: String %q reparses as %q, %v", tt.in, s.String(), again.String(), err)
		}
	}
}

func join(ps []Param) string {
	var parts []string
	for _, p := range ps {
		parts = append(parts, strings.TrimSpace(p.Name+" "+p.Type.String()))
	}
	return strings.Join(parts, ", ")
}

func TestParseFuncErrors(t *testing.T) {
	tests := map[string]string{
		"":                           "no function name",
		"(x int)":                    "no function name",
		"main.F(":                    "expected a type, found the end",
		"main.F(a int":               `expected ","`,
		"main.F(a int, string)":      "parameter string has no type (names are given to all parameters or to none)",
		"main.F(a int, *T)":          "mixed named and unnamed parameters",
		"main.F(a, b) x y":           "unexpected",
		"main.F(a int, a string)":    "parameter name a used twice",
		"main.F(x [99999999999]int)": "bad array length",
		"main.F(x int) {}":           "empty {} field list",
		"main.F {r}":                 "want PARAM.FIELD",
		"main.F {r.1x}":              `"1x" is not an identifier`,
		"main.F(x map[int)":          `expected "]"`,
		"main.(*T.M(x int)":          "unbalanced",
		"main.F]":                    "unbalanced ]",
		"main.F(x *)":                "expected a type",
		"main.F(x " + strings.Repeat("*", 100) + "int)": "nested deeper",
		"main.F(\xff)":                      "UTF-8",
		"main.F(x int) int {r.X} trailing":  "unexpected",
		"main.F(x struct{ int)":             "unbalanced {",
		strings.Repeat("a", maxSpecLen+1):   "longer than",
		"main.F(<-x int)":                   `expected "chan"`,
		"main.F(x int) (a int, string int)": "",
	}
	for in, want := range tests {
		_, err := ParseFunc(in)
		if want == "" {
			if err != nil {
				t.Errorf("%q: %v", in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want it to mention %q", in, err, want)
		}
	}
}

func TestCanonicalName(t *testing.T) {
	for in, want := range map[string]string{
		"*net/http.Request":                 "*http.Request",
		"map[string]github.com/x/y-z/pkg.T": "map[string]pkg.T",
		"main.List[example.com/a/b.T,int]":  "main.List[b.T,int]",
		"byte":                              "uint8",
		"any":                               "interface {}",
		"[]*main.Point":                     "[]*main.Point",
	} {
		if got := canonicalName(in); got != want {
			t.Errorf("canonicalName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseConfig(t *testing.T) {
	yamlDoc := `
functions:
  - main.Divide(dividend int, divisor int) (quotient int, remainder int)
  - func: main.describe(r *net/http.Request, tag string) int
    fields: [r.URL.Path, r.Method]
  - func: main.fact
`
	jsonDoc := `{"functions": ["main.Divide(dividend int, divisor int) (quotient int, remainder int)",
		{"func": "main.describe(r *net/http.Request, tag string) int", "fields": ["r.URL.Path", "r.Method"]},
		{"func": "main.fact"}]}`
	for name, doc := range map[string]string{"yaml": yamlDoc, "json": jsonDoc} {
		specs, err := ParseConfig([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var got []string
		for _, s := range specs {
			got = append(got, s.String())
		}
		want := []string{
			"main.Divide(dividend int, divisor int) (quotient int, remainder int)",
			"main.describe(r *http.Request, tag string) int {r.URL.Path, r.Method}",
			"main.fact",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: parsed\n%s\nwant\n%s", name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := map[string]string{
		"":              `want a mapping with a "functions" list`,
		"functions: []": `"functions" must be a non-empty list`,
		"- main.F":      `want a mapping with a "functions" list`,
		"functions: [main.F]\nfunction: [main.G]":       "unknown key function (known: functions)",
		"functions:\n  - 42":                            "functions[0]: want a string or a mapping",
		"functions:\n  - fun: main.F":                   "functions[0]: unknown key fun (known: func, fields)",
		"functions:\n  - func: 7":                       `functions[0]: "func" must be a string`,
		"functions:\n  - func: main.F\n    fields: r.X": `"fields" must be a list`,
		"functions:\n  - func: main.F\n    fields: [3]": "field 3 is not a string",
		"functions:\n  - func: main.F\n    fields: [r]": "want PARAM.FIELD",
		"functions:\n  - main.F(":                       "functions[0]: expected a type",
		"functions: [\n":                                "YAML:",
		`{"functions": ["main.F"]} {}`:                  "JSON: more than one value",
		`{"functions": [}`:                              "JSON:",
	}
	for in, want := range tests {
		_, err := ParseConfig([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want it to mention %q", in, err, want)
		}
	}
}
