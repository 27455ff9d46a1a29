// Package target finds the processes to instrument: by executable path or
// name, or by pid, in /proc. It reports processes as they start and exit, so
// that uranus waits for a target that is not running yet and follows restarts.
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
// path can match through a different name.
func (m Matcher) mayMatch(pid int) bool {
	if m.PID != 0 {
		return true
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

// Watch scans /proc every interval and sends an Event for each matching
// process that appears or disappears (a process that execs a new binary
// exits and starts again). It closes the channel when ctx is done, or after
// the exit of a --pid target, since nothing else can match.
func Watch(ctx context.Context, m Matcher, interval time.Duration) <-chan Event {
	ch := make(chan Event)
	go func() {
		defer close(ch)
		known := map[int]Process{}
		self := os.Getpid()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			seen := map[int]bool{}
			for _, pid := range candidates(m) {
				if pid == self || !m.mayMatch(pid) {
					continue
				}
				p, err := Lookup(pid)
				if err != nil || !m.Match(p) {
					continue
				}
				seen[pid] = true
				if old, ok := known[pid]; ok && old.same(p) {
					continue
				} else if ok {
					if !send(ctx, ch, Event{Process: old, Exited: true}) {
						return
					}
				}
				known[pid] = p
				if !send(ctx, ch, Event{Process: p}) {
					return
				}
			}
			for pid, p := range known {
				if !seen[pid] {
					delete(known, pid)
					if !send(ctx, ch, Event{Process: p, Exited: true}) {
						return
					}
				}
			}
			if m.PID != 0 && len(known) == 0 && !seen[m.PID] {
				if _, err := os.Stat(fmt.Sprintf("/proc/%d", m.PID)); err != nil {
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return ch
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
