package offsets

import (
	"debug/dwarf"
	"errors"
	"fmt"
	"strings"
	"testing"

	version "github.com/hashicorp/go-version"
)

// testTable has two series: go1.16, where the proxy only had .3, .4 and .15
// and hmap changed between .4 and .15, and go1.22, where Pattern appeared
// between .6 and .7.
const testTable = `{
  "about": "test",
  "goarch": "amd64",
  "checked": ["1.16.3", "1.16.4", "1.16.15", "1.22.0", "1.22.6", "1.22.7", "1.22.12"],
  "covered": [">= 1.16.3, <= 1.16.4", ">= 1.16.15, <= 1.16.15", ">= 1.22.0, <= 1.22.6", ">= 1.22.7, <= 1.22.12"],
  "structs": {
    "net/http.Request": {
      "Method": [{"versions": ">= 1.16.3, <= 1.22.12", "offset": 0}],
      "Pattern": [
        {"versions": ">= 1.16.3, <= 1.22.6", "absent": "member"},
        {"versions": ">= 1.22.7, <= 1.22.12", "offset": 248}
      ]
    },
    "runtime.hmap": {
      "count": [
        {"versions": ">= 1.16.3, <= 1.16.4", "offset": 0},
        {"versions": ">= 1.16.15, <= 1.16.15", "offset": 8},
        {"versions": ">= 1.22.0, <= 1.22.12", "absent": "struct"}
      ]
    }
  }
}`

var (
	method  = Field{Struct: "net/http.Request", Member: "Method"}
	pattern = Field{Struct: "net/http.Request", Member: "Pattern"}
	count   = Field{Struct: "runtime.hmap", Member: "count"}
)

func mustParse(t testing.TB, s string) *Table {
	t.Helper()
	tab, err := Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func TestLookupVersions(t *testing.T) {
	tab := mustParse(t, testTable)
	fields := []Field{method, pattern, count}
	present := func(v uint64) Offset { return Offset{Value: v, Present: true} }
	for _, tc := range []struct {
		v    string
		want map[Field]Offset // nil: not covered
		why  string
	}{
		{v: "1.16.3", want: map[Field]Offset{method: present(0), pattern: {}, count: present(0)}},
		{v: "1.16.4", want: map[Field]Offset{method: present(0), pattern: {}, count: present(0)}},
		{v: "1.16.5", why: "between 1.16.4 and 1.16.15"},
		{v: "1.16.14", why: "between 1.16.4 and 1.16.15"},
		{v: "1.16.15", want: map[Field]Offset{method: present(0), pattern: {}, count: present(8)}},
		{v: "1.16.16", why: "newest checked patch of its series is 1.16.15"},
		{v: "1.16.2", why: "oldest checked patch of its series is 1.16.3"},
		{v: "1.16", why: "oldest checked"},
		{v: "1.17.1", why: "no go1.17 toolchain"},
		{v: "1.22", want: map[Field]Offset{method: present(0), pattern: {}, count: {}}},
		{v: "1.22.3", want: map[Field]Offset{method: present(0), pattern: {}, count: {}}},
		{v: "1.22.6", want: map[Field]Offset{method: present(0), pattern: {}, count: {}}},
		{v: "1.22.7", want: map[Field]Offset{method: present(0), pattern: present(248), count: {}}},
		{v: "1.22.12", want: map[Field]Offset{method: present(0), pattern: present(248), count: {}}},
		{v: "1.22.13", why: "newest checked"},
		{v: "1.23.0", why: "no go1.23 toolchain"},
		{v: "1.22rc1", why: "pre-release"},
		{v: "1.22.7-rc1", why: "pre-release"},
		{v: "1.22.7-beta1", why: "pre-release"},
		{v: "1.22.7.1", why: "not a Go release"},
	} {
		v := version.Must(version.NewVersion(tc.v))
		got, err := tab.Lookup(v, fields)
		if tc.want == nil {
			if !errors.Is(err, ErrVersionNotCovered) {
				t.Errorf("Lookup(%s) = %v, %v; want ErrVersionNotCovered", tc.v, got, err)
				continue
			}
			for _, s := range []string{v.String(), Regenerate, tc.why} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Lookup(%s) error %q does not mention %q", tc.v, err, s)
				}
			}
			if tab.Covers(v) {
				t.Errorf("Covers(%s) = true", tc.v)
			}
			continue
		}
		if err != nil {
			t.Errorf("Lookup(%s): %v", tc.v, err)
			continue
		}
		if !tab.Covers(v) {
			t.Errorf("Covers(%s) = false", tc.v)
		}
		for f, w := range tc.want {
			if got[f] != w {
				t.Errorf("Lookup(%s)[%s] = %+v, want %+v", tc.v, f, got[f], w)
			}
		}
		if len(got) != len(fields) {
			t.Errorf("Lookup(%s) returned %d fields, want %d", tc.v, len(got), len(fields))
		}
	}
}

func TestLookupErrors(t *testing.T) {
	tab := mustParse(t, testTable)
	v := version.Must(version.NewVersion("1.22.7"))
	uncovered := version.Must(version.NewVersion("1.30.0"))

	for _, f := range []Field{{Struct: "net/http.Request", Member: "Nope"}, {Struct: "net/http.Nope", Member: "Method"}} {
		for _, ver := range []*version.Version{v, uncovered} {
			_, err := tab.Lookup(ver, []Field{method, f})
			if !errors.Is(err, ErrFieldNotInTable) || errors.Is(err, ErrVersionNotCovered) {
				t.Errorf("Lookup(%s, %s) = %v; want only ErrFieldNotInTable", ver, f, err)
			} else if !strings.Contains(err.Error(), f.String()) || !strings.Contains(err.Error(), Regenerate) {
				t.Errorf("Lookup(%s, %s) error %q names neither the field nor the fix", ver, f, err)
			}
		}
	}
	if _, err := tab.Lookup(nil, []Field{method}); !errors.Is(err, ErrVersionNotCovered) {
		t.Errorf("Lookup(nil) = %v; want ErrVersionNotCovered", err)
	}
	var nilTable *Table
	if _, err := nilTable.Lookup(v, []Field{method}); err == nil {
		t.Error("Lookup on a nil table succeeded")
	}
	if got, err := tab.Lookup(v, nil); err != nil || len(got) != 0 {
		t.Errorf("Lookup with no fields = %v, %v", got, err)
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ name, old, new string }{
		{"unknown key", `"goarch"`, `"arch": "x", "goarch"`},
		{"trailing data", `"test",`, `"test",`}, // replaced below
		{"checked unsorted", `"1.16.3", "1.16.4"`, `"1.16.4", "1.16.3"`},
		{"checked pre-release", `"1.22.12"]`, `"1.22.12", "1.23rc1"]`},
		{"checked not a release", `"1.22.12"]`, `"1.22.12", "1.23"]`},
		{"covered endpoint unchecked", `">= 1.22.0, <= 1.22.6"`, `">= 1.22.0, <= 1.22.5"`},
		{"covered spans series", `">= 1.16.15, <= 1.16.15", ">= 1.22.0, <= 1.22.6"`, `">= 1.16.15, <= 1.22.6"`},
		{"covered overlap", `">= 1.16.15, <= 1.16.15"`, `">= 1.16.4, <= 1.16.15"`},
		{"covered not a range", `">= 1.16.15, <= 1.16.15"`, `"~> 1.16.15"`},
		{"covered reversed", `">= 1.16.15, <= 1.16.15"`, `">= 1.16.15, <= 1.16.3"`},
		{"checked version uncovered", `"1.22.12"]`, `"1.22.12", "1.24.0"]`},
		{"row not a range", `">= 1.16.3, <= 1.22.12", "offset": 0`, `"= 1.16.3", "offset": 0`},
		{"row both", `"offset": 248`, `"offset": 248, "absent": "member"`},
		{"row neither", `"offset": 248`, `"absent": ""`},
		{"row bad absent", `"offset": 248`, `"absent": "maybe"`},
		{"row missing for a covered range", `">= 1.16.15, <= 1.16.15", "offset": 8`, `">= 1.16.14, <= 1.16.14", "offset": 8`},
		{"covered range split across rows", `">= 1.22.7, <= 1.22.12", "offset": 248`, `">= 1.22.7, <= 1.22.8", "offset": 248}, {"versions": ">= 1.22.9, <= 1.22.12", "offset": 248`},
		{"rows overlap", `">= 1.16.15, <= 1.16.15", "offset": 8`, `">= 1.16.4, <= 1.16.15", "offset": 8`},
		{"no rows", `"Method": [{"versions": ">= 1.16.3, <= 1.22.12", "offset": 0}]`, `"Method": []`},
		{"empty member", `"Method":`, `"":`},
		{"negative offset", `"offset": 248`, `"offset": -1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(testTable, tc.old) {
				t.Fatalf("test table has no %q", tc.old)
			}
			s := strings.Replace(testTable, tc.old, tc.new, 1)
			if tc.name == "trailing data" {
				s += "{}"
			}
			if _, err := Parse([]byte(s)); err == nil {
				t.Errorf("Parse accepted a table with %s", tc.name)
			}
		})
	}
}

func TestEmbedded(t *testing.T) {
	tab, err := Embedded()
	if err != nil {
		t.Fatal(err)
	}
	fields := tab.Fields()
	if len(fields) == 0 {
		t.Fatal("the embedded table has no fields")
	}
	if _, err := tab.Lookup(tab.Checked()[0], Runtime); err != nil {
		t.Errorf("the table lacks the runtime fields: %v", err)
	}
	// Every supported series has its newest patch covered, and every checked
	// version answers for every field.
	newest := make(map[int]*version.Version)
	for _, v := range tab.Checked() {
		newest[v.Segments()[1]] = v
		if _, err := tab.Lookup(v, fields); err != nil {
			t.Errorf("checked version %s: %v", v, err)
		}
	}
	for m := 13; m <= 27; m++ {
		v := newest[m]
		if v == nil {
			t.Errorf("no go1.%d version was checked", m)
			continue
		}
		next := version.Must(version.NewVersion(fmt.Sprintf("1.%d.%d", m, v.Segments()[2]+1)))
		if tab.Covers(next) {
			t.Errorf("the table covers %s, newer than the newest checked go1.%d (%s)", next, m, v)
		}
		rc := version.Must(version.NewVersion(fmt.Sprintf("1.%drc1", m)))
		if tab.Covers(rc) {
			t.Errorf("the table covers %s", rc)
		}
	}
	if tab.GOARCH() != "amd64" {
		t.Errorf("GOARCH = %q", tab.GOARCH())
	}
	if again, _ := Embedded(); again != tab {
		t.Error("Embedded parsed the table twice")
	}
}

func FuzzTableJSON(f *testing.F) {
	f.Add([]byte(testTable))
	f.Add(tableJSON)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"checked": ["1.2.3"], "covered": [">= 1.2.3, <= 1.2.3"], "structs": {"a": {"b": [{"versions": ">= 1.0.0, <= 2.0.0", "offset": 1}]}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tab, err := Parse(data)
		if err != nil {
			return
		}
		// A table that parses answers for every version it checked, for
		// every field it lists.
		fields := tab.Fields()
		for _, v := range tab.Checked() {
			if _, err := tab.Lookup(v, fields); err != nil {
				t.Fatalf("Parse accepted a table that fails Lookup(%s): %v", v, err)
			}
		}
		tab.Lookup(version.Must(version.NewVersion("1.22.7")), fields)
	})
}

func TestResolve(t *testing.T) {
	goid := Field{Struct: "runtime.g", Member: "goid"}
	tab := mustParse(t, `{"checked": ["1.22.0", "1.22.12"], "covered": [">= 1.22.0, <= 1.22.12"],
		"structs": {"runtime.g": {"goid": [{"versions": ">= 1.22.0, <= 1.22.12", "offset": 160}]}}}`)
	d, err := dwarf.New(testAbbrev, nil, nil, syntheticInfo(), nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	covered := version.Must(version.NewVersion("1.22.5"))
	uncovered := version.Must(version.NewVersion("1.23.0"))

	withDWARF := func() (*dwarf.Data, error) { return d, nil }
	noDWARF := func() (*dwarf.Data, error) { return nil, errors.New("no DWARF sections") }
	failIfLoaded := func() (*dwarf.Data, error) {
		t.Error("DWARF loaded although the table covers the version")
		return d, nil
	}

	got, src, err := Resolve(tab, covered, failIfLoaded, false, []Field{goid})
	if err != nil || src != "offsets table" || got[goid] != (Offset{160, true}) {
		t.Errorf("Resolve(covered) = %v, %q, %v", got, src, err)
	}
	got, src, err = Resolve(tab, uncovered, withDWARF, false, []Field{goid})
	if err != nil || src != "target DWARF" || got[goid] != (Offset{152, true}) {
		t.Errorf("Resolve(uncovered, DWARF) = %v, %q, %v", got, src, err)
	}
	// A GOEXPERIMENT build reads DWARF even for a covered version.
	got, src, err = Resolve(tab, covered, withDWARF, true, []Field{goid})
	if err != nil || src != "target DWARF" || got[goid] != (Offset{152, true}) {
		t.Errorf("Resolve(covered, preferDWARF) = %v, %q, %v", got, src, err)
	}
	if _, _, err := Resolve(tab, uncovered, noDWARF, false, []Field{goid}); err == nil || !strings.Contains(err.Error(), Regenerate) {
		t.Errorf("Resolve(uncovered, no DWARF) = %v", err)
	}
	// A field missing from the table is not papered over with DWARF.
	if _, _, err := Resolve(tab, uncovered, withDWARF, false, []Field{goid, {Struct: "runtime.g", Member: "m"}}); !errors.Is(err, ErrFieldNotInTable) {
		t.Errorf("Resolve(field not in table) = %v", err)
	}
	// A struct missing from the target's DWARF makes its members absent,
	// and the fields that were found still resolve.
	tab2 := mustParse(t, testTable)
	got, src, err = Resolve(tab2, uncovered, withDWARF, false, []Field{method})
	if err != nil || src != "target DWARF" || got[method].Present {
		t.Errorf("Resolve(struct not in DWARF) = %v, %q, %v; want %s absent", got, src, err, method)
	}
}
