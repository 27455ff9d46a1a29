package target

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sleeper starts a copy of sleep under a unique name, so that matching by
// name sees only this test's processes.
func sleeper(t *testing.T, name string) (*exec.Cmd, string) {
	t.Helper()
	src, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("skipping: no sleep binary")
	}
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, path
}

func TestLookupAndMatch(t *testing.T) {
	cmd, path := sleeper(t, "uranus-target-test")
	p, err := Lookup(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if p.Exe != path || p.StartTime == 0 || p.Ino == 0 {
		t.Errorf("Lookup = %+v, want exe %s with start time and inode", p, path)
	}
	link := filepath.Join(t.TempDir(), "via-link")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		m    Matcher
		want bool
	}{
		{Matcher{Exes: []string{"uranus-target-test"}}, true},
		{Matcher{Exes: []string{path}}, true},
		{Matcher{Exes: []string{link}}, true}, // same file, other name
		{Matcher{Exes: []string{"other", "uranus-target-test"}}, true},
		{Matcher{Exes: []string{"uranus-target"}}, false},
		{Matcher{Exes: []string{"/elsewhere/uranus-target-test"}}, false},
		{Matcher{PID: cmd.Process.Pid}, true},
		{Matcher{PID: cmd.Process.Pid + 1}, false},
	} {
		if got := c.m.Match(p); got != c.want {
			t.Errorf("%v.Match(%s) = %v, want %v", c.m, p, got, c.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, m := range []Matcher{{}, {PID: -1}, {PID: 1 << 30}, {PID: os.Getpid(), Exes: []string{"x"}}} {
		if err := m.Validate(); err == nil {
			t.Errorf("%+v: Validate accepted it", m)
		}
	}
	if err := (Matcher{PID: os.Getpid()}).Validate(); err != nil {
		t.Errorf("own pid: %v", err)
	}
}

// TestWatch sees a process start, exit, and a new incarnation under a new pid.
func TestWatch(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	name := "uranus-watch-test"
	events, _ := Watch(ctx, Matcher{Exes: []string{name}}, 20*time.Millisecond)
	next := func() Event {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(10 * time.Second):
			t.Fatal("no event from Watch")
		}
		return Event{}
	}
	first, _ := sleeper(t, name)
	if ev := next(); ev.Exited || ev.Process.PID != first.Process.Pid {
		t.Fatalf("want start of %d, got %+v", first.Process.Pid, ev)
	}
	first.Process.Kill()
	first.Wait()
	if ev := next(); !ev.Exited || ev.Process.PID != first.Process.Pid {
		t.Fatalf("want exit of %d, got %+v", first.Process.Pid, ev)
	}
	second, _ := sleeper(t, name)
	if ev := next(); ev.Exited || ev.Process.PID != second.Process.Pid {
		t.Fatalf("want start of %d, got %+v", second.Process.Pid, ev)
	}
}

// TestWatchWithoutPolling: with the exec tracepoint, a process is reported
// as it starts and its exit as it ends, though /proc is not
// scanned on a timer (an interval of an hour).
func TestWatchWithoutPolling(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	name := "uranus-exec-test"
	events, how := Watch(ctx, Matcher{Exes: []string{name}}, time.Hour)
	if !strings.HasPrefix(how, "exec tracepoint") {
		if os.Getenv("CI") == "true" {
			t.Fatalf("watching by %s", how)
		}
		t.Skipf("skipping: %s (needs root and BPF)", how)
	}
	next := func() (Event, time.Duration) {
		t.Helper()
		start := time.Now()
		select {
		case ev := <-events:
			return ev, time.Since(start)
		case <-time.After(30 * time.Second):
			t.Fatalf("no event from Watch (%s)", how)
		}
		return Event{}, 0
	}
	for i := 0; i < 3; i++ {
		started := time.Now()
		cmd, _ := sleeper(t, name)
		ev, _ := next()
		if ev.Exited || ev.Process.PID != cmd.Process.Pid {
			t.Fatalf("want start of %d, got %+v", cmd.Process.Pid, ev)
		}
		t.Logf("start reported %v after the process was started", time.Since(started).Round(time.Millisecond))
		cmd.Process.Kill()
		cmd.Wait()
		killed := time.Now()
		if ev, _ := next(); !ev.Exited || ev.Process.PID != cmd.Process.Pid {
			t.Fatalf("want exit of %d, got %+v", cmd.Process.Pid, ev)
		}
		t.Logf("exit reported %v after the process was killed", time.Since(killed).Round(time.Millisecond))
	}
}

// TestWatchPIDEnds closes the channel once a --pid target is gone.
func TestWatchPIDEnds(t *testing.T) {
	cmd, _ := sleeper(t, "uranus-pid-test")
	events, _ := Watch(context.Background(), Matcher{PID: cmd.Process.Pid}, 20*time.Millisecond)
	<-events // started
	cmd.Process.Kill()
	cmd.Wait()
	for ev := range events {
		if !ev.Exited {
			t.Errorf("unexpected %+v", ev)
		}
	}
}

func TestStartTimeParsesOddNames(t *testing.T) {
	// A command name with spaces and parentheses must not shift the fields.
	cmd, _ := sleeper(t, "a (b) c")
	st, err := startTime(cmd.Process.Pid)
	if err != nil || st == 0 {
		t.Fatalf("startTime = %d, %v", st, err)
	}
	self, _ := startTime(os.Getpid())
	if st < self {
		t.Errorf("child start %d before ours %d", st, self)
	}
}
