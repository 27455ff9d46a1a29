package funcs

import (
	"fmt"
	"strings"
)

// Location is where one argument is at entry, or one result at return.
type Location struct {
	// Regs, for a value passed in registers, holds one register per scalar
	// word of the value, in order (a string: data pointer, then length).
	Regs []Reg
	// Stack values are at Offset from the first argument slot, which is
	// SP+8 at entry and at every RET (the return address is at SP).
	Stack  bool
	Offset int64
}

// String spells where the value is: its registers ("AX, BX" for a string's
// pointer and length) or its stack slot relative to SP at entry ("SP+16").
func (l Location) String() string {
	if l.Stack || len(l.Regs) == 0 {
		return fmt.Sprintf("SP+%d", l.spOffset())
	}
	names := make([]string, len(l.Regs))
	for i, r := range l.Regs {
		names[i] = r.Name
	}
	return strings.Join(names, ", ")
}

// spOffset is a stack value's offset from SP at entry and at every RET,
// where SP+0 holds the return address.
func (l Location) spOffset() int64 { return 8 + l.Offset }

// Reg is a register, by its assembly name: "AX", "R8"; floating-point
// registers are "X0"… (Go's spelling) or "XMM0"… (C's).
type Reg struct {
	Name  string
	Float bool
}

// Convention is a calling convention: how arguments and results are
// assigned to registers and the stack.
type Convention struct {
	Name    string
	IntRegs []string // in assignment order
	NumFP   int
	FPName  string // prefix of the floating-point registers' names
	// assign lays out params and results.
	assign func(c *Convention, params, results []*Type) (args, res []Location, err error)
}

var (
	// GoRegABI is Go's internal register ABI on amd64 (Go ≥ 1.17), as
	// specified in the Go source tree's src/cmd/compile/abi-internal.md.
	GoRegABI = &Convention{
		Name:    "Go register ABI",
		IntRegs: []string{"AX", "BX", "CX", "DI", "SI", "R8", "R9", "R10", "R11"},
		NumFP:   15,
		FPName:  "X",
		assign:  assignGo,
	}
	// GoStackABI is ABI0: every argument and result on the stack (Go < 1.17,
	// and assembly functions).
	GoStackABI = &Convention{Name: "Go stack ABI", assign: assignGo}
	// SysV is the System V AMD64 C calling convention, for the scalar and
	// pointer arguments uranus reads.
	SysV = &Convention{
		Name:    "System V AMD64",
		IntRegs: []string{"DI", "SI", "DX", "CX", "R8", "R9"},
		NumFP:   8,
		FPName:  "XMM",
		assign:  assignSysV,
	}
)

// Assign lays out a function's parameters and results.
func (c *Convention) Assign(params, results []*Type) (args, res []Location, err error) {
	return c.assign(c, params, results)
}

func align(off, a int64) int64 {
	if a <= 1 {
		return off
	}
	return (off + a - 1) / a * a
}

// goAssigner follows the internal ABI's algorithm: each value goes whole
// into registers or whole onto the stack sequence, in order; arguments and
// results each start from the first register, and the stack sequence is
// the arguments, then (pointer-aligned) the results.
type goAssigner struct {
	c      *Convention
	i, fp  int   // next integer and floating-point register
	offset int64 // end of the stack sequence so far
}

func assignGo(c *Convention, params, results []*Type) (args, res []Location, err error) {
	a := &goAssigner{c: c}
	for _, t := range params {
		args = append(args, a.assign(t))
	}
	a.offset = align(a.offset, 8)
	a.i, a.fp = 0, 0
	for _, t := range results {
		res = append(res, a.assign(t))
	}
	return args, res, nil
}

func (a *goAssigner) assign(t *Type) Location {
	i, fp := a.i, a.fp
	if t.Size > 0 {
		var regs []Reg
		if a.registers(t, &regs) {
			return Location{Regs: regs}
		}
	}
	a.i, a.fp = i, fp
	a.offset = align(a.offset, t.Align)
	loc := Location{Stack: true, Offset: a.offset}
	a.offset += t.Size
	return loc
}

// registers register-assigns t, reporting false when it does not fit.
func (a *goAssigner) registers(t *Type, regs *[]Reg) bool {
	intReg := func() bool {
		if a.i >= len(a.c.IntRegs) {
			return false
		}
		*regs = append(*regs, Reg{Name: a.c.IntRegs[a.i]})
		a.i++
		return true
	}
	fpReg := func() bool {
		if a.fp >= a.c.NumFP {
			return false
		}
		*regs = append(*regs, Reg{Name: fmt.Sprintf("%s%d", a.c.FPName, a.fp), Float: true})
		a.fp++
		return true
	}
	take := func(n int, reg func() bool) bool {
		for i := 0; i < n; i++ {
			if !reg() {
				return false
			}
		}
		return true
	}
	switch t.Kind {
	case KindInt, KindUint, KindBool, KindPointer, KindRef, KindCString:
		return t.Size <= 8 && intReg()
	case KindFloat:
		return fpReg()
	case KindComplex:
		return take(2, fpReg)
	case KindString, KindInterface:
		return take(2, intReg)
	case KindSlice:
		return take(3, intReg)
	case KindStruct:
		for _, f := range t.Fields {
			if !a.registers(f.Type, regs) {
				return false
			}
		}
		return true
	case KindArray:
		switch t.Len {
		case 0:
			return true
		case 1:
			return a.registers(t.Elem, regs)
		}
	}
	return false
}

// assignSysV: integer-class arguments in DI, SI, DX, CX, R8, R9, floats in
// XMM0–7, the rest in 8-byte stack slots in order; one result, in AX or
// XMM0. Structs and unions passed by value are not handled.
func assignSysV(c *Convention, params, results []*Type) (args, res []Location, err error) {
	i, fp := 0, 0
	var offset int64
	for _, t := range params {
		switch t.Kind {
		case KindInt, KindUint, KindBool, KindPointer, KindCString:
			if i < len(c.IntRegs) {
				args = append(args, Location{Regs: []Reg{{Name: c.IntRegs[i]}}})
				i++
				continue
			}
		case KindFloat:
			if fp < c.NumFP {
				args = append(args, Location{Regs: []Reg{{Name: fmt.Sprintf("%s%d", c.FPName, fp), Float: true}}})
				fp++
				continue
			}
		default:
			return nil, nil, fmt.Errorf("%s by value: uranus reads C scalars and pointers", t.Name)
		}
		args = append(args, Location{Stack: true, Offset: offset})
		offset += align(t.Size, 8)
	}
	if len(results) > 1 {
		return nil, nil, fmt.Errorf("a C function has one result, not %d", len(results))
	}
	for _, t := range results {
		switch t.Kind {
		case KindInt, KindUint, KindBool, KindPointer, KindCString:
			res = append(res, Location{Regs: []Reg{{Name: "AX"}}})
		case KindFloat:
			res = append(res, Location{Regs: []Reg{{Name: "XMM0", Float: true}}})
		default:
			return nil, nil, fmt.Errorf("a %s result: uranus reads C scalars and pointers", t.Name)
		}
	}
	return args, res, nil
}
