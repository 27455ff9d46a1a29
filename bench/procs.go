package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// pinProcess restricts every thread of pid to cpu. Threads created later
// inherit the mask of the thread that creates them.
func pinProcess(pid, cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	return setProcessAffinity(pid, &set)
}

func setProcessAffinity(pid int, set *unix.CPUSet) error {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, set); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("setting the CPU affinity of thread %d of pid %d: %w", tid, pid, err)
		}
	}
	return nil
}

// startPinned starts cmd with its CPU mask set to cpu from its first
// instruction: the child inherits the mask of the thread that forks it, so
// that thread is pinned for the fork and restored afterwards.
func startPinned(cmd *exec.Cmd, cpu int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return err
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pinning to CPU %d: %w", cpu, err)
	}
	err := cmd.Start()
	if rerr := unix.SchedSetaffinity(0, &old); rerr != nil && err == nil {
		err = rerr
	}
	return err
}

// child is a started process whose output lines are watched.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, valid after done

	mu      sync.Mutex
	out     bytes.Buffer // the last outputLimit bytes of stdout and stderr
	waiters []lineWaiter
}

const outputLimit = 64 << 10

type lineWaiter struct {
	match func(string) bool
	ch    chan string
}

// startChild runs path pinned to cpu and collects its output.
func startChild(name, path string, args, env []string, cpu int) (*child, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := startPinned(cmd, cpu); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	var readers sync.WaitGroup
	for _, r := range []io.Reader{stdout, stderr} {
		readers.Add(1)
		go func() {
			defer readers.Done()
			c.scan(r)
		}()
	}
	go func() {
		readers.Wait()
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

func (c *child) scan(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		c.mu.Lock()
		c.out.WriteString(line + "\n")
		if c.out.Len() > outputLimit {
			b := c.out.Bytes()[c.out.Len()-outputLimit/2:]
			c.out = *bytes.NewBuffer(append([]byte(nil), b...))
		}
		kept := c.waiters[:0]
		for _, w := range c.waiters {
			if w.match(line) {
				w.ch <- line
				continue
			}
			kept = append(kept, w)
		}
		c.waiters = kept
		c.mu.Unlock()
	}
}

// output is the tail of what the process printed.
func (c *child) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// waitLine waits for an output line that match accepts, printed from now
// on or earlier. It fails when the process exits first or after timeout.
func (c *child) waitLine(match func(string) bool, timeout time.Duration) (string, error) {
	ch := make(chan string, 1)
	c.mu.Lock()
	for _, line := range strings.Split(c.out.String(), "\n") {
		if match(line) {
			c.mu.Unlock()
			return line, nil
		}
	}
	c.waiters = append(c.waiters, lineWaiter{match, ch})
	c.mu.Unlock()
	select {
	case line := <-ch:
		return line, nil
	case <-c.done:
		select {
		case line := <-ch:
			return line, nil
		default:
		}
		return "", fmt.Errorf("%s exited (%v); output:\n%s", c.name, c.err, c.output())
	case <-time.After(timeout):
		return "", fmt.Errorf("%s: no expected output after %s; output:\n%s", c.name, timeout, c.output())
	}
}

// stop sends SIGTERM and waits for exit, killing the process if it takes
// longer than grace.
func (c *child) stop(grace time.Duration) error {
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("%s did not exit within %s of SIGTERM; killed", c.name, grace)
	}
	var ee *exec.ExitError
	if c.err != nil && !errors.As(c.err, &ee) {
		return c.err
	}
	if c.err != nil {
		return fmt.Errorf("%s: %v; output:\n%s", c.name, c.err, c.output())
	}
	return nil
}

// kill ends the process at once, for error paths.
func (c *child) kill() {
	c.cmd.Process.Kill()
	<-c.done
}

// maxRSS is the peak resident set in bytes from the kernel's accounting at
// exit; 0 while the process runs.
func (c *child) maxRSS() uint64 {
	if c.cmd.ProcessState == nil {
		return 0
	}
	if ru, ok := c.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return uint64(ru.Maxrss) << 10
	}
	return 0
}

// userHZ is the unit of /proc/PID/stat's CPU times (USER_HZ, 100 on every
// Linux architecture Go supports).
const userHZ = 100

// cpuSeconds is the user+system CPU time pid has used so far, all threads,
// including those that exited.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name in parentheses may contain spaces: fields start
	// after the last ')'. utime and stime are fields 14 and 15 of stat(5).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return float64(ut+st) / userHZ, nil
}

// cpuBusy is how many seconds cpu has spent not idle since boot, for all
// processes and the kernel: /proc/stat's user, nice, system, irq, softirq
// and steal columns (in USER_HZ).
func cpuBusy(cpu int) (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	prefix := fmt.Sprintf("cpu%d ", cpu)
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 9 {
			break
		}
		var busy uint64
		for _, i := range []int{1, 2, 3, 6, 7, 8} {
			n, _ := strconv.ParseUint(f[i], 10, 64)
			busy += n
		}
		return float64(busy) / userHZ, nil
	}
	return 0, fmt.Errorf("/proc/stat has no line for CPU %d", cpu)
}

// peakRSS is the process's resident-set high-water mark (VmHWM) in bytes.
func peakRSS(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmHWM", pid)
}

// rssParts is what the resident set is made of now: anonymous memory (Go
// heap and stacks), file pages (the executable's text) and shared memory
// (mapped BPF maps such as the ring buffer), from /proc/PID/status.
func rssParts(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ""
	}
	var parts []string
	for _, line := range strings.Split(string(b), "\n") {
		for _, k := range []string{"RssAnon", "RssFile", "RssShmem"} {
			if v, ok := strings.CutPrefix(line, k+":"); ok {
				kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				parts = append(parts, fmt.Sprintf("%s %.1f", strings.TrimPrefix(k, "Rss"), float64(kb)/1024))
			}
		}
	}
	return strings.Join(parts, " + ") + " MiB"
}

// allowedCPUs is the CPU list pid may run on, as /proc/PID/status says.
func allowedCPUs(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// goBuild builds package pkg of the module at root as dir/name with the go
// command on PATH (the host toolchain) and returns the binary's path.
func goBuild(root, pkg, dir, name string, flags ...string) (string, error) {
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", append(append([]string{"build", "-o", out}, flags...), pkg)...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return out, nil
}

// moduleRoot is the directory of the go.mod that encloses the working
// directory (go run ./bench runs from the module, go test from bench/).
func moduleRoot() (string, error) {
	b, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(b))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the uranus module: run the benchmark from its checkout (go run ./bench)")
	}
	return filepath.Dir(mod), nil
}
