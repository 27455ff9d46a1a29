package binary

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"testing"
)

// synthGo builds a small ELF shaped like an externally linked, stripped
// Go 1.26 binary: .text starts with 0x20 bytes of "C" before runtime.text,
// .gopclntab (Go 1.20 format) has no textStart, and runtime.firstmoduledata
// in .go.module holds it. It seeds the fuzzers with a file that reaches the
// .gopclntab code, and checks the moduledata search without a toolchain.
//
// Functions: main.main at runtime.text (PUSH BP; MOV BP, SP; POP BP; RET),
// main.f at runtime.text+0x10 (XOR AX, AX; RET; NOP; RET), both padded with
// INT3 to 16 bytes.
func synthGo(withSymtab bool) []byte {
	const (
		base     = 0x400000
		textOff  = 0x1000
		cPrelude = 0x20
	)
	le := binary.LittleEndian
	var file bytes.Buffer
	file.Write(make([]byte, textOff))

	type section struct {
		name        string
		typ         elf.SectionType
		flags       elf.SectionFlag
		off, size   uint64
		link, info  uint32
		align, ents uint64
	}
	var sects []section
	add := func(name string, typ elf.SectionType, flags elf.SectionFlag, data []byte, align uint64) uint64 {
		for uint64(file.Len())%align != 0 {
			file.WriteByte(0)
		}
		off := uint64(file.Len())
		file.Write(data)
		sects = append(sects, section{name: name, typ: typ, flags: flags, off: off, size: uint64(len(data)), align: align})
		return base + off
	}

	// .text
	text := bytes.Repeat([]byte{0x90}, cPrelude)
	text[cPrelude-1] = 0xc3
	mainMain := []byte{0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3}
	mainF := []byte{0x31, 0xc0, 0xc3, 0x90, 0xc3}
	for _, fn := range [][]byte{mainMain, mainF} {
		text = append(text, fn...)
		text = append(text, bytes.Repeat([]byte{0xcc}, 16-len(fn))...)
	}
	textAddr := add(".text", elf.SHT_PROGBITS, elf.SHF_ALLOC|elf.SHF_EXECINSTR, text, 64)
	runtimeText := textAddr + cPrelude
	etextOff := uint32(len(text) - cPrelude)

	// .gopclntab, Go 1.20 layout.
	const hdrSize = 8 + 8*8
	funcnametab := []byte("main.main\x00main.f\x00")
	cutab := []byte{0, 0, 0, 0}
	filetab := []byte("main.go\x00")
	// pc-value tables: value -1 → 0 (file) / → 10 (line) over 16 bytes.
	pctab := []byte{0, 2, 16, 0, 22, 16, 0}
	const pcfileOff, pclineOff = 1, 4
	funcnameOff := uint64(hdrSize)
	cuOff := funcnameOff + uint64(len(funcnametab))
	filetabOff := cuOff + uint64(len(cutab))
	pctabOff := filetabOff + uint64(len(filetab))
	pclnOff := pctabOff + uint64(len(pctab))
	nfunc := 2
	functab := make([]byte, (2*nfunc+1)*4)
	const funcSize = 44
	funcs := make([]byte, nfunc*funcSize)
	for i, nameOff := range []uint32{0, 10} {
		entry := uint32(16 * i)
		le.PutUint32(functab[8*i:], entry)
		le.PutUint32(functab[8*i+4:], uint32(len(functab)+i*funcSize))
		f := funcs[i*funcSize:]
		le.PutUint32(f[0:], entry)
		le.PutUint32(f[4:], nameOff)
		le.PutUint32(f[20:], pcfileOff)
		le.PutUint32(f[24:], pclineOff)
	}
	le.PutUint32(functab[8*nfunc:], etextOff)
	pcln := make([]byte, hdrSize)
	le.PutUint32(pcln, pclnGo120)
	pcln[6], pcln[7] = 1, 8
	for i, v := range []uint64{uint64(nfunc), 1, 0, funcnameOff, cuOff, filetabOff, pctabOff, pclnOff} {
		le.PutUint64(pcln[8+8*i:], v)
	}
	for _, b := range [][]byte{funcnametab, cutab, filetab, pctab, functab, funcs} {
		pcln = append(pcln, b...)
	}
	pclnAddr := add(".gopclntab", elf.SHT_PROGBITS, elf.SHF_ALLOC, pcln, 32)

	// .go.buildinfo, Go 1.18+ inline-string format.
	bi := append([]byte("\xff Go buildinf:"), 8, 2)
	bi = append(bi, make([]byte, 32-len(bi))...)
	start, _ := hex.DecodeString("3077af0c9274080241e1c107e6d618e6")
	end, _ := hex.DecodeString("f932433186182072008242104116d8f2")
	mod := string(start) + "path\texample.com/synth\nmod\texample.com/synth\t(devel)\t\nbuild\tCGO_ENABLED=1\n" + string(end)
	for _, s := range []string{"go1.26.8", mod} {
		bi = binary.AppendUvarint(bi, uint64(len(s)))
		bi = append(bi, s...)
	}
	add(".go.buildinfo", elf.SHT_PROGBITS, elf.SHF_ALLOC|elf.SHF_WRITE, bi, 16)

	// .go.module: runtime.firstmoduledata.
	md := make([]byte, 0x250)
	le.PutUint64(md[mdPCHeader*8:], pclnAddr)
	le.PutUint64(md[mdFuncnametab*8:], pclnAddr+funcnameOff)
	le.PutUint64(md[mdMinPC*8:], runtimeText)
	le.PutUint64(md[mdMaxPC*8:], runtimeText+uint64(etextOff))
	le.PutUint64(md[mdText*8:], runtimeText)
	le.PutUint64(md[mdEText*8:], runtimeText+uint64(etextOff))
	add(".go.module", elf.SHT_PROGBITS, elf.SHF_ALLOC|elf.SHF_WRITE, md, 32)

	if withSymtab {
		strtab := []byte("\x00main.main\x00main.f\x00runtime.text\x00")
		sym := func(name uint32, info byte, value, size uint64) []byte {
			b := make([]byte, 24)
			le.PutUint32(b, name)
			b[4] = info
			le.PutUint16(b[6:], 1) // .text is section 1
			le.PutUint64(b[8:], value)
			le.PutUint64(b[16:], size)
			return b
		}
		symtab := make([]byte, 24) // the null symbol
		symtab = append(symtab, sym(1, byte(elf.STT_FUNC), runtimeText, uint64(len(mainMain)))...)
		symtab = append(symtab, sym(11, byte(elf.STT_FUNC), runtimeText+16, uint64(len(mainF)))...)
		symtab = append(symtab, sym(18, byte(elf.STT_FUNC), runtimeText, 0)...)
		add(".symtab", elf.SHT_SYMTAB, 0, symtab, 8)
		sects[len(sects)-1].link = uint32(len(sects) + 1) // .strtab follows
		sects[len(sects)-1].info = 1
		sects[len(sects)-1].ents = 24
		add(".strtab", elf.SHT_STRTAB, 0, strtab, 1)
	}

	shstrtab := []byte{0}
	names := map[string]uint32{}
	for _, s := range append(sects, section{name: ".shstrtab"}) {
		names[s.name] = uint32(len(shstrtab))
		shstrtab = append(shstrtab, s.name...)
		shstrtab = append(shstrtab, 0)
	}
	add(".shstrtab", elf.SHT_STRTAB, 0, shstrtab, 1)

	for file.Len()%8 != 0 {
		file.WriteByte(0)
	}
	shoff := uint64(file.Len())
	file.Write(make([]byte, 64)) // section 0
	for _, s := range sects {
		sh := make([]byte, 64)
		le.PutUint32(sh[0:], names[s.name])
		le.PutUint32(sh[4:], uint32(s.typ))
		le.PutUint64(sh[8:], uint64(s.flags))
		if s.flags&elf.SHF_ALLOC != 0 {
			le.PutUint64(sh[16:], base+s.off)
		}
		le.PutUint64(sh[24:], s.off)
		le.PutUint64(sh[32:], s.size)
		le.PutUint32(sh[40:], s.link)
		le.PutUint32(sh[44:], s.info)
		le.PutUint64(sh[48:], s.align)
		le.PutUint64(sh[56:], s.ents)
		file.Write(sh)
	}

	out := file.Bytes()
	// ELF header and one PT_LOAD mapping the whole file.
	copy(out, elf.ELFMAG)
	out[4], out[5], out[6] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	le.PutUint16(out[16:], uint16(elf.ET_EXEC))
	le.PutUint16(out[18:], uint16(elf.EM_X86_64))
	le.PutUint32(out[20:], uint32(elf.EV_CURRENT))
	le.PutUint64(out[24:], textAddr) // entry: the "C" start-up code
	le.PutUint64(out[32:], 64)       // phoff
	le.PutUint64(out[40:], shoff)
	le.PutUint16(out[52:], 64)                   // ehsize
	le.PutUint16(out[54:], 56)                   // phentsize
	le.PutUint16(out[56:], 1)                    // phnum
	le.PutUint16(out[58:], 64)                   // shentsize
	le.PutUint16(out[60:], uint16(len(sects)+1)) // shnum
	le.PutUint16(out[62:], uint16(len(sects)))   // shstrndx: .shstrtab is last
	ph := out[64:]
	le.PutUint32(ph[0:], uint32(elf.PT_LOAD))
	le.PutUint32(ph[4:], uint32(elf.PF_R|elf.PF_W|elf.PF_X))
	le.PutUint64(ph[16:], base)
	le.PutUint64(ph[24:], base)
	le.PutUint64(ph[32:], shoff)
	le.PutUint64(ph[40:], shoff)
	le.PutUint64(ph[48:], 0x1000)
	return out
}

func TestSynthetic(t *testing.T) {
	const runtimeText = 0x401020
	for _, withSymtab := range []bool{false, true} {
		f, err := OpenReaderAt(bytes.NewReader(synthGo(withSymtab)), "synth")
		if err != nil {
			t.Fatal(err)
		}
		if f.GoVersion != "go1.26.8" || !f.RegABI || f.Stripped == withSymtab || f.MainPath != "example.com/synth" || f.Settings["CGO_ENABLED"] != "1" {
			t.Errorf("symtab=%v: %+v", withSymtab, f)
		}
		want := map[string]Func{
			"main.main": {Addr: runtimeText, Size: 6, RetOffsets: []uint64{5}},
			"main.f":    {Addr: runtimeText + 16, Size: 5, RetOffsets: []uint64{2, 4}},
		}
		for name, w := range want {
			fn, err := f.Func(name)
			if err != nil {
				t.Fatalf("symtab=%v: %v", withSymtab, err)
			}
			w.Name, w.Section, w.SectionAddr, w.SectionOffset = name, ".text", 0x401000, 0x1000
			w.FileOffset = w.Addr - 0x400000
			w.Source = map[bool]string{false: "pclntab", true: "symtab"}[withSymtab]
			if !sameFunc(fn, &w) || fn.Source != w.Source {
				t.Errorf("symtab=%v: %s = %+v, want %+v", withSymtab, name, *fn, w)
			}
		}
		if !withSymtab {
			p, _ := f.loadPclntab()
			if p.textFrom != "moduledata" {
				t.Errorf("runtime.text from %s", p.textFrom)
			}
		}
	}
}
