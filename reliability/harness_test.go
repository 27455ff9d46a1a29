package reliability

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/instrumentors/httpclient"
	"github.com/uranus-otel/uranus/instrumentors/httpserver"
	"github.com/uranus-otel/uranus/internal/e2e"
	"github.com/uranus-otel/uranus/internal/testapp"
)

// covered lists the instrumentors the reliability tests exercise, each with
// how many spans it makes for one request to each route of the stackgrow
// sample. Adding an instrumentor to every test here is one line (and, when
// no route exercises its library yet, a route in testdata/stackgrow).
var covered = []coverage{
	{httpserver.Instrumentor, map[string]int{"/work/": 1, "/call/": 2}},
	{httpclient.Instrumentor, map[string]int{"/call/": 1}},
}

type coverage struct {
	inst  *instrumentors.Instrumentor
	spans map[string]int // route prefix → spans per request
}

// coveredList is what the in-process tests attach.
func coveredList() []*instrumentors.Instrumentor {
	var out []*instrumentors.Instrumentor
	for _, c := range covered {
		out = append(out, c.inst)
	}
	return out
}

// instrumentFlag is the --instrument value that enables exactly covered.
func instrumentFlag() string {
	var ids []string
	for _, c := range covered {
		ids = append(ids, c.inst.ID)
	}
	return strings.Join(ids, ",")
}

// spansPer is how many spans one request to route makes.
func spansPer(route string) int {
	n := 0
	for _, c := range covered {
		n += c.spans[route]
	}
	return n
}

// stackgrow builds the stackgrow sample with Go version.
func stackgrow(t testing.TB, version string) string {
	return e2e.BuildTarget(t, "stackgrow", version, testapp.Options{})
}

// newest is the toolchain tests use when any version will do.
func newest() string { return e2e.Versions[len(e2e.Versions)-1] }

// ---- the real uranus binary ----------------------------------------------

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// uranusBinary builds ./cmd/uranus once per test run, into a directory any
// user may read, so that it can also run with a non-root uid.
func uranusBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "uranus-reliability-")
		if buildErr != nil {
			return
		}
		if buildErr = os.Chmod(buildDir, 0o755); buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(buildDir, "uranus"), "github.com/uranus-otel/uranus/cmd/uranus").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/uranus: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "uranus")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// sidecar is a running uranus process and everything it logged.
type sidecar struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []string
	notify chan struct{} // closed and replaced on every new line
	exited chan struct{}
	err    error // from Wait, once exited is closed
}

// startUranus runs the uranus binary with args; env adds to the test's
// environment. prepare may adjust the command (credentials, capabilities).
func startUranus(t testing.TB, env []string, args []string, prepare ...func(*exec.Cmd)) *sidecar {
	t.Helper()
	cmd := exec.Command(uranusBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = io.Discard
	for _, p := range prepare {
		p(cmd)
	}
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &sidecar{cmd: cmd, notify: make(chan struct{}), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting uranus: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			s.mu.Lock()
			s.lines = append(s.lines, sc.Text())
			close(s.notify)
			s.notify = make(chan struct{})
			s.mu.Unlock()
		}
		s.err = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			t.Logf("uranus log:\n%s", s.log())
		}
	})
	return s
}

func (s *sidecar) pid() int { return s.cmd.Process.Pid }

func (s *sidecar) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

// logLines returns the lines logged from index from on.
func (s *sidecar) logLines(from int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if from > len(s.lines) {
		return nil
	}
	return append([]string(nil), s.lines[from:]...)
}

// waitLine waits for a line, at index from or later, containing all of
// words, and returns it with its index. The bound only guards against a hung
// test.
func (s *sidecar) waitLine(t testing.TB, from int, words ...string) (string, int) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		s.mu.Lock()
		for i := from; i < len(s.lines); i++ {
			if containsAll(s.lines[i], words) {
				line := s.lines[i]
				s.mu.Unlock()
				return line, i
			}
		}
		if from < len(s.lines) {
			from = len(s.lines)
		}
		notify := s.notify
		s.mu.Unlock()
		select {
		case <-notify:
		case <-s.exited:
			// Lines may still be buffered: look once more, then give up.
			if line, i, ok := s.find(from, words); ok {
				return line, i
			}
			t.Fatalf("uranus exited (%v) before logging %q", s.err, words)
		case <-deadline:
			t.Fatalf("uranus did not log %q within a minute", words)
		}
	}
}

func (s *sidecar) find(from int, words []string) (string, int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := from; i < len(s.lines); i++ {
		if containsAll(s.lines[i], words) {
			return s.lines[i], i, true
		}
	}
	return "", 0, false
}

func containsAll(line string, words []string) bool {
	for _, w := range words {
		if !strings.Contains(line, w) {
			return false
		}
	}
	return true
}

// signal sends sig and waits for uranus to exit.
func (s *sidecar) signal(t testing.TB, sig os.Signal) error {
	t.Helper()
	s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
		return s.err
	case <-time.After(60 * time.Second):
		t.Fatalf("uranus did not exit within a minute of %v", sig)
		return nil
	}
}

// logTime is the time= field of a text log line.
func logTime(t testing.TB, line string) time.Time {
	t.Helper()
	v := logField(line, "time")
	ts, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		t.Fatalf("log line without a time: %q", line)
	}
	return ts
}

// logField is the value of key=value in a text log line (quoted or not).
func logField(line, key string) string {
	re := regexp.MustCompile(`(?:^| )` + regexp.QuoteMeta(key) + `=("(?:[^"\\]|\\.)*"|\S*)`)
	m := re.FindStringSubmatch(line)
	if m == nil {
		return ""
	}
	if v, err := strconv.Unquote(m[1]); err == nil {
		return v
	}
	return m[1]
}

func logInt(t testing.TB, line, key string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(logField(line, key), 10, 64)
	if err != nil {
		t.Fatalf("log line has no number %s: %q", key, line)
	}
	return v
}

// ---- targets -------------------------------------------------------------

// app is a running target: the stackgrow sample or another test program.
type app struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer
	addrs  chan string // every "listening on ADDR", one per generation
	addr   string      // the first
	exited chan struct{}
	err    error
}

// startApp runs path and waits for it to print its address.
func startApp(t testing.TB, path string, args ...string) *app {
	t.Helper()
	a := launchApp(t, path, args...)
	select {
	case a.addr = <-a.addrs:
	case <-a.exited:
		t.Fatalf("%s exited (%v) before listening:\n%s%s", path, a.err, a.out(), a.errOut())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not print its address", path)
	}
	return a
}

// launchApp starts path without waiting for anything.
func launchApp(t testing.TB, path string, args ...string) *app {
	t.Helper()
	a := &app{cmd: exec.Command(path, args...), addrs: make(chan string, 16), exited: make(chan struct{})}
	stdout, err := a.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	a.cmd.Stderr = lockedWriter{&a.mu, &a.stderr}
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			a.mu.Lock()
			a.stdout.WriteString(line + "\n")
			a.mu.Unlock()
			if addr, ok := strings.CutPrefix(line, "listening on "); ok {
				a.addrs <- addr
			}
		}
		a.err = a.cmd.Wait()
		close(a.exited)
	}()
	t.Cleanup(a.kill)
	return a
}

func (a *app) pid() int { return a.cmd.Process.Pid }

func (a *app) kill() {
	a.cmd.Process.Kill()
	<-a.exited
}

func (a *app) alive() bool {
	select {
	case <-a.exited:
		return false
	default:
		return true
	}
}

func (a *app) out() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stdout.String()
}

func (a *app) errOut() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stderr.String()
}

// stop sends SIGTERM and returns what the app printed, failing the test
// when it does not exit cleanly.
func (a *app) stop(t testing.TB) (stdout, stderr string) {
	t.Helper()
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("pid %d did not exit after SIGTERM", a.pid())
	}
	if a.err != nil {
		t.Errorf("pid %d exited with %v after SIGTERM; stderr:\n%s", a.pid(), a.err, a.errOut())
	}
	return a.out(), a.errOut()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// ---- HTTP load -----------------------------------------------------------

// newClient makes a client that opens a new connection per request (so
// that every request is served by a new goroutine with a small stack) or
// keeps connections alive.
func newClient(keepAlive bool, conns int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DisableKeepAlives:   !keepAlive,
			MaxIdleConnsPerHost: conns,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		},
		Timeout: 60 * time.Second,
	}
}

// fetch GETs url and returns the body.
func fetch(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return string(b), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}

func mustFetch(t testing.TB, url string) string {
	t.Helper()
	body, err := fetch(newClient(false, 1), url)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// parallel runs fn(i) for i in [0, n) on workers goroutines and returns the
// first error.
func parallel(n, workers int, fn func(i int) error) error {
	var (
		mu    sync.Mutex
		first error
		next  int
		wg    sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				stop := first != nil
				mu.Unlock()
				if i >= n || stop {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// ---- /proc ---------------------------------------------------------------

// procStatusKB reads a "Name:   N kB" line of /proc/PID/status.
func procStatusKB(pid int, name string) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, name)
}

// bpfObjects are the ids of the BPF programs, maps and links a process
// holds open, read from /proc/PID/fdinfo.
type bpfObjects struct {
	progs, maps, links []uint32
}

func (o bpfObjects) count() int { return len(o.progs) + len(o.maps) + len(o.links) }

func (o bpfObjects) String() string {
	return fmt.Sprintf("programs %v, maps %v, links %v", o.progs, o.maps, o.links)
}

func heldBPFObjects(t testing.TB, pid int) bpfObjects {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var o bpfObjects
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		for _, line := range strings.Split(string(b), "\n") {
			for key, list := range map[string]*[]uint32{"prog_id:": &o.progs, "map_id:": &o.maps, "link_id:": &o.links} {
				v, ok := strings.CutPrefix(line, key)
				if !ok {
					continue
				}
				id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
				if err != nil || seen[key+v] {
					continue
				}
				seen[key+v] = true
				*list = append(*list, uint32(id))
			}
		}
	}
	for _, l := range [][]uint32{o.progs, o.maps, o.links} {
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	}
	return o
}
