package binary

import (
	"debug/elf"
	"debug/gosym"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Magic numbers at the start of .gopclntab (runtime.pcHeader).
const (
	pclnGo12  = 0xfffffffb // Go 1.2 – 1.15: absolute entry PCs
	pclnGo116 = 0xfffffffa // Go 1.16 – 1.17: absolute entry PCs
	pclnGo118 = 0xfffffff0 // Go 1.18 – 1.19: entry PCs relative to runtime.text
	pclnGo120 = 0xfffffff1 // Go 1.20 onwards: relative to runtime.text
)

// pclntab is the function table a Go binary keeps for the runtime. It is
// complete even when .symtab is stripped, so it is the fallback for names.
type pclntab struct {
	table     *gosym.Table
	byName    map[string][]int // indexes into table.Funcs
	textStart uint64           // runtime.text, the base of entry offsets
	textFrom  string           // how textStart was found, for tests and debugging
}

// pclntabData finds the table and its address. It normally has its own
// section, .data.rel.ro.gopclntab in some PIE binaries, but an external
// linker may merge it into .data.rel.ro (Go 1.22 -buildmode=pie with cgo),
// so as a last resort read-only data is searched for the pcHeader: magic,
// two zero bytes, the instruction size quantum and the pointer size.
func (f *File) pclntabData() ([]byte, uint64, error) {
	for _, name := range []string{".gopclntab", ".data.rel.ro.gopclntab"} {
		if s := f.elf.Section(name); s != nil && s.Type != elf.SHT_NOBITS {
			data, err := s.Data()
			if err != nil {
				return nil, 0, fmt.Errorf("reading %s: %v", name, err)
			}
			return data, s.Addr, nil
		}
	}
	quantum := byte(1)
	if f.Arch == "arm64" {
		quantum = 4
	}
	for _, s := range f.elf.Sections {
		if s.Type != elf.SHT_PROGBITS || s.Flags&elf.SHF_ALLOC == 0 || s.Flags&elf.SHF_EXECINSTR != 0 {
			continue
		}
		data, err := s.Data()
		if err != nil {
			continue
		}
		for off := 0; off+16 <= len(data); off += 8 {
			switch binary.LittleEndian.Uint32(data[off:]) {
			case pclnGo12, pclnGo116, pclnGo118, pclnGo120:
				if data[off+4] == 0 && data[off+5] == 0 && data[off+6] == quantum && data[off+7] == 8 &&
					checkPclnHeader(data[off:]) == nil {
					return data[off:], s.Addr + uint64(off), nil
				}
			}
		}
	}
	return nil, 0, errors.New("no .gopclntab section and no pcHeader in the data")
}

func (f *File) loadPclntab() (*pclntab, error) {
	f.pclnOnce.Do(func() { f.pcln, f.pclnErr = f.readPclntab() })
	return f.pcln, f.pclnErr
}

func (f *File) readPclntab() (*pclntab, error) {
	data, addr, err := f.pclntabData()
	if err != nil {
		return nil, err
	}
	if len(data) < 8 {
		return nil, errors.New(".gopclntab is truncated")
	}
	magic := binary.LittleEndian.Uint32(data)
	if magic != pclnGo12 && magic != pclnGo116 && magic != pclnGo118 && magic != pclnGo120 {
		return nil, fmt.Errorf(".gopclntab has unknown format %#x (Go too old or too new for uranus)", magic)
	}
	if data[7] != 8 {
		return nil, fmt.Errorf(".gopclntab has pointer size %d, want 8", data[7])
	}

	p := &pclntab{}
	text := f.elf.Section(".text")
	if magic == pclnGo12 || magic == pclnGo116 {
		// Entries are absolute addresses; the base is not used.
		if text != nil {
			p.textStart = text.Addr
		}
		p.textFrom = "absolute entries"
	} else {
		p.textStart, p.textFrom, err = f.findRuntimeText(data, addr)
		if err != nil {
			return nil, err
		}
	}

	var symtab []byte
	if s := f.elf.Section(".gosymtab"); s != nil {
		symtab, _ = s.Data() // empty since Go 1.3; gosym ignores it for Go 1.2+ tables
	}
	p.table, err = newGosymTable(symtab, data, p.textStart)
	if err != nil {
		return nil, fmt.Errorf("parsing .gopclntab: %v", err)
	}
	p.byName = make(map[string][]int, len(p.table.Funcs))
	for i := range p.table.Funcs {
		n := p.table.Funcs[i].Name
		p.byName[n] = append(p.byName[n], i)
	}
	return p, nil
}

// checkPclnHeader makes sure the function and file counts fit in the table.
// debug/gosym allocates a slice of nfunc entries up front, so a corrupted
// count would exhaust memory, which no recover can catch.
func checkPclnHeader(data []byte) error {
	const ptr = 8
	if len(data) < 8+ptr {
		return errors.New(".gopclntab is truncated")
	}
	word := func(i int) uint64 {
		off := 8 + i*ptr
		if off+ptr > len(data) {
			return ^uint64(0)
		}
		return binary.LittleEndian.Uint64(data[off:])
	}
	size := uint64(len(data))
	nfunc := word(0)
	var functab, entry, nfiles uint64
	switch binary.LittleEndian.Uint32(data) {
	case pclnGo12:
		functab, entry = 8+ptr, ptr
	case pclnGo116:
		nfiles, functab, entry = word(1), word(6), ptr
	default:
		nfiles, functab, entry = word(1), word(7), 4
	}
	if nfunc > size/(2*entry) || functab > size || (2*nfunc+1)*entry > size-functab {
		return fmt.Errorf(".gopclntab is corrupted: %d functions do not fit in %d bytes", nfunc, size)
	}
	if nfiles > size/4 {
		return fmt.Errorf(".gopclntab is corrupted: %d files do not fit in %d bytes", nfiles, size)
	}
	return nil
}

// newGosymTable parses the table with debug/gosym, defensively: see
// checkPclnHeader and recovered.
func newGosymTable(symtab, pcln []byte, textStart uint64) (t *gosym.Table, err error) {
	if err := checkPclnHeader(pcln); err != nil {
		return nil, err
	}
	if perr := recovered(func() { t, err = gosym.NewTable(symtab, gosym.NewLineTable(pcln, textStart)) }); perr != nil {
		return nil, perr
	}
	return t, err
}

// fileOf is the source file of the function at entry: "<autogenerated>" for
// compiler-made wrappers, "*.s" for assembly. It returns "" on damage.
func (p *pclntab) fileOf(entry uint64) (file string) {
	if recovered(func() { file, _, _ = p.table.PCToLine(entry) }) != nil {
		return ""
	}
	return file
}

// lookup picks the function called name. Since Go 1.17 the table can hold two
// functions of that name: the implementation and an ABI wrapper, which
// .symtab tells apart with a ".abi0" suffix but .gopclntab does not (see
// abiNote in symbols.go). The ABIInternal one is wanted, which is
//   - the Go body, when the other one is the <autogenerated> ABI0 wrapper the
//     compiler made so assembly can call it, or
//   - the <autogenerated> wrapper, when the other one is an assembly (.s)
//     body: assembly is ABI0 and the wrapper is its ABIInternal entry.
//
// With abi0 set, the other one of the pair is returned instead.
func (p *pclntab) lookup(name string, abi0 bool) (*gosym.Func, bool) {
	idx := p.byName[name]
	if len(idx) == 0 {
		return nil, false
	}
	if len(idx) == 1 {
		// A lone function may be ABI0 (assembly, cgo's _Cfunc_ stubs) or
		// ABIInternal; .gopclntab cannot tell, so it answers to both names.
		return &p.table.Funcs[idx[0]], true
	}
	rank := func(i int) int {
		file := p.fileOf(p.table.Funcs[i].Entry)
		switch {
		case strings.HasSuffix(file, ".s"):
			return 2 // ABI0 assembly body
		case file == "<autogenerated>":
			return 1 // a wrapper, ABIInternal only around assembly
		}
		return 0
	}
	best, worst := idx[0], idx[0]
	for _, i := range idx[1:] {
		if rank(i) < rank(best) {
			best = i
		}
		if rank(i) > rank(worst) {
			worst = i
		}
	}
	if abi0 {
		return &p.table.Funcs[worst], true
	}
	return &p.table.Funcs[best], true
}

// findRuntimeText finds runtime.text, the base Go 1.18+ tables count entry
// offsets from. .text is not it: with external linking (cgo,
// -linkmode=external) the C start-up code and C objects come first. Go 1.18 –
// 1.25 store it in the pcHeader, but Go 1.26 dropped that field. The
// runtime's own copy, runtime.firstmoduledata.text, is present in every
// version, so it is the preferred source after the symbol table:
//
//  1. the runtime.text symbol, when .symtab is there;
//  2. firstmoduledata, found as the data word pointing at .gopclntab (its
//     first field is the *pcHeader) and checked field by field;
//  3. pcHeader.textStart (Go 1.18 – 1.25);
//  4. the start of .text, accepted only when the ELF entry point then falls
//     on the runtime's _rt0 function (internally linked binaries).
func (f *File) findRuntimeText(pcln []byte, pclnAddr uint64) (uint64, string, error) {
	if f.loadSymbols(); f.runtimeText != 0 {
		return f.runtimeText, "symtab", nil
	}
	if t, ok := f.textFromModuledata(pcln, pclnAddr); ok {
		return t, "moduledata", nil
	}
	const ptr = 8
	if len(pcln) >= 8+3*ptr {
		if t := binary.LittleEndian.Uint64(pcln[8+2*ptr:]); t != 0 && f.executable(t) {
			return t, "pcheader", nil
		}
	}
	if text := f.elf.Section(".text"); text != nil && f.entryIsRt0(pcln, text.Addr) {
		return text.Addr, ".text section", nil
	}
	return 0, "", errors.New("cannot locate runtime.text (no symbol, no runtime.firstmoduledata, no pcHeader.textStart)")
}

// Word indexes in runtime.moduledata, identical from Go 1.16 through 1.27:
// pcHeader, six slices (funcnametab, cutab, filetab, pctab, pclntable,
// ftab) of three words, findfunctab, minpc, maxpc, text, etext.
const (
	mdPCHeader    = 0
	mdFuncnametab = 1
	mdMinPC       = 20
	mdMaxPC       = 21
	mdText        = 22
	mdEText       = 23
	mdWords       = 24
)

// textFromModuledata returns runtime.firstmoduledata.text.
func (f *File) textFromModuledata(pcln []byte, pclnAddr uint64) (uint64, bool) {
	_, text, ok := f.findModuledata(pcln, pclnAddr)
	return text, ok
}

// findModuledata scans writable data for runtime.firstmoduledata (Go 1.16+
// layout) and returns its address and text field. A candidate must agree
// with the table on several independent fields, so a stray word equal to
// the .gopclntab address is not mistaken for it.
func (f *File) findModuledata(pcln []byte, pclnAddr uint64) (addr, text uint64, ok bool) {
	const ptr = 8
	if len(pcln) < 8+8*ptr {
		return 0, 0, false
	}
	// pcHeader: magic, pad, minLC, ptrSize, nfunc, nfiles, [textStart since
	// Go 1.18], funcnameOffset, cutabOffset, filetabOffset, pctabOffset,
	// pclnOffset.
	hdr := 3
	if binary.LittleEndian.Uint32(pcln) == pclnGo116 {
		hdr = 2
	}
	funcnameOff := binary.LittleEndian.Uint64(pcln[8+hdr*ptr:])
	pclnOff := binary.LittleEndian.Uint64(pcln[8+(hdr+4)*ptr:])
	if pclnOff >= uint64(len(pcln)) || uint64(len(pcln))-pclnOff < 4 {
		return 0, 0, false
	}
	// The first function's entry: an offset from text since Go 1.18, an
	// absolute address in the Go 1.16 format.
	firstEntry := func(text uint64) uint64 { return text + uint64(binary.LittleEndian.Uint32(pcln[pclnOff:])) }
	if binary.LittleEndian.Uint32(pcln) == pclnGo116 {
		if uint64(len(pcln))-pclnOff < 8 {
			return 0, 0, false
		}
		first := binary.LittleEndian.Uint64(pcln[pclnOff:])
		firstEntry = func(uint64) uint64 { return first }
	}

	for _, sec := range f.dataSections() {
		data, err := sec.Data()
		if err != nil {
			continue
		}
		for off := 0; off+mdWords*ptr <= len(data); off += ptr {
			if binary.LittleEndian.Uint64(data[off:]) != pclnAddr {
				continue
			}
			w := func(i int) uint64 { return binary.LittleEndian.Uint64(data[off+i*ptr:]) }
			text := w(mdText)
			if w(mdPCHeader) == pclnAddr &&
				w(mdFuncnametab) == pclnAddr+funcnameOff &&
				w(mdMinPC) == firstEntry(text) &&
				w(mdMinPC) < w(mdMaxPC) && w(mdMaxPC) <= w(mdEText) &&
				f.executable(text) {
				return sec.Addr + uint64(off), text, true
			}
		}
	}
	return 0, 0, false
}

// dataSections lists the sections runtime.firstmoduledata may live in, most
// likely first: Go 1.26 gives it its own section, older ones keep it in
// .noptrdata; then anything writable.
func (f *File) dataSections() []*elf.Section {
	var sects []*elf.Section
	seen := map[*elf.Section]bool{}
	add := func(s *elf.Section) {
		if s != nil && !seen[s] && s.Type == elf.SHT_PROGBITS {
			seen[s] = true
			sects = append(sects, s)
		}
	}
	for _, name := range []string{".go.module", ".noptrdata", ".data.rel.ro", ".data"} {
		add(f.elf.Section(name))
	}
	for _, s := range f.elf.Sections {
		if s.Flags&elf.SHF_WRITE != 0 && s.Flags&elf.SHF_ALLOC != 0 {
			add(s)
		}
	}
	return sects
}

// entryIsRt0 checks a guessed runtime.text against the ELF entry point, which
// is _rt0_<arch>_linux in an internally linked Go program.
func (f *File) entryIsRt0(pcln []byte, textStart uint64) bool {
	t, err := newGosymTable(nil, pcln, textStart)
	if err != nil {
		return false
	}
	var fn *gosym.Func
	if recovered(func() { fn = t.PCToFunc(f.elf.Entry) }) != nil {
		return false
	}
	return fn != nil && fn.Entry == f.elf.Entry && strings.HasPrefix(fn.Name, "_rt0_")
}

// recovered runs fn and turns a panic into an error. debug/gosym indexes into
// the table without bounds checks and panics on a corrupted .gopclntab; a
// broken binary must produce an error, not take uranus down.
func recovered(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("corrupted .gopclntab: %v", r)
		}
	}()
	fn()
	return nil
}

// executable reports whether addr is inside an executable section.
func (f *File) executable(addr uint64) bool {
	for _, s := range f.elf.Sections {
		if s.Flags&elf.SHF_EXECINSTR != 0 && s.Addr <= addr && addr-s.Addr < s.Size {
			return true
		}
	}
	return false
}
