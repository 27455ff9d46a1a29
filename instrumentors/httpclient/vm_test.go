package httpclient_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uranus-otel/uranus/attach"
	"github.com/uranus-otel/uranus/internal/e2e"
	"github.com/uranus-otel/uranus/internal/testapp"
	"github.com/uranus-otel/uranus/internal/vmtest"
)

// TestInjectionInVM proves trace-context injection where this machine's
// kernel cannot: under lockdown (integrity) bpf_probe_write_user is refused,
// so the propagation tests run again inside a VM booted with Debian's
// kernel, where lockdown is off, and must see B's handler receive A's
// client span in a traceparent.
func TestInjectionInVM(t *testing.T) {
	if os.Getenv("URANUS_IN_VM") != "" {
		t.Skip("skipping: already inside the test VM")
	}
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("skipping under -short: boots a VM and runs the propagation tests in it (1-2 minutes)")
	}
	if attach.InjectionAllowed() {
		t.Skip("skipping: this kernel allows injection, so TestPropagation checks it here")
	}
	if err := vmtest.Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI needs the test VM to check injection under lockdown %q: %v", attach.Lockdown(), err)
		}
		t.Skipf("skipping: lockdown %q forbids injection here and no VM can run: %v", attach.Lockdown(), err)
	}
	files := map[string]string{}
	for _, b := range []struct {
		version  string
		stripped bool
	}{
		{"1.22.12", false}, {"1.22.12", true}, {"1.16.15", false}, {"1.27.4", true},
		{"1.27.4", false}, {"1.13.15", true}, {"1.24.13", false}, {"1.24.13", true},
		{"1.17.13", false}, {"1.21.13", false}, {"1.16.15", true},
	} {
		p := e2e.BuildTarget(t, "relay", b.version, testapp.Options{Stripped: b.stripped})
		files["/targets/"+filepath.Base(p)] = p
	}
	testBin := filepath.Join(t.TempDir(), "httpclient.test")
	if err := vmtest.CompileTest("github.com/uranus-otel/uranus/instrumentors/httpclient", testBin); err != nil {
		t.Fatal(err)
	}
	files["/httpclient.test"] = testBin
	res, err := vmtest.Run(vmtest.Config{
		Args: []string{"/httpclient.test", "-test.v", "-test.count=1",
			"-test.run", "^(TestPropagation|TestAppTraceparentKept|TestSampling)$"},
		Env:   []string{"CI=true", "URANUS_IN_VM=1", "URANUS_TESTAPP_DIR=/targets", "HOME=/tmp", "PATH=/bin"},
		Files: files,
		Logf:  t.Logf,
	})
	if err != nil || res.Exit != 0 {
		out := ""
		if res != nil {
			out = res.Output
		}
		t.Fatalf("tests in the VM failed (%v):\n%s", err, out)
	}
	for _, want := range []string{"--- PASS: TestPropagation", "--- PASS: TestAppTraceparentKept", "--- PASS: TestSampling"} {
		if !strings.Contains(res.Output, want) {
			t.Errorf("VM output lacks %q:\n%s", want, res.Output)
		}
	}
	if strings.Contains(res.Output, "forbids injection") {
		t.Errorf("injection was off inside the VM too:\n%s", res.Output)
	}
	for _, line := range strings.Split(res.Output, "\n") {
		if strings.Contains(line, "--- ") {
			t.Log("in VM:", strings.TrimSpace(line))
		}
	}
}
