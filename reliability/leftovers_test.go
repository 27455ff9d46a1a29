package reliability

import (
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/uranus-otel/uranus/binary"
	"github.com/uranus-otel/uranus/internal/e2e"
)

// TestNothingLeftBehind stops the real uranus binary with SIGTERM and kills
// it with SIGKILL: either way, every BPF program, map and link it held is
// gone from the kernel, no uprobe remains in the target's memory, no tracefs
// event or pinned object of its own is left, and the target keeps answering
// exactly as before. It checks only objects uranus itself held (other tests
// load BPF programs at the same time).
func TestNothingLeftBehind(t *testing.T) {
	e2e.RequireBPF(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(strings.ToUpper(sigName(sig)), func(t *testing.T) { testNothingLeftBehind(t, sig) })
	}
}

func sigName(sig syscall.Signal) string {
	if sig == syscall.SIGKILL {
		return "sigkill"
	}
	return "sigterm"
}

func testNothingLeftBehind(t *testing.T, sig syscall.Signal) {
	bin := stackgrow(t, newest())
	a := startApp(t, bin, "-depth", "8")
	before := mustFetch(t, "http://"+a.addr+"/work/1")
	pinnedBefore := pinned(t)

	col := startCollector(t)
	s := startUranus(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + col.endpoint()},
		[]string{"--pid", strconv.Itoa(a.pid()), "--instrument", instrumentFlag(), "--log-level", "debug"})
	started, _ := s.waitLine(t, 0, "uranus started")
	s.waitLine(t, 0, "msg=attached", fmt.Sprintf("pid=%d", a.pid()))
	// Probes that serve a feature are attached only when it is on.
	prop := logField(started, "propagation")
	sites := probeSites(t, a.pid(), map[string]bool{"inject": prop == "memory", "wire": prop == "network"})
	const n = 20
	for i := 0; i < n; i++ {
		mustFetch(t, fmt.Sprintf("http://%s/work/%d", a.addr, i))
	}
	col.waitSpans(t, n*spansPer("/work/"))

	held := heldBPFObjects(t, s.pid())
	if len(held.progs) == 0 || len(held.maps) == 0 {
		t.Fatalf("uranus holds no BPF programs or maps? %v", held)
	}
	for _, id := range loggedProgIDs(t, s.log()) {
		if !contains(held.progs, id) {
			t.Errorf("uranus logged prog_id=%d but does not hold it (holds %v)", id, held.progs)
		}
	}
	for _, site := range sites {
		if b := site.live(t); b != 0xcc {
			t.Fatalf("%s: byte %#x in the target's memory, want the uprobe's int3 while attached", site, b)
		}
	}
	t.Logf("uranus (pid %d) holds %v; the target has %d probe sites", s.pid(), held, len(sites))

	err := s.signal(t, sig)
	if sig == syscall.SIGTERM && err != nil {
		t.Fatalf("uranus exited with %v after SIGTERM", err)
	}

	// The kernel frees objects once their last reference is closed, which
	// for a killed process happens as it exits: give it a moment.
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := stillLoaded(held)
		if left == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: still in the kernel: %s", sigName(sig), left)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, site := range sites {
		if b := site.live(t); b != site.orig {
			t.Errorf("after %s: %s holds %#x, the binary has %#x: a uprobe is still installed", sigName(sig), site, b, site.orig)
		}
	}
	if b, err := os.ReadFile("/sys/kernel/tracing/uprobe_events"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, bin) || strings.Contains(line, fmt.Sprintf("/proc/%d/", a.pid())) {
				t.Errorf("after %s: tracefs still has %q", sigName(sig), line)
			}
		}
	}
	for path := range pinned(t) {
		if pinnedBefore[path] {
			continue
		}
		if id, ok := pinnedID(path); ok && (contains(held.progs, id) || contains(held.maps, id) || contains(held.links, id)) {
			t.Errorf("after %s: %s pins one of uranus's objects (id %d)", sigName(sig), path, id)
		}
	}

	if !a.alive() {
		t.Fatalf("the target died: %v\n%s", a.err, a.errOut())
	}
	if after := mustFetch(t, "http://"+a.addr+"/work/1"); after != before {
		t.Errorf("the target answers %q after uranus left, %q before it came", after, before)
	}
	if sig == syscall.SIGTERM {
		line, _ := s.waitLine(t, 0, "final counters")
		if got := logInt(t, line, "events"); got != uint64(n*spansPer("/work/")) {
			t.Errorf("final counters report %d events for %d requests: %s", got, n, line)
		}
	}
}

func contains(ids []uint32, id uint32) bool {
	for _, v := range ids {
		if v == id {
			return true
		}
	}
	return false
}

func loggedProgIDs(t *testing.T, log string) []uint32 {
	t.Helper()
	var ids []uint32
	for _, m := range regexp.MustCompile(`prog_id=(\d+)`).FindAllStringSubmatch(log, -1) {
		id, _ := strconv.ParseUint(m[1], 10, 32)
		ids = append(ids, uint32(id))
	}
	if len(ids) == 0 {
		t.Fatal("uranus logged no prog_id (is --log-level debug set?)")
	}
	return ids
}

// stillLoaded lists the objects of o the kernel still has.
func stillLoaded(o bpfObjects) string {
	var left []string
	for _, id := range o.progs {
		if p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id)); err == nil {
			p.Close()
			left = append(left, fmt.Sprintf("program %d", id))
		}
	}
	for _, id := range o.maps {
		if m, err := ebpf.NewMapFromID(ebpf.MapID(id)); err == nil {
			m.Close()
			left = append(left, fmt.Sprintf("map %d", id))
		}
	}
	for _, id := range o.links {
		if l, err := link.NewFromID(link.ID(id)); err == nil {
			l.Close()
			left = append(left, fmt.Sprintf("link %d", id))
		}
	}
	return strings.Join(left, ", ")
}

// pinned lists the files on every mounted BPF filesystem.
func pinned(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[2] != "bpf" {
			continue
		}
		filepath.WalkDir(f[1], func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				out[p] = true
			}
			return nil
		})
	}
	return out
}

// pinnedID is the id of the object pinned at path.
func pinnedID(path string) (uint32, bool) {
	if p, err := ebpf.LoadPinnedProgram(path, nil); err == nil {
		defer p.Close()
		if info, err := p.Info(); err == nil {
			id, ok := info.ID()
			return uint32(id), ok
		}
	}
	if m, err := ebpf.LoadPinnedMap(path, nil); err == nil {
		defer m.Close()
		if info, err := m.Info(); err == nil {
			id, ok := info.ID()
			return uint32(id), ok
		}
	}
	if l, err := link.LoadPinnedLink(path, nil); err == nil {
		defer l.Close()
		if info, err := l.Info(); err == nil {
			return uint32(info.ID), true
		}
	}
	return 0, false
}

// probeSite is an address uranus puts a uprobe on, with the byte the
// binary has there.
type probeSite struct {
	pid  int
	name string
	addr uint64
	orig byte
}

func (p probeSite) String() string { return fmt.Sprintf("%s (%#x)", p.name, p.addr) }

// live reads the byte at the site in the target's memory, where an
// installed uprobe shows as int3 (0xcc).
func (p probeSite) live(t *testing.T) byte {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", p.pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], int64(p.addr)); err != nil {
		t.Fatalf("reading %s in pid %d: %v", p, p.pid, err)
	}
	return b[0]
}

// probeSites lists every entry and RET site the covered instrumentors
// probe in pid's binary (a non-PIE executable: file addresses are the
// addresses in memory), given which optional features are on.
func probeSites(t *testing.T, pid int, features map[string]bool) []probeSite {
	t.Helper()
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	bin, err := binary.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	if bin.ELF().Type != elf.ET_EXEC {
		t.Fatalf("%s is position-independent; this check reads absolute addresses", exe)
	}
	raw, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	var sites []probeSite
	add := func(name string, fn *binary.Func, off uint64) {
		sites = append(sites, probeSite{pid: pid, name: fmt.Sprintf("%s+%#x", name, off), addr: fn.Addr + off, orig: raw[fn.FileOffset+off]})
	}
	for _, c := range covered {
		for _, pr := range c.inst.Probes {
			if pr.Requires != "" && !features[pr.Requires] {
				continue
			}
			fn, err := bin.Func(pr.Symbol)
			if errors.Is(err, binary.ErrNoSymbol) && pr.Optional {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if pr.Entry != "" {
				add(pr.Symbol, fn, 0)
			}
			if pr.Return != "" {
				for _, off := range fn.RetOffsets {
					add(pr.Symbol, fn, off)
				}
			}
		}
	}
	for _, s := range sites {
		if s.orig == 0xcc {
			t.Fatalf("%s is int3 in the binary itself", s)
		}
	}
	return sites
}
