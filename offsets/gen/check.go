package main

import (
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"

	version "github.com/hashicorp/go-version"

	"github.com/uranus-otel/uranus/offsets"
)

// Exit codes of -check.
const (
	checkCovered   = 0 // the table covers every published release
	checkUncovered = 1 // some published release is not covered
	checkFailed    = 2 // the check could not be made (proxy unreachable, …)
)

// checkReport is what the module proxy's list says about a table.
type checkReport struct {
	missing []missingRelease // published releases the table does not cover, oldest first
	newest  *version.Version // the newest published release from go1.<firstMinor> on
	pre     []string         // pre-releases newer than newest, e.g. "go1.28rc1"
	odd     []string         // module versions for goarch whose Go version is not understood
}

type missingRelease struct {
	name string // as the proxy names it: "go1.27.5"
	v    *version.Version
	why  string
}

// toolchainVersion is the Go version in a golang.org/toolchain module
// version: "go1.20" (1.20.0 before Go 1.21), "go1.27.4", "go1.28rc1".
var toolchainVersion = regexp.MustCompile(`^go(\d+)\.(\d+)(?:\.(\d+))?(?:(rc|beta)(\d+))?$`)

// checkCoverage compares the module versions of golang.org/toolchain with
// what t covers. Entries for other platforms are none of its business;
// entries for linux/goarch whose Go version it cannot read are listed in odd
// rather than dropped, since they may be releases under a new naming.
// Pre-releases are never covered (the table only holds releases, and uranus
// reads a pre-release target's offsets from its own DWARF), so they are only
// noted. Releases before go1.<firstMinor> are not supported and are skipped.
func checkCoverage(modVersions []string, goarch string, t *offsets.Table) (checkReport, error) {
	var r checkReport
	prefix, suffix := "v0.0.1-", ".linux-"+goarch
	seen := make(map[string]bool)
	type pre struct {
		name string
		core *version.Version
	}
	var pres []pre
	for _, mv := range modVersions {
		mv = strings.TrimSpace(mv)
		if !strings.HasSuffix(mv, suffix) {
			continue
		}
		m := toolchainVersion.FindStringSubmatch(strings.TrimSuffix(strings.TrimPrefix(mv, prefix), suffix))
		if !strings.HasPrefix(mv, prefix) || m == nil {
			r.odd = append(r.odd, mv)
			continue
		}
		name := m[0]
		major, err1 := strconv.Atoi(m[1])
		minor, err2 := strconv.Atoi(m[2])
		patch, err3 := 0, error(nil)
		if m[3] != "" {
			patch, err3 = strconv.Atoi(m[3])
		}
		if err1 != nil || err2 != nil || err3 != nil {
			r.odd = append(r.odd, mv)
			continue
		}
		if major == 1 && minor < firstMinor {
			continue
		}
		v := version.Must(version.NewVersion(fmt.Sprintf("%d.%d.%d", major, minor, patch)))
		if m[4] != "" {
			pres = append(pres, pre{name, v})
			continue
		}
		if seen[v.String()] {
			continue
		}
		seen[v.String()] = true
		if r.newest == nil || v.GreaterThan(r.newest) {
			r.newest = v
		}
		if !t.Covers(v) {
			r.missing = append(r.missing, missingRelease{name: name, v: v, why: whyUncovered(v, t.Checked())})
		}
	}
	sort.Slice(r.missing, func(i, j int) bool { return r.missing[i].v.LessThan(r.missing[j].v) })
	if r.newest == nil {
		return r, fmt.Errorf("the module proxy lists no golang.org/toolchain release for linux/%s from go1.%d on", goarch, firstMinor)
	}
	for _, p := range pres {
		if p.core.GreaterThan(r.newest) {
			r.pre = append(r.pre, p.name)
		}
	}
	return r, nil
}

// whyUncovered says where v lies relative to the checked patches of its
// series. checked is sorted.
func whyUncovered(v *version.Version, checked []*version.Version) string {
	series := fmt.Sprintf("go%d.%d", v.Segments()[0], v.Segments()[1])
	var below, above *version.Version
	for _, c := range checked {
		if c.Segments()[0] != v.Segments()[0] || c.Segments()[1] != v.Segments()[1] {
			continue
		}
		if c.LessThan(v) {
			below = c
		} else if above == nil && c.GreaterThan(v) {
			above = c
		}
	}
	switch {
	case below == nil && above == nil:
		return fmt.Sprintf("new minor series: no %s patch was checked", series)
	case above == nil:
		return fmt.Sprintf("newer than %s, the newest checked patch of %s", goName(below), series)
	case below == nil:
		return fmt.Sprintf("older than %s, the oldest checked patch of %s", goName(above), series)
	}
	return fmt.Sprintf("between %s and %s, whose layouts differ", goName(below), goName(above))
}

// goName is a release's toolchain name: go1.20 for 1.20.0, go1.21.0 from
// Go 1.21 on.
func goName(v *version.Version) string {
	s := v.Segments()
	if s[0] == 1 && s[1] < 21 && s[2] == 0 {
		return fmt.Sprintf("go%d.%d", s[0], s[1])
	}
	return fmt.Sprintf("go%d.%d.%d", s[0], s[1], s[2])
}

// runCheck prints what checkCoverage found and returns the exit code:
// uncovered releases on stdout, one a line, then a summary; notes and
// warnings on stderr.
func runCheck(modVersions []string, t *offsets.Table, stdout, stderr io.Writer) int {
	r, err := checkCoverage(modVersions, t.GOARCH(), t)
	if err != nil {
		fmt.Fprintln(stderr, "offsets/gen -check:", err)
		return checkFailed
	}
	for _, o := range r.odd {
		fmt.Fprintf(stderr, "warning: golang.org/toolchain version %q is not a Go version this check can read; look at it by hand\n", o)
	}
	for _, p := range r.pre {
		fmt.Fprintf(stderr, "note: %s is a pre-release; the table never covers pre-releases, update it when the release is out\n", p)
	}
	if len(r.missing) == 0 {
		fmt.Fprintf(stdout, "table covers every release up to %s\n", goName(r.newest))
		return checkCovered
	}
	for _, m := range r.missing {
		fmt.Fprintf(stdout, "%s: %s\n", m.name, m.why)
	}
	noun := "releases are"
	if len(r.missing) == 1 {
		noun = "release is"
	}
	fmt.Fprintf(stdout, "%d published Go %s not covered by offsets/table.json; regenerate it with `%s`\n", len(r.missing), noun, offsets.Regenerate)
	return checkUncovered
}

// check lists the toolchains on the module proxy and compares them with the
// table embedded in this build of the generator, which `go run` compiles
// from the working tree's offsets/table.json. It builds nothing and fetches
// nothing but the list.
func check(stdout, stderr io.Writer) int {
	t, err := offsets.Embedded()
	if err != nil {
		fmt.Fprintln(stderr, "offsets/gen -check:", err)
		return checkFailed
	}
	vs, err := listToolchainVersions()
	if err != nil {
		fmt.Fprintln(stderr, "offsets/gen -check:", err)
		return checkFailed
	}
	return runCheck(vs, t, stdout, stderr)
}
