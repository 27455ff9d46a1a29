package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/uranus-otel/uranus/offsets"
)

// checkTable covers go1.13.1–go1.13.3, go1.20.0–go1.20.14, go1.26.0–go1.26.5
// and go1.26.7 (a layout change lies between go1.26.5 and go1.26.7), and
// go1.27.0–go1.27.4.
const checkTable = `{
  "about": "test",
  "goarch": "amd64",
  "checked": ["1.13.1", "1.13.3", "1.20.0", "1.20.14", "1.26.0", "1.26.5", "1.26.7", "1.27.0", "1.27.4"],
  "covered": [">= 1.13.1, <= 1.13.3", ">= 1.20.0, <= 1.20.14", ">= 1.26.0, <= 1.26.5", ">= 1.26.7, <= 1.26.7", ">= 1.27.0, <= 1.27.4"],
  "structs": {"s": {"a": [
    {"versions": ">= 1.13.1, <= 1.26.5", "offset": 8},
    {"versions": ">= 1.26.7, <= 1.27.4", "offset": 16}
  ]}}
}`

// coveredList is a proxy list the table above covers entirely, with
// what the check must pass over: other platforms, unsupported old series,
// old pre-releases.
var coveredList = []string{
	"v0.0.1-go1.12.17.linux-amd64",
	"v0.0.1-go1.13.1.linux-amd64",
	"v0.0.1-go1.13.2.linux-amd64",
	"v0.0.1-go1.13.3.linux-amd64",
	"v0.0.1-go1.13.3.darwin-arm64",
	"v0.0.1-go1.20.linux-amd64",
	"v0.0.1-go1.20.14.linux-amd64",
	"v0.0.1-go1.26.0.linux-amd64",
	"v0.0.1-go1.26.5.linux-amd64",
	"v0.0.1-go1.26.7.linux-amd64",
	"v0.0.1-go1.27.0.linux-amd64",
	"v0.0.1-go1.27.4.linux-amd64",
	"v0.0.1-go1.27.4.linux-arm64",
	"v0.0.1-go1.28.0.windows-amd64",
	"v0.0.1-go1.26rc1.linux-amd64",
	"v0.0.1-go1.27beta1.linux-amd64",
}

func TestCheckCoverage(t *testing.T) {
	tbl, err := offsets.Parse([]byte(checkTable))
	if err != nil {
		t.Fatal(err)
	}
	with := func(extra ...string) []string { return append(append([]string(nil), coveredList...), extra...) }
	for _, tc := range []struct {
		name           string
		list           []string
		code           int
		stdout, stderr string
	}{{
		name:   "all covered",
		list:   coveredList,
		code:   checkCovered,
		stdout: "table covers every release up to go1.27.4\n",
	}, {
		name: "new patch of a covered series",
		list: with("v0.0.1-go1.27.5.linux-amd64"),
		code: checkUncovered,
		stdout: "go1.27.5: newer than go1.27.4, the newest checked patch of go1.27\n" +
			"1 published Go release is not covered by offsets/table.json; regenerate it with `go run ./offsets/gen`\n",
	}, {
		name: "new minor series, listed out of order, and a duplicate",
		list: with("v0.0.1-go1.28.1.linux-amd64", "v0.0.1-go1.28.0.linux-amd64", "v0.0.1-go1.28.1.linux-amd64"),
		code: checkUncovered,
		stdout: "go1.28.0: new minor series: no go1.28 patch was checked\n" +
			"go1.28.1: new minor series: no go1.28 patch was checked\n" +
			"2 published Go releases are not covered by offsets/table.json; regenerate it with `go run ./offsets/gen`\n",
	}, {
		name: "patches published inside and before a checked series",
		list: with("v0.0.1-go1.26.6.linux-amd64", "v0.0.1-go1.13.linux-amd64", "v0.0.1-go1.26.3.linux-amd64"),
		code: checkUncovered,
		stdout: "go1.13: older than go1.13.1, the oldest checked patch of go1.13\n" +
			"go1.26.6: between go1.26.5 and go1.26.7, whose layouts differ\n" +
			"2 published Go releases are not covered by offsets/table.json; regenerate it with `go run ./offsets/gen`\n",
	}, {
		name:   "pre-releases are noted, never reported as uncovered",
		list:   with("v0.0.1-go1.28rc1.linux-amd64", "v0.0.1-go1.28beta1.linux-amd64", "v0.0.1-go1.28rc1.linux-arm64"),
		code:   checkCovered,
		stdout: "table covers every release up to go1.27.4\n",
		stderr: "note: go1.28rc1 is a pre-release; the table never covers pre-releases, update it when the release is out\n" +
			"note: go1.28beta1 is a pre-release; the table never covers pre-releases, update it when the release is out\n",
	}, {
		name: "a pre-release next to its release",
		list: with("v0.0.1-go1.28rc2.linux-amd64", "v0.0.1-go1.28.0.linux-amd64"),
		code: checkUncovered,
		stdout: "go1.28.0: new minor series: no go1.28 patch was checked\n" +
			"1 published Go release is not covered by offsets/table.json; regenerate it with `go run ./offsets/gen`\n",
	}, {
		name: "malformed lines",
		list: with("", "   ", "garbage", "v0.0.1-go1.x.linux-amd64", "v0.0.2-go1.28.0.linux-amd64",
			"v0.0.1-go1.27.4.5.linux-amd64", "v0.0.1-go1.27.4.linux-amd64.foo", " v0.0.1-go1.27.4.linux-amd64 ",
			"v0.0.1-go1.99999999999999999999.linux-amd64"),
		code:   checkCovered,
		stdout: "table covers every release up to go1.27.4\n",
		stderr: "warning: golang.org/toolchain version \"v0.0.1-go1.x.linux-amd64\" is not a Go version this check can read; look at it by hand\n" +
			"warning: golang.org/toolchain version \"v0.0.2-go1.28.0.linux-amd64\" is not a Go version this check can read; look at it by hand\n" +
			"warning: golang.org/toolchain version \"v0.0.1-go1.27.4.5.linux-amd64\" is not a Go version this check can read; look at it by hand\n" +
			"warning: golang.org/toolchain version \"v0.0.1-go1.99999999999999999999.linux-amd64\" is not a Go version this check can read; look at it by hand\n",
	}, {
		name:   "nothing from go1.13 on for the table's GOARCH",
		list:   []string{"v0.0.1-go1.12.17.linux-amd64", "v0.0.1-go1.27.4.linux-arm64", "not a version"},
		code:   checkFailed,
		stderr: "offsets/gen -check: the module proxy lists no golang.org/toolchain release for linux/amd64 from go1.13 on\n",
	}, {
		name:   "empty list",
		code:   checkFailed,
		stderr: "offsets/gen -check: the module proxy lists no golang.org/toolchain release for linux/amd64 from go1.13 on\n",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runCheck(tc.list, tbl, &stdout, &stderr)
			if code != tc.code || stdout.String() != tc.stdout || stderr.String() != tc.stderr {
				t.Errorf("exit %d, stdout:\n%s\nstderr:\n%s\nwant exit %d, stdout:\n%s\nstderr:\n%s",
					code, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderr)
			}
		})
	}
}

// TestCheckRealProxy runs the check against the module proxy's real list. It
// asserts that the list is read, not that the table is complete: a Go
// release published tomorrow must not fail CI.
func TestCheckRealProxy(t *testing.T) {
	vs, err := listToolchainVersions()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skipf("module proxy unreachable: %v", err)
	}
	tbl, err := offsets.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	r, err := checkCoverage(vs, tbl.GOARCH(), tbl)
	if err != nil {
		t.Fatal(err)
	}
	// The table was generated from this list and the proxy never drops a
	// version: every checked version is published.
	published := make(map[string]bool)
	for _, rs := range parseReleases(vs, tbl.GOARCH()) {
		for _, rel := range rs {
			published[rel.v.String()] = true
		}
	}
	for _, v := range tbl.Checked() {
		if !published[v.String()] {
			t.Errorf("checked version %s is not in the proxy's list as read", v)
		}
	}
	if ch := tbl.Checked(); r.newest.LessThan(ch[len(ch)-1]) {
		t.Errorf("newest published release read as %s, older than the newest checked %s", r.newest, ch[len(ch)-1])
	}
	var stdout, stderr bytes.Buffer
	code := runCheck(vs, tbl, &stdout, &stderr)
	if code != checkCovered && code != checkUncovered {
		t.Fatalf("exit %d: %s%s", code, stdout.String(), stderr.String())
	}
	if code == checkUncovered || strings.Contains(stderr.String(), "warning") {
		t.Logf("the table is behind the proxy (update it as the README's Development section says):\n%s%s", stdout.String(), stderr.String())
	}
	t.Logf("exit %d: %s", code, strings.TrimSpace(stdout.String()))
}
