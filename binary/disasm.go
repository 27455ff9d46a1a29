package binary

import (
	"fmt"

	"golang.org/x/arch/arm64/arm64asm"
	"golang.org/x/arch/x86/x86asm"
)

// decodeError locates an instruction that could not be decoded.
type decodeError struct {
	off uint64
	err error
}

func (e *decodeError) Error() string { return fmt.Sprintf("at offset %#x: %v", e.off, e.err) }

// retSites returns the offset of every RET in code, which starts at a
// function's entry, and the length of code without trailing padding.
func retSites(arch string, code []byte) (rets []uint64, end uint64, err error) {
	rets = []uint64{}
	switch arch {
	case "amd64":
		return retSitesAMD64(code, rets)
	case "arm64":
		return retSitesARM64(code, rets)
	}
	return nil, 0, fmt.Errorf("no disassembler for %s", arch)
}

// retSitesAMD64 decodes linearly from the entry. x86 instructions have
// variable length, so one mis-decoded length would shift every later
// instruction and could turn bytes inside an instruction into a "RET"; a
// uprobe placed there corrupts the target. A decode error therefore fails
// the whole function instead of skipping a byte and resynchronising.
//
// Checked against GNU objdump on every function of Go 1.13 – 1.27 builds
// (TestRetSitesObjdump): everything the gc compiler emits (also with
// GOAMD64=v3) decodes and agrees. Failures happen only in hand-written
// assembly using AVX-512 or ADX (crypto, hash/crc32, math/big), which x86asm
// does not know, and in the data blob crypto/internal/boring/sig.StandardCrypto.
// Nobody probes those.
//
// Go aligns functions with INT3 (0xCC) padding, which .gopclntab counts as
// part of the function; end excludes it. Checking the bytes alone is wrong
// (a final "JMP -0x34" is EB CC), so only whole INT3 instructions at the end
// count as padding. gc never ends a function with a real INT3, so end equals
// the .symtab size of every function in those binaries.
func retSitesAMD64(code []byte, rets []uint64) ([]uint64, uint64, error) {
	var end uint64
	for p := 0; p < len(code); {
		inst, err := x86asm.Decode(code[p:], 64)
		// x86asm reports a truncated or invalid sequence not only as an
		// error but also as a one-byte instruction with no opcode (a lone
		// "prefix"); both are failures here.
		if err == nil && (inst.Op == 0 || inst.Len <= 0) {
			err = fmt.Errorf("invalid or truncated instruction % x", code[p:min(len(code), p+8)])
		}
		if err != nil {
			return nil, 0, &decodeError{off: uint64(p), err: err}
		}
		if inst.Op == x86asm.VZEROUPPER || inst.Op == x86asm.VZEROALL {
			// x86asm (v0.32) reads a ModRM byte after every VEX opcode, but
			// VZEROUPPER/VZEROALL (VEX.0F 77) have none, so it swallows the
			// next byte: the RET of the common "VZEROUPPER; RET" epilogue
			// of AVX2 assembly (runtime.memclrNoHeapPointers, memeqbody).
			// The instruction is the VEX prefix (C5 xx or C4 xx xx) and 77.
			inst.Len = 3
			if code[p] == 0xc4 {
				inst.Len = 4
			}
		}
		if inst.Op == x86asm.RET {
			rets = append(rets, uint64(p))
		}
		if !(inst.Len == 1 && code[p] == 0xcc) {
			end = uint64(p + inst.Len)
		}
		p += inst.Len
	}
	return rets, end, nil
}

// retSitesARM64: instructions are 4 bytes, so an undecodable word (Go pads
// functions with zero words, and literal data can sit between instructions)
// cannot desynchronise the rest and is skipped. RET is matched whatever its
// register (RET, RET X1). Go counts the padding in the symbol size on
// arm64, so end is the whole length.
func retSitesARM64(code []byte, rets []uint64) ([]uint64, uint64, error) {
	for p := 0; p+4 <= len(code); p += 4 {
		inst, err := arm64asm.Decode(code[p : p+4])
		if err == nil && inst.Op == arm64asm.RET {
			rets = append(rets, uint64(p))
		}
	}
	return rets, uint64(len(code)), nil
}
