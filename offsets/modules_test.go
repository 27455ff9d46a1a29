package offsets

import (
	"debug/dwarf"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	version "github.com/hashicorp/go-version"
)

// TestResolveModule: a module's members come from its table for the module
// version the binary links (not Go's), from the target's DWARF for a version
// the table does not cover, and an error names the module and the command
// when neither can answer.
func TestResolveModule(t *testing.T) {
	const mod = "example.com/lib"
	table := `{"about": "test", "module": "example.com/lib", "go": "1.26.8", "goarch": "amd64",
	 "checked": ["1.2.0", "1.2.5", "1.3.0", "1.3.1"],
	 "covered": [">= 1.2.0, <= 1.2.5", ">= 1.3.0, <= 1.3.1"],
	 "structs": {"example.com/lib.Conn": {"state": [
	   {"versions": ">= 1.2.0, <= 1.2.5", "offset": 16},
	   {"versions": ">= 1.3.0, <= 1.3.1", "offset": 24}]}}}`
	moduleFS = fstest.MapFS{"modules/example.com_lib.json": {Data: []byte(table)}}
	moduleTables = map[string][]*Table{}
	defer func() { moduleTables = map[string][]*Table{}; moduleFS = moduleFiles }()

	state := Field{Struct: "example.com/lib.Conn", Member: "state", Module: mod}
	go126 := version.Must(version.NewVersion("1.26.2"))
	noDWARF := func() (*dwarf.Data, error) { return nil, errors.New("no DWARF sections") }
	for _, c := range []struct {
		version string
		want    uint64
	}{{"v1.2.3", 16}, {"v1.3.1", 24}} {
		got, from, err := ResolveModule(mod, c.version, go126, noDWARF, []Field{state})
		if err != nil || got[state] != (Offset{c.want, true}) || from != mod+" offsets table" {
			t.Errorf("%s: %v from %q, %v; want %d from the table", c.version, got, from, err, c.want)
		}
	}
	for _, v := range []string{"v1.4.0", "v1.2.6", "v0.0.0-20240101000000-abcdef123456", "(devel)"} {
		_, _, err := ResolveModule(mod, v, go126, noDWARF, []Field{state})
		if err == nil || !strings.Contains(err.Error(), "no offsets for example.com/lib "+v) || !strings.Contains(err.Error(), "-module example.com/lib") {
			t.Errorf("%s: %v; want an error naming the module, the version and the command", v, err)
		}
	}
	stale := Field{Struct: "example.com/lib.Conn", Member: "other", Module: mod}
	// A target of another Go series: the table does not answer for it.
	if _, _, err := ResolveModule(mod, "v1.2.3", version.Must(version.NewVersion("1.27.1")), noDWARF, []Field{state}); err == nil ||
		!strings.Contains(err.Error(), "checked with Go 1.26.8 builds only, and this target is Go 1.27.1") {
		t.Errorf("a Go 1.27 target: %v; want the table refused for it", err)
	}
	if _, _, err := ResolveModule(mod, "v1.2.3", go126, noDWARF, []Field{stale}); !errors.Is(err, ErrFieldNotInTable) {
		t.Errorf("a field the table lacks: %v, want ErrFieldNotInTable", err)
	}
	if tab, err := ModuleTable("example.com/none", go126); tab != nil || err != nil {
		t.Errorf("a module without a table: %v, %v", tab, err)
	}
}

// moduleTableJSON is a one-field table of example.com/lib built with Go
// goVersion, giving Conn.state offset off for 1.2.0–1.2.5.
func moduleTableJSON(module, goVersion string, off int) string {
	return fmt.Sprintf(`{"about": "test", "module": %q, "go": %q, "goarch": "amd64",
	 "checked": ["1.2.0", "1.2.5"], "covered": [">= 1.2.0, <= 1.2.5"],
	 "structs": {"example.com/lib.Conn": {"state": [{"versions": ">= 1.2.0, <= 1.2.5", "offset": %d}]}}}`, module, goVersion, off)
}

// TestModuleTablesPerGoSeries: a module may have one table per Go minor
// series (<name>.go1.N.json), beside the single-file form (<name>.json, for
// the series its "go" names); a target gets the table of its own series,
// and one of another series falls back to its DWARF.
func TestModuleTablesPerGoSeries(t *testing.T) {
	const mod = "example.com/lib"
	defer func() { moduleTables = map[string][]*Table{}; moduleFS = moduleFiles }()
	moduleFS = fstest.MapFS{
		"modules/example.com_lib.json":           {Data: []byte(moduleTableJSON(mod, "1.25.3", 8))},
		"modules/example.com_lib.go1.26.json":    {Data: []byte(moduleTableJSON(mod, "1.26.8", 16))},
		"modules/example.com_lib.go1.27.json":    {Data: []byte(moduleTableJSON(mod, "1.27.4", 24))},
		"modules/example.com_lib_x.go1.27.json":  {Data: []byte(moduleTableJSON("example.com/lib/x", "1.27.4", 1))},
		"modules/example.com_library.go1.9.json": {Data: []byte("not read")},
	}
	moduleTables = map[string][]*Table{}
	ts, err := ModuleTables(mod)
	if err != nil || len(ts) != 3 {
		t.Fatalf("ModuleTables: %d tables, %v; want 3", len(ts), err)
	}
	for i, want := range []string{"1.25.3", "1.26.8", "1.27.4"} {
		if ts[i].Go().String() != want || ts[i].Module() != mod {
			t.Errorf("table %d: Go %s of %s, want Go %s", i, ts[i].Go(), ts[i].Module(), want)
		}
	}
	state := Field{Struct: "example.com/lib.Conn", Member: "state", Module: mod}
	noDWARF := func() (*dwarf.Data, error) { return nil, errors.New("no DWARF sections") }
	for goV, want := range map[string]uint64{"1.25.0": 8, "1.26.2": 16, "1.27.4": 24, "1.27.0": 24} {
		got, from, err := ResolveModule(mod, "v1.2.3", version.Must(version.NewVersion(goV)), noDWARF, []Field{state})
		if err != nil || got[state] != (Offset{want, true}) || from != mod+" offsets table" {
			t.Errorf("a Go %s target: %v from %q, %v; want %d from the table", goV, got, from, err, want)
		}
		if tab, err := ModuleTable(mod, version.Must(version.NewVersion(goV))); err != nil || tab == nil || minor(tab.Go()) != minor(version.Must(version.NewVersion(goV))) {
			t.Errorf("ModuleTable for Go %s: %v, %v", goV, tab, err)
		}
	}
	_, _, err = ResolveModule(mod, "v1.2.3", version.Must(version.NewVersion("1.24.1")), noDWARF, []Field{state})
	if err == nil || !strings.Contains(err.Error(), "its offsets tables were checked with Go 1.25.3, 1.26.8, 1.27.4 builds only, and this target is Go 1.24.1") ||
		!strings.Contains(err.Error(), "-module example.com/lib -go go1.24.1`") {
		t.Errorf("a Go 1.24 target: %v; want every table refused for it", err)
	}
	_, _, err = ResolveModule(mod, "v1.3.0", version.Must(version.NewVersion("1.27.1")), noDWARF, []Field{state})
	if err == nil || !strings.Contains(err.Error(), "its offsets table for Go 1.27.4 builds does not cover that version") {
		t.Errorf("v1.3.0: %v; want the Go 1.27 table not covering it", err)
	}

	for name, files := range map[string]fstest.MapFS{
		"a file named for another series": {"modules/example.com_lib.go1.26.json": {Data: []byte(moduleTableJSON(mod, "1.27.4", 8))}},
		"two tables of one series": {
			"modules/example.com_lib.json":        {Data: []byte(moduleTableJSON(mod, "1.26.1", 8))},
			"modules/example.com_lib.go1.26.json": {Data: []byte(moduleTableJSON(mod, "1.26.8", 8))},
		},
		"another module's table": {"modules/example.com_lib.go1.26.json": {Data: []byte(moduleTableJSON("example.com/other", "1.26.8", 8))}},
	} {
		moduleFS, moduleTables = files, map[string][]*Table{}
		if ts, err := ModuleTables(mod); err == nil || !strings.Contains(err.Error(), "-module "+mod) {
			t.Errorf("%s: %d tables, %v; want an error naming the command", name, len(ts), err)
		}
	}
}

// TestModuleTablesEmbedded: every embedded module table parses, under a
// name ModuleTables reads.
func TestModuleTablesEmbedded(t *testing.T) {
	entries, err := fs.ReadDir(moduleFiles, "modules")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		data, err := fs.ReadFile(moduleFiles, "modules/"+e.Name())
		if err != nil {
			t.Fatal(err)
		}
		tab, err := Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		ts, err := ModuleTables(tab.Module())
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		found := false
		for _, x := range ts {
			found = found || x.Go().Equal(tab.Go())
		}
		if !found {
			t.Errorf("%s: ModuleTables(%q) does not read it", e.Name(), tab.Module())
		}
		n++
	}
	if n == 0 {
		t.Error("no embedded module table")
	}
}
