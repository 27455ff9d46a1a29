package attach

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	version "github.com/hashicorp/go-version"

	"github.com/uranus-otel/uranus/binary"
	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/instrumentors/all"
	"github.com/uranus-otel/uranus/instrumentors/httpserver"
	"github.com/uranus-otel/uranus/internal/testapp"
	"github.com/uranus-otel/uranus/offsets"
)

func open(t *testing.T, path string) *binary.File {
	t.Helper()
	f, err := binary.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func build(t *testing.T, name, version string, opts testapp.Options) string {
	t.Helper()
	path, err := testapp.Build(name, version, opts, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func embedded(t *testing.T) *offsets.Table {
	t.Helper()
	tab, err := offsets.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func TestCheckBinaryRejects(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("skipping: no sleep binary")
	}
	if _, err := MakePlans(open(t, sleep), nil, embedded(t)); err == nil || !strings.Contains(err.Error(), "not a Go program") {
		t.Errorf("non-Go binary: %v", err)
	}
	arm := build(t, "httpserver", "1.22.12", testapp.Options{GOARCH: "arm64"})
	if _, err := MakePlans(open(t, arm), nil, embedded(t)); err == nil || !strings.Contains(err.Error(), "built for arm64") {
		t.Errorf("arm64 binary: %v", err)
	}
}

func TestPlanHTTPServer(t *testing.T) {
	for _, c := range []struct {
		version      string
		pattern, pat bool // which route member the program gets
		stripped     bool
	}{
		{"1.16.15", false, false, true},
		{"1.22.12", false, true, false},
		{"1.27.4", true, true, true},
	} {
		bin := open(t, build(t, "httpserver", c.version, testapp.Options{Stripped: c.stripped}))
		plans, err := MakePlans(bin, []*instrumentors.Instrumentor{httpserver.Instrumentor}, embedded(t))
		if err != nil {
			t.Fatal(err)
		}
		p := plans[0]
		if p.Skip != "" {
			t.Fatalf("go%s: skipped: %s", c.version, p.Skip)
		}
		if p.OffsetsFrom != "offsets table" {
			t.Errorf("go%s: offsets from %q", c.version, p.OffsetsFrom)
		}
		fn := p.Probes[0].Func
		if fn == nil || fn.FileOffset == 0 || len(fn.RetOffsets) == 0 {
			t.Fatalf("go%s: ServeHTTP not resolved: %+v", c.version, fn)
		}
		if got := p.Consts["off_req_pattern"] != OffsetAbsent; got != c.pattern {
			t.Errorf("go%s: Request.Pattern present = %v, want %v", c.version, got, c.pattern)
		}
		if got := p.Consts["off_req_pat"] != OffsetAbsent; got != c.pat {
			t.Errorf("go%s: Request.pat present = %v, want %v", c.version, got, c.pat)
		}
		if p.Consts["off_req_method"] == OffsetAbsent {
			t.Errorf("go%s: Request.Method absent", c.version)
		}
	}
}

func TestPlanSkipReasons(t *testing.T) {
	bin := open(t, build(t, "httpserver", "1.16.15", testapp.Options{}))
	base := *httpserver.Instrumentor
	tooNew := base
	tooNew.ID, tooNew.GoVersions = "too-new", ">= 1.99"
	noSym := base
	noSym.ID = "no-symbol"
	noSym.Probes = []instrumentors.Probe{{Symbol: "net/http.noSuchFunction", Entry: "server_entry"}}
	// A function uranus names itself but the binary lacks: the library
	// is not linked. A function the user names (no Library): not found.
	userSym := noSym
	userSym.ID, userSym.Library = "user-named", ""
	optSym := base
	optSym.ID = "optional-symbol"
	optSym.Probes = append([]instrumentors.Probe{{Symbol: "net/http.noSuchFunction", Entry: "server_entry", Optional: true}}, base.Probes...)
	needsPattern := base
	needsPattern.ID = "needs-pattern"
	needsPattern.Consts = []instrumentors.Const{{Name: "off_req_pattern", Field: offsets.Field{Struct: "net/http.Request", Member: "Pattern"}}}

	plans, err := MakePlans(bin, []*instrumentors.Instrumentor{&tooNew, &noSym, &userSym, &optSym, &needsPattern}, embedded(t))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"too-new":         "needs Go >= 1.99, target is go1.16.15",
		"no-symbol":       "no net/http server in this binary (net/http.noSuchFunction is not linked into it)",
		"user-named":      "net/http.noSuchFunction not found",
		"optional-symbol": "",
		"needs-pattern":   "go1.16.15 has no [net/http.Request.Pattern]",
	}
	for _, p := range plans {
		w := want[p.Inst.ID]
		if (w == "") != (p.Skip == "") || !strings.Contains(p.Skip, w) {
			t.Errorf("%s: skip %q, want %q", p.Inst.ID, p.Skip, w)
		}
		if p.NotLinked != (p.Inst.ID == "no-symbol") {
			t.Errorf("%s: NotLinked = %v", p.Inst.ID, p.NotLinked)
		}
	}
}

// TestPlanOffsetsFallback: a version the table does not cover takes its
// offsets from the target's DWARF, and without DWARF the instrumentor is
// skipped with the command that regenerates the table.
func TestPlanOffsetsFallback(t *testing.T) {
	list := []*instrumentors.Instrumentor{httpserver.Instrumentor}
	// A table that knows every field but covers only Go 1.13.1-1.13.12.
	structs := map[string]map[string][]map[string]any{}
	for _, f := range instrumentors.Fields(list) {
		if structs[f.Struct] == nil {
			structs[f.Struct] = map[string][]map[string]any{}
		}
		structs[f.Struct][f.Member] = []map[string]any{{"versions": ">= 1.13.1, <= 1.13.12", "offset": 0}}
	}
	js, _ := json.Marshal(map[string]any{"checked": []string{"1.13.1", "1.13.12"}, "covered": []string{">= 1.13.1, <= 1.13.12"}, "structs": structs})
	narrow, err := offsets.Parse(js)
	if err != nil {
		t.Fatal(err)
	}
	plain := open(t, build(t, "httpserver", "1.22.12", testapp.Options{}))
	plans, err := MakePlans(plain, list, narrow)
	if err != nil {
		t.Fatal(err)
	}
	if plans[0].Skip != "" || plans[0].OffsetsFrom != "target DWARF" {
		t.Errorf("unstripped: skip %q, offsets from %q; want target DWARF", plans[0].Skip, plans[0].OffsetsFrom)
	}
	full, _ := MakePlans(plain, list, embedded(t))
	for name, v := range full[0].Consts {
		if plans[0].Consts[name] != v {
			t.Errorf("%s: DWARF says %#x, table says %#x", name, plans[0].Consts[name], v)
		}
	}
	stripped := open(t, build(t, "httpserver", "1.22.12", testapp.Options{Stripped: true}))
	plans, err = MakePlans(stripped, list, narrow)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plans[0].Skip, offsets.Regenerate) {
		t.Errorf("stripped: skip %q, want it to name %q", plans[0].Skip, offsets.Regenerate)
	}
}

// TestNoSilentAbsence: for every Go version the offsets table was generated
// from and every registered instrumentor that attaches to it, each required
// member, and each optional member whose absence loses a value
// (Const.Reports), is present under one of its names. A release that moves
// a member (Go 1.27 moved HTTP/2 into net/http/internal/http2) fails here
// until the instrumentor names the new place, instead of quietly reporting
// a default.
func TestNoSilentAbsence(t *testing.T) {
	tab := embedded(t)
	var fields []offsets.Field // the standard library's: modules have tables of their own
	for _, f := range instrumentors.Fields(all.List) {
		if f.Module == "" {
			fields = append(fields, f)
		}
	}
	checked := tab.Checked()
	if len(checked) == 0 {
		t.Fatal("the offsets table lists no checked Go versions")
	}
	for _, v := range checked {
		offs, err := tab.Lookup(v, fields)
		if err != nil {
			t.Errorf("go%s: %v", v, err)
			continue
		}
		for _, inst := range all.List {
			if inst.Module != "" {
				continue
			}
			if inst.GoVersions != "" && !version.MustConstraints(version.NewConstraint(inst.GoVersions)).Check(v) {
				continue
			}
			_, unreported, missing := resolveConsts(inst.Consts, offs)
			if len(missing) > 0 {
				t.Errorf("go%s: %s cannot attach: no %v", v, inst.ID, missing)
			}
			for _, u := range unreported {
				t.Errorf("go%s: %s cannot report %s", v, inst.ID, u)
			}
		}
	}
}

// TestResolveConstsAlternatives: the first name present wins; with none, an
// optional member is absent and, when it carries a value, reported as such,
// while a required one names every place it looked.
func TestResolveConstsAlternatives(t *testing.T) {
	oldF := offsets.Field{Struct: "net/http.http2responseWriterState", Member: "status"}
	newF := offsets.Field{Struct: "net/http/internal/http2.responseWriterState", Member: "status"}
	alt := instrumentors.Const{Name: "off_status", Field: oldF, Or: []offsets.Field{newF}, Optional: true, Reports: "the status"}
	quiet := instrumentors.Const{Name: "off_quiet", Field: offsets.Field{Struct: "net/http.Request", Member: "Pattern"}, Optional: true}
	required := alt
	required.Name, required.Optional, required.Reports = "off_required", false, ""

	for _, c := range []struct {
		name       string
		offs       map[offsets.Field]offsets.Offset
		want       uint64
		unreported bool
	}{
		{"old name", map[offsets.Field]offsets.Offset{oldF: {Value: 72, Present: true}, newF: {}}, 72, false},
		{"new name", map[offsets.Field]offsets.Offset{oldF: {}, newF: {Value: 240, Present: true}}, 240, false},
		{"both: first wins", map[offsets.Field]offsets.Offset{oldF: {Value: 72, Present: true}, newF: {Value: 240, Present: true}}, 72, false},
		{"neither", map[offsets.Field]offsets.Offset{oldF: {}}, OffsetAbsent, true},
	} {
		alt2 := alt
		alt2.Name = "off_status2"
		vals, unreported, missing := resolveConsts([]instrumentors.Const{alt, quiet, alt2}, c.offs)
		if vals["off_status"].value != c.want {
			t.Errorf("%s: off_status = %#x, want %#x", c.name, vals["off_status"].value, c.want)
		}
		if f := vals["off_status"].field; (c.want == 240 && f != newF) || (c.want == 72 && f != oldF) {
			t.Errorf("%s: off_status read from %v", c.name, f)
		}
		if vals["off_quiet"].value != OffsetAbsent {
			t.Errorf("%s: off_quiet = %#x, want absent", c.name, vals["off_quiet"].value)
		}
		if len(missing) != 0 {
			t.Errorf("%s: optional members reported missing: %v", c.name, missing)
		}
		if got := len(unreported) > 0; got != c.unreported {
			t.Errorf("%s: unreported %v, want some: %v", c.name, unreported, c.unreported)
		} else if got && (len(unreported) != 1 || unreported[0].Value != "the status" || len(unreported[0].Consts) != 2 || len(unreported[0].Missing) != 4) {
			t.Errorf("%s: unreported %+v, want the status once, for both constants and all their names", c.name, unreported)
		}
		_, _, missing = resolveConsts([]instrumentors.Const{required}, c.offs)
		if want := c.unreported; (len(missing) > 0) != want {
			t.Errorf("%s: required member missing %v, want missing: %v", c.name, missing, want)
		} else if want && (!strings.Contains(missing[0], oldF.String()) || !strings.Contains(missing[0], newF.String())) {
			t.Errorf("%s: %q should name both places", c.name, missing[0])
		}
	}
}
