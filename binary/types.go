package binary

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
)

// TypeLayout says where a Go version keeps what naming a type takes: the
// types field of runtime.moduledata, and the str and tflag members of the
// runtime's type descriptor (runtime._type, internal/abi.Type from Go 1.21).
// The offsets come from the offsets table.
type TypeLayout struct {
	ModuledataTypes uint64
	Str, TFlag      uint64
}

// tflagExtraStar marks a name stored with a leading '*' that the type's own
// name does not have (the runtime shares the string with the pointer type).
const tflagExtraStar = 1 << 1

// TypeName returns the name of the Go type whose descriptor is at addr, as
// the runtime spells it ("*net.OpError"), read from the binary's own data:
// an error's dynamic type, for instance, is such an address. It works for
// non-PIE binaries, whose run-time addresses are the file's.
func (f *File) TypeName(addr uint64, l TypeLayout) (string, error) {
	base, err := f.typesStart(l)
	if err != nil {
		return "", err
	}
	desc, err := f.readAt(addr, max(l.Str, l.TFlag)+4)
	if err != nil {
		return "", fmt.Errorf("type descriptor at %#x: %w", addr, err)
	}
	tflag := desc[l.TFlag]
	str := int32(binary.LittleEndian.Uint32(desc[l.Str:]))
	name, err := f.readAt(base+uint64(int64(str)), 3)
	if err != nil {
		return "", fmt.Errorf("type name of %#x: %w", addr, err)
	}
	// A name is a flags byte and the length, then the bytes: a big-endian
	// uint16 length before Go 1.17, a uvarint since.
	var n, at uint64
	if f.AtLeast(1, 17) {
		full, err := f.readAt(base+uint64(int64(str)), 1+binary.MaxVarintLen32)
		if err != nil {
			full = name
		}
		v, k := binary.Uvarint(full[1:])
		if k <= 0 {
			return "", fmt.Errorf("type name of %#x: bad length", addr)
		}
		n, at = v, 1+uint64(k)
	} else {
		n, at = uint64(name[1])<<8|uint64(name[2]), 3
	}
	if n == 0 || n > 4096 {
		return "", fmt.Errorf("type name of %#x: length %d", addr, n)
	}
	b, err := f.readAt(base+uint64(int64(str))+at, n)
	if err != nil {
		return "", fmt.Errorf("type name of %#x: %w", addr, err)
	}
	if tflag&tflagExtraStar != 0 && len(b) > 1 && b[0] == '*' {
		b = b[1:]
	}
	return string(b), nil
}

// typesStart finds where type names are counted from: runtime.types, from
// the symbol table or, stripped, from runtime.firstmoduledata.types.
func (f *File) typesStart(l TypeLayout) (uint64, error) {
	f.typesOnce.Do(func() {
		if f.loadSymbols(); f.runtimeTypes != 0 {
			f.typesBase = f.runtimeTypes
			return
		}
		md, ok := f.moduledata()
		if !ok {
			f.typesErr = errors.New("cannot find runtime.firstmoduledata to name types")
			return
		}
		b, err := f.readAt(md+l.ModuledataTypes, 8)
		if err != nil {
			f.typesErr = fmt.Errorf("reading runtime.firstmoduledata.types: %w", err)
			return
		}
		f.typesBase = binary.LittleEndian.Uint64(b)
	})
	return f.typesBase, f.typesErr
}

// moduledata finds runtime.firstmoduledata in a stripped binary. Its first
// word points at the pclntab in every supported version: the *pcHeader
// since Go 1.16, the pclntable slice's data before, whose length and
// capacity then both equal the table's size.
func (f *File) moduledata() (uint64, bool) {
	pcln, pclnAddr, err := f.pclntabData()
	if err != nil || len(pcln) < 4 {
		return 0, false
	}
	if binary.LittleEndian.Uint32(pcln) != pclnGo12 {
		addr, _, ok := f.findModuledata(pcln, pclnAddr)
		return addr, ok
	}
	for _, sec := range f.dataSections() {
		data, err := sec.Data()
		if err != nil {
			continue
		}
		for off := 0; off+24 <= len(data); off += 8 {
			w := func(i int) uint64 { return binary.LittleEndian.Uint64(data[off+8*i:]) }
			if w(0) == pclnAddr && w(1) == uint64(len(pcln)) && w(2) == w(1) {
				return sec.Addr + uint64(off), true
			}
		}
	}
	return 0, false
}

// readAt reads n bytes at virtual address addr from the section holding it.
func (f *File) readAt(addr, n uint64) ([]byte, error) {
	for _, s := range f.elf.Sections {
		if s.Addr == 0 || addr < s.Addr || addr+n > s.Addr+s.Size || s.Type == elf.SHT_NOBITS {
			continue
		}
		b := make([]byte, n)
		if _, err := s.ReadAt(b, int64(addr-s.Addr)); err != nil {
			return nil, err
		}
		return b, nil
	}
	return nil, fmt.Errorf("address %#x is in no section with data", addr)
}
