// Command gen regenerates offsets/table.json, the struct member offsets of
// every Go release uranus supports, and the tables of modules outside the
// standard library in offsets/modules (-module):
//
//	go run ./offsets/gen [-rebuild] [-o file] [-series 22,26]
//	go run ./offsets/gen -check
//
// It lists the linux toolchains the module proxy (GOPROXY) has for each minor
// series from Go 1.13 to the newest one, builds the sample program in
// testdata/sample with the first and the last patch of each series and reads
// the offsets of the fields in fields.go from the binaries' DWARF. When the
// two disagree it bisects the patches in between until every layout change is
// pinned between two neighbouring patches the proxy has. Nothing is guessed:
// the table only answers for versions between two checked patches of one
// series that agree. Structs listed in optionalStructs may be missing from a
// version; any other missing struct, or a member no version has, fails the run.
//
// Builds are cached next to the toolchains, in
// $GOMODCACHE/cache/uranus-goroot/offsets-bin (or $URANUS_TOOLCHAIN_CACHE),
// one per toolchain and sample source, so that after a field is added the
// generator only re-reads DWARF; -rebuild forces new builds.
//
// Disk: a toolchain is 300–500 MB extracted. After building with a toolchain
// that this run downloaded and that is not the newest patch of its series,
// the generator deletes its GOROOT, its build cache and the module cache's
// extracted copy (the module zip stays, so a rebuild needs no download). The
// newest patches stay because the tests build with them, and toolchains that
// were installed before the run are left alone. At most two builds run at a
// time.
//
// -series checks only some minor series, to try out a change; the partial
// table it writes must go elsewhere (-o).
//
// -module <path> writes a table of a module outside the standard library
// instead, offsets/modules/<path with / as _>.go1.N.json for the Go minor
// series 1.N that built its samples (or -o), which offsets.ModuleTables
// reads:
//
//	go run ./offsets/gen -module google.golang.org/grpc [-go go1.27.4] [-since v1.35.0] [-rebuild] [-o file]
//
// Its fields are the members of the module's structs that the instrumentors
// declare (Field.Module == path) plus the module's list in fields.go. The
// releases vX.Y.Z from -since on (default: the module's entry in moduleSince;
// pre-releases and pseudo-versions are never checked) come from
// $GOPROXY/<escaped path>/@v/list, the first http(s) entry of GOPROXY, and
// are grouped by minor series X.Y, checked at both ends and bisected exactly
// like Go's patches; the table writes them without the "v". Each release is
// checked by building testdata/modules/<path with / as _> in a temporary
// module requiring it (go mod tidy completes it from the proxy) with default
// build flags (CGO_ENABLED=0), and reading the same DWARF. The samples are
// built with the local go command or, with -go, with that Go release fetched
// from the module proxy like the toolchains of Go's table (internal/toolchain;
// it is kept). The layouts are those of builds with that Go (named in the
// table's "go"): a module struct that embeds standard library types, or whose
// source differs per Go version (x/net's http2 from Go 1.27 on), may be laid
// out differently by another Go, so a module has one table per Go minor
// series and a target gets the one of its own series. A release whose go.mod
// needs a newer Go than the chosen one cannot be built: it and every later
// release stay unchecked, with a warning; so do a release whose build fails
// because a dependency it selects needs a newer Go ("requires go >=") and
// every later one, found while building. Builds are cached in
// offsets-bin/modules, one per release, Go version and sample source.
//
// -check builds and writes nothing: it fetches the list of toolchains from
// the module proxy and prints every release from Go 1.13 on, for the table's
// GOARCH, that offsets/table.json does not cover (a new minor series, a new
// patch, or a patch published inside a series' gap), one a line. Pre-releases
// are never covered and only noted on stderr. Exit status: 0 when the table
// covers every release ("table covers every release up to goX.Y.Z"), 1 when
// some release is not covered, 2 when the check could not be made (e.g. the
// proxy is unreachable).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	version "github.com/hashicorp/go-version"

	"github.com/uranus-otel/uranus/internal/toolchain"
	"github.com/uranus-otel/uranus/offsets"
)

// firstMinor is the oldest Go uranus supports.
const firstMinor = 13

// parallelBuilds bounds memory and the disk taken by extracted toolchains.
const parallelBuilds = 2

func main() {
	rebuild := flag.Bool("rebuild", false, "build the sample again even when a cached build exists")
	out := flag.String("o", "", "where to write the table (default: offsets/table.json in this module, or offsets/modules/<module>.go1.N.json with -module)")
	series := flag.String("series", "", "only these comma-separated minor series, e.g. 22,26 (a partial table; needs -o)")
	checkOnly := flag.Bool("check", false, "build nothing: list the Go releases on the module proxy that offsets/table.json does not cover (exit 1 if any, 2 if the check fails)")
	module := flag.String("module", "", "write the table of this module (offsets/modules/<path with / as _>.go1.N.json) instead of Go's")
	since := flag.String("since", "", "with -module: the oldest release vX.Y.Z to check (default: the module's entry in moduleSince in offsets/gen/fields.go)")
	goRelease := flag.String("go", "", "with -module: build the samples with this Go release from the module proxy, e.g. go1.27.4 (default: the local go command)")
	flag.Parse()
	if *module != "" || *since != "" || *goRelease != "" {
		if *module == "" || *checkOnly || *series != "" || flag.NArg() > 0 {
			fmt.Fprintln(os.Stderr, "offsets/gen: -since and -go need -module, and -module takes neither -check, -series nor arguments")
			os.Exit(2)
		}
		if err := runModule(*module, *since, *goRelease, *out, *rebuild); err != nil {
			fmt.Fprintln(os.Stderr, "offsets/gen:", err)
			os.Exit(1)
		}
		return
	}
	if *checkOnly {
		if *rebuild || *out != "" || *series != "" || flag.NArg() > 0 {
			fmt.Fprintln(os.Stderr, "offsets/gen: -check takes no other flags or arguments")
			os.Exit(checkFailed)
		}
		os.Exit(check(os.Stdout, os.Stderr))
	}
	only := make(map[int]bool)
	for _, s := range strings.FieldsFunc(*series, func(r rune) bool { return r == ',' }) {
		m, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(s), "1."))
		if err != nil {
			fmt.Fprintf(os.Stderr, "offsets/gen: -series: %v\n", err)
			os.Exit(2)
		}
		only[m] = true
	}
	if len(only) > 0 && *out == "" {
		fmt.Fprintln(os.Stderr, "offsets/gen: -series writes a partial table; give it a place with -o")
		os.Exit(2)
	}
	if err := run(*out, *rebuild, only); err != nil {
		fmt.Fprintln(os.Stderr, "offsets/gen:", err)
		os.Exit(1)
	}
}

func run(out string, rebuild bool, only map[int]bool) error {
	start := time.Now()
	fields := wantedFields()
	optional := optionalStructs()
	if err := checkFields(fields, optional); err != nil {
		return err
	}
	if out == "" {
		root, err := moduleRoot()
		if err != nil {
			return err
		}
		out = filepath.Join(root, "offsets", "table.json")
	}
	b, err := newBuilder(fields, optional, rebuild)
	if err != nil {
		return err
	}
	available, err := listReleases(b.goarch)
	if err != nil {
		return err
	}
	var minors []int
	for m := range available {
		if m >= firstMinor && (len(only) == 0 || only[m]) {
			minors = append(minors, m)
		}
	}
	sort.Ints(minors)
	if len(minors) == 0 {
		return fmt.Errorf("the module proxy lists no golang.org/toolchain release for linux/%s from go1.%d on", b.goarch, firstMinor)
	}
	for m := firstMinor; m < minors[len(minors)-1]; m++ {
		if len(available[m]) == 0 && len(only) == 0 {
			fmt.Fprintf(os.Stderr, "warning: the module proxy has no go1.%d release toolchain; that series stays uncovered\n", m)
		}
	}

	series := make([][]release, len(minors))
	for i, m := range minors {
		series[i] = available[m]
	}
	results, err := surveyAll(series, func(i int) string { return fmt.Sprintf("go1.%d", minors[i]) }, b.layout)
	if err != nil {
		return err
	}
	return writeTable(out, tableHead{about: about, goarch: b.goarch}, fields, optional, series, results, len(only) > 0, start)
}

// writeTable turns the checked versions of each series into the table,
// checks it and writes it to out. partial says that only some series were
// checked, so a member no checked version has is only a warning.
func writeTable(out string, h tableHead, fields []offsets.Field, optional map[string]string, series [][]release, results [][]checked, partial bool, start time.Time) error {
	var all []checked
	var spans []span
	var bounds []boundary
	var available []release
	for i, cs := range results {
		s, bs := coverage(cs)
		all = append(all, cs...)
		spans = append(spans, s...)
		bounds = append(bounds, bs...)
		available = append(available, series[i]...)
	}
	if err := checkPresence(fields, optional, all); err != nil {
		if !partial {
			return err
		}
		// Some series only: a member may well exist in the others.
		fmt.Fprintln(os.Stderr, "warning:", err)
	}
	data := encodeTable(h, all, spans, rows(fields, spans))
	if err := verifyTable(data, h.module, fields, all, bounds, available); err != nil {
		return err
	}
	if err := os.WriteFile(out+".tmp", data, 0o644); err != nil {
		return err
	}
	if err := os.Rename(out+".tmp", out); err != nil {
		return err
	}

	fmt.Printf("wrote %s: %d fields, %d versions checked in %d minor series, %d covered ranges, in %s\n",
		out, len(fields), len(all), len(series), len(spans), time.Since(start).Round(time.Second))
	for _, s := range spans {
		fmt.Printf("  covered %s\n", s)
	}
	if len(bounds) == 0 {
		fmt.Println("no layout changes within a minor series")
	}
	for _, bd := range bounds {
		fmt.Printf("layout change between %s and %s:\n\t%s\n", bd.before.rel.name, bd.after.rel.name, strings.Join(bd.diff(), "\n\t"))
	}
	return nil
}

// runModule writes the table of module for one Go minor series: it checks
// the module's releases from since on (vX.Y.Z) the way run checks Go's,
// building the module's sample against each with the Go release goRelease
// ("go1.27.4", fetched from the module proxy) or, when it is "", the local
// toolchain.
func runModule(module, since, goRelease, out string, rebuild bool) error {
	start := time.Now()
	fields := wantedModuleFields(module)
	if len(fields) == 0 {
		return fmt.Errorf("no instrumentor declares a member of %s and offsets/gen/fields.go lists none for it", module)
	}
	optional := moduleOptionalStructs(module)
	if err := checkFields(fields, optional); err != nil {
		return err
	}
	if since == "" {
		since = moduleSince[module]
	}
	if since == "" {
		return fmt.Errorf("give -since vX.Y.Z: %s has no default oldest release in moduleSince (offsets/gen/fields.go)", module)
	}
	if !moduleRelease.MatchString(since) {
		return fmt.Errorf("-since %q is not a release version like v0.30.0", since)
	}
	sinceV := version.Must(version.NewVersion(strings.TrimPrefix(since, "v")))
	root, err := moduleRoot()
	if err != nil && out == "" {
		return err
	}
	goName, goV, err := localGoVersion()
	if err != nil {
		return err
	}
	var tc *toolchain.Toolchain
	if goRelease != "" {
		name, v, err := goReleaseName(goRelease)
		if err != nil {
			return err
		}
		if name != goName {
			fmt.Fprintf(os.Stderr, "%s: building with %s from the module proxy (the local go command is %s)\n", module, name, goName)
			if tc, err = toolchain.Get(name, func(format string, args ...any) { fmt.Fprintf(os.Stderr, name+": "+format+"\n", args...) }); err != nil {
				return err
			}
		}
		goName, goV = name, v
	}
	if out == "" {
		out = filepath.Join(root, "offsets", "modules", moduleTableFile(module, goV))
		// The single-file form, <name>.json, holds the table of the
		// series its "go" names: two tables of one series do not load.
		single := filepath.Join(root, "offsets", "modules", moduleFileName(module)+".json")
		if data, err := os.ReadFile(single); err == nil {
			if t, err := offsets.Parse(data); err != nil || t.Go() == nil || t.Go().Segments()[1] == goV.Segments()[1] {
				return fmt.Errorf("%s holds the Go 1.%d table of %s already: remove it (the table is now written to %s)", single, goV.Segments()[1], module, out)
			}
		}
	}
	b, err := newModuleBuilder(module, goName, tc, fields, optional, rebuild)
	if err != nil {
		return err
	}
	proxy, err := newModuleProxy(module)
	if err != nil {
		return err
	}
	list, err := proxy.versions()
	if err != nil {
		return err
	}
	series := parseModuleVersions(list, sinceV)
	series, dropped, err := cutAtNewerGo(series, goV, proxy.goLine)
	if err != nil {
		return err
	}
	// Releases left out for a newer Go may hold members the checked ones
	// lack: a member no checked release has is then only a warning.
	truncated := len(dropped) > 0
	if len(dropped) > 0 {
		var names []string
		for _, r := range dropped {
			names = append(names, r.name)
		}
		fmt.Fprintf(os.Stderr, "warning: %s needs a newer Go than %s from %s on (its go.mod says so); these stay uncovered: %s\n", module, goName, names[0], strings.Join(names, " "))
	}
	if len(series) == 0 {
		return fmt.Errorf("the module proxy lists no release of %s from %s on that %s can build", module, since, goName)
	}
	n := 0
	for _, rs := range series {
		n += len(rs)
	}
	fmt.Fprintf(os.Stderr, "%s: %d releases from %s on in %d minor series, built with %s\n", module, n, since, len(series), goName)
	var results [][]checked
	for {
		results, err = surveyAll(series, func(i int) string {
			s := series[i][0].v.Segments()
			return fmt.Sprintf("%s v%d.%d", module, s[0], s[1])
		}, b.layout)
		var newer *needsNewerGoError
		if !errors.As(err, &newer) {
			break
		}
		// A dependency of that release needs a newer Go, although the
		// module's own go.mod did not say so: cut the tail there as
		// cutAtNewerGo does, and survey again (what was built is cached).
		var cut []release
		series, cut = cutAt(series, newer.rel)
		truncated = true
		if len(cut) == 0 {
			return err // not a release of this run: cannot happen
		}
		var names []string
		for _, r := range cut {
			names = append(names, r.name)
		}
		fmt.Fprintf(os.Stderr, "warning: %s@%s does not build with %s (%s); these stay uncovered: %s\n", module, newer.rel.name, goName, newer.why, strings.Join(names, " "))
		if len(series) == 0 {
			return fmt.Errorf("no release of %s from %s on builds with %s", module, since, goName)
		}
	}
	if err != nil {
		return err
	}
	h := tableHead{about: moduleAbout(module, goName), module: module, goarch: b.goarch, goVersion: strings.TrimPrefix(goName, "go")}
	return writeTable(out, h, fields, optional, series, results, truncated, start)
}

// moduleRoot finds the uranus module from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			strings.Contains(string(data), "module github.com/uranus-otel/uranus\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("run the generator inside the uranus module, or pass -o")
		}
		dir = parent
	}
}

// goReleaseName checks a -go value, a Go release as the module proxy names
// its toolchains ("go1.27.4", or "go1.20" for 1.20.0; the "go" may be left
// out), and returns its name and version.
func goReleaseName(s string) (string, *version.Version, error) {
	m := regexp.MustCompile(`^(?:go)?(1\.\d+(?:\.\d+)?)$`).FindStringSubmatch(s)
	if m == nil {
		return "", nil, fmt.Errorf("-go %q is not a Go release like go1.27.4", s)
	}
	v, err := version.NewVersion(m[1])
	if err != nil {
		return "", nil, err
	}
	return "go" + m[1], v, nil
}

// moduleTableFile is the name of module's table for Go goVersion's minor
// series in offsets/modules, as offsets.ModuleTables reads it:
// <path with / as _>.go1.N.json.
func moduleTableFile(module string, goVersion *version.Version) string {
	return fmt.Sprintf("%s.go1.%d.json", moduleFileName(module), goVersion.Segments()[1])
}

// cutAt drops r and every later release from series, as cutAtNewerGo does,
// and returns what is left and what was dropped (nothing when r is not in
// series).
func cutAt(series [][]release, r release) ([][]release, []release) {
	return cutWhere(series, func(x release) bool { return x.v.Equal(r.v) })
}
