package binary

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// fuzzSeeds are small inputs built at test time: the synthetic Go binary
// (whole and cut), a gcc-built C program when gcc is there, and the first
// KiBs of this test binary. Nothing large is committed.
func fuzzSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	for _, withSymtab := range []bool{false, true} {
		s := synthGo(withSymtab)
		seeds = append(seeds, s, s[:len(s)/2], s[:len(s)-100])
	}
	if _, err := exec.LookPath("gcc"); err == nil {
		dir := t.TempDir()
		src := filepath.Join(dir, "seed.c")
		exe := filepath.Join(dir, "seed")
		if os.WriteFile(src, []byte(cSource), 0o644) == nil &&
			exec.Command("gcc", "-O2", "-rdynamic", "-o", exe, src).Run() == nil {
			if b, err := os.ReadFile(exe); err == nil && len(b) < 64<<10 {
				seeds = append(seeds, b, b[:len(b)/2])
			}
		}
	}
	if exe, err := os.Executable(); err == nil {
		if b, err := os.ReadFile(exe); err == nil {
			for _, n := range []int{64, 1 << 10, 4 << 10, 16 << 10} {
				if n < len(b) {
					seeds = append(seeds, b[:n])
				}
			}
		}
	}
	return append(seeds, nil, []byte("\x7fELF"), []byte("not an ELF file"))
}

// FuzzOpen feeds arbitrary bytes through Open and every lookup: errors are
// fine, panics and hangs are not.
func FuzzOpen(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		bf, err := OpenReaderAt(bytes.NewReader(data), "fuzz")
		if err != nil {
			return
		}
		for _, name := range []string{"main.main", "main.f", "main.f.abi0", "runtime.text", "utest_add", "main", ""} {
			fn, err := bf.Func(name)
			if err == nil && fn.Addr-fn.SectionAddr+fn.SectionOffset != fn.FileOffset {
				t.Errorf("%s: inconsistent offsets %+v", name, fn)
			}
		}
		bf.Suggest("main.mian")
		bf.Funcs("main.")
		bf.DWARF()
	})
}

// FuzzRetSites runs the disassemblers on arbitrary code: RET offsets must
// lie inside the code and in increasing order.
func FuzzRetSites(f *testing.F) {
	f.Add([]byte{0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3, 0xcc, 0xcc}, false)
	f.Add([]byte{0xc3, 0xeb, 0xcc, 0xcc}, false)
	f.Add([]byte{0x1f, 0x20, 0x03, 0xd5, 0xc0, 0x03, 0x5f, 0xd6}, true)
	f.Add([]byte{0x0f, 0x0b, 0x0f, 0xff}, false)
	f.Add([]byte{0xc5, 0xf8, 0x77, 0xc3, 0xc4, 0xe1, 0x78, 0x77, 0xc3}, false)
	f.Add([]byte{0xc4, 0xe2, 0x79, 0x18, 0x05, 0x00, 0x00, 0x00, 0x00, 0xc3}, false)
	f.Fuzz(func(t *testing.T, code []byte, arm64 bool) {
		arch := "amd64"
		if arm64 {
			arch = "arm64"
		}
		rets, end, err := retSites(arch, code)
		if err != nil {
			return
		}
		if end > uint64(len(code)) {
			t.Fatalf("end %d past %d bytes", end, len(code))
		}
		for i, r := range rets {
			if r >= end || i > 0 && r <= rets[i-1] {
				t.Fatalf("bad RET offsets %v (end %d)", rets, end)
			}
			if arm64 && r%4 != 0 {
				t.Fatalf("unaligned arm64 RET at %d", r)
			}
		}
	})
}
