// Package target finds the processes to instrument: by executable path or
// name, or by pid, told by an exec tracepoint and read in /proc. It reports
// processes as they start and exit, so that uranus waits for a target that
// is not running yet and follows restarts.
//
// Binaries are always read through /proc/PID/exe, which names the file the
// process really runs even when uranus lives in another mount namespace (a
// sidecar container sharing only the PID namespace).
package target

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process is one running target.
type Process struct {
	PID int
	// Exe is the executable's path as the process sees it (readlink of
	// /proc/PID/exe), for display and resource attributes.
	Exe string
	// StartTime (clock ticks since boot) and the executable's device and
	// inode tell a restarted or re-executed process from the one we knew.
	StartTime uint64
	Dev, Ino  uint64
	// StackStart is where the kernel put the stack at the last execve.
	// Address-space randomisation moves it on every exec, so it tells a
	// process that re-executed its own binary (same pid, start time and
	// inode) from the image uranus attached to. 0 when randomisation is off
	// or the field is hidden (no ptrace access): then an exec of the same
	// binary goes unnoticed, and its probes, which follow the file, stay.
	StackStart uint64
}

// ExePath is the path uranus opens to read and probe the binary.
func (p Process) ExePath() string { return fmt.Sprintf("/proc/%d/exe", p.PID) }

func (p Process) String() string { return fmt.Sprintf("pid %d (%s)", p.PID, p.Exe) }

// Running reports whether p still runs the image it ran when found: false
// once it has exited, or exec'd another image.
func (p Process) Running() bool {
	q, err := Lookup(p.PID)
	return err == nil && p.same(q)
}

// same reports whether q is the same process image as p.
func (p Process) same(q Process) bool {
	return p.PID == q.PID && p.StartTime == q.StartTime && p.Dev == q.Dev && p.Ino == q.Ino && p.StackStart == q.StackStart
}

// Matcher selects target processes.
type Matcher struct {
	// Exes match by path (containing a '/') or by executable name.
	Exes []string
	// PID selects one process.
	PID int
}

func (m Matcher) String() string {
	if m.PID != 0 {
		return fmt.Sprintf("pid %d", m.PID)
	}
	return "--exe " + strings.Join(m.Exes, ", ")
}

// Validate rejects a matcher that can never match, with the fix.
func (m Matcher) Validate() error {
	switch {
	case m.PID == 0 && len(m.Exes) == 0:
		return errors.New("no target: pass --exe PATH|NAME or --pid N")
	case m.PID != 0 && len(m.Exes) != 0:
		return errors.New("--exe and --pid both given: choose one")
	case m.PID < 0:
		return fmt.Errorf("--pid %d: a pid is a positive number", m.PID)
	case m.PID != 0:
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", m.PID)); err != nil {
			return fmt.Errorf("--pid %d: no such process (is it running, and does uranus share its PID namespace?)", m.PID)
		}
		if _, err := Lookup(m.PID); err != nil {
			return err
		}
	}
	return nil
}

// Lookup reads what uranus needs about pid from /proc.
func Lookup(pid int) (Process, error) {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return Process{}, fmt.Errorf("pid %d: reading /proc/%d/exe: %w (run uranus as root or with CAP_SYS_PTRACE)", pid, pid, err)
		}
		if errors.Is(err, os.ErrNotExist) {
			return Process{}, fmt.Errorf("pid %d: no such process, or a kernel thread (no executable)", pid)
		}
		return Process{}, fmt.Errorf("pid %d: reading /proc/%d/exe: %w", pid, pid, err)
	}
	p := Process{PID: pid, Exe: strings.TrimSuffix(exe, " (deleted)")}
	var st syscall.Stat_t
	if err := syscall.Stat(p.ExePath(), &st); err != nil {
		return Process{}, fmt.Errorf("pid %d: stat %s: %w", pid, p.ExePath(), err)
	}
	p.Dev, p.Ino = st.Dev, st.Ino
	p.StartTime, p.StackStart, err = procStat(pid)
	if err != nil {
		return Process{}, err
	}
	return p, nil
}

// startTime is field 22 of /proc/PID/stat.
func startTime(pid int) (uint64, error) {
	st, _, err := procStat(pid)
	return st, err
}

// procStat reads fields 22 (start time) and 28 (start of the stack) of
// /proc/PID/stat; the command name before them may hold spaces and
// parentheses, so parse from the last ')'.
func procStat(pid int) (start, stack uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("pid %d: malformed /proc/%d/stat", pid, pid)
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state): start time is fields[19], the stack
	// fields[25].
	if len(fields) < 26 {
		return 0, 0, fmt.Errorf("pid %d: malformed /proc/%d/stat", pid, pid)
	}
	if start, err = strconv.ParseUint(fields[19], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("pid %d: malformed /proc/%d/stat: %v", pid, pid, err)
	}
	stack, _ = strconv.ParseUint(fields[25], 10, 64)
	return start, stack, nil
}

// Match reports whether p is selected.
func (m Matcher) Match(p Process) bool {
	if m.PID != 0 {
		return p.PID == m.PID
	}
	for _, exe := range m.Exes {
		if matchExe(exe, p) {
			return true
		}
	}
	return false
}

func matchExe(exe string, p Process) bool {
	if !strings.Contains(exe, "/") {
		return filepath.Base(p.Exe) == exe
	}
	if p.Exe == exe {
		return true
	}
	if abs, err := filepath.Abs(exe); err == nil && abs == p.Exe {
		return true
	}
	// The path may name the same file through a link or another mount.
	var st syscall.Stat_t
	return syscall.Stat(exe, &st) == nil && st.Dev == p.Dev && st.Ino == p.Ino
}

// mayMatch is a cheap first look (one readlink) before Lookup: only a
// path can match through a different name. A --pid matcher needs no
// look at all: the exec tracepoint reports every program started in
// uranus's PID namespace, and only one pid can match.
func (m Matcher) mayMatch(pid int) bool {
	if m.PID != 0 {
		return pid == m.PID
	}
	for _, exe := range m.Exes {
		if strings.Contains(exe, "/") {
			return true
		}
	}
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	base := filepath.Base(strings.TrimSuffix(link, " (deleted)"))
	for _, exe := range m.Exes {
		if base == exe {
			return true
		}
	}
	return false
}

// Event is a target starting or exiting.
type Event struct {
	Process Process
	Exited  bool
}

// Watch sends an Event for each matching process that appears or
// disappears (a process that execs a new binary exits and starts again). It
// closes the channel when ctx is done, or after the exit of a --pid target,
// since nothing else can match. The second result says how it watches.
//
// Where the kernel allows, raw tracepoints on exec and exit name each
// process that starts a program or ends: an idle sidecar sleeps. /proc is
// scanned at the start and every fallback, for processes that fork without
// exec and for events the tracepoints could not report. Elsewhere /proc is
// scanned every interval.
func Watch(ctx context.Context, m Matcher, interval time.Duration) (<-chan Event, string) {
	ch := make(chan Event)
	w := &watcher{m: m, ch: ch, known: map[int]Process{}, self: os.Getpid()}
	execs, err := watchExecs()
	how := "exec tracepoint, /proc scanned every " + fallback.String()
	if err != nil {
		how = fmt.Sprintf("/proc scanned every %v (exec tracepoint unavailable: %v)", interval, err)
	}
	go func() {
		defer close(ch)
		if execs == nil {
			t := time.NewTicker(interval)
			defer t.Stop()
			for w.scan(ctx) {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
			return
		}
		procs := make(chan procEvent, 64)
		go execs.run(ctx, procs)
		full := time.NewTicker(fallback)
		defer full.Stop()
		// An exit is told as the main thread exits: /proc may still show
		// the process for a moment, so it is looked at again until gone.
		exiting := map[int]int{}
		var recheck <-chan time.Time
		ok := w.scan(ctx)
		for ok {
			select {
			case <-ctx.Done():
				return
			case ev := <-procs:
				pid := int(ev.Pid)
				if ev.Exited == 0 {
					ok = w.look(ctx, pid)
				} else if _, known := w.known[pid]; known {
					exiting[pid] = 0
				}
			case <-recheck:
				recheck = nil
				for pid, tries := range exiting {
					p, known := w.known[pid]
					switch {
					case !known:
						delete(exiting, pid)
					case !p.Running():
						delete(exiting, pid)
						delete(w.known, pid)
						ok = ok && send(ctx, w.ch, Event{Process: p, Exited: true})
					case tries >= 20: // still there after a second: the scan will tell
						delete(exiting, pid)
					default:
						exiting[pid] = tries + 1
					}
				}
				ok = ok && w.pidAlive()
			case <-full.C:
				// Also finds what the tracepoints could not report (a
				// full ring: counted in execs_lost) and processes forked
				// without exec.
				ok = w.scan(ctx)
			}
			if len(exiting) > 0 && recheck == nil {
				recheck = time.After(50 * time.Millisecond)
			}
		}
	}()
	return ch, how
}

// fallback is how often /proc is scanned when exec events name new
// processes: only a process forked without exec from another waits for it.
const fallback = 10 * time.Second

// watcher is Watch's state: the matching processes it has reported.
type watcher struct {
	m     Matcher
	ch    chan Event
	known map[int]Process
	self  int
}

// scan looks at every process in /proc; false when the watch is over.
func (w *watcher) scan(ctx context.Context) bool {
	seen := map[int]bool{}
	for _, pid := range candidates(w.m) {
		if pid == w.self || !w.m.mayMatch(pid) {
			continue
		}
		p, err := Lookup(pid)
		if err != nil || !w.m.Match(p) {
			continue
		}
		seen[pid] = true
		if !w.found(ctx, p) {
			return false
		}
	}
	for pid, p := range w.known {
		if !seen[pid] {
			delete(w.known, pid)
			if !send(ctx, w.ch, Event{Process: p, Exited: true}) {
				return false
			}
		}
	}
	return w.pidAlive()
}

// look checks one process that just executed a program.
func (w *watcher) look(ctx context.Context, pid int) bool {
	if pid == w.self || !w.m.mayMatch(pid) && w.known[pid].PID == 0 {
		return true
	}
	p, err := Lookup(pid)
	if err == nil && w.m.Match(p) {
		return w.found(ctx, p)
	}
	if old, ok := w.known[pid]; ok && !old.Running() {
		delete(w.known, pid) // it executed something else
		return send(ctx, w.ch, Event{Process: old, Exited: true}) && w.pidAlive()
	}
	return true
}

// found reports p unless it is the image already known under its pid.
func (w *watcher) found(ctx context.Context, p Process) bool {
	if old, ok := w.known[p.PID]; ok && old.same(p) {
		return true
	} else if ok && !send(ctx, w.ch, Event{Process: old, Exited: true}) {
		return false
	}
	w.known[p.PID] = p
	return send(ctx, w.ch, Event{Process: p})
}

// pidAlive is false once a --pid target is gone: nothing else can match.
func (w *watcher) pidAlive() bool {
	if w.m.PID == 0 || len(w.known) > 0 {
		return true
	}
	_, err := os.Stat(fmt.Sprintf("/proc/%d", w.m.PID))
	return err == nil
}

func send(ctx context.Context, ch chan<- Event, ev Event) bool {
	select {
	case ch <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// candidates lists the pids worth looking at.
func candidates(m Matcher) []int {
	if m.PID != 0 {
		return []int{m.PID}
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	pids := make([]int, 0, len(entries))
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}
