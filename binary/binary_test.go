package binary

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseGoVersion(t *testing.T) {
	tests := []struct {
		in         string
		want       string // hashicorp's rendering
		amd64Reg   bool   // atLeast(1, 17)
		regabiOff  bool
		errContain string
	}{
		{in: "go1.21.0", want: "1.21.0", amd64Reg: true},
		{in: "go1.18", want: "1.18.0", amd64Reg: true},
		{in: "go1.26rc1", want: "1.26.0-rc1", amd64Reg: true},
		{in: "go1.17rc2", want: "1.17.0-rc2", amd64Reg: true},
		{in: "go1.17beta1", want: "1.17.0-beta1", amd64Reg: true},
		{in: "go1.16.15", want: "1.16.15"},
		{in: "go1.13", want: "1.13.0"},
		{in: "go1.22.1 X:loopvar", want: "1.22.1", amd64Reg: true},
		{in: "go1.17.13 X:noregabi,fieldtrack", want: "1.17.13", amd64Reg: true, regabiOff: true},
		{in: "devel go1.27-4b6e5a1c Tue Jun 3 10:00:00 2026 +0000", errContain: "development Go toolchain"},
		{in: "devel +a1b2c3d4 Mon Jan 1 00:00:00 2019", errContain: "development Go toolchain"},
		{in: "", errContain: "empty Go version"},
		{in: "gofoo", errContain: "unrecognised Go version"},
		{in: "1.21.0", errContain: "unrecognised Go version"},
		{in: "go2.0", errContain: "unsupported Go version"},
	}
	for _, tt := range tests {
		v, off, err := parseGoVersion(tt.in)
		if tt.errContain != "" {
			if err == nil || !strings.Contains(err.Error(), tt.errContain) {
				t.Errorf("parseGoVersion(%q) error = %v, want %q", tt.in, err, tt.errContain)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseGoVersion(%q): %v", tt.in, err)
			continue
		}
		if v.String() != tt.want || atLeast(v, 1, 17) != tt.amd64Reg || off != tt.regabiOff {
			t.Errorf("parseGoVersion(%q) = %s, >=1.17 %v, noregabi %v; want %s, %v, %v",
				tt.in, v, atLeast(v, 1, 17), off, tt.want, tt.amd64Reg, tt.regabiOff)
		}
	}
}

// realELF is an ELF binary that is always there: the test binary itself.
func realELF(t *testing.T) []byte {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	elfBytes := realELF(t)
	random := make([]byte, 64<<10)
	rand.New(rand.NewSource(1)).Read(random)
	randomELF := append([]byte(elf.ELFMAG), random...)
	wrongMachine := bytes.Clone(elfBytes)
	binary.LittleEndian.PutUint16(wrongMachine[18:], uint16(elf.EM_RISCV))

	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"empty", nil, "not an ELF executable (uranus supports Linux ELF binaries)"},
		{"text", []byte("#!/bin/sh\necho hello\n"), "not an ELF executable"},
		{"random", random, "not an ELF executable"},
		{"magic-only", []byte(elf.ELFMAG), "malformed or truncated ELF file"},
		{"random-after-magic", randomELF, "malformed or truncated ELF file"},
		{"truncated-4KiB", elfBytes[:4<<10], "malformed or truncated ELF file"},
		{"truncated-header", elfBytes[:40], "malformed or truncated ELF file"},
		{"wrong-machine", wrongMachine, "unsupported machine EM_RISCV"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name)
			if err := os.WriteFile(path, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := Open(path)
			if err == nil {
				f.Close()
				t.Fatalf("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q, want it to name %s and say %q", err, path, tt.wantErr)
			}
		})
	}

	if _, err := Open(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Open(dir); err == nil {
		t.Errorf("opening a directory succeeded")
	}
}

// TestTruncatedSections keeps the headers of a real binary but cuts its
// contents: Open may succeed, but lookups must fail cleanly.
func TestTruncatedSections(t *testing.T) {
	full := realELF(t)
	for _, frac := range []int{2, 3, 4} {
		data := full[:len(full)/frac]
		f, err := OpenReaderAt(bytes.NewReader(data), "cut")
		if err != nil {
			t.Logf("1/%d: %v", frac, err)
			continue
		}
		for _, name := range []string{"main.main", "testing.(*T).Run", "runtime.schedinit", "nope"} {
			if _, err := f.Func(name); err != nil {
				t.Logf("1/%d: %v", frac, err)
			}
		}
		f.Suggest("main.mian")
	}
}

// TestSelf runs the lookups on the test binary, built by the host Go.
func TestSelf(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !f.IsGo() || f.GoVersion == "" || f.Version == nil {
		t.Fatalf("not recognised as Go: %+v", f)
	}
	fn, err := f.Func("github.com/uranus-otel/uranus/binary.TestSelf")
	if err != nil {
		t.Fatal(err)
	}
	// go test links with -s -w, so this exercises .gopclntab on the host Go.
	if len(fn.RetOffsets) == 0 || fn.Source != "pclntab" && fn.Source != "symtab" || fn.Section != ".text" {
		t.Errorf("TestSelf: %+v", fn)
	}
}

func TestRetSitesAMD64(t *testing.T) {
	tests := []struct {
		name    string
		code    []byte
		rets    []uint64
		end     uint64
		wantErr bool
	}{
		{"empty", nil, []uint64{}, 0, false},
		{"ret", []byte{0xc3}, []uint64{0}, 1, false},
		{"padded", []byte{0x90, 0xc3, 0xcc, 0xcc, 0xcc}, []uint64{1}, 2, false},
		// JMP -0x34 ends in a CC byte that is not padding.
		{"jmp-cc", []byte{0xc3, 0xeb, 0xcc, 0xcc, 0xcc}, []uint64{0}, 3, false},
		{"ret-imm16", []byte{0xc2, 0x08, 0x00, 0xc3}, []uint64{0, 3}, 4, false},
		{"rep-ret", []byte{0xf3, 0xc3}, []uint64{0}, 2, false},
		// C3 inside MOV EAX, 0xc3c3c3c3 is no RET.
		{"c3-immediate", []byte{0xb8, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3}, []uint64{5}, 6, false},
		// VZEROUPPER; RET: x86asm alone would swallow the RET.
		{"vzeroupper-ret", []byte{0xc5, 0xf8, 0x77, 0xc3}, []uint64{3}, 4, false},
		{"vzeroupper-vex3-ret", []byte{0xc4, 0xe1, 0x78, 0x77, 0xc3}, []uint64{4}, 5, false},
		{"vzeroall-ret", []byte{0xc5, 0xfc, 0x77, 0xc3}, []uint64{3}, 4, false},
		{"truncated", []byte{0xc3, 0x48, 0x8b}, nil, 0, true},
		{"invalid", []byte{0xc3, 0x0f, 0x0b, 0x0f, 0xff}, nil, 0, true},
	}
	for _, tt := range tests {
		rets, end, err := retSites("amd64", tt.code)
		if tt.wantErr {
			var de *decodeError
			if !errors.As(err, &de) {
				t.Errorf("%s: err = %v, want a decodeError", tt.name, err)
			}
			continue
		}
		if err != nil || !equalU64(rets, tt.rets) || end != tt.end || rets == nil {
			t.Errorf("%s: rets %v end %d err %v; want %v %d", tt.name, rets, end, err, tt.rets, tt.end)
		}
	}
}

func TestRetSitesARM64(t *testing.T) {
	le := func(words ...uint32) []byte {
		b := make([]byte, 4*len(words))
		for i, w := range words {
			binary.LittleEndian.PutUint32(b[4*i:], w)
		}
		return b
	}
	const (
		nop    = 0xd503201f
		ret    = 0xd65f03c0 // RET (X30)
		retX1  = 0xd65f0020 // RET X1
		br     = 0xd61f0020 // BR X1: a tail jump, no RET
		zeroes = 0x00000000 // padding, does not decode
	)
	rets, end, err := retSites("arm64", le(nop, ret, br, retX1, zeroes, nop))
	if err != nil || !equalU64(rets, []uint64{4, 12}) || end != 24 {
		t.Errorf("rets %v end %d err %v", rets, end, err)
	}
	// A trailing partial word is ignored rather than read past.
	if rets, _, err := retSites("arm64", append(le(ret), 0xc0, 0x03)); err != nil || !equalU64(rets, []uint64{0}) {
		t.Errorf("partial word: %v %v", rets, err)
	}
}

func TestEditDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b  string
		limit int
		want  int
	}{
		{"", "", 3, 0},
		{"abc", "abc", 3, 0},
		{"kitten", "sitting", 5, 3},
		{"net/http.transport.roundtrip", "net/http.(*transport).roundtrip", 8, 3},
		{"aaaaaaaa", "bbbbbbbb", 2, 3},
	} {
		if got := editDistance(tt.a, tt.b, tt.limit); got != tt.want {
			t.Errorf("editDistance(%q, %q, %d) = %d, want %d", tt.a, tt.b, tt.limit, got, tt.want)
		}
	}
}
