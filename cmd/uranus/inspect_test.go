package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/uranus-otel/uranus/internal/e2e"
	"github.com/uranus-otel/uranus/internal/testapp"
	"github.com/uranus-otel/uranus/internal/toolchain"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/inspect")

// runInspect runs the real uranus binary's inspect subcommand.
func runInspect(t *testing.T, args ...string) (stdout string, code int) {
	t.Helper()
	cmd := exec.Command(uranusBin, append([]string{"inspect"}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("running uranus inspect: %v", err)
	}
	if errOut.Len() > 0 {
		t.Logf("stderr: %s", errOut.String())
	}
	return out.String(), cmd.ProcessState.ExitCode()
}

func inspectJSON(t *testing.T, args ...string) inspectReport {
	t.Helper()
	out, code := runInspect(t, append([]string{"--json"}, args...)...)
	var rep inspectReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("inspect --json %v (exit %d) is not JSON: %v\n%s", args, code, err, out)
	}
	return rep
}

var hexNumber = regexp.MustCompile(`0x[0-9a-f]+`)

// normaliseInspect makes inspect's text independent of where the sample's
// code landed (which changes whenever the sample's source does): the path
// becomes BINARY, the function's address ADDR and file offsets OFFSET+rel.
// Section addresses, sizes, RET offsets within the function and struct
// offsets depend only on the toolchain and stay.
func normaliseInspect(text string, rep inspectReport) string {
	text = strings.ReplaceAll(text, rep.Path, "BINARY")
	if rep.PropagationWhy != "" {
		// The machine's, and its privileges' (off when not root); CI
		// checks the mode itself.
		text = strings.ReplaceAll(text, rep.PropagationWhy, "REASON")
		text = strings.Replace(text, "propagation     "+rep.Propagation+" (REASON)", "propagation     MODE (REASON)", 1)
	}
	var probes []inspectedProbe
	for _, in := range rep.Instrumentors {
		probes = append(probes, in.Probes...)
	}
	return hexNumber.ReplaceAllStringFunc(text, func(h string) string {
		v, err := strconv.ParseUint(h[2:], 16, 64)
		if err != nil {
			return h
		}
		for _, p := range probes {
			switch {
			case !p.Found:
			case v == p.Address:
				return "ADDR"
			case v == p.FileOffset:
				return "OFFSET"
			case v > p.FileOffset && v < p.FileOffset+p.Size:
				return fmt.Sprintf("OFFSET+%#x", v-p.FileOffset)
			}
		}
		return h
	})
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "inspect", name+".golden")
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/uranus -run TestInspect -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("inspect output differs from %s (rerun with -update if the change is intended):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestInspectGoBinaries covers both ABIs, stripped and not, against golden
// files and against what other tools read from the same files: the ELF
// headers (debug/elf) and the toolchain's own disassembler (go tool objdump).
func TestInspectGoBinaries(t *testing.T) {
	for _, version := range []string{"1.16.15", "1.27.4"} {
		for _, stripped := range []bool{false, true} {
			opts := testapp.Options{Stripped: stripped}
			t.Run(version+"-"+opts.String(), func(t *testing.T) {
				bin := e2e.BuildTarget(t, "httpserver", version, opts)
				// Only http-server: the golden files then change when it
				// does, not whenever an instrumentor is added.
				rep := inspectJSON(t, "--instrument", "http-server", bin)
				text, code := runInspect(t, "--instrument", "http-server", bin)
				if code != 0 {
					t.Fatalf("exit %d, want 0\n%s", code, text)
				}
				checkGolden(t, "httpserver-go"+version+"-"+opts.String(), normaliseInspect(text, rep))

				wantABI := map[string]string{"1.16.15": "stack", "1.27.4": "register"}[version]
				if rep.GoVersion != "go"+version || rep.ABI != wantABI || rep.Stripped != stripped || rep.DWARF == stripped || !rep.Go {
					t.Errorf("header: %+v", rep)
				}
				// Build settings are recorded since Go 1.18.
				hasSettings := version >= "1.18"
				if rep.MainPath != "example.com/httpserver" || hasSettings != (rep.BuildSettings["GOARCH"] == "amd64" && rep.BuildSettings["CGO_ENABLED"] == "0") {
					t.Errorf("main path %q, build settings %v", rep.MainPath, rep.BuildSettings)
				}
				if hasSettings && stripped && rep.BuildSettings["-ldflags"] != "-s -w" {
					t.Errorf("-ldflags setting %q, want \"-s -w\"", rep.BuildSettings["-ldflags"])
				}
				// This project's machines allow trace context on the wire.
				if os.Getenv("CI") == "true" && rep.Propagation != "network" {
					t.Errorf("propagation %q (%s), want network in CI", rep.Propagation, rep.PropagationWhy)
				}
				if len(rep.Instrumentors) == 0 || rep.WillAttach == 0 {
					t.Fatalf("nothing will attach: %+v", rep.Instrumentors)
				}
				// ServeHTTP, and x/net's stream handler, which this sample
				// does not link (optional).
				hs := rep.Instrumentors[0]
				if hs.ID != "http-server" || !hs.Attaches || hs.OffsetsFrom != "offsets table" || len(hs.Probes) != 2 || hs.Probes[1].Found {
					t.Fatalf("http-server: %+v", hs)
				}
				checkAgainstELF(t, bin, hs.Probes[0], stripped)
				if !stripped {
					checkAgainstObjdump(t, bin, version, hs.Probes[0])
				}
				checkOffsetRows(t, hs, version)
			})
		}
	}
}

// checkAgainstELF recomputes the probe's placement from the section headers
// and, when there is one, the symbol table.
func checkAgainstELF(t *testing.T, path string, p inspectedProbe, stripped bool) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	text := f.Section(".text")
	if p.Section != ".text" || p.SectionAddress != text.Addr || p.SectionOffset != text.Offset {
		t.Errorf("section %s %#x/%#x, .text header says %#x/%#x", p.Section, p.SectionAddress, p.SectionOffset, text.Addr, text.Offset)
	}
	if p.FileOffset != p.Address-text.Addr+text.Offset {
		t.Errorf("file offset %#x ≠ %#x − %#x + %#x", p.FileOffset, p.Address, text.Addr, text.Offset)
	}
	if !stripped {
		syms, err := f.Symbols()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, s := range syms {
			if s.Name == p.Symbol {
				found = true
				if s.Value != p.Address || s.Size != p.Size {
					t.Errorf(".symtab has %s at %#x (%d bytes), inspect says %#x (%d)", s.Name, s.Value, s.Size, p.Address, p.Size)
				}
			}
		}
		if !found {
			t.Errorf("%s is not in .symtab", p.Symbol)
		}
	}
	// The uprobe lines are the entry and every RET, at file offsets.
	want := []string{fmt.Sprintf("p %s:%#x", path, p.FileOffset)}
	for _, r := range p.RetOffsets {
		want = append(want, fmt.Sprintf("p %s:%#x", path, p.FileOffset+r))
	}
	if strings.Join(p.UprobeEvents, "\n") != strings.Join(want, "\n") {
		t.Errorf("uprobe_events lines %q, want %q", p.UprobeEvents, want)
	}
	// At a file offset the bytes are the function's: the entry is not a RET
	// (0xc3) and every RET site is one.
	code := make([]byte, p.Size)
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.ReadAt(code, int64(p.FileOffset)); err != nil {
		t.Fatal(err)
	}
	for _, r := range p.RetOffsets {
		if code[r] != 0xc3 {
			t.Errorf("byte at RET site +%#x is %#x, not RET", r, code[r])
		}
	}
}

var objdumpLine = regexp.MustCompile(`^\s*\S+:\d+\s+0x([0-9a-f]+)\s+[0-9a-f]+\s+(\S+)`)

// checkAgainstObjdump compares the RET sites with the ones the toolchain
// that built the binary disassembles.
func checkAgainstObjdump(t *testing.T, path, version string, p inspectedProbe) {
	t.Helper()
	tc, err := toolchain.Get(version, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(tc.GOROOT, "bin", "go"), "tool", "objdump", "-s", "^"+regexp.QuoteMeta(p.Symbol)+"$", path)
	cmd.Env = tc.Env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go tool objdump: %v\n%s", err, out)
	}
	var rets []uint64
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := objdumpLine.FindStringSubmatch(sc.Text())
		if m == nil || m[2] != "RET" {
			continue
		}
		addr, _ := strconv.ParseUint(m[1], 16, 64)
		rets = append(rets, addr-p.Address)
	}
	if len(rets) == 0 || fmt.Sprint(rets) != fmt.Sprint(p.RetOffsets) {
		t.Errorf("RET offsets %#x, go tool objdump finds %#x:\n%s", p.RetOffsets, rets, out)
	}
}

// checkOffsetRows checks the offsets rows against the instrumentor's
// declaration and Go's history: Request.Pattern arrived in Go 1.23.
func checkOffsetRows(t *testing.T, in inspectedInst, version string) {
	t.Helper()
	rows := map[string]inspectedOffset{}
	for _, o := range in.Offsets {
		rows[o.Const] = o
		if o.Source != "offsets table" && o.Source != "Go version" {
			t.Errorf("%s from %q", o.Const, o.Source)
		}
	}
	// HTTP/2's status: bundled into net/http before Go 1.27, in
	// net/http/internal/http2 from 1.27, where the request is a copy.
	h2 := map[string]inspectedOffset{
		"1.16.15": {Field: "net/http.http2responseWriterState.status", Value: 80, Present: true},
		"1.27.4":  {Field: "net/http/internal/http2.responseWriterState.status", Value: 240, Present: true},
	}[version]
	if s := rows["off_h2rws_status"]; s.Field != h2.Field || s.Value != h2.Value || !s.Present {
		t.Errorf("off_h2rws_status row %+v for Go %s, want %+v", s, version, h2)
	}
	if _, copied := rows["h2_req_copied"]; copied != (version >= "1.27") {
		t.Errorf("h2_req_copied set: %v for Go %s", copied, version)
	}
	if len(in.Unreported) > 0 {
		t.Errorf("Go %s: unreported %v", version, in.Unreported)
	}
	if m := rows["off_req_method"]; m.Field != "net/http.Request.Method" || !m.Present || m.Value != 0 {
		t.Errorf("off_req_method row %+v", m)
	}
	p := rows["off_req_pattern"]
	if p.Field != "net/http.Request.Pattern" || !p.Optional || p.Present != (version >= "1.23") {
		t.Errorf("off_req_pattern row %+v for Go %s", p, version)
	}
}

func TestInspectNonGo(t *testing.T) {
	for _, path := range []string{"/bin/true", cProgram(t)} {
		text, code := runInspect(t, path)
		if code != 3 {
			t.Errorf("%s: exit %d, want 3", path, code)
		}
		if !strings.Contains(text, "not a Go program") || strings.Contains(text, "uprobe_events") {
			t.Errorf("%s:\n%s", path, text)
		}
		if path == "/bin/true" {
			checkGolden(t, "true", strings.ReplaceAll(text, path, "BINARY"))
		}
		rep := inspectJSON(t, path)
		if rep.Go || rep.GoVersion != "" || len(rep.Instrumentors) != 0 || rep.WillAttach != 0 || !strings.Contains(rep.NotInstrumentable, "not a Go program") {
			t.Errorf("%s: %+v", path, rep)
		}
	}
}

// cProgram builds a small C program with gcc, which CI installs.
func cProgram(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("gcc is required in CI")
		}
		t.Skip("skipping: no gcc to build a C program")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "hello.c")
	os.WriteFile(src, []byte("#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n"), 0o644)
	out := filepath.Join(dir, "hello")
	if b, err := exec.Command("gcc", "-O1", "-o", out, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, b)
	}
	return out
}

func TestInspectBadInput(t *testing.T) {
	notELF := filepath.Join(t.TempDir(), "script.sh")
	os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "name a BINARY or pass --pid N"},
		{[]string{"/no/such/file"}, 1, "/no/such/file: no such file"},
		{[]string{notELF}, 1, "not an ELF executable"},
		{[]string{t.TempDir()}, 1, "is a directory"},
		{[]string{"--pid", "999999999"}, 1, "--pid 999999999"},
		{[]string{"--pid", "1", "/bin/true"}, 2, "not both"},
		{[]string{"/bin/true", "/bin/false"}, 2, "one binary at a time"},
		{[]string{"--bogus"}, 2, "flag provided but not defined"},
		{[]string{"--instrument", "nope", "/bin/true"}, 2, `unknown instrumentor "nope"`},
	}
	for _, c := range cases {
		cmd := exec.Command(uranusBin, append([]string{"inspect"}, c.args...)...)
		out, _ := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != c.code {
			t.Errorf("inspect %v: exit %d, want %d\n%s", c.args, code, c.code, out)
		}
		if !strings.Contains(string(out), c.want) || strings.Contains(string(out), "panic") {
			t.Errorf("inspect %v: output lacks %q:\n%s", c.args, c.want, out)
		}
	}
	out, err := exec.Command(uranusBin, "inspect", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("inspect --help: %v", err)
	}
	for _, section := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "JSON OUTPUT", "EXIT STATUS", "EXAMPLES"} {
		if !strings.Contains(string(out), "\n"+section+"\n") && !strings.HasPrefix(string(out), section+"\n") {
			t.Errorf("inspect --help has no %s section", section)
		}
	}
}

// TestInspectPIDProbesWork inspects a running process with --pid and then
// proves the printed uprobe_events lines are right: it adds them to tracefs
// itself, sends requests, and counts the hits per site. Every request must
// hit the entry once and exactly one RET site once.
func TestInspectPIDProbesWork(t *testing.T) {
	e2e.RequireBPF(t)
	tracefs := mountTracefs(t)
	for _, c := range []struct {
		version string
		opts    testapp.Options
	}{
		{"1.27.4", testapp.Options{}},
		{"1.16.15", testapp.Options{Stripped: true}},
	} {
		t.Run(c.version+"-"+c.opts.String(), func(t *testing.T) {
			built := e2e.BuildTarget(t, "httpserver", c.version, c.opts)
			// A private copy: uprobes belong to the file, and other tests
			// run the cached sample at the same time.
			bin := filepath.Join(t.TempDir(), "httpserver")
			if err := copyFile(built, bin); err != nil {
				t.Fatal(err)
			}
			proc := e2e.Start(t, bin)
			rep := inspectJSON(t, "--pid", fmt.Sprint(proc.Cmd.Process.Pid))
			if rep.PID != proc.Cmd.Process.Pid || rep.Path != bin || rep.GoVersion != "go"+c.version {
				t.Fatalf("inspect --pid: path %q pid %d go %q", rep.Path, rep.PID, rep.GoVersion)
			}
			p := rep.Instrumentors[0].Probes[0]
			if len(p.UprobeEvents) < 2 {
				t.Fatalf("uprobe_events lines: %q", p.UprobeEvents)
			}

			group := fmt.Sprintf("uranus_inspect_test_%d", os.Getpid())
			var events []string
			for i, line := range p.UprobeEvents {
				name := "entry"
				if i > 0 {
					name = fmt.Sprintf("ret%d", i-1)
				}
				def := strings.Replace(line, "p ", "p:"+group+"/"+name+" ", 1)
				if err := appendFile(filepath.Join(tracefs, "uprobe_events"), def); err != nil {
					t.Fatalf("writing %q to uprobe_events: %v", def, err)
				}
				ev := group + "/" + name
				t.Cleanup(func() {
					os.WriteFile(filepath.Join(tracefs, "events", ev, "enable"), []byte("0"), 0)
					if err := appendFile(filepath.Join(tracefs, "uprobe_events"), "-:"+ev); err != nil {
						t.Errorf("removing %s: %v", ev, err)
					}
				})
				if err := os.WriteFile(filepath.Join(tracefs, "events", ev, "enable"), []byte("1"), 0); err != nil {
					t.Fatalf("enabling %s: %v", ev, err)
				}
				events = append(events, name)
			}

			const requests = 5
			for i := 0; i < requests; i++ {
				resp, err := http.Get(fmt.Sprintf("http://%s/hello", proc.Addr))
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			hits := uprobeHits(t, tracefs, bin)
			rets := 0
			for _, name := range events[1:] {
				rets += hits[name]
			}
			if hits["entry"] != requests || rets != requests {
				t.Errorf("after %d requests: entry hit %d times, RET sites %d times in all (%v)", requests, hits["entry"], rets, hits)
			}
		})
	}
}

// mountTracefs returns where tracefs is mounted, mounting it when it is not.
func mountTracefs(t *testing.T) string {
	t.Helper()
	const dir = "/sys/kernel/tracing"
	if _, err := os.Stat(filepath.Join(dir, "uprobe_events")); err == nil {
		return dir
	}
	if out, err := exec.Command("mount", "-t", "tracefs", "tracefs", dir).CombinedOutput(); err != nil {
		t.Fatalf("tracefs is not mounted and mounting it failed: %v %s", err, out)
	}
	return dir
}

func appendFile(path, line string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(line + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// uprobeHits reads the hit counts of the events on path from
// uprobe_profile ("  PATH  EVENT  HITS" per line).
func uprobeHits(t *testing.T, tracefs, path string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(tracefs, "uprobe_profile"))
	if err != nil {
		t.Fatal(err)
	}
	hits := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		if f[0] == path {
			hits[f[1]], _ = strconv.Atoi(f[2])
		}
	}
	return hits
}

// TestInspectFunc: inspect --func says where each argument and result of a
// function lives under its binary's calling convention (issue 12, point 5):
// parseMe(int, bool, float32) at SP+8, SP+16, SP+20 under Go's stack ABI
// and in AX, BX, X0 under the register ABI, where the float cannot be read.
func TestInspectFunc(t *testing.T) {
	type place struct{ where, recorded string }
	for _, c := range []struct {
		version string
		want    map[string]place // key → where, "yes" or a word of why not
	}{
		{"1.16.15", map[string]place{
			"arg.a": {"SP+8", "yes"}, "arg.b": {"SP+16", "yes"}, "arg.f": {"SP+20", "yes"},
			"result.0": {"SP+24", "yes"}, "result.1": {"SP+32", "yes"}, "result.2": {"SP+40", "yes"},
		}},
		{"1.27.4", map[string]place{
			"arg.a": {"AX", "yes"}, "arg.b": {"BX", "yes"}, "arg.f": {"X0", "integer registers"},
			"result.0": {"AX", "yes"}, "result.1": {"BX", "yes"}, "result.2": {"CX, DI", "yes"},
		}},
	} {
		t.Run(c.version, func(t *testing.T) {
			path, err := testapp.Build("funcs", c.version, testapp.Options{}, t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			args := []string{"--instrument", "http-server",
				"--func", "main.parseMe(a int, b bool, f float32) (int64, int32, string)",
				"--func", "main.noSuchFunction", path}
			rep := inspectJSON(t, args...)
			if len(rep.Functions) != 2 {
				t.Fatalf("want 2 functions, got %+v", rep.Functions)
			}
			f, missing := rep.Functions[0], rep.Functions[1]
			if !f.Traced || f.Name != "main.parseMe" || f.SigFrom != "given" || len(f.Params) != len(c.want) {
				t.Fatalf("parseMe: %+v", f)
			}
			for _, p := range f.Params {
				w := c.want[p.Key]
				got := "yes"
				if !p.Recorded {
					got = p.Why
				}
				if p.Where != w.where || !strings.Contains(got, w.recorded) {
					t.Errorf("%s: %s, recorded %q; want %s, %q", p.Key, p.Where, got, w.where, w.recorded)
				}
			}
			if f.Probe == nil || !f.Probe.Found || len(f.Probe.RetOffsets) == 0 || len(f.Probe.UprobeEvents) != 1+len(f.Probe.RetOffsets) {
				t.Errorf("parseMe's probe: %+v", f.Probe)
			} else {
				checkAgainstELF(t, path, *f.Probe, false)
			}
			if missing.Traced || !strings.Contains(missing.Reason, "not found") {
				t.Errorf("main.noSuchFunction: %+v", missing)
			}
			text, code := runInspect(t, args...)
			if code != 0 || !strings.Contains(text, "arg.f     float32  "+c.want["arg.f"].where) {
				t.Errorf("exit %d, text:\n%s", code, text)
			}
		})
	}
	t.Run("C", func(t *testing.T) {
		if _, err := exec.LookPath("gcc"); err != nil && os.Getenv("CI") != "true" {
			t.Skip("skipping: no gcc to build a C program")
		}
		dir := t.TempDir()
		src := filepath.Join(dir, "calc.c")
		os.WriteFile(src, []byte("__attribute__((noinline)) long calc(int a, long b, double x) { return a + b + (long)x; }\n"+
			"int main(int argc, char **argv) { return (int)calc(argc, 2, 1.5); }\n"), 0o644)
		bin := filepath.Join(dir, "calc")
		if b, err := exec.Command("gcc", "-O1", "-o", bin, src).CombinedOutput(); err != nil {
			t.Fatalf("gcc: %v\n%s", err, b)
		}
		rep := inspectJSON(t, "--func", "calc(a int32, b int64, x float64) int64", bin)
		if len(rep.Functions) != 1 || !rep.Functions[0].Traced || rep.WillAttach != 1 {
			t.Fatalf("%+v", rep)
		}
		var got []string
		for _, p := range rep.Functions[0].Params {
			got = append(got, fmt.Sprintf("%s=%s/%v", p.Key, p.Where, p.Recorded))
		}
		want := "arg.a=DI/true arg.b=SI/true arg.x=XMM0/false result.0=AX/true"
		if strings.Join(got, " ") != want {
			t.Errorf("got %s, want %s", strings.Join(got, " "), want)
		}
	})
}
