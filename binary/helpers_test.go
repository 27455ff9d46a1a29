package binary

import (
	"bufio"
	"bytes"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/uranus-otel/uranus/internal/testapp"
)

// Every toolchain the module proxy offers, latest patch of each minor.
var allVersions = []string{
	"1.13.15", "1.14.15", "1.15.15", "1.16.15", "1.17.13", "1.18.10", "1.19.13", "1.20.14",
	"1.21.13", "1.22.12", "1.23.12", "1.24.13", "1.25.14", "1.26.8", "1.27.4",
}

// Functions every sample build must resolve identically stripped or not.
var probeFuncs = []string{
	"net/http.serverHandler.ServeHTTP",
	"net/http.(*Transport).roundTrip",
	"main.main",
}

var buildMu sync.Mutex

// build compiles the roundtrip sample, reusing testapp's cache. Toolchain
// tests are skipped with -short: the first run downloads and builds a lot.
func build(t *testing.T, version string, opts testapp.Options) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds real Go programs; skipped with -short")
	}
	if opts.CGO {
		if runtime.GOARCH != "amd64" || opts.GOARCH != "" && opts.GOARCH != runtime.GOARCH {
			t.Skip("cgo builds need a C compiler for the target")
		}
		if _, err := exec.LookPath("gcc"); err != nil {
			t.Skip("cgo builds need gcc")
		}
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	path, err := testapp.Build("roundtrip", version, opts, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func open(t *testing.T, path string) *File {
	t.Helper()
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed", name)
	}
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr)
	}
	return out
}

// nmFuncs reads function addresses with binutils nm, independently of
// debug/elf.
func nmFuncs(t *testing.T, path string) map[string]uint64 {
	t.Helper()
	needTool(t, "nm")
	m := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(run(t, "nm", path)))
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 3)
		if len(f) != 3 || (f[1] != "T" && f[1] != "t") {
			continue
		}
		addr, err := strconv.ParseUint(f[0], 16, 64)
		if err == nil {
			m[f[2]] = addr
		}
	}
	return m
}

type sectionHeader struct {
	name       string
	addr, off  uint64
	size       uint64
	executable bool
}

var readelfLine = regexp.MustCompile(`^\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+\S+\s+(\S*)`)

// readelfSections parses readelf -SW.
func readelfSections(t *testing.T, path string) []sectionHeader {
	t.Helper()
	needTool(t, "readelf")
	var out []sectionHeader
	for _, line := range strings.Split(string(run(t, "readelf", "-SW", path)), "\n") {
		m := readelfLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		addr, _ := strconv.ParseUint(m[2], 16, 64)
		off, _ := strconv.ParseUint(m[3], 16, 64)
		size, _ := strconv.ParseUint(m[4], 16, 64)
		out = append(out, sectionHeader{m[1], addr, off, size, strings.Contains(m[5], "X")})
	}
	return out
}

var (
	objdumpFuncLine = regexp.MustCompile(`^([0-9a-f]+) <(.+)>:$`)
	objdumpRet      = regexp.MustCompile(`^\s*([0-9a-f]+):\s+(?:(?:rep|repz|bnd|notrack)\s+)*retq?\s*$`)
)

// objdumpFunc is a function as GNU objdump shows it.
type objdumpFunc struct {
	name string
	rets []uint64 // addresses
}

// objdumpRets disassembles path with GNU objdump and returns, per function
// start address, the symbol and the addresses of its RET instructions.
func objdumpRets(t *testing.T, path string) map[uint64]*objdumpFunc {
	t.Helper()
	needTool(t, "objdump")
	out := run(t, "objdump", "-d", "--no-show-raw-insn", "-w", "-j", ".text", path)
	funcs := map[uint64]*objdumpFunc{}
	var cur *objdumpFunc
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := objdumpFuncLine.FindStringSubmatch(line); m != nil {
			a, _ := strconv.ParseUint(m[1], 16, 64)
			cur = &objdumpFunc{name: m[2], rets: []uint64{}}
			funcs[a] = cur
			continue
		}
		if m := objdumpRet.FindStringSubmatch(line); m != nil && cur != nil {
			a, _ := strconv.ParseUint(m[1], 16, 64)
			cur.rets = append(cur.rets, a)
		}
	}
	return funcs
}

// objdumpRetsOf is the RET list of the function called name.
func objdumpRetsOf(t *testing.T, path, name string) []uint64 {
	t.Helper()
	for _, fn := range objdumpRets(t, path) {
		if fn.name == name {
			return fn.rets
		}
	}
	t.Fatalf("objdump does not show %s", name)
	return nil
}

// goObjdumpRets runs the toolchain's objdump (which also handles arm64) on
// the functions matching re.
func goObjdumpRets(t *testing.T, path, re string) map[string][]uint64 {
	t.Helper()
	needTool(t, "go")
	out := run(t, "go", "tool", "objdump", "-s", re, path)
	rets := map[string][]uint64{}
	cur := ""
	for _, line := range strings.Split(string(out), "\n") {
		if name, ok := strings.CutPrefix(line, "TEXT "); ok {
			cur = name[:strings.Index(name, "(SB)")]
			rets[cur] = []uint64{}
			continue
		}
		f := strings.Split(strings.TrimSpace(line), "\t")
		var fields []string
		for _, s := range f {
			if s != "" {
				fields = append(fields, s)
			}
		}
		if len(fields) >= 4 && cur != "" && (fields[3] == "RET" || strings.HasPrefix(fields[3], "RET ")) {
			a, err := strconv.ParseUint(strings.TrimPrefix(fields[1], "0x"), 16, 64)
			if err != nil {
				t.Fatalf("parsing go tool objdump line %q: %v", line, err)
			}
			rets[cur] = append(rets[cur], a)
		}
	}
	return rets
}

func equalU64(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// sameFunc compares everything but Source and Name.
func sameFunc(a, b *Func) bool {
	return a.Addr == b.Addr && a.Size == b.Size && a.Section == b.Section &&
		a.SectionAddr == b.SectionAddr && a.SectionOffset == b.SectionOffset &&
		a.FileOffset == b.FileOffset && equalU64(a.RetOffsets, b.RetOffsets)
}
