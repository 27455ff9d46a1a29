package reliability

import (
	"fmt"
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

// capability is a Linux capability by number and name.
type capability struct {
	bit  uintptr
	name string
}

var (
	capDACReadSearch = capability{2, "CAP_DAC_READ_SEARCH"}
	capSysPtrace     = capability{19, "CAP_SYS_PTRACE"}
	capSysAdmin      = capability{21, "CAP_SYS_ADMIN"}
)

// leastPrivilege is what uranus needs, found by experiment on Linux 6.18
// and documented in the README: CAP_SYS_ADMIN to create uprobes with
// perf_event_open (current kernels no longer accept CAP_PERFMON for the
// uprobe PMU; CAP_SYS_ADMIN also covers loading the BPF programs), and
// CAP_SYS_PTRACE to read /proc/PID/exe of, and probe, another user's
// process. CAP_DAC_READ_SEARCH is needed only for executables uranus's user
// may not read (mode 0711 and the like).
var leastPrivilege = []capability{capSysAdmin, capSysPtrace}

// nobody is the uid and gid uranus runs as in these tests: not root, and
// not the target's user.
const nobody = 65534

// asUser runs the command as nobody with exactly caps (ambient, so that
// they survive the change of user; nothing else can be regained).
func asUser(caps []capability) func(*exec.Cmd) {
	return func(cmd *exec.Cmd) {
		var bits []uintptr
		for _, c := range caps {
			bits = append(bits, c.bit)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Credential:  &syscall.Credential{Uid: nobody, Gid: nobody},
			AmbientCaps: bits,
		}
	}
}

func without(caps []capability, drop capability) []capability {
	var out []capability
	for _, c := range caps {
		if c != drop {
			out = append(out, c)
		}
	}
	return out
}

func names(caps []capability) string {
	var s []string
	for _, c := range caps {
		s = append(s, c.name)
	}
	return strings.Join(s, "+")
}

// TestLeastPrivilege runs the real uranus binary as an unprivileged user
// holding only the documented capabilities, against a target owned by
// root: it attaches and its spans reach the collector.
func TestLeastPrivilege(t *testing.T) {
	e2e.RequireBPF(t)
	a := startApp(t, stackgrow(t, newest()), "-depth", "2")
	col := startCollector(t)
	s := startUranus(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + col.endpoint(), "OTEL_BSP_SCHEDULE_DELAY=100"},
		[]string{"--pid", strconv.Itoa(a.pid()), "--instrument", instrumentFlag()}, asUser(leastPrivilege))
	s.waitLine(t, 0, "msg=attached")
	if got, want := effectiveCaps(t, s.pid()), capMask(leastPrivilege); got != want {
		t.Fatalf("uranus runs with capabilities %#x, want exactly %#x (%s)", got, want, names(leastPrivilege))
	}
	mustFetch(t, "http://"+a.addr+"/work/1")
	col.waitSpans(t, spansPer("/work/"))
	if err := s.signal(t, os.Interrupt); err != nil {
		t.Fatalf("uranus exited with %v", err)
	}
	t.Logf("uid %d with %s: attached to a root process and exported its spans", nobody, names(leastPrivilege))
}

// TestMissingCapability drops each needed capability in turn: uranus must
// stop with one line that names it. An executable uranus may not read
// needs CAP_DAC_READ_SEARCH as well, and the message says so.
func TestMissingCapability(t *testing.T) {
	e2e.RequireBPF(t)
	bin := stackgrow(t, newest())
	type run struct {
		name string
		exe  string
		caps []capability
		want capability
	}
	var runs []run
	for _, c := range leastPrivilege {
		runs = append(runs, run{"without-" + c.name, bin, without(leastPrivilege, c), c})
	}
	// An execute-only copy: root runs it, nobody may not read it.
	secret := filepath.Join(t.TempDir(), "execute-only")
	installAs(t, bin, secret)
	if err := os.Chmod(secret, 0o711); err != nil {
		t.Fatal(err)
	}
	runs = append(runs, run{"unreadable-executable", secret, leastPrivilege, capDACReadSearch})

	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			a := startApp(t, r.exe, "-depth", "2")
			cmd := exec.Command(uranusBinary(t), "--pid", strconv.Itoa(a.pid()), "--instrument", instrumentFlag())
			cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none")
			asUser(r.caps)(cmd)
			out, err := runWithin(cmd, time.Minute)
			if code := cmd.ProcessState.ExitCode(); err == nil || code != 1 {
				t.Fatalf("uranus with %s: exit %d (%v), want 1:\n%s", names(r.caps), code, err, out)
			}
			last := lastLine(out)
			if !strings.HasPrefix(last, "uranus: ") || !strings.Contains(last, r.want.name) {
				t.Errorf("with %s, the error does not name %s:\n%s", names(r.caps), r.want.name, out)
			}
			if strings.Contains(out, "panic") {
				t.Errorf("uranus panicked:\n%s", out)
			}
			t.Logf("%s → %s", names(r.caps), last)

			// The named capability is what was missing: with it, it attaches.
			s := startUranus(t, []string{"OTEL_TRACES_EXPORTER=none"},
				[]string{"--pid", strconv.Itoa(a.pid()), "--instrument", instrumentFlag()}, asUser(append(r.caps, r.want)))
			s.waitLine(t, 0, "msg=attached")
		})
	}

	// Watching by name without CAP_SYS_PTRACE, other users' processes are
	// invisible: uranus says so at start-up instead of waiting silently.
	t.Run("exe-without-CAP_SYS_PTRACE", func(t *testing.T) {
		caps := without(leastPrivilege, capSysPtrace)
		s := startUranus(t, []string{"OTEL_TRACES_EXPORTER=none"}, []string{"--exe", "no-such-program"}, asUser(caps))
		line, _ := s.waitLine(t, 0, "level=WARN", capSysPtrace.name)
		t.Logf("%s, --exe: %s", names(caps), logField(line, "msg"))
	})
}

func capMask(caps []capability) uint64 {
	var m uint64
	for _, c := range caps {
		m |= 1 << c.bit
	}
	return m
}

func effectiveCaps(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
	}
	t.Fatalf("/proc/%d/status has no CapEff", pid)
	return 0
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// runWithin runs cmd and returns its combined output, killing it after d.
func runWithin(cmd *exec.Cmd, d time.Duration) (string, error) {
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	timer := time.AfterFunc(d, func() { cmd.Process.Kill() })
	defer timer.Stop()
	err := cmd.Wait()
	return out.String(), err
}
