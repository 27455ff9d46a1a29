package main

import (
	"fmt"
	"math/rand"
	"reflect"
	"strings"
	"testing"

	version "github.com/hashicorp/go-version"

	"github.com/uranus-otel/uranus/offsets"
)

func TestParseReleases(t *testing.T) {
	got := parseReleases([]string{
		"v0.0.1-go1.20.linux-amd64",
		"v0.0.1-go1.20.14.linux-amd64",
		"v0.0.1-go1.20.2.linux-amd64",
		"v0.0.1-go1.20.14.linux-arm64",
		"v0.0.1-go1.21rc2.linux-amd64",
		"v0.0.1-go1.18beta1.linux-amd64",
		"v0.0.1-go1.21.0.linux-amd64",
		"v0.0.1-go1.21.0.darwin-amd64",
		"v0.0.1-go1.21.13.linux-amd64.foo",
	}, "amd64")
	var names []string
	for _, m := range []int{20, 21} {
		for _, r := range got[m] {
			names = append(names, fmt.Sprintf("%s=%s:%d:%v", r.name, r.v, r.minor, r.latest))
		}
	}
	want := []string{"go1.20=1.20.0:20:false", "go1.20.2=1.20.2:20:false", "go1.20.14=1.20.14:20:true", "go1.21.0=1.21.0:21:true"}
	if !reflect.DeepEqual(names, want) || len(got) != 2 {
		t.Errorf("parseReleases = %q (%d series), want %q", names, len(got), want)
	}
}

var fieldA = offsets.Field{Struct: "s", Member: "a"}

func patches(minor, n int) []release {
	var rs []release
	for i := 0; i < n; i++ {
		v := version.Must(version.NewVersion(fmt.Sprintf("1.%d.%d", minor, i)))
		rs = append(rs, release{name: "go" + v.String(), v: v, minor: minor, latest: i == n-1})
	}
	return rs
}

// stepLayouts makes a layout per patch that changes right at each of changes.
func stepLayouts(n int, changes ...int) []layout {
	ls := make([]layout, n)
	val := uint64(0)
	for i := range ls {
		for _, c := range changes {
			if c == i {
				val += 8
			}
		}
		ls[i] = layout{fieldA: {off: val}}
	}
	return ls
}

func TestSurvey(t *testing.T) {
	for _, tc := range []struct {
		n       int
		changes []int
		checked []int
	}{
		{n: 1, checked: []int{0}},
		{n: 2, checked: []int{0, 1}},
		{n: 12, checked: []int{0, 11}},
		{n: 12, changes: []int{11}, checked: []int{0, 5, 8, 9, 10, 11}},
		{n: 12, changes: []int{1}, checked: []int{0, 1, 2, 5, 11}},
		{n: 2, changes: []int{1}, checked: []int{0, 1}},
	} {
		ps := patches(22, tc.n)
		ls := stepLayouts(tc.n, tc.changes...)
		calls := make(map[string]int)
		got, err := survey(ps, func(r release) (layout, error) {
			calls[r.name]++
			return ls[r.v.Segments()[2]], nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var idx []int
		for _, c := range got {
			idx = append(idx, c.rel.v.Segments()[2])
		}
		if !reflect.DeepEqual(idx, tc.checked) {
			t.Errorf("survey(%d patches, changes at %v) checked %v, want %v", tc.n, tc.changes, idx, tc.checked)
		}
		for name, n := range calls {
			if n != 1 {
				t.Errorf("%s checked %d times", name, n)
			}
		}
	}
	if _, err := survey(patches(22, 3), func(release) (layout, error) { return nil, fmt.Errorf("boom") }); err == nil {
		t.Error("survey ignored a failing check")
	}
}

// TestSurveyFindsEveryBoundary: whenever each change gives a new value (a
// layout does not change and change back between two checked patches), the
// boundaries found are exactly the changes and every covered range agrees
// with the truth.
func TestSurveyFindsEveryBoundary(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for iter := 0; iter < 2000; iter++ {
		n := 1 + rng.Intn(20)
		var changes []int
		for i := 1; i < n; i++ {
			if rng.Intn(6) == 0 {
				changes = append(changes, i)
			}
		}
		ps := patches(24, n)
		ls := stepLayouts(n, changes...)
		got, err := survey(ps, func(r release) (layout, error) { return ls[r.v.Segments()[2]], nil })
		if err != nil {
			t.Fatal(err)
		}
		spans, bounds := coverage(got)
		var found []int
		for _, b := range bounds {
			if b.after.rel.v.Segments()[2] != b.before.rel.v.Segments()[2]+1 {
				t.Fatalf("changes %v: boundary %s..%s is not between neighbours", changes, b.before.rel.name, b.after.rel.name)
			}
			found = append(found, b.after.rel.v.Segments()[2])
		}
		if !reflect.DeepEqual(found, changes) {
			t.Fatalf("n=%d: found boundaries at %v, want %v", n, found, changes)
		}
		for _, s := range spans {
			for i := s.lo.v.Segments()[2]; i <= s.hi.v.Segments()[2]; i++ {
				if !ls[i].equal(s.layout) {
					t.Fatalf("changes %v: span %s says %v for 1.24.%d, truth %v", changes, s, s.layout, i, ls[i])
				}
			}
		}
	}
}

func TestTableRoundTrip(t *testing.T) {
	fa := offsets.Field{Struct: "net/http.Request", Member: "Pattern"}
	fb := offsets.Field{Struct: "runtime.hmap", Member: "count"}
	fields := []offsets.Field{fa, fb}
	mk := func(a, b cell) layout { return layout{fa: a, fb: b} }
	available := map[int][]release{16: patches(16, 16), 23: patches(23, 4)}
	// The proxy only has 1.16.3, .4 and .15 in this story.
	available[16] = []release{available[16][3], available[16][4], available[16][15]}
	all := []checked{
		{available[16][0], mk(cell{absent: "member"}, cell{off: 0})},
		{available[16][1], mk(cell{absent: "member"}, cell{off: 0})},
		{available[16][2], mk(cell{absent: "member"}, cell{off: 8})},
		{available[23][0], mk(cell{off: 248}, cell{absent: "struct"})},
		{available[23][3], mk(cell{off: 248}, cell{absent: "struct"})},
	}
	s16, b16 := coverage(all[:3])
	s23, b23 := coverage(all[3:])
	spans := append(s16, s23...)
	bounds := append(b16, b23...)
	if len(spans) != 3 || len(bounds) != 1 {
		t.Fatalf("coverage: %d spans, %d boundaries; want 3, 1", len(spans), len(bounds))
	}
	if d := bounds[0].diff(); !reflect.DeepEqual(d, []string{"runtime.hmap.count: 0 -> 8"}) {
		t.Errorf("boundary diff = %q", d)
	}
	data := encodeTable(tableHead{about: about, goarch: "amd64"}, all, spans, rows(fields, spans))
	if err := verifyTable(data, "", fields, all, bounds, flatten(available)); err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	for _, want := range []string{
		`">= 1.16.3, <= 1.16.4"`,
		`{"versions": ">= 1.16.3, <= 1.16.15", "absent": "member"},`,
		`{"versions": ">= 1.23.0, <= 1.23.3", "offset": 248}`,
		`{"versions": ">= 1.23.0, <= 1.23.3", "absent": "struct"}`,
	} {
		if !strings.Contains(string(data), want) {
			t.Errorf("table lacks %s:\n%s", want, data)
		}
	}
	tab, err := offsets.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.16.5", "1.16.2", "1.16.16", "1.23.4", "1.20.1"} {
		if tab.Covers(version.Must(version.NewVersion(v))) {
			t.Errorf("the table covers %s", v)
		}
	}

	// A bisection that skipped an available patch at a boundary is caught.
	available[16] = append(available[16][:2], patches(16, 10)[9], available[16][2])
	if err := verifyTable(data, "", fields, all, bounds, flatten(available)); err == nil {
		t.Error("verifyTable missed an unchecked patch at a boundary")
	}
}

// flatten lists the releases of every series.
func flatten(available map[int][]release) []release {
	var rs []release
	for _, s := range available {
		rs = append(rs, s...)
	}
	return rs
}

func TestCheckPresence(t *testing.T) {
	fa := offsets.Field{Struct: "a.T", Member: "x"}
	fo := offsets.Field{Struct: "a.Opt", Member: "y"}
	opt := map[string]string{"a.Opt": "test"}
	ps := patches(20, 3)
	run := func(cells ...[2]cell) error {
		var all []checked
		for i, c := range cells {
			all = append(all, checked{ps[i], layout{fa: c[0], fo: c[1]}})
		}
		return checkPresence([]offsets.Field{fa, fo}, opt, all)
	}
	present, member, strct := cell{off: 8}, cell{absent: "member"}, cell{absent: "struct"}
	if err := run([2]cell{present, strct}, [2]cell{member, member}, [2]cell{present, present}); err != nil {
		t.Errorf("valid presence rejected: %v", err)
	}
	if err := run([2]cell{member, present}, [2]cell{member, present}); err == nil || !strings.Contains(err.Error(), "a.T.x") {
		t.Errorf("a member in no version passed: %v", err)
	}
	if err := run([2]cell{present, strct}, [2]cell{present, strct}); err == nil || !strings.Contains(err.Error(), "a.Opt") {
		t.Errorf("an optional struct in no version passed: %v", err)
	}
	if err := run([2]cell{present, present}, [2]cell{present, strct}, [2]cell{present, present}); err == nil || !strings.Contains(err.Error(), "comes and goes") {
		t.Errorf("an optional struct that comes and goes passed: %v", err)
	}
}

func TestCheckFields(t *testing.T) {
	if err := checkFields(wantedFields(), optionalStructs()); err != nil {
		t.Errorf("wantedFields: %v", err)
	}
	f := offsets.Field{Struct: "a.T", Member: "x"}
	if err := checkFields([]offsets.Field{f, f}, nil); err == nil {
		t.Error("a duplicate field passed")
	}
	if err := checkFields([]offsets.Field{{Struct: "a.T"}}, nil); err == nil {
		t.Error("an empty member passed")
	}
	if err := checkFields([]offsets.Field{f}, map[string]string{"b.U": ""}); err == nil {
		t.Error("an optional struct without fields passed")
	}
}

// TestTableHasWantedFields fails when the field list changed without the
// table being regenerated.
func TestTableHasWantedFields(t *testing.T) {
	tab, err := offsets.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	have := make(map[offsets.Field]bool)
	for _, f := range tab.Fields() {
		have[f] = true
	}
	for _, f := range append(wantedFields(), offsets.Runtime...) {
		if !have[f] {
			t.Errorf("table.json has no %s: run `%s`", f, offsets.Regenerate)
		}
	}
}

// TestSampleKeepsStructs builds the sample with the oldest and newest
// toolchains the tests use and checks that every struct that is not optional
// is in its DWARF, so that a change to the sample is caught before a long
// generation run.
func TestSampleKeepsStructs(t *testing.T) {
	for _, v := range []string{"1.13.15", "1.24.13", "1.27.4"} {
		t.Run(v, func(t *testing.T) {
			b, err := newBuilder(wantedFields(), optionalStructs(), true)
			if err != nil {
				t.Fatal(err)
			}
			b.binDir = t.TempDir()
			ver := version.Must(version.NewVersion(v))
			r := release{name: "go" + v, v: ver, minor: ver.Segments()[1], latest: true}
			l, err := b.layout(r, t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			absent := make(map[string]bool)
			for f, c := range l {
				if c.absent == "struct" && !absent[f.Struct] {
					absent[f.Struct] = true
					t.Logf("%s is absent (optional: %s)", f.Struct, b.optional[f.Struct])
				}
			}
		})
	}
}
