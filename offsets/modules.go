package offsets

import (
	"debug/dwarf"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
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
	moduleTables   = map[string][]*Table{}
)

// moduleFileName is how the tables of module are named in modules/: the
// module path with / as _.
func moduleFileName(module string) string {
	return strings.ReplaceAll(module, "/", "_")
}

// moduleSeriesFile matches the name of a module's table for one Go minor
// series, <module file name>.go1.N.json, and captures the file name and N.
var moduleSeriesFile = regexp.MustCompile(`^(.+)\.go1\.(\d+)\.json$`)

// moduleTableFiles lists the tables of module in modules/: the single-file
// form <name>.json, and one <name>.go1.N.json per Go minor series.
func moduleTableFiles(module string) ([]string, error) {
	name := moduleFileName(module)
	entries, err := fs.ReadDir(moduleFS, "modules")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		n := e.Name()
		if m := moduleSeriesFile.FindStringSubmatch(n); n == name+".json" || (m != nil && m[1] == name) {
			files = append(files, "modules/"+n)
		}
	}
	sort.Strings(files)
	return files, nil
}

// ModuleTables returns the built-in offsets tables of module, one per Go
// minor series its samples were built with, oldest series first; none when
// uranus has no table for it (its members then come from the target's DWARF
// only). A table lives in modules/<path with / as _>.go1.N.json for Go 1.N,
// or in modules/<path with / as _>.json for the series its "go" names; two
// tables of one series, or a file named for another series than the one
// that built it, are errors.
func ModuleTables(module string) ([]*Table, error) {
	moduleTablesMu.Lock()
	defer moduleTablesMu.Unlock()
	if ts, ok := moduleTables[module]; ok {
		return ts, nil
	}
	files, err := moduleTableFiles(module)
	if err != nil {
		return nil, err
	}
	var ts []*Table
	bySeries := map[[2]int64]string{}
	for _, file := range files {
		data, err := fs.ReadFile(moduleFS, file)
		if err != nil {
			return nil, err
		}
		t, err := Parse(data)
		if err == nil && t.module != module {
			err = fmt.Errorf("it holds the layouts of %q", t.module)
		}
		if m := moduleSeriesFile.FindStringSubmatch(path.Base(file)); err == nil && m != nil && fmt.Sprint(minor(t.builtBy)[1]) != m[2] {
			err = fmt.Errorf("its samples were built with Go %s, not Go 1.%s", t.builtBy, m[2])
		}
		if err == nil && bySeries[minor(t.builtBy)] != "" {
			err = fmt.Errorf("offsets/%s holds the layouts of the same Go series (remove one of them)", bySeries[minor(t.builtBy)])
		}
		if err != nil {
			return nil, fmt.Errorf("offsets/%s: %w (regenerate it with `%s -module %s`)", file, err, Regenerate, module)
		}
		bySeries[minor(t.builtBy)] = file
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].builtBy.LessThan(ts[j].builtBy) })
	moduleTables[module] = ts
	return ts, nil
}

// ModuleTable returns the built-in offsets table of module for targets
// built with Go goVersion, the one whose samples were built with a release
// of that minor series (see Table.BuiltForGo), or nil when uranus has none.
func ModuleTable(module string, goVersion *version.Version) (*Table, error) {
	ts, err := ModuleTables(module)
	if err != nil {
		return nil, err
	}
	for _, t := range ts {
		if t.BuiltForGo(goVersion) {
			return t, nil
		}
	}
	return nil, nil
}

// Go is the Go release that built a module table's samples (1.26.8); nil
// for the standard library's table.
func (t *Table) Go() *version.Version { return t.builtBy }

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
// versions between two checked releases that agree; a module has one table
// per Go minor series its samples were built with, and a target of another
// series gets none). As in Resolve, a struct the DWARF
// lacks makes its members absent, and a field a table has no rows for is an
// error: the table is stale.
func ResolveModule(module, modVersion string, goVersion *version.Version, loadDWARF func() (*dwarf.Data, error), fields []Field) (map[Field]Offset, string, error) {
	why := "uranus has no offsets table for it"
	tables, err := ModuleTables(module)
	if err != nil {
		return nil, "", err
	}
	var t *Table
	var builtBy []string
	for _, tab := range tables {
		builtBy = append(builtBy, tab.builtBy.String())
		if tab.BuiltForGo(goVersion) {
			t = tab
		}
	}
	v, verr := ModuleVersion(modVersion)
	switch {
	case verr != nil:
		why = verr.Error()
	case len(tables) == 1 && t == nil:
		why = fmt.Sprintf("its offsets table was checked with Go %s builds only, and this target is Go %s", builtBy[0], goVersion)
	case len(tables) > 1 && t == nil:
		why = fmt.Sprintf("its offsets tables were checked with Go %s builds only, and this target is Go %s", strings.Join(builtBy, ", "), goVersion)
	case t != nil:
		got, err := t.Lookup(v, fields)
		if err == nil {
			return got, module + " offsets table", nil
		}
		if !errors.Is(err, ErrVersionNotCovered) {
			return nil, "", err
		}
		why = fmt.Sprintf("its offsets table for Go %s builds does not cover that version", t.builtBy)
	}
	d, err := loadDWARF()
	if err != nil {
		gen := Regenerate + " -module " + module
		if t == nil && goVersion != nil {
			// A table for the target's Go series.
			gen += " -go go" + goVersion.String()
		}
		return nil, "", fmt.Errorf("no offsets for %s %s: %s, and the binary has no DWARF to read them from (%v); generate them with `%s`",
			module, modVersion, why, err, gen)
	}
	got, err := targetDWARF(d, fields)
	if err != nil {
		return nil, "", fmt.Errorf("no offsets for %s %s: %s, and reading the target's DWARF failed: %w", module, modVersion, why, err)
	}
	return got, "target DWARF", nil
}
