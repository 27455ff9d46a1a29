package main

import (
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"testing"

	version "github.com/hashicorp/go-version"

	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/instrumentors/all"
	"github.com/uranus-otel/uranus/offsets"
)

func TestEscapePath(t *testing.T) {
	for in, want := range map[string]string{
		"golang.org/x/net":                  "golang.org/x/net",
		"github.com/Azure/azure-sdk-for-go": "github.com/!azure/azure-sdk-for-go",
		"github.com/BurntSushi/TOML":        "github.com/!burnt!sushi/!t!o!m!l",
		"gopkg.in/yaml.v3":                  "gopkg.in/yaml.v3",
		"v1.2.3":                            "v1.2.3",
		"example.com/a-b_c~d/v2":            "example.com/a-b_c~d/v2",
		"github.com/Shopify/sarama@v1.38.1": "github.com/!shopify/sarama@v1.38.1",
	} {
		got, err := escapePath(in)
		if err != nil || got != want {
			t.Errorf("escapePath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a!b/c", "a b/c", "/a/b", "a/b/", "a//b", "a/../b", "é.com/x", "a/\tb"} {
		if got, err := escapePath(bad); err == nil {
			t.Errorf("escapePath(%q) = %q, want an error", bad, got)
		}
	}
}

func TestProxyURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://proxy.golang.org,direct":            "https://proxy.golang.org",
		"direct|https://goproxy.io/,off":             "https://goproxy.io",
		"off,http://localhost:3000/proxy|direct":     "http://localhost:3000/proxy",
		" https://a.example , https://b.example ":    "https://a.example",
		"file:///tmp/cache,https://proxy.golang.org": "https://proxy.golang.org",
	} {
		got, err := proxyURL(in)
		if err != nil || got != want {
			t.Errorf("proxyURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "off", "direct", "direct,off", "file:///tmp/cache"} {
		if got, err := proxyURL(bad); err == nil {
			t.Errorf("proxyURL(%q) = %q, want an error", bad, got)
		}
	}
}

// names renders grouped releases as "name=version:minor:latest" per series.
func names(series [][]release) [][]string {
	var res [][]string
	for _, rs := range series {
		var ns []string
		for _, r := range rs {
			ns = append(ns, fmt.Sprintf("%s=%s:%d:%v", r.name, r.v, r.minor, r.latest))
		}
		res = append(res, ns)
	}
	return res
}

func TestParseModuleVersions(t *testing.T) {
	list := strings.Split(strings.Join([]string{
		"v0.19.0",
		"v0.20.0",
		"v0.21.0",
		"v0.20.2",
		"v0.20.1 ",
		"v0.20.1",                               // listed twice
		"v0.22.0-rc.1",                          // pre-release
		"v0.46.1-0.20251013234738-63d1a5100f82", // pseudo-version
		"v0.23.0+incompatible",                  // build metadata
		"v0.24",                                 // not X.Y.Z
		"v0.025.0",                              // leading zero: not semver
		"0.26.0",                                // no v
		"v1.0.0",
		"v0.100.0",
		"v1.2.10",
		"v1.2.9",
		"",
	}, "\n"), "\n")
	got := names(parseModuleVersions(list, version.Must(version.NewVersion("0.20.0"))))
	want := [][]string{
		{"v0.20.0=0.20.0:20:false", "v0.20.1=0.20.1:20:false", "v0.20.2=0.20.2:20:true"},
		{"v0.21.0=0.21.0:21:true"},
		{"v0.100.0=0.100.0:100:true"},
		{"v1.0.0=1.0.0:0:true"},
		{"v1.2.9=1.2.9:2:false", "v1.2.10=1.2.10:2:true"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseModuleVersions = %q\nwant %q", got, want)
	}
	if got := parseModuleVersions(list, nil); len(got) != 6 || got[0][0].name != "v0.19.0" {
		t.Errorf("without since: %q", names(got))
	}
	if got := parseModuleVersions(list, version.Must(version.NewVersion("2.0.0"))); len(got) != 0 {
		t.Errorf("since after every release: %q", names(got))
	}
}

func TestGoDirective(t *testing.T) {
	for in, want := range map[string]string{
		"module golang.org/x/net\n\ngo 1.18\n\nrequire golang.org/x/text v0.14.0\n": "1.18",
		"module m\ngo 1.23.0 // comment\ntoolchain go1.24.1\n":                      "1.23.0",
		"module m\r\ngo\t1.26.0\r\n":                                                "1.26.0",
		"module m\n// go 1.99\nrequire (\n\tgolang.org/x/go v1.0.0\n)\n":            "",
	} {
		if got := goDirective(in); got != want {
			t.Errorf("goDirective(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCutAtNewerGo(t *testing.T) {
	series := parseModuleVersions([]string{"v0.1.0", "v0.1.1", "v0.2.0", "v0.2.1", "v0.2.2", "v0.3.0"}, nil)
	local := version.Must(version.NewVersion("1.26.8"))
	lines := func(m map[string]string) func(release) (string, error) {
		return func(r release) (string, error) { return m[r.name], nil }
	}
	kept, dropped, err := cutAtNewerGo(series, local, lines(map[string]string{
		"v0.1.0": "1.18", "v0.1.1": "", "v0.2.0": "1.26.8", "v0.2.1": "1.27", "v0.2.2": "1.26.0", "v0.3.0": "1.26.0",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(kept), [][]string{{"v0.1.0=0.1.0:1:false", "v0.1.1=0.1.1:1:true"}, {"v0.2.0=0.2.0:2:false"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("kept %q, want %q", got, want)
	}
	if got, want := names([][]release{dropped}), [][]string{{"v0.2.1=0.2.1:2:false", "v0.2.2=0.2.2:2:true", "v0.3.0=0.3.0:3:true"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("dropped %q, want %q", got, want)
	}
	// The series are not modified in place.
	if len(series[1]) != 3 {
		t.Errorf("cutAtNewerGo changed its input: %q", names(series))
	}

	kept, dropped, _ = cutAtNewerGo(series, local, lines(map[string]string{"v0.2.0": "1.30rc1"}))
	if len(kept) != 1 || len(dropped) != 4 {
		t.Errorf("a series whose first release needs a newer Go: kept %q, dropped %d", names(kept), len(dropped))
	}
	kept, dropped, _ = cutAtNewerGo(series, local, lines(nil))
	if !reflect.DeepEqual(kept, series) || dropped != nil {
		t.Errorf("nothing to cut: kept %q, dropped %d", names(kept), len(dropped))
	}
	if _, _, err := cutAtNewerGo(series, local, func(release) (string, error) { return "", fmt.Errorf("boom") }); err == nil {
		t.Error("an unreadable go.mod was ignored")
	}
}

// tableModules are the modules that need a table: those instrumentors read
// members of, and those with a field list in fields.go.
func tableModules() []string {
	seen := map[string]bool{}
	var ms []string
	for _, f := range instrumentors.Fields(all.List) {
		if f.Module != "" && !seen[f.Module] {
			seen[f.Module] = true
			ms = append(ms, f.Module)
		}
	}
	for m := range moduleSince {
		if !seen[m] {
			seen[m] = true
			ms = append(ms, m)
		}
	}
	return ms
}

func TestModuleFields(t *testing.T) {
	if fields := wantedModuleFields("example.com/none"); len(fields) != 0 {
		t.Errorf("a module nobody reads has fields %v", fields)
	}
	for _, m := range tableModules() {
		fields := wantedModuleFields(m)
		if len(fields) == 0 {
			t.Errorf("%s: no fields", m)
		}
		for _, f := range fields {
			if f.Module != m {
				t.Errorf("%s: field %s has Module %q", m, f, f.Module)
			}
		}
		if err := checkFields(fields, moduleOptionalStructs(m)); err != nil {
			t.Errorf("%s: %v", m, err)
		}
		if s, ok := moduleSince[m]; ok && !moduleRelease.MatchString(s) {
			t.Errorf("%s: moduleSince %q is not a release version", m, s)
		}
		if _, err := fs.Stat(moduleSampleFS, "testdata/modules/"+moduleFileName(m)+"/main.go"); err != nil {
			t.Errorf("%s has no sample program: %v", m, err)
		}
	}
	for _, f := range wantedFields() {
		if f.Module != "" {
			t.Errorf("Go's table wants %s of module %s", f, f.Module)
		}
	}
}

// TestModuleTableHasWantedFields fails when a module's field list changed
// without its table being regenerated, or the table does not answer for
// the releases it was generated from.
func TestModuleTableHasWantedFields(t *testing.T) {
	for _, m := range tableModules() {
		tabs, err := offsets.ModuleTables(m)
		if err != nil {
			t.Fatal(err)
		}
		if len(tabs) == 0 {
			t.Errorf("%s has no table: run `%s -module %s`", m, offsets.Regenerate, m)
			continue
		}
		want := wantedModuleFields(m)
		for _, tab := range tabs {
			if tab.Module() != m {
				t.Errorf("the table of %s says it is of %q", m, tab.Module())
			}
			have := make(map[offsets.Field]bool)
			for _, f := range tab.Fields() {
				have[f] = true
			}
			for _, f := range want {
				if !have[f] {
					t.Errorf("the Go %s table of %s has no %s: run `%s -module %s -go go%s`", tab.Go(), m, f, offsets.Regenerate, m, tab.Go())
				}
			}
			for _, v := range tab.Checked() {
				mv, err := offsets.ModuleVersion("v" + v.String())
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tab.Lookup(mv, want); err != nil {
					t.Errorf("%s %s, Go %s: %v", m, v, tab.Go(), err)
				}
			}
		}
	}
}

func TestModuleTableRoundTrip(t *testing.T) {
	const mod = "example.com/Lib"
	f := offsets.Field{Struct: "example.com/Lib/h2.Conn", Member: "state", Module: mod}
	series := parseModuleVersions([]string{"v1.2.0", "v1.2.1", "v1.2.2", "v1.3.0"}, nil)
	mk := func(off uint64) layout { return layout{f: {off: off}} }
	all := []checked{{series[0][0], mk(8)}, {series[0][1], mk(8)}, {series[0][2], mk(16)}, {series[1][0], mk(16)}}
	s12, b12 := coverage(all[:3])
	s13, _ := coverage(all[3:])
	spans := append(s12, s13...)
	data := encodeTable(tableHead{about: moduleAbout(mod, "go1.26.8"), module: mod, goarch: "amd64", goVersion: "1.26.8"}, all, spans, rows([]offsets.Field{f}, spans))
	if err := verifyTable(data, mod, []offsets.Field{f}, all, b12, append(series[0], series[1]...)); err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if err := verifyTable(data, "example.com/other", []offsets.Field{f}, all, b12, nil); err == nil {
		t.Error("a table of another module passed")
	}
	for _, want := range []string{`"module": "example.com/Lib",`, `"1.2.0",`, `">= 1.2.0, <= 1.2.1",`, `{"versions": ">= 1.2.2, <= 1.3.0", "offset": 16}`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("table lacks %s:\n%s", want, data)
		}
	}
	tab, err := offsets.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	for v, want := range map[string]uint64{"v1.2.0": 8, "v1.2.1": 8, "v1.2.2": 16, "v1.3.0": 16} {
		got, err := tab.Lookup(version.Must(offsets.ModuleVersion(v)), []offsets.Field{f})
		if err != nil || got[f] != (offsets.Offset{Value: want, Present: true}) {
			t.Errorf("%s: %v, %v; want %d", v, got, err, want)
		}
	}
}

func TestGoReleaseName(t *testing.T) {
	for in, want := range map[string]string{"go1.27.4": "go1.27.4", "1.22.12": "go1.22.12", "go1.20": "go1.20"} {
		got, v, err := goReleaseName(in)
		if err != nil || got != want || "go"+strings.TrimSuffix(v.String(), ".0") != strings.TrimSuffix(want, ".0") {
			t.Errorf("goReleaseName(%q) = %q, %v, %v; want %q", in, got, v, err, want)
		}
	}
	for _, bad := range []string{"", "go", "1", "go1.27rc1", "go2.0.0", "go1.27.4.linux-amd64", "local"} {
		if got, _, err := goReleaseName(bad); err == nil {
			t.Errorf("goReleaseName(%q) = %q, want an error", bad, got)
		}
	}
	if got := moduleTableFile("google.golang.org/grpc", version.Must(version.NewVersion("1.27.4"))); got != "google.golang.org_grpc.go1.27.json" {
		t.Errorf("moduleTableFile = %q", got)
	}
}

func TestCutAt(t *testing.T) {
	series := parseModuleVersions([]string{"v0.1.0", "v0.1.1", "v0.2.0", "v0.2.1", "v0.3.0"}, nil)
	kept, cut := cutAt(series, series[1][1])
	if got, want := names(kept), [][]string{{"v0.1.0=0.1.0:1:false", "v0.1.1=0.1.1:1:true"}, {"v0.2.0=0.2.0:2:false"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("kept %q, want %q", got, want)
	}
	if len(cut) != 2 || cut[0].name != "v0.2.1" || cut[1].name != "v0.3.0" {
		t.Errorf("cut %q", names([][]release{cut}))
	}
	other := parseModuleVersions([]string{"v0.9.0"}, nil)[0][0]
	if kept, cut := cutAt(series, other); !reflect.DeepEqual(kept, series) || cut != nil {
		t.Errorf("a release not in the series: kept %q, cut %q", names(kept), names([][]release{cut}))
	}
}

func TestNewerGoNeeded(t *testing.T) {
	for _, out := range []string{
		"go: google.golang.org/grpc@v1.73.0 requires go >= 1.23.0 (running go 1.22.12; GOTOOLCHAIN=local)",
		"go: downloading x\ngo: golang.org/x/net@v0.38.0 requires go >= 1.23.0 (running go 1.22.12; GOTOOLCHAIN=local)\n",
		"# golang.org/x/net/http2\nnote: module requires Go 1.23",
	} {
		if m := newerGoNeeded.Find([]byte(out)); m == nil || strings.Contains(string(m), "\n") {
			t.Errorf("%q: found %q", out, m)
		}
	}
	for _, out := range []string{"main.go:3:2: undefined: grpc.Dial", "go: module lookup disabled by GOPROXY=off"} {
		if m := newerGoNeeded.Find([]byte(out)); m != nil {
			t.Errorf("%q: found %q", out, m)
		}
	}
}
