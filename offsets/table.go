package offsets

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	version "github.com/hashicorp/go-version"
)

// table.json is written by `go run ./offsets/gen`. Its shape:
//
//	{
//	  "about":   "…",
//	  "goarch":  "amd64",
//	  "checked": ["1.13.1", "1.13.15", …],            every version whose DWARF was read
//	  "covered": [">= 1.13.1, <= 1.13.15", …],        the versions Lookup answers for
//	  "structs": {
//	    "net/http.Request": {
//	      "Pattern": [
//	        {"versions": ">= 1.13.1, <= 1.22.12", "absent": "member"},
//	        {"versions": ">= 1.23.0, <= 1.27.4", "offset": 248}
//	      ], …
//	    }, …
//	  }
//	}
//
// A covered range is ">= A, <= B" where A and B are checked patches of the
// same minor series that gave identical offsets for every field, so the
// versions between them are known by interpolation; nothing outside a covered
// range is ever answered from the table. A row's range may span several
// covered ranges and the uncovered gaps between them: it gives the value, the
// covered list decides whether there is an answer at all. "absent" is
// "member" when the struct has no such member in those versions and "struct"
// when the version has no such struct (e.g. runtime.hmap after swiss maps).
//
//go:embed table.json
var tableJSON []byte

// ErrFieldNotInTable means the table has no rows at all for a field: it was
// generated before an instrumentor started to need that field.
var ErrFieldNotInTable = errors.New("field not in the offsets table")

// Table is the generated offsets table. It is immutable once parsed and safe
// for concurrent use.
type Table struct {
	module  string           // "" for the standard library's table, keyed by Go version
	builtBy *version.Version // a module's table: the Go release that built its samples
	goarch  string
	checked []*version.Version
	covered []span
	structs map[string]map[string][]row
}

// span is a closed version range ">= lo, <= hi".
type span struct {
	text   string
	lo, hi *version.Version
	c      version.Constraints
}

func (s span) contains(v *version.Version) bool { return s.c.Check(v) }

type row struct {
	span
	off Offset
}

type tableFile struct {
	About   string                          `json:"about"`
	Module  string                          `json:"module,omitempty"` // a module's table: versions are the module's ("v1.62.1")
	Go      string                          `json:"go,omitempty"`     // a module's table: the Go release its samples were built with
	GOARCH  string                          `json:"goarch"`
	Checked []string                        `json:"checked"`
	Covered []string                        `json:"covered"`
	Structs map[string]map[string][]rowFile `json:"structs"`
}

type rowFile struct {
	Versions string  `json:"versions"`
	Offset   *uint64 `json:"offset,omitempty"`
	Absent   string  `json:"absent,omitempty"`
}

var (
	embeddedOnce  sync.Once
	embeddedTable *Table
	embeddedErr   error
)

// Embedded returns the table checked in as table.json.
func Embedded() (*Table, error) {
	embeddedOnce.Do(func() {
		embeddedTable, embeddedErr = Parse(tableJSON)
		if embeddedErr != nil {
			embeddedErr = fmt.Errorf("offsets/table.json: %w (regenerate it with `%s`)", embeddedErr, Regenerate)
		}
	})
	return embeddedTable, embeddedErr
}

// Parse reads a table in the table.json format and checks that it keeps the
// "never guess" rules: every covered range lies within one minor series and
// has checked endpoints, and every field has exactly one row for each covered
// range.
func Parse(data []byte) (*Table, error) {
	var f tableFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("parsing offsets table: %w", err)
	}
	if dec.More() {
		return nil, errors.New("parsing offsets table: trailing data after the table")
	}
	t := &Table{module: f.Module, goarch: f.GOARCH, structs: make(map[string]map[string][]row)}
	if f.Module != "" {
		v, err := releaseVersion(f.Go)
		if err != nil {
			return nil, fmt.Errorf("offsets table of %s: the Go release that built it: %w", f.Module, err)
		}
		t.builtBy = v
	}

	checked := make(map[string]bool)
	for _, s := range f.Checked {
		v, err := releaseVersion(s)
		if err != nil {
			return nil, fmt.Errorf("offsets table: checked version: %w", err)
		}
		if n := len(t.checked); n > 0 && !t.checked[n-1].LessThan(v) {
			return nil, fmt.Errorf("offsets table: checked versions are not sorted and unique at %s", s)
		}
		t.checked = append(t.checked, v)
		checked[v.String()] = true
	}

	for _, s := range f.Covered {
		sp, err := parseSpan(s)
		if err != nil {
			return nil, fmt.Errorf("offsets table: covered range: %w", err)
		}
		if !checked[sp.lo.String()] || !checked[sp.hi.String()] {
			return nil, fmt.Errorf("offsets table: covered range %q has an endpoint that was not checked", s)
		}
		if minor(sp.lo) != minor(sp.hi) {
			return nil, fmt.Errorf("offsets table: covered range %q spans minor series", s)
		}
		if n := len(t.covered); n > 0 && !t.covered[n-1].hi.LessThan(sp.lo) {
			return nil, fmt.Errorf("offsets table: covered ranges are not sorted and disjoint at %q", s)
		}
		t.covered = append(t.covered, sp)
	}
	for _, v := range t.checked {
		if t.coveredBy(v) == nil {
			return nil, fmt.Errorf("offsets table: checked version %s is in no covered range", v)
		}
	}

	for sname, members := range f.Structs {
		if sname == "" {
			return nil, errors.New("offsets table: empty struct name")
		}
		ms := make(map[string][]row, len(members))
		for mname, rows := range members {
			fld := Field{Struct: sname, Member: mname, Module: f.Module}
			if mname == "" {
				return nil, fmt.Errorf("offsets table: empty member name in %s", sname)
			}
			rs, err := t.parseRows(fld, rows)
			if err != nil {
				return nil, err
			}
			ms[mname] = rs
		}
		t.structs[sname] = ms
	}
	return t, nil
}

// parseRows checks that the rows of fld are disjoint and that each covered
// range lies wholly inside one of them.
func (t *Table) parseRows(fld Field, rows []rowFile) ([]row, error) {
	if len(rows) == 0 {
		return nil, fmt.Errorf("offsets table: %s has no rows", fld)
	}
	var rs []row
	for _, rf := range rows {
		sp, err := parseSpan(rf.Versions)
		if err != nil {
			return nil, fmt.Errorf("offsets table: %s: %w", fld, err)
		}
		r := row{span: sp}
		switch {
		case rf.Offset != nil && rf.Absent == "":
			r.off = Offset{Value: *rf.Offset, Present: true}
		case rf.Offset == nil && (rf.Absent == "member" || rf.Absent == "struct"):
		default:
			return nil, fmt.Errorf("offsets table: %s row %q needs either an offset or absent \"member\" or \"struct\"", fld, rf.Versions)
		}
		if n := len(rs); n > 0 && !rs[n-1].hi.LessThan(sp.lo) {
			return nil, fmt.Errorf("offsets table: %s rows are not sorted and disjoint at %q", fld, rf.Versions)
		}
		rs = append(rs, r)
	}
	for _, c := range t.covered {
		ok := false
		for _, r := range rs {
			if !r.lo.GreaterThan(c.lo) && !r.hi.LessThan(c.hi) {
				ok = true
				break
			}
		}
		if !ok {
			return nil, fmt.Errorf("offsets table: %s has no single row for covered range %q", fld, c.text)
		}
	}
	return rs, nil
}

// parseSpan parses ">= A, <= B", the only constraint shape the table uses:
// its endpoints are what the coverage rules are checked against.
func parseSpan(s string) (span, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 2 {
		return span{}, fmt.Errorf("version range %q is not of the form \">= A, <= B\"", s)
	}
	lo, err1 := releaseVersion(strings.TrimPrefix(strings.TrimSpace(parts[0]), ">="))
	hi, err2 := releaseVersion(strings.TrimPrefix(strings.TrimSpace(parts[1]), "<="))
	if !strings.HasPrefix(strings.TrimSpace(parts[0]), ">=") || !strings.HasPrefix(strings.TrimSpace(parts[1]), "<=") || err1 != nil || err2 != nil {
		return span{}, fmt.Errorf("version range %q is not of the form \">= A, <= B\"", s)
	}
	if hi.LessThan(lo) {
		return span{}, fmt.Errorf("version range %q is empty", s)
	}
	c, err := version.NewConstraint(s)
	if err != nil {
		return span{}, fmt.Errorf("version range %q: %w", s, err)
	}
	return span{text: s, lo: lo, hi: hi, c: c}, nil
}

// releaseVersion parses a Go release version "1.22.12": exactly major.minor.patch
// without pre-release or metadata, as the table only ever holds releases.
func releaseVersion(s string) (*version.Version, error) {
	s = strings.TrimSpace(s)
	v, err := version.NewVersion(s)
	if err != nil {
		return nil, err
	}
	if v.Prerelease() != "" || v.Metadata() != "" || len(v.Segments64()) != 3 || strings.HasPrefix(s, "v") {
		return nil, fmt.Errorf("%q is not a Go release version like 1.22.12", s)
	}
	return v, nil
}

func minor(v *version.Version) [2]int64 {
	s := v.Segments64()
	return [2]int64{s[0], s[1]}
}

func (t *Table) coveredBy(v *version.Version) *span {
	for i := range t.covered {
		if t.covered[i].contains(v) {
			return &t.covered[i]
		}
	}
	return nil
}

// Lookup returns the offsets of fields in Go version v, or an error wrapping
// ErrVersionNotCovered when the table has no answer for v, or one wrapping
// ErrFieldNotInTable when the table was generated without one of the fields.
// A missing field is reported even when v is not covered: a stale table is a
// bug to fix whatever the target. Members (or whole structs) that v does not
// have come back with Present false.
func (t *Table) Lookup(v *version.Version, fields []Field) (map[Field]Offset, error) {
	if t == nil {
		return nil, errors.New("offsets table: nil table")
	}
	var missing []string
	for _, f := range fields {
		if _, ok := t.structs[f.Struct][f.Member]; !ok {
			missing = append(missing, f.String())
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: %s; the table was generated without them, add them to the generator's field list and run `%s`",
			ErrFieldNotInTable, strings.Join(missing, ", "), t.regenerate())
	}
	if v == nil {
		return nil, fmt.Errorf("%w: unknown %s version", ErrVersionNotCovered, t.subject())
	}
	if why := t.uncovered(v); why != "" {
		return nil, fmt.Errorf("%w: %s %s: %s; regenerate the table with `%s`", ErrVersionNotCovered, t.subject(), v, why, t.regenerate())
	}
	res := make(map[Field]Offset, len(fields))
	for _, f := range fields {
		found := false
		for _, r := range t.structs[f.Struct][f.Member] {
			if r.contains(v) {
				res[f], found = r.off, true
				break
			}
		}
		if !found { // Parse guarantees a row for every covered version.
			return nil, fmt.Errorf("offsets table: no row for %s in %s %s", f, t.subject(), v)
		}
	}
	return res, nil
}

// subject names what the table's versions are versions of.
func (t *Table) subject() string {
	if t.module != "" {
		return t.module
	}
	return "Go"
}

func (t *Table) regenerate() string {
	if t.module != "" {
		return Regenerate + " -module " + t.module
	}
	return Regenerate
}

// Module is the module whose layouts the table holds; "" for the standard
// library's table.
func (t *Table) Module() string { return t.module }

// BuiltForGo says whether a module's table describes a target built with
// Go goVersion: only one of the minor series its samples were built with,
// since a module may lay its structs out differently for other Go releases
// (golang.org/x/net does from Go 1.27, by build constraints). The standard
// library's table describes every Go release it covers.
func (t *Table) BuiltForGo(goVersion *version.Version) bool {
	if t.module == "" {
		return true
	}
	return goVersion != nil && len(goVersion.Segments64()) >= 2 && minor(goVersion) == minor(t.builtBy)
}

// uncovered explains why v is not covered, or returns "" when it is.
func (t *Table) uncovered(v *version.Version) string {
	if v.Prerelease() != "" {
		return "pre-releases are never checked"
	}
	if len(v.Segments64()) != 3 {
		return "not a Go release version"
	}
	if t.coveredBy(v) != nil {
		return ""
	}
	var below, above *version.Version
	for _, c := range t.checked {
		if minor(c) != minor(v) {
			continue
		}
		if c.LessThan(v) {
			below = c
		} else if above == nil {
			above = c
		}
	}
	switch {
	case below == nil && above == nil && t.module != "":
		return fmt.Sprintf("no v%d.%d release was checked", v.Segments64()[0], v.Segments64()[1])
	case below == nil && above == nil:
		return fmt.Sprintf("no go%d.%d toolchain was checked", v.Segments64()[0], v.Segments64()[1])
	case below == nil:
		return fmt.Sprintf("the oldest checked patch of its series is %s", above)
	case above == nil:
		return fmt.Sprintf("the newest checked patch of its series is %s", below)
	}
	return fmt.Sprintf("it lies between %s and %s, whose layouts differ", below, above)
}

// Covers reports whether Lookup answers for Go version v.
func (t *Table) Covers(v *version.Version) bool {
	return t != nil && v != nil && t.uncovered(v) == ""
}

// Fields lists every field the table has rows for, sorted.
func (t *Table) Fields() []Field {
	if t == nil {
		return nil
	}
	var fs []Field
	for s, ms := range t.structs {
		for m := range ms {
			fs = append(fs, Field{Struct: s, Member: m, Module: t.module})
		}
	}
	sort.Slice(fs, func(i, j int) bool {
		if fs[i].Struct != fs[j].Struct {
			return fs[i].Struct < fs[j].Struct
		}
		return fs[i].Member < fs[j].Member
	})
	return fs
}

// Checked lists the Go versions whose DWARF the table was generated from.
func (t *Table) Checked() []*version.Version {
	if t == nil {
		return nil
	}
	return append([]*version.Version(nil), t.checked...)
}

// GOARCH is the architecture the table was generated on. The gc compiler
// uses the same sizes and alignments on amd64 and arm64, so the table serves
// arm64 targets too (TestTableHoldsForArm64 checks it); 32-bit targets would
// need a table of their own.
func (t *Table) GOARCH() string {
	if t == nil {
		return ""
	}
	return t.goarch
}
