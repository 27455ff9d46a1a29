// Command gen regenerates offsets/table.json, the struct member offsets of
// every Go release uranus supports:
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
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// firstMinor is the oldest Go uranus supports.
const firstMinor = 13

// parallelBuilds bounds memory and the disk taken by extracted toolchains.
const parallelBuilds = 2

func main() {
	rebuild := flag.Bool("rebuild", false, "build the sample again even when a cached build exists")
	out := flag.String("o", "", "where to write the table (default: offsets/table.json in this module)")
	series := flag.String("series", "", "only these comma-separated minor series, e.g. 22,26 (a partial table; needs -o)")
	checkOnly := flag.Bool("check", false, "build nothing: list the Go releases on the module proxy that offsets/table.json does not cover (exit 1 if any, 2 if the check fails)")
	flag.Parse()
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

	// One worker per series at a time: a series is bisected in order, and
	// two workers keep at most two builds running.
	results := make([][]checked, len(minors))
	errs := make([]error, len(minors))
	next := make(chan int)
	var wg sync.WaitGroup
	var failed atomic.Bool // stop downloading once the run cannot succeed
	for w := 0; w < parallelBuilds; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if failed.Load() {
					continue
				}
				m := minors[i]
				logf := func(format string, args ...any) {
					fmt.Fprintf(os.Stderr, "[%d/%d] go1.%d: %s\n", i+1, len(minors), m, fmt.Sprintf(format, args...))
				}
				results[i], errs[i] = survey(available[m], func(r release) (layout, error) { return b.layout(r, logf) })
				if errs[i] != nil {
					failed.Store(true)
				}
			}
		}()
	}
	for i := range minors {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}

	var all []checked
	var spans []span
	var bounds []boundary
	for _, cs := range results {
		s, bs := coverage(cs)
		all = append(all, cs...)
		spans = append(spans, s...)
		bounds = append(bounds, bs...)
	}
	if err := checkPresence(fields, optional, all); err != nil {
		if len(only) == 0 {
			return err
		}
		// Some series only: a member may well exist in the others.
		fmt.Fprintln(os.Stderr, "warning:", err)
	}
	data := encodeTable(b.goarch, all, spans, rows(fields, spans))
	if err := verifyTable(data, fields, all, bounds, available); err != nil {
		return err
	}
	if err := os.WriteFile(out+".tmp", data, 0o644); err != nil {
		return err
	}
	if err := os.Rename(out+".tmp", out); err != nil {
		return err
	}

	fmt.Printf("wrote %s: %d fields, %d versions checked in %d minor series, %d covered ranges, in %s\n",
		out, len(fields), len(all), len(minors), len(spans), time.Since(start).Round(time.Second))
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
