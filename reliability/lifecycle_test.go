package reliability

import (
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uranus-otel/uranus/internal/e2e"
)

// installAs copies the executable src to dst atomically (a new inode, as a
// deployment would produce), so that a running copy is never overwritten.
func installAs(t testing.TB, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	tmp := dst + ".new"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// uniqueName is an executable name no other test's process has, so that
// uranus --exe NAME matches only this test's targets.
func uniqueName(what string) string {
	return fmt.Sprintf("%s-%d-%d", what, os.Getpid(), rand.Intn(1e6))
}

// watchUranus starts uranus on --exe path, exporting to a new collector.
func watchUranus(t *testing.T, path string, extra ...string) (*sidecar, *collector) {
	t.Helper()
	col := startCollector(t)
	args := append([]string{"--exe", filepath.Base(path), "--instrument", instrumentFlag(), "--log-level", "debug"}, extra...)
	s := startUranus(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + col.endpoint(), "OTEL_BSP_SCHEDULE_DELAY=100"}, args)
	s.waitLine(t, 0, "waiting for the target to start")
	return s, col
}

// TestRestartReattach restarts the target several times at the same path,
// then deploys a build by another Go version there: every incarnation is
// attached, with its own Go version, and traced. It reports how long each
// took from the process start to uranus's "attached" line; uranus is told
// of each exec (or scans /proc every 250 ms), so the median must stay under a second.
func TestRestartReattach(t *testing.T) {
	e2e.RequireBPF(t)
	v1, v2 := "1.16.15", newest()
	path := filepath.Join(t.TempDir(), uniqueName("restartee"))
	installAs(t, stackgrow(t, v1), path)
	s, col := watchUranus(t, path)

	var delays []time.Duration
	rounds := 3
	if testing.Short() {
		rounds = 2
	}
	spans := 0
	from := 0
	for round := 0; round < 2*rounds; round++ {
		version := v1
		if round == rounds {
			installAs(t, stackgrow(t, v2), path)
		}
		if round >= rounds {
			version = v2
		}
		started := time.Now()
		a := startApp(t, path, "-depth", "4")
		line, i := s.waitLine(t, from, "msg=attached", fmt.Sprintf("pid=%d", a.pid()))
		from = i + 1
		delays = append(delays, logTime(t, line).Sub(started))
		if got := logField(line, "go"); got != "go"+version {
			t.Errorf("round %d: attached as %s, the binary is Go %s", round, got, version)
		}
		mustFetch(t, fmt.Sprintf("http://%s/work/%d", a.addr, round))
		spans += spansPer("/work/")
		got := col.waitSpans(t, spans)
		last := got[len(got)-1]
		if last.pid != strconv.Itoa(a.pid()) || last.goVersion != "go"+version {
			t.Errorf("round %d: span from pid %s (%s), want pid %d (go%s)", round, last.pid, last.goVersion, a.pid(), version)
		}
		a.kill()
		_, i = s.waitLine(t, from, "target exited", fmt.Sprintf("pid=%d", a.pid()))
		from = i + 1
	}
	sorted := append([]time.Duration(nil), delays...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	median := sorted[len(sorted)/2]
	t.Logf("process start → attached: %v (median %v, max %v)", roundAll(delays), median, sorted[len(sorted)-1])
	if median > time.Second {
		t.Errorf("re-attaching took %v (median of %v); want under 1s", median, roundAll(delays))
	}

	// A supervisor's restart: the next process starts while uranus is
	// still removing the last one's probes. Reported, not asserted yet:
	// uranus detaches on the loop that attaches, and removing a uprobe
	// waits ~0.1 s, so the new process waits for every probe of the old.
	old := startApp(t, path, "-depth", "4")
	_, from = s.waitLine(t, from, "msg=attached", fmt.Sprintf("pid=%d", old.pid()))
	old.kill()
	time.Sleep(300 * time.Millisecond) // longer than a /proc scan: its exit is seen first
	started := time.Now()
	a := startApp(t, path, "-depth", "4")
	line, _ := s.waitLine(t, from, "msg=attached", fmt.Sprintf("pid=%d", a.pid()))
	exited, _ := s.waitLine(t, from, "target exited", fmt.Sprintf("pid=%d", old.pid()))
	t.Logf("restart while the old process is being detached: start → attached %v (the detach ended %v after the start)",
		logTime(t, line).Sub(started).Round(time.Millisecond), logTime(t, exited).Sub(started).Round(time.Millisecond))
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// TestManyTargets runs 50 copies of one program at once: each is attached
// and traced with its own process.pid, and once they exit uranus holds no
// program of theirs.
func TestManyTargets(t *testing.T) {
	e2e.RequireBPF(t)
	const n = 50
	path := filepath.Join(t.TempDir(), uniqueName("many"))
	installAs(t, stackgrow(t, newest()), path)
	s, col := watchUranus(t, path)
	held := heldBPFObjects(t, s.pid())

	started := time.Now()
	apps := make([]*app, n)
	for i := range apps {
		apps[i] = startApp(t, path, "-depth", "4")
	}
	var last time.Time
	for _, a := range apps {
		line, _ := s.waitLine(t, 0, "msg=attached", fmt.Sprintf("pid=%d", a.pid()))
		if ts := logTime(t, line); ts.After(last) {
			last = ts
		}
	}
	t.Logf("%d targets attached %v after the first started", n, last.Sub(started).Round(time.Millisecond))
	attached := heldBPFObjects(t, s.pid())
	for i, a := range apps {
		mustFetch(t, fmt.Sprintf("http://%s/work/%d", a.addr, i))
	}
	got := col.waitSpans(t, n*spansPer("/work/"))
	byPID := map[string]int{}
	for _, sp := range got {
		byPID[sp.pid]++
	}
	for _, a := range apps {
		if byPID[strconv.Itoa(a.pid())] != spansPer("/work/") {
			t.Errorf("pid %d: %d spans, want %d (all: %v)", a.pid(), byPID[strconv.Itoa(a.pid())], spansPer("/work/"), byPID)
		}
	}

	killed := time.Now()
	for _, a := range apps {
		a.kill()
	}
	last = time.Time{}
	for _, a := range apps {
		line, _ := s.waitLine(t, 0, "target exited", fmt.Sprintf("pid=%d", a.pid()))
		if ts := logTime(t, line); ts.After(last) {
			last = ts
		}
	}
	t.Logf("%d targets detached %v after they were killed", n, last.Sub(killed).Round(time.Millisecond))
	after := heldBPFObjects(t, s.pid())
	t.Logf("uranus held %d BPF objects idle, %d with %d targets, %d after they exited", held.count(), attached.count(), n, after.count())
	// The probes are the file's, shared by its processes: they stay, for
	// the next process of it, and nothing per process remains.
	if after.count() != attached.count() {
		t.Errorf("after every target exited uranus holds %v; with %d running it held %v", after, n, attached)
	}
}

// TestTargetExitsMidAttach kills targets at random moments while uranus
// attaches to them. uranus must say plainly what happened to each, keep
// running, leak nothing, and still trace the next target.
func TestTargetExitsMidAttach(t *testing.T) {
	e2e.RequireBPF(t)
	rounds := 25
	if testing.Short() {
		rounds = 10
	}
	path := filepath.Join(t.TempDir(), uniqueName("shortlived"))
	installAs(t, stackgrow(t, newest()), path)
	s, col := watchUranus(t, path)
	held := heldBPFObjects(t, s.pid())

	rng := rand.New(rand.NewSource(1))
	pids := map[string]bool{}
	for i := 0; i < rounds; i++ {
		a := launchApp(t, path, "-depth", "4")
		pids[strconv.Itoa(a.pid())] = true
		// Up to 800 ms: before, during and after the scan that finds it
		// and the attach that follows.
		time.Sleep(time.Duration(rng.Intn(800)) * time.Millisecond)
		a.kill()
	}
	// Two scans after the last exit, uranus has seen everything; then wait
	// for every target it attached to be detached.
	time.Sleep(time.Second)
	for _, line := range s.logLines(0) {
		if strings.Contains(line, "msg=attached") {
			s.waitLine(t, 0, "msg=\"target exited;", "pid="+logField(line, "pid"))
		}
	}

	var attached, vanished, exited int
	for _, line := range s.logLines(0) {
		switch {
		case strings.Contains(line, "msg=attached"):
			attached++
		case strings.Contains(line, "msg=\"target exited;"):
			exited++
		case strings.Contains(line, "target exited while uranus was attaching to it"):
			vanished++
		case pids[logField(line, "pid")] && (strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN")):
			t.Errorf("a target that exits mid-attach is not an error: %s", line)
		}
	}
	t.Logf("%d short-lived targets: %d attached (%d of those then seen exiting), %d exited while being attached, %d never seen",
		rounds, attached, exited, vanished, rounds-attached-vanished)
	if attached != exited {
		t.Errorf("%d targets attached but %d detached", attached, exited)
	}
	after := heldBPFObjects(t, s.pid())

	a := startApp(t, path, "-depth", "4")
	s.waitLine(t, 0, "msg=attached", fmt.Sprintf("pid=%d", a.pid()))
	mustFetch(t, "http://"+a.addr+"/work/1")
	col.waitSpans(t, spansPer("/work/"))
	// Once a process of the file was found, its probes stay on the file
	// for the next: nothing more than one running target holds.
	withOne := heldBPFObjects(t, s.pid())
	if after.count() != held.count() && after.count() != withOne.count() {
		t.Errorf("after every target exited uranus holds %v; idle it held %v, with one target %v", after, held, withOne)
	}
}

// TestReexec follows a target that replaces its own image with execve
// (same pid): with the same binary, and with a build by another Go
// version. Each new image is attached as a new incarnation and traced.
func TestReexec(t *testing.T) {
	e2e.RequireBPF(t)
	for _, other := range []bool{false, true} {
		name := "same-binary"
		if other {
			name = "other-go-version"
		}
		t.Run(name, func(t *testing.T) {
			if b, _ := os.ReadFile("/proc/sys/kernel/randomize_va_space"); !other && strings.TrimSpace(string(b)) == "0" {
				t.Skip("skipping: address-space randomisation is off, so an exec of the same binary cannot be told apart")
			}
			dir := t.TempDir()
			path := filepath.Join(dir, uniqueName("reexec"))
			installAs(t, stackgrow(t, newest()), path)
			next, version := path, newest()
			if other {
				// Same name in another directory, so --exe NAME matches both.
				version = "1.17.13"
				next = filepath.Join(dir, "next", filepath.Base(path))
				os.Mkdir(filepath.Dir(next), 0o755)
				installAs(t, stackgrow(t, version), next)
			}
			s, col := watchUranus(t, path)
			a := startApp(t, path, "-depth", "4", "-next", next)
			_, from := s.waitLine(t, 0, "msg=attached", fmt.Sprintf("pid=%d", a.pid()))
			mustFetch(t, "http://"+a.addr+"/work/1")
			col.waitSpans(t, spansPer("/work/"))

			mustFetch(t, "http://"+a.addr+"/reexec")
			select {
			case <-a.addrs: // the second generation listens
			case <-time.After(30 * time.Second):
				t.Fatalf("the target did not come back after exec:\n%s%s", a.out(), a.errOut())
			}
			s.waitLine(t, from+1, "target exited", fmt.Sprintf("pid=%d", a.pid()))
			line, _ := s.waitLine(t, from+1, "msg=attached", fmt.Sprintf("pid=%d", a.pid()))
			if got := logField(line, "go"); got != "go"+version {
				t.Errorf("the new image was attached as %s, want go%s", got, version)
			}
			mustFetch(t, "http://"+a.addr+"/work/2")
			sp := col.waitSpan(t, "for /work/2", func(sp gotSpan) bool { return sp.path == "/work/2" })
			if sp.goVersion != "go"+version || sp.pid != strconv.Itoa(a.pid()) {
				t.Errorf("after exec: span from pid %s (%s), want pid %d (go%s)", sp.pid, sp.goVersion, a.pid(), version)
			}
		})
	}
}
