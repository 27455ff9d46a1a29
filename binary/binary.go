// Package binary analyses an executable before uranus probes it: which Go
// version built it and with which ABI, where each function lives (from
// .symtab, or from .gopclntab when the binary is stripped), the file offset a
// uprobe needs, and every RET instruction inside a function.
//
// Only Linux ELF executables for amd64 and arm64 are supported. Binaries that
// were not built by Go (C, C++) are accepted too: their functions are looked
// up in .symtab and .dynsym.
package binary

import (
	"bytes"
	"debug/buildinfo"
	"debug/dwarf"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	version "github.com/hashicorp/go-version"
)

// ErrNoSymbol means the function is not in the binary (or was inlined away).
var ErrNoSymbol = errors.New("function not found in binary")

// ErrDecode means the instructions of a function could not be decoded, so
// its RET sites are unknown. Placing a uprobe on a guessed address could land
// inside an instruction and corrupt the target, so this is never papered over.
var ErrDecode = errors.New("cannot decode instructions")

// File is an opened executable.
type File struct {
	Path      string
	Arch      string            // GOARCH spelling: "amd64", "arm64"
	GoVersion string            // "go1.16.15"; empty for a non-Go binary
	Version   *version.Version  // GoVersion parsed; nil for a non-Go binary
	RegABI    bool              // arguments in registers (amd64 Go >= 1.17, arm64 Go >= 1.18)
	Stripped  bool              // no .symtab: functions come from .gopclntab
	HasDWARF  bool              // has a .debug_info section (also zlib-compressed .zdebug_info); DWARF parses it
	Settings  map[string]string // build settings from build info (-ldflags, CGO_ENABLED, …)
	MainPath  string            // main package path from build info
	// Modules are the modules the binary was built with, by path, with
	// the version of the code linked in ("v1.62.1"): a replacement's
	// version when one replaced the module, "" when a local directory
	// did. From build info, so stripped binaries have them too.
	Modules map[string]string

	elf    *elf.File
	closer io.Closer

	dwarfOnce sync.Once
	dwarf     *dwarf.Data
	dwarfErr  error

	symOnce      sync.Once
	symtab       map[string][]elf.Symbol // STT_FUNC symbols of .symtab by name
	dynsym       map[string][]elf.Symbol // defined STT_FUNC symbols of .dynsym by name
	runtimeText  uint64                  // the runtime.text symbol, 0 when absent
	runtimeTypes uint64                  // the runtime.types symbol, 0 when absent

	typesOnce sync.Once
	typesBase uint64
	typesErr  error

	pclnOnce sync.Once
	pcln     *pclntab
	pclnErr  error

	namesOnce sync.Once
	names     []Symbol // every function name, sorted, for Funcs and Suggest
}

// Open analyses the executable at path.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if errors.Is(err, os.ErrPermission) {
		return nil, fmt.Errorf("%w (uranus may not read the executable: run uranus as root or grant it CAP_DAC_READ_SEARCH)", err)
	}
	if err != nil {
		return nil, err
	}
	f, err := OpenReaderAt(fh, path)
	if err != nil {
		fh.Close()
		return nil, err
	}
	f.closer = fh
	return f, nil
}

// OpenReaderAt analyses an executable read from r; path only names it in
// errors and in File.Path. The caller keeps r open while the File is used.
func OpenReaderAt(r io.ReaderAt, path string) (*File, error) {
	var magic [4]byte
	if n, _ := r.ReadAt(magic[:], 0); n < len(magic) || !bytes.Equal(magic[:], []byte(elf.ELFMAG)) {
		return nil, fmt.Errorf("%s: not an ELF executable (uranus supports Linux ELF binaries)", path)
	}
	ef, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("%s: malformed or truncated ELF file: %v", path, err)
	}
	f := &File{Path: path, elf: ef, Settings: map[string]string{}}

	switch {
	case ef.Machine == elf.EM_X86_64 && ef.Class == elf.ELFCLASS64:
		f.Arch = "amd64"
	case ef.Machine == elf.EM_AARCH64 && ef.Class == elf.ELFCLASS64:
		f.Arch = "arm64"
	default:
		return nil, fmt.Errorf("%s: unsupported machine %v (%v); uranus supports amd64 and arm64", path, ef.Machine, ef.Class)
	}
	if ef.Data != elf.ELFDATA2LSB {
		return nil, fmt.Errorf("%s: big-endian %s binaries are not supported", path, f.Arch)
	}

	if err := f.readBuildInfo(r); err != nil {
		return nil, err
	}
	f.Stripped = ef.Section(".symtab") == nil
	// Parsing DWARF takes a while on big binaries (100 ms for an 8 MB Go
	// program), so Open only checks that it is there and DWARF parses it.
	for _, name := range []string{".debug_info", ".zdebug_info"} {
		if s := ef.Section(name); s != nil && s.Type != elf.SHT_NOBITS && s.Size > 0 {
			f.HasDWARF = true
		}
	}
	return f, nil
}

// readBuildInfo fills the Go version, main path and build settings. A binary
// without build info is a non-Go program, unless it carries Go's own sections,
// in which case its build info is damaged and that is reported.
func (f *File) readBuildInfo(r io.ReaderAt) error {
	bi, err := buildinfo.Read(r)
	if err != nil {
		if f.looksLikeGo() {
			return fmt.Errorf("%s: Go binary with unreadable build info: %v", f.Path, err)
		}
		return nil
	}
	v, regabiOff, err := parseGoVersion(bi.GoVersion)
	if err != nil {
		return fmt.Errorf("%s: %v", f.Path, err)
	}
	f.GoVersion = strings.Fields(bi.GoVersion)[0]
	f.Version = v
	f.MainPath = bi.Path
	for _, s := range bi.Settings {
		f.Settings[s.Key] = s.Value
	}
	f.Modules = make(map[string]string, len(bi.Deps))
	for _, d := range bi.Deps {
		v := d.Version
		if d.Replace != nil {
			v = d.Replace.Version
		}
		f.Modules[d.Path] = v
	}
	switch f.Arch {
	case "amd64":
		f.RegABI = atLeast(v, 1, 17)
	case "arm64":
		f.RegABI = atLeast(v, 1, 18)
	}
	// Go 1.17 and 1.18 could still be built with GOEXPERIMENT=noregabi.
	if regabiOff {
		f.RegABI = false
	}
	return nil
}

func (f *File) looksLikeGo() bool {
	for _, name := range []string{".gopclntab", ".data.rel.ro.gopclntab", ".go.buildinfo", ".note.go.buildid"} {
		if f.elf.Section(name) != nil {
			return true
		}
	}
	return false
}

// parseGoVersion parses runtime.Version() strings as build info records them:
// "go1.21.0", "go1.18", "go1.26rc1", "go1.22.1 X:loopvar". It reports whether
// the experiment list turns the register ABI off.
func parseGoVersion(s string) (v *version.Version, regabiOff bool, err error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return nil, false, errors.New("build info has an empty Go version")
	}
	if fields[0] == "devel" {
		return nil, false, fmt.Errorf("built by a development Go toolchain (%q); uranus needs a released Go version", s)
	}
	if !strings.HasPrefix(fields[0], "go") {
		return nil, false, fmt.Errorf("unrecognised Go version %q in build info", s)
	}
	v, err = version.NewVersion(strings.TrimPrefix(fields[0], "go"))
	if err != nil {
		return nil, false, fmt.Errorf("unrecognised Go version %q in build info: %v", s, err)
	}
	if seg := v.Segments64(); len(seg) < 2 || seg[0] != 1 {
		return nil, false, fmt.Errorf("unsupported Go version %q", s)
	}
	for _, fl := range fields[1:] {
		if exps, ok := strings.CutPrefix(fl, "X:"); ok {
			for _, e := range strings.Split(exps, ",") {
				if e == "noregabi" {
					regabiOff = true
				}
			}
		}
	}
	return v, regabiOff, nil
}

// atLeast compares release numbers only, so that go1.17rc1 counts as 1.17:
// its ABI is the one of 1.17 even though semver orders it before 1.17.0.
func atLeast(v *version.Version, major, minor int64) bool {
	if v == nil {
		return false
	}
	seg := v.Segments64()
	if len(seg) < 2 {
		return false
	}
	return seg[0] > major || seg[0] == major && seg[1] >= minor
}

// AtLeast reports whether the binary was built by Go major.minor or later
// (release candidates count as their release); false for a non-Go binary.
func (f *File) AtLeast(major, minor int) bool {
	return atLeast(f.Version, int64(major), int64(minor))
}

// IsGo reports whether a Go toolchain built the binary.
func (f *File) IsGo() bool { return f.Version != nil }

// ELF gives access to the underlying ELF file.
func (f *File) ELF() *elf.File { return f.elf }

// Close releases the file.
func (f *File) Close() error {
	if f.closer != nil {
		return f.closer.Close()
	}
	return nil
}

// DWARF returns the binary's debug information, or an error when it has none.
func (f *File) DWARF() (*dwarf.Data, error) {
	f.dwarfOnce.Do(func() {
		if !f.HasDWARF {
			f.dwarfErr = errors.New("no .debug_info section")
			return
		}
		f.dwarf, f.dwarfErr = f.elf.DWARF()
	})
	if f.dwarfErr != nil {
		return nil, fmt.Errorf("%s: no usable DWARF debug information (built with -ldflags=-w or stripped?): %v", f.Path, f.dwarfErr)
	}
	return f.dwarf, nil
}
