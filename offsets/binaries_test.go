package offsets

import (
	"debug/dwarf"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"

	version "github.com/hashicorp/go-version"

	"github.com/uranus-otel/uranus/internal/testapp"
	"github.com/uranus-otel/uranus/internal/toolchain"
)

// TestTableMatchesBinaries checks table.json against the DWARF of the
// end-to-end sample built by real toolchains: for every struct the sample
// keeps, every field must have the offset the table gives. The arm64 builds
// back the claim that the amd64 table holds for all 64-bit targets.
func TestTableMatchesBinaries(t *testing.T) {
	tab, err := Embedded()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		goVersion string
		opts      testapp.Options
	}{
		{"1.13.15", testapp.Options{}},
		{"1.16.15", testapp.Options{}},
		{"1.17.13", testapp.Options{}},
		{"1.22.12", testapp.Options{}},
		{"1.24.13", testapp.Options{}},
		{"1.26.8", testapp.Options{}},
		{"1.27.4", testapp.Options{}},
		{"1.22.12", testapp.Options{GOARCH: "arm64"}},
		{"1.27.4", testapp.Options{GOARCH: "arm64"}},
	} {
		t.Run(tc.goVersion+"-"+tc.opts.String(), func(t *testing.T) {
			bin, err := testapp.Build("httpserver", tc.goVersion, tc.opts, t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			f, err := elf.Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if tc.goVersion == "1.13.15" && f.Section(".zdebug_info") == nil {
				t.Error("Go 1.13 binary has no .zdebug_info: the compressed-DWARF path is not exercised")
			}
			d, err := f.DWARF()
			if err != nil {
				t.Fatal(err)
			}
			compared := compareWithTable(t, tab, tc.goVersion, d)
			for _, s := range []string{"runtime.g", "net/http.Request", "net/http.response", "net/url.URL"} {
				if !compared[s] {
					t.Errorf("the sample's DWARF has no %s", s)
				}
			}
		})
	}
}

// compareWithTable checks every struct of the table that d has against the
// table's offsets for goVersion, and returns the structs it compared.
func compareWithTable(t *testing.T, tab *Table, goVersion string, d *dwarf.Data) map[string]bool {
	t.Helper()
	byStruct := make(map[string][]Field)
	for _, f := range tab.Fields() {
		byStruct[f.Struct] = append(byStruct[f.Struct], f)
	}
	var structs []string
	for s := range byStruct {
		structs = append(structs, s)
	}
	sort.Strings(structs)
	want, err := tab.Lookup(version.Must(version.NewVersion(goVersion)), tab.Fields())
	if err != nil {
		t.Fatal(err)
	}
	compared := make(map[string]bool)
	for _, s := range structs {
		got, err := FromDWARF(d, byStruct[s])
		if errors.Is(err, ErrStructNotFound) {
			t.Logf("skipping %s: not in the binary's DWARF", s)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		compared[s] = true
		for _, f := range byStruct[s] {
			if got[f] != want[f] {
				t.Errorf("%s: table says %+v, the binary's DWARF %+v", f, want[f], got[f])
			}
		}
	}
	t.Logf("compared %d of %d structs", len(compared), len(structs))
	return compared
}

// TestTableHoldsForArm64 builds the generator's own sample, which keeps every
// struct of the table alive, for arm64 and checks that the amd64 table
// matches all of it: GOARCH() documents that the table applies to arm64.
func TestTableHoldsForArm64(t *testing.T) {
	tab, err := Embedded()
	if err != nil {
		t.Fatal(err)
	}
	sample := filepath.Join("gen", "testdata", "sample")
	files, err := os.ReadDir(sample)
	if err != nil {
		t.Fatal(err)
	}
	for _, goVersion := range []string{"1.17.13", "1.22.12", "1.27.4"} {
		t.Run(goVersion, func(t *testing.T) {
			tc, err := toolchain.Get(goVersion, t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			for _, f := range files {
				data, err := os.ReadFile(filepath.Join(sample, f.Name()))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, f.Name()), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			gomod := fmt.Sprintf("module sample\n\ngo 1.%d\n", tc.MinorVersion())
			if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
				t.Fatal(err)
			}
			bin := filepath.Join(dir, "sample")
			if err := tc.Build(dir, bin, "", "GOARCH=arm64"); err != nil {
				t.Fatal(err)
			}
			f, err := elf.Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Machine != elf.EM_AARCH64 {
				t.Fatalf("built for %v, not arm64", f.Machine)
			}
			d, err := f.DWARF()
			if err != nil {
				t.Fatal(err)
			}
			compared := compareWithTable(t, tab, goVersion, d)
			for _, fl := range tab.Fields() {
				got, _ := tab.Lookup(version.Must(version.NewVersion(goVersion)), []Field{fl})
				if got[fl].Present && !compared[fl.Struct] {
					t.Errorf("the sample's arm64 DWARF has no %s", fl.Struct)
				}
			}
		})
	}
}
