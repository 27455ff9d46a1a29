package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/uranus-otel/uranus/offsets"
)

// cell is what one version says about one field.
type cell struct {
	off    uint64
	absent string // "" when present, else "member" or "struct" as in table.json
}

func (c cell) String() string {
	if c.absent != "" {
		return "absent " + c.absent
	}
	return fmt.Sprint(c.off)
}

type layout map[offsets.Field]cell

func (a layout) equal(b layout) bool {
	if len(a) != len(b) {
		return false
	}
	for f, c := range a {
		if d, ok := b[f]; !ok || d != c {
			return false
		}
	}
	return true
}

// checked is one version whose layout was read.
type checked struct {
	rel    release
	layout layout
}

// survey checks the first and the last patch of one minor series and, when
// their layouts differ, bisects the patches between them until every pair of
// neighbouring checked versions either agrees (the patches between them are
// then known by interpolation) or has no other patch between them (a
// boundary). It returns the checked versions in order.
func survey(patches []release, check func(release) (layout, error)) ([]checked, error) {
	got := make(map[int]layout)
	get := func(i int) (layout, error) {
		if l, ok := got[i]; ok {
			return l, nil
		}
		l, err := check(patches[i])
		if err != nil {
			return nil, err
		}
		got[i] = l
		return l, nil
	}
	var refine func(lo, hi int) error
	refine = func(lo, hi int) error {
		a, err := get(lo)
		if err != nil {
			return err
		}
		b, err := get(hi)
		if err != nil {
			return err
		}
		if hi-lo <= 1 || a.equal(b) {
			return nil
		}
		mid := (lo + hi) / 2
		if err := refine(lo, mid); err != nil {
			return err
		}
		return refine(mid, hi)
	}
	if len(patches) == 0 {
		return nil, nil
	}
	if err := refine(0, len(patches)-1); err != nil {
		return nil, err
	}
	var idx []int
	for i := range got {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	res := make([]checked, len(idx))
	for k, i := range idx {
		res[k] = checked{patches[i], got[i]}
	}
	return res, nil
}

// span is a covered range: neighbouring checked versions of one minor series
// with identical layouts.
type span struct {
	lo, hi release
	layout layout
}

func (s span) String() string { return fmt.Sprintf(">= %s, <= %s", s.lo.v, s.hi.v) }

// boundary is a pair of neighbouring checked versions of one minor series
// whose layouts differ; the patches strictly between them are not covered.
type boundary struct {
	before, after checked
}

func (b boundary) diff() []string {
	var ds []string
	for f, c := range b.before.layout {
		if d := b.after.layout[f]; d != c {
			ds = append(ds, fmt.Sprintf("%s: %s -> %s", f, c, d))
		}
	}
	sort.Strings(ds)
	return ds
}

// coverage merges the checked versions of one minor series into covered
// ranges and lists the boundaries between them.
func coverage(cs []checked) ([]span, []boundary) {
	var spans []span
	var bounds []boundary
	for i, c := range cs {
		if i > 0 && cs[i-1].layout.equal(c.layout) {
			spans[len(spans)-1].hi = c.rel
			continue
		}
		if i > 0 {
			bounds = append(bounds, boundary{cs[i-1], c})
		}
		spans = append(spans, span{lo: c.rel, hi: c.rel, layout: c.layout})
	}
	return spans, bounds
}

// tableRow is one row of a field: a value over the versions lo..hi.
type tableRow struct {
	lo, hi release
	cell   cell
}

// rows gives each field one row per run of covered ranges (in version order)
// that agree on its value. A row may span uncovered versions between the
// ranges; the covered list keeps Lookup from answering for those.
func rows(fields []offsets.Field, spans []span) map[offsets.Field][]tableRow {
	res := make(map[offsets.Field][]tableRow)
	for _, f := range fields {
		var rs []tableRow
		for _, s := range spans {
			c := s.layout[f]
			if n := len(rs); n > 0 && rs[n-1].cell == c {
				rs[n-1].hi = s.hi
				continue
			}
			rs = append(rs, tableRow{lo: s.lo, hi: s.hi, cell: c})
		}
		res[f] = rs
	}
	return res
}

// checkFields rejects a field list the generator cannot honour.
func checkFields(fields []offsets.Field, optional map[string]string) error {
	seen := make(map[offsets.Field]bool)
	structs := make(map[string]bool)
	for _, f := range fields {
		if f.Struct == "" || f.Member == "" {
			return fmt.Errorf("field list: empty struct or member name in %q", f)
		}
		if seen[f] {
			return fmt.Errorf("field list: %s is listed twice", f)
		}
		seen[f] = true
		structs[f.Struct] = true
	}
	for s := range optional {
		if !structs[s] {
			return fmt.Errorf("optionalStructs names %s, which no wanted field belongs to", s)
		}
	}
	return nil
}

// checkPresence fails on what can only be a mistake in the field list: a
// member that no checked version has (a misspelling), an optional struct that
// no checked version has, or one that comes and goes (more likely the sample
// program failing to keep it alive in some version than Go removing and
// re-adding it). all is every checked version, in version order.
func checkPresence(fields []offsets.Field, optional map[string]string, all []checked) error {
	var errs []string
	everStruct := make(map[string]bool)
	for _, f := range fields {
		ever := false
		for _, c := range all {
			switch c.layout[f].absent {
			case "":
				ever = true
				everStruct[f.Struct] = true
			case "member":
				everStruct[f.Struct] = true
			}
		}
		if !ever && f.Member != offsets.SizeMember {
			errs = append(errs, fmt.Sprintf("%s is in no checked version: check the member name against the struct's DWARF", f))
		}
	}
	for s := range optional {
		if !everStruct[s] {
			errs = append(errs, fmt.Sprintf("optional struct %s is in no checked version: check its DWARF name", s))
			continue
		}
		runs, prev := 0, false
		var where []string
		for _, c := range all {
			present := false
			for f, cl := range c.layout {
				if f.Struct == s && cl.absent != "struct" {
					present = true
					break
				}
			}
			if present && !prev {
				runs++
			}
			if present {
				where = append(where, c.rel.name)
			}
			prev = present
		}
		if runs > 1 {
			errs = append(errs, fmt.Sprintf("optional struct %s comes and goes (present in %s): the sample program probably does not keep it alive in the others", s, strings.Join(where, " ")))
		}
	}
	sort.Strings(errs)
	if len(errs) > 0 {
		return fmt.Errorf("field list:\n\t%s", strings.Join(errs, "\n\t"))
	}
	return nil
}

// surveyAll surveys every series, one worker per series at a time (a series
// is bisected in order) and parallelBuilds workers, and returns the checked
// versions of each series. label names series i in progress lines. It stops
// starting new series once one has failed.
func surveyAll(series [][]release, label func(i int) string, layoutOf func(release, func(string, ...any)) (layout, error)) ([][]checked, error) {
	results := make([][]checked, len(series))
	errs := make([]error, len(series))
	next := make(chan int)
	var wg sync.WaitGroup
	var failed atomic.Bool // stop downloading and building once the run cannot succeed
	for w := 0; w < parallelBuilds; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if failed.Load() {
					continue
				}
				logf := func(format string, args ...any) {
					fmt.Fprintf(os.Stderr, "[%d/%d] %s: %s\n", i+1, len(series), label(i), fmt.Sprintf(format, args...))
				}
				results[i], errs[i] = survey(series[i], func(r release) (layout, error) { return layoutOf(r, logf) })
				if errs[i] != nil {
					failed.Store(true)
				}
			}
		}()
	}
	for i := range series {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return results, nil
}
