package offsets

import (
	"debug/dwarf"
	"errors"
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
	moduleTables = map[string]*Table{}
	defer func() { moduleTables = map[string]*Table{}; moduleFS = moduleFiles }()

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
	if tab, err := ModuleTable("example.com/none"); tab != nil || err != nil {
		t.Errorf("a module without a table: %v, %v", tab, err)
	}
}
