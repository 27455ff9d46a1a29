package offsets

import (
	"debug/dwarf"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"

	version "github.com/hashicorp/go-version"
)

// The tables of modules outside the standard library (see modules/README.md).
//
//go:embed modules
var moduleFiles embed.FS

// moduleFS is where ModuleTable reads: moduleFiles, or a test's tables.
var moduleFS fs.FS = moduleFiles

var (
	moduleTablesMu sync.Mutex
	moduleTables   = map[string]*Table{}
)

// moduleFile is where the table of module lives in modules/.
func moduleFile(module string) string {
	return "modules/" + strings.ReplaceAll(module, "/", "_") + ".json"
}

// ModuleTable returns the built-in offsets table of module, or nil when
// uranus has none (its members then come from the target's DWARF only).
func ModuleTable(module string) (*Table, error) {
	moduleTablesMu.Lock()
	defer moduleTablesMu.Unlock()
	if t, ok := moduleTables[module]; ok {
		return t, nil
	}
	data, err := fs.ReadFile(moduleFS, moduleFile(module))
	if errors.Is(err, fs.ErrNotExist) {
		moduleTables[module] = nil
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	t, err := Parse(data)
	if err == nil && t.module != module {
		err = fmt.Errorf("it holds the layouts of %q", t.module)
	}
	if err != nil {
		return nil, fmt.Errorf("offsets/%s: %w (regenerate it with `%s -module %s`)", moduleFile(module), err, Regenerate, module)
	}
	moduleTables[module] = t
	return t, nil
}

// ModuleVersion parses a module version as build info records it
// ("v1.62.1") for the module tables, which write it without the "v". A
// pseudo-version or pre-release parses too, and no table covers it.
func ModuleVersion(s string) (*version.Version, error) {
	if !strings.HasPrefix(s, "v") {
		return nil, fmt.Errorf("module version %q does not start with v", s)
	}
	return version.NewVersion(strings.TrimPrefix(s, "v"))
}

// ResolveModule returns the offsets of fields, all defined by module, for
// the module version modVersion ("v1.62.1") in a target built with Go
// goVersion, and where they came from: the module's table, or the target's
// DWARF when no table covers that version (a table answers only for
// versions between two checked releases that agree, and for targets of the
// Go series its samples were built with). As in Resolve, a struct the DWARF
// lacks makes its members absent, and a field a table has no rows for is an
// error: the table is stale.
func ResolveModule(module, modVersion string, goVersion *version.Version, loadDWARF func() (*dwarf.Data, error), fields []Field) (map[Field]Offset, string, error) {
	why := "uranus has no offsets table for it"
	t, err := ModuleTable(module)
	if err != nil {
		return nil, "", err
	}
	v, verr := ModuleVersion(modVersion)
	switch {
	case verr != nil:
		why = verr.Error()
	case t != nil && !t.BuiltForGo(goVersion):
		why = fmt.Sprintf("its offsets table was checked with Go %s builds only, and this target is Go %s", t.builtBy, goVersion)
	case t != nil:
		got, err := t.Lookup(v, fields)
		if err == nil {
			return got, module + " offsets table", nil
		}
		if !errors.Is(err, ErrVersionNotCovered) {
			return nil, "", err
		}
		why = "its offsets table does not cover that version"
	}
	d, err := loadDWARF()
	if err != nil {
		return nil, "", fmt.Errorf("no offsets for %s %s: %s, and the binary has no DWARF to read them from (%v); generate them with `%s -module %s`",
			module, modVersion, why, err, Regenerate, module)
	}
	got, err := targetDWARF(d, fields)
	if err != nil {
		return nil, "", fmt.Errorf("no offsets for %s %s: %s, and reading the target's DWARF failed: %w", module, modVersion, why, err)
	}
	return got, "target DWARF", nil
}
