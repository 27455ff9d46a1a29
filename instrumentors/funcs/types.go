package funcs

import (
	"fmt"
	"strings"
)

// Kind is how a value is laid out and shown.
type Kind uint8

const (
	KindInt       Kind = iota + 1 // signed integer
	KindUint                      // unsigned integer, uintptr
	KindBool                      //
	KindFloat                     // float32, float64 (C float, double)
	KindComplex                   // two floats
	KindString                    // Go string: data pointer, length
	KindSlice                     // data pointer, length, capacity
	KindPointer                   // *T, unsafe.Pointer, C pointers: shown as an address
	KindRef                       // map, chan, func: one pointer word, shown as an address
	KindInterface                 // type or itab word, data word: shown as the dynamic type
	KindStruct                    //
	KindArray                     //
	KindCString                   // C char *: a NUL-terminated string
)

// Type is a value's layout: what the calling convention and a field path
// need, and how to show it.
type Type struct {
	Kind   Kind
	Name   string // canonical spelling, as TypeExpr.String gives it
	Size   int64
	Align  int64
	Elem   *Type // slice or array element
	Len    int64 // array length
	Fields []Field
	Empty  bool // interface without methods: its first word is the type itself
	// target resolves what a pointer points to, for field paths; nil when
	// that is unknown (no DWARF).
	target func() (*Type, error)
}

// Field is a struct member.
type Field struct {
	Name   string
	Offset int64
	Type   *Type
}

// Target returns what a pointer points to.
func (t *Type) Target() (*Type, error) {
	if t.Kind != KindPointer || t.target == nil {
		return nil, fmt.Errorf("uranus does not know what %s points to (it needs the binary's DWARF)", t.Name)
	}
	return t.target()
}

// bytes tells a []byte, shown as text.
func (t *Type) bytes() bool {
	return t.Kind == KindSlice && t.Elem != nil && t.Elem.Size == 1 && (t.Elem.Kind == KindUint || t.Elem.Kind == KindInt)
}

// recordable tells whether uranus can show a value of t.
func (t *Type) recordable() bool {
	switch t.Kind {
	case KindInt, KindUint, KindBool, KindFloat, KindString, KindPointer, KindRef, KindInterface, KindCString:
		return t.Size <= 16
	case KindSlice:
		return t.bytes()
	}
	return false
}

// whatIsRecorded is said when a type is not.
const whatIsRecorded = "uranus records integers, bools, floats, strings, []byte, pointers (as addresses), " +
	"interfaces (as their dynamic type) and, by field path, what structs hold"

func scalar(kind Kind, name string, size int64) *Type {
	return &Type{Kind: kind, Name: name, Size: size, Align: size}
}

// goBuiltin lays out a predeclared Go type (and unsafe.Pointer).
func goBuiltin(name string) *Type {
	switch name {
	case "int", "int64":
		return scalar(KindInt, name, 8)
	case "int8":
		return scalar(KindInt, name, 1)
	case "int16":
		return scalar(KindInt, name, 2)
	case "int32", "rune":
		return scalar(KindInt, "int32", 4)
	case "uint", "uint64", "uintptr":
		return scalar(KindUint, name, 8)
	case "uint8", "byte":
		return scalar(KindUint, "uint8", 1)
	case "uint16":
		return scalar(KindUint, name, 2)
	case "uint32":
		return scalar(KindUint, name, 4)
	case "bool":
		return scalar(KindBool, name, 1)
	case "float32":
		return scalar(KindFloat, name, 4)
	case "float64":
		return scalar(KindFloat, name, 8)
	case "complex64":
		return &Type{Kind: KindComplex, Name: name, Size: 8, Align: 4}
	case "complex128":
		return &Type{Kind: KindComplex, Name: name, Size: 16, Align: 8}
	case "string":
		return &Type{Kind: KindString, Name: name, Size: 16, Align: 8}
	case "error":
		return &Type{Kind: KindInterface, Name: name, Size: 16, Align: 8}
	case "unsafe.Pointer":
		return &Type{Kind: KindPointer, Name: name, Size: 8, Align: 8}
	}
	return nil
}

// exprType lays out a written type without DWARF: predeclared types and
// what is built from them. A named type needs DWARF to be laid out.
func exprType(e *TypeExpr) (*Type, error) {
	name := e.String()
	switch e.Kind {
	case ExprNamed:
		if t := goBuiltin(e.Name); t != nil {
			return t, nil
		}
		return nil, fmt.Errorf("type %s is not predeclared, and uranus lays out named types only from DWARF that describes them: "+
			"write its underlying type (int64 for time.Duration)", e.Name)
	case ExprPointer:
		return &Type{Kind: KindPointer, Name: name, Size: 8, Align: 8}, nil
	case ExprMap, ExprChan, ExprFunc:
		return &Type{Kind: KindRef, Name: name, Size: 8, Align: 8}, nil
	case ExprInterface:
		return &Type{Kind: KindInterface, Name: name, Size: 16, Align: 8, Empty: e.Empty}, nil
	case ExprSlice:
		t := &Type{Kind: KindSlice, Name: name, Size: 24, Align: 8}
		if elem, err := exprType(e.Elem); err == nil {
			t.Elem = elem
		}
		return t, nil
	case ExprArray:
		elem, err := exprType(e.Elem)
		if err != nil {
			return nil, err
		}
		return &Type{Kind: KindArray, Name: name, Size: e.Len * elem.Size, Align: elem.Align, Elem: elem, Len: e.Len}, nil
	case ExprStruct:
		if e.Empty {
			return &Type{Kind: KindStruct, Name: name, Align: 1}, nil
		}
		return nil, fmt.Errorf("laying out %s needs DWARF that describes it", name)
	}
	return nil, fmt.Errorf("unknown type %s", name)
}

// sameType tells whether a written type agrees with the binary's: the same
// canonical name, or (C, or a named Go type given by its underlying type)
// the same kind of scalar of the same size.
func sameType(written *TypeExpr, actual *Type, isGo bool) bool {
	if written.String() == actual.Name {
		return true
	}
	w, err := exprType(written)
	if err != nil {
		return false
	}
	switch w.Kind {
	case KindInt, KindUint, KindBool, KindFloat, KindComplex:
		return w.Kind == actual.Kind && w.Size == actual.Size
	case KindPointer:
		// C: any pointer type is one word; Go: pointer names must agree.
		return !isGo && (actual.Kind == KindPointer || actual.Kind == KindCString)
	case KindInterface:
		return isGo && actual.Kind == KindInterface && w.Empty == actual.Empty && strings.HasPrefix(actual.Name, "interface")
	}
	return false
}
