package funcs_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uranus-otel/uranus/internal/e2e"
)

var sigusr1 = syscall.SIGUSR1

// minor is the minor release of a Go version: 17 for "1.17.13".
func minor(version string) int {
	parts := strings.Split(version, ".")
	if len(parts) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(parts[1])
	return n
}

// buildC compiles testdata/utest.c with compiler and flags. A missing
// compiler fails the test in CI, which installs gcc and g++.
func buildC(t *testing.T, compiler string, flags ...string) string {
	t.Helper()
	if _, err := exec.LookPath(compiler); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI: %v", compiler, err)
		}
		t.Skipf("skipping: %s is not installed", compiler)
	}
	out := filepath.Join(t.TempDir(), "utest")
	args := append(append([]string(nil), flags...), "-o", out, filepath.Join("testdata", "utest.c"))
	if b, err := exec.Command(compiler, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", compiler, args, err, b)
	}
	return out
}

// waitCalls waits until p printed n CALL lines after the first before,
// and returns those. The bound only guards against a hung test.
func waitCalls(t *testing.T, p *e2e.Proc, before, n int) []call {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		calls := parseCalls(t, p.Output())
		if len(calls) >= before+n {
			return calls[before : before+n]
		}
		if time.Now().After(deadline) {
			t.Fatalf("the program printed %d calls, want %d:\n%s", len(calls)-before, n, p.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
