package reliability

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"

	"github.com/uranus-otel/uranus/attach"
	ubinary "github.com/uranus-otel/uranus/binary"
	"github.com/uranus-otel/uranus/internal/testapp"
	"github.com/uranus-otel/uranus/offsets"
)

// realBinary is a sample built by a real toolchain, held in memory, with
// where its interesting parts are.
type realBinary struct {
	name     string
	data     []byte
	sections map[string]*elf.SectionHeader
	shoff    uint64
	funcOff  uint64 // file offset of net/http.serverHandler.ServeHTTP
}

// realBinaries are the fuzz seeds and corruption subjects: the stackgrow
// sample built by toolchains of both ABIs and both map implementations,
// stripped and not.
var realBinaries = []struct {
	version string
	opts    testapp.Options
}{
	{"1.13.15", testapp.Options{}},
	{"1.17.13", testapp.Options{Stripped: true}},
	{"1.22.12", testapp.Options{}},
	{"1.27.4", testapp.Options{Stripped: true}},
}

var (
	realOnce sync.Once
	realBins []*realBinary
	realErr  error
)

func loadRealBinaries(t testing.TB) []*realBinary {
	t.Helper()
	realOnce.Do(func() {
		for _, rb := range realBinaries {
			path, err := testapp.Build("stackgrow", rb.version, rb.opts, t.Logf)
			if err != nil {
				realErr = err
				return
			}
			data, err := os.ReadFile(path)
			if err != nil {
				realErr = err
				return
			}
			b := &realBinary{name: fmt.Sprintf("go%s-%s", rb.version, rb.opts), data: data, sections: map[string]*elf.SectionHeader{}}
			ef, err := elf.NewFile(bytes.NewReader(data))
			if err != nil {
				realErr = err
				return
			}
			for _, s := range ef.Sections {
				b.sections[s.Name] = &s.SectionHeader
			}
			b.shoff = binary.LittleEndian.Uint64(data[0x28:])
			bf, err := ubinary.OpenReaderAt(bytes.NewReader(data), b.name)
			if err != nil {
				realErr = err
				return
			}
			fn, err := bf.Func("net/http.serverHandler.ServeHTTP")
			if err != nil {
				realErr = err
				return
			}
			b.funcOff = fn.FileOffset
			realBins = append(realBins, b)
		}
	})
	if realErr != nil {
		t.Fatal(realErr)
	}
	return realBins
}

// patched reads as base cut to size bytes, with patch written at off: a
// corrupted copy of a multi-MB binary without copying it.
type patched struct {
	base  []byte
	size  int64
	off   int64
	patch []byte
}

func (p *patched) ReadAt(b []byte, at int64) (int, error) {
	if at < 0 {
		return 0, io.ErrUnexpectedEOF
	}
	if at >= p.size {
		return 0, io.EOF
	}
	n := copy(b, p.base[at:p.size])
	// Overlay the part of the patch that falls inside [at, at+n).
	lo, hi := max(at, p.off), min(at+int64(n), p.off+int64(len(p.patch)))
	if lo < hi {
		copy(b[lo-at:hi-at], p.patch[lo-p.off:hi-p.off])
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

var table = func() *offsets.Table {
	t, err := offsets.Embedded()
	if err != nil {
		panic(err)
	}
	return t
}()

// analyse runs everything uranus does with a target's binary before it
// attaches: open (ELF, build info), plan (symbols or pclntab, RET sites,
// offsets). It returns the first error, and turns a panic into a failure.
func analyse(t *testing.T, r io.ReaderAt, name string) (err error) {
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("%s: panic: %v\n%s", name, p, debug.Stack())
		}
	}()
	bf, err := ubinary.OpenReaderAt(r, name)
	if err != nil {
		return err
	}
	defer bf.Close()
	plans, err := attach.MakePlans(bf, coveredList(), table)
	if err != nil {
		return err
	}
	for _, p := range plans {
		if p.Skip != "" {
			return fmt.Errorf("%s: %s", p.Inst.ID, p.Skip)
		}
	}
	return nil
}

// TestCorruptBinaries truncates and corrupts real binaries where uranus
// reads them (ELF and section headers, build info, symbol table, pclntab,
// the probed function's code). Each must give an error that names the
// file and says what is wrong, or be analysed as usual when the damage
// does not touch what uranus reads; never a panic.
func TestCorruptBinaries(t *testing.T) {
	for _, b := range loadRealBinaries(t) {
		t.Run(b.name, func(t *testing.T) {
			if err := analyse(t, bytes.NewReader(b.data), b.name); err != nil {
				t.Fatalf("the intact binary: %v", err)
			}
			size := int64(len(b.data))
			type damage struct {
				what  string
				size  int64
				off   int64
				patch []byte
			}
			var cases []damage
			for _, n := range []int64{0, 3, 4, 63, 64, 1 << 10, size / 8, size / 4, size / 2, size - int64(len(b.data))/100, size - 1} {
				cases = append(cases, damage{fmt.Sprintf("truncated to %d bytes", n), n, 0, nil})
			}
			fill := func(n uint64, v byte) []byte { return bytes.Repeat([]byte{v}, int(n)) }
			cases = append(cases,
				damage{"ELF magic", size, 1, []byte("ELG")},
				damage{"ELF class", size, 4, []byte{9}},
				damage{"machine", size, 0x12, []byte{0x28, 0}},
				damage{"section headers past the end", size, 0x28, le64(uint64(size) + 4096)},
				damage{"section header count", size, 0x3c, []byte{0xff, 0xff}},
				damage{"section header table", size, int64(b.shoff), fill(64*8, 0xff)},
			)
			for _, sec := range []string{".go.buildinfo", ".gopclntab", ".symtab", ".strtab", ".noptrdata", ".note.go.buildid", ".debug_info", ".zdebug_info"} {
				h := b.sections[sec]
				if h == nil || h.Type == elf.SHT_NOBITS {
					continue
				}
				n := min(h.Size, 4096)
				cases = append(cases,
					damage{sec + " zeroed", size, int64(h.Offset), fill(n, 0)},
					damage{sec + " header garbled", size, int64(h.Offset), fill(min(n, 32), 0xa5)},
					damage{sec + " cut off", int64(h.Offset + h.Size/2), 0, nil},
				)
			}
			cases = append(cases, damage{"ServeHTTP's code", size, int64(b.funcOff), fill(256, 0xff)})

			for _, c := range cases {
				name := filepath.Join("/corrupt", b.name, strings.ReplaceAll(c.what, " ", "-"))
				err := analyse(t, &patched{b.data, c.size, c.off, c.patch}, name)
				switch {
				case err == nil:
					t.Logf("%-40s analysed as usual", c.what)
				case !strings.Contains(err.Error(), name) && !strings.Contains(err.Error(), "http-server"):
					t.Errorf("%s: the error does not say which file: %v", c.what, err)
				case strings.Contains(err.Error(), "\n"):
					t.Errorf("%s: the error spans lines: %q", c.what, err)
				default:
					t.Logf("%-40s %v", c.what, strings.ReplaceAll(err.Error(), name, "FILE"))
				}
			}
		})
	}
}

func le64(v uint64) []byte {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	return b[:]
}

// FuzzCorruptBinary damages real binaries, built by several toolchains, at
// fuzzer-chosen places: a cut and a patch. Seeds aim at the parts uranus
// parses. Errors are expected; panics and hangs are not.
func FuzzCorruptBinary(f *testing.F) {
	bins := loadRealBinaries(f)
	for i, b := range bins {
		f.Add(uint8(i), uint32(0), uint32(0), []byte{})
		f.Add(uint8(i), uint32(len(b.data)/2), uint32(0), []byte{})
		f.Add(uint8(i), uint32(0), uint32(b.shoff), []byte{0xff, 0xff, 0xff, 0xff})
		f.Add(uint8(i), uint32(0), uint32(b.funcOff), []byte{0xc3, 0xcc, 0xff})
		for _, sec := range []string{".go.buildinfo", ".gopclntab", ".symtab", ".note.go.buildid"} {
			if h := b.sections[sec]; h != nil {
				f.Add(uint8(i), uint32(0), uint32(h.Offset), []byte{0, 0, 0, 0, 0, 0, 0, 0})
				f.Add(uint8(i), uint32(h.Offset+h.Size/2), uint32(h.Offset+8), []byte{0xff})
			}
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, cut, at uint32, patch []byte) {
		b := bins[int(which)%len(bins)]
		size := int64(len(b.data))
		if cut != 0 && int64(cut) < size {
			size = int64(cut)
		}
		analyse(t, &patched{b.data, size, int64(at), patch}, "fuzz")
	})
}
