package funcs

import (
	"debug/dwarf"
	"errors"
	"fmt"
	"strings"
)

// attrGoKind is DW_AT_go_kind: the reflect.Kind of a Go type.
const attrGoKind dwarf.Attr = 0x2900

// reflect.Kind values, as DW_AT_go_kind carries them.
const (
	goBool          = 1
	goInt           = 2
	goInt64         = 6
	goUint          = 7
	goUintptr       = 12
	goFloat32       = 13
	goFloat64       = 14
	goComplex64     = 15
	goComplex128    = 16
	goArray         = 17
	goChan          = 18
	goFunc          = 19
	goInterface     = 20
	goMap           = 21
	goPtr           = 22
	goSlice         = 23
	goString        = 24
	goStruct        = 25
	goUnsafePointer = 26
)

// debugInfo is what uranus takes from a binary's DWARF: the functions asked
// for (by entry address), the ones inlined, and types.
type debugInfo struct {
	d    *dwarf.Data
	isGo bool
	// concrete subprograms by entry address, for the addresses asked for.
	concrete map[uint64]dwarf.Offset
	// abstract subprograms (inlined somewhere), by the name asked for.
	abstract map[string]dwarf.Offset
	// inlined counts inlined call sites by abstract subprogram.
	inlined map[dwarf.Offset]int
	types   map[dwarf.Offset]*Type
}

// indexDWARF reads the subprograms of d once: those at addrs, and the
// inlined ones named in names (by name, or a C++ linkage name).
func indexDWARF(d *dwarf.Data, isGo bool, addrs map[uint64]bool, names map[string]bool) (*debugInfo, error) {
	x := &debugInfo{
		d:        d,
		isGo:     isGo,
		concrete: map[uint64]dwarf.Offset{},
		abstract: map[string]dwarf.Offset{},
		inlined:  map[dwarf.Offset]int{},
		types:    map[dwarf.Offset]*Type{},
	}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("reading DWARF: %v", err)
		}
		if e == nil {
			return x, nil
		}
		switch e.Tag {
		case dwarf.TagSubprogram:
			if pc, ok := e.Val(dwarf.AttrLowpc).(uint64); ok && addrs[pc] {
				if _, dup := x.concrete[pc]; !dup {
					x.concrete[pc] = e.Offset
				}
			}
			if e.Val(dwarf.AttrInline) != nil {
				for _, a := range []dwarf.Attr{dwarf.AttrName, dwarf.AttrLinkageName} {
					if n, ok := e.Val(a).(string); ok && names[n] {
						x.abstract[n] = e.Offset
					}
				}
			}
		case dwarf.TagInlinedSubroutine:
			if o, ok := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset); ok {
				x.inlined[o]++
			}
		}
	}
}

// dwarfParam is a parameter or result as DWARF declares it.
type dwarfParam struct {
	Name   string
	Type   *Type
	Result bool
}

func (x *debugInfo) entry(off dwarf.Offset) (*dwarf.Entry, *dwarf.Reader, error) {
	r := x.d.Reader()
	r.Seek(off)
	e, err := r.Next()
	if err == nil && e == nil {
		err = errors.New("no entry")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("DWARF entry at %#x: %v", off, err)
	}
	return e, r, nil
}

// signature reads the parameters (and, for Go, results) of the subprogram
// at off, following abstract origins and C++ specifications. A C result
// comes from the subprogram's type.
func (x *debugInfo) signature(off dwarf.Offset) ([]dwarfParam, error) {
	for hop := 0; hop < 4; hop++ {
		e, r, err := x.entry(off)
		if err != nil {
			return nil, err
		}
		params, err := x.childParams(e, r)
		if err != nil {
			return nil, err
		}
		next, follow := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset)
		if !follow {
			next, follow = e.Val(dwarf.AttrSpecification).(dwarf.Offset)
		}
		if len(params) > 0 || !follow {
			if !x.isGo {
				if t, ok := x.attrType(e, r); ok {
					rt, err := x.typeAt(t)
					if err != nil {
						return nil, fmt.Errorf("result: %v", err)
					}
					params = append(params, dwarfParam{Type: rt, Result: true})
				}
			}
			return params, nil
		}
		off = next
	}
	return nil, errors.New("DWARF: too many abstract origins")
}

// attrType finds the type of e, looking at its origin when it has none.
func (x *debugInfo) attrType(e *dwarf.Entry, _ *dwarf.Reader) (dwarf.Offset, bool) {
	for i := 0; i < 4 && e != nil; i++ {
		if t, ok := e.Val(dwarf.AttrType).(dwarf.Offset); ok {
			return t, true
		}
		o, ok := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset)
		if !ok {
			o, ok = e.Val(dwarf.AttrSpecification).(dwarf.Offset)
		}
		if !ok {
			return 0, false
		}
		e, _, _ = x.entry(o)
	}
	return 0, false
}

// childParams reads the formal parameters directly under e (not those of
// functions inlined into it, which sit deeper).
func (x *debugInfo) childParams(e *dwarf.Entry, r *dwarf.Reader) ([]dwarfParam, error) {
	if !e.Children {
		return nil, nil
	}
	var out []dwarfParam
	seen := map[string]bool{}
	depth := 1
	for depth > 0 {
		c, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("reading DWARF: %v", err)
		}
		if c == nil {
			break
		}
		if c.Tag == 0 {
			depth--
			continue
		}
		if depth == 1 && c.Tag == dwarf.TagFormalParameter {
			p, err := x.param(c, r)
			if err != nil {
				return nil, err
			}
			// Go (1.20 and later) may list a named result twice.
			key := fmt.Sprint(p.Result, p.Name)
			if p.Name == "" || !seen[key] {
				seen[key] = true
				out = append(out, p)
			}
		}
		if c.Children {
			depth++
		}
	}
	return out, nil
}

func (x *debugInfo) param(c *dwarf.Entry, r *dwarf.Reader) (dwarfParam, error) {
	name, _ := c.Val(dwarf.AttrName).(string)
	result, _ := c.Val(dwarf.AttrVarParam).(bool)
	artificial, _ := c.Val(dwarf.AttrArtificial).(bool)
	if o, ok := c.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset); ok {
		if oe, _, err := x.entry(o); err == nil {
			if name == "" {
				name, _ = oe.Val(dwarf.AttrName).(string)
			}
			if v, ok := oe.Val(dwarf.AttrVarParam).(bool); ok {
				result = v
			}
			if v, ok := oe.Val(dwarf.AttrArtificial).(bool); ok {
				artificial = v
			}
		}
	}
	if artificial && name == "" {
		name = "this"
	}
	toff, ok := x.attrType(c, r)
	if !ok {
		return dwarfParam{}, fmt.Errorf("parameter %s has no type in DWARF", name)
	}
	t, err := x.typeAt(toff)
	if err != nil {
		return dwarfParam{}, fmt.Errorf("parameter %s: %v", name, err)
	}
	return dwarfParam{Name: name, Type: t, Result: result && x.isGo}, nil
}

// DWARF base type encodings (DW_ATE_*).
const (
	encAddress      = 0x1
	encBoolean      = 0x2
	encComplexFloat = 0x3
	encFloat        = 0x4
	encSigned       = 0x5
	encSignedChar   = 0x6
	encUnsigned     = 0x7
	encUnsignedChar = 0x8
	encUTF          = 0x10
)

// typeAt lays out the type at off, reading DWARF entries directly (the
// library's types do not carry the Go kind, nor their offsets).
func (x *debugInfo) typeAt(off dwarf.Offset) (*Type, error) {
	if t, ok := x.types[off]; ok {
		if t == nil {
			return nil, fmt.Errorf("DWARF type at %#x contains itself", off)
		}
		return t, nil
	}
	x.types[off] = nil // a struct cannot contain itself except through a pointer
	t, err := x.readType(off)
	if err != nil {
		delete(x.types, off)
		return nil, err
	}
	x.types[off] = t
	return t, nil
}

func (x *debugInfo) readType(off dwarf.Offset) (*Type, error) {
	e, r, err := x.entry(off)
	if err != nil {
		return nil, err
	}
	name, _ := e.Val(dwarf.AttrName).(string)
	size, _ := e.Val(dwarf.AttrByteSize).(int64)
	under, hasUnder := e.Val(dwarf.AttrType).(dwarf.Offset)
	if x.isGo {
		if k, _ := e.Val(attrGoKind).(int64); k != 0 {
			return x.goType(e, r, k, canonicalName(name), size)
		}
	}
	switch e.Tag {
	case dwarf.TagBaseType:
		enc, _ := e.Val(dwarf.AttrEncoding).(int64)
		switch enc {
		case encSigned, encSignedChar:
			return scalar(KindInt, name, size), nil
		case encUnsigned, encUnsignedChar, encAddress, encUTF:
			return scalar(KindUint, name, size), nil
		case encBoolean:
			return scalar(KindBool, name, size), nil
		case encFloat:
			return scalar(KindFloat, name, size), nil
		case encComplexFloat:
			return &Type{Kind: KindComplex, Name: name, Size: size, Align: size / 2}, nil
		}
		return nil, fmt.Errorf("base type %s has encoding %#x, which uranus cannot read", name, enc)
	case dwarf.TagTypedef:
		if !hasUnder {
			return nil, fmt.Errorf("typedef %s of void", name)
		}
		u, err := x.typeAt(under)
		if err != nil {
			return nil, err
		}
		named := *u
		named.Name = name
		return &named, nil
	case dwarf.TagConstType, dwarf.TagVolatileType, dwarf.TagRestrictType, dwarf.TagAtomicType:
		if !hasUnder {
			return nil, errors.New("qualified void")
		}
		return x.typeAt(under)
	case dwarf.TagEnumerationType:
		return scalar(KindInt, name, size), nil
	case dwarf.TagPointerType, dwarf.TagReferenceType, dwarf.TagRvalueReferenceType:
		return x.pointer(under, hasUnder)
	case dwarf.TagStructType, dwarf.TagClassType:
		return x.structType(e, r, name, size)
	case dwarf.TagArrayType:
		return x.array(e, r, under, name)
	}
	if name == "" {
		name = e.Tag.String()
	}
	return nil, fmt.Errorf("type %s is not one uranus can read", name)
}

// pointer lays out a pointer; a C pointer to char is a string. What it
// points to is laid out only when a field path goes through it: types
// refer to each other in cycles, and most are never needed.
func (x *debugInfo) pointer(target dwarf.Offset, hasTarget bool) (*Type, error) {
	if !hasTarget {
		return &Type{Kind: KindPointer, Name: "*void", Size: 8, Align: 8}, nil
	}
	name := "?"
	off := target
	for i := 0; i < 8; i++ {
		e, _, err := x.entry(off)
		if err != nil {
			break
		}
		if n, ok := e.Val(dwarf.AttrName).(string); ok && name == "?" {
			name = n
		}
		if e.Tag == dwarf.TagBaseType && !x.isGo {
			enc, _ := e.Val(dwarf.AttrEncoding).(int64)
			if size, _ := e.Val(dwarf.AttrByteSize).(int64); size == 1 && (enc == encSignedChar || enc == encUnsignedChar) {
				return &Type{Kind: KindCString, Name: "*" + name, Size: 8, Align: 8}, nil
			}
		}
		switch e.Tag {
		case dwarf.TagConstType, dwarf.TagVolatileType, dwarf.TagRestrictType, dwarf.TagAtomicType:
			if next, ok := e.Val(dwarf.AttrType).(dwarf.Offset); ok {
				off = next
				continue
			}
		}
		break
	}
	return &Type{Kind: KindPointer, Name: "*" + canonicalName(name), Size: 8, Align: 8,
		target: func() (*Type, error) { return x.typeAt(target) }}, nil
}

// children calls fn for each direct child of e.
func children(e *dwarf.Entry, r *dwarf.Reader, fn func(c *dwarf.Entry) error) error {
	if !e.Children {
		return nil
	}
	for depth := 1; depth > 0; {
		c, err := r.Next()
		if err != nil {
			return fmt.Errorf("reading DWARF: %v", err)
		}
		if c == nil {
			return nil
		}
		if c.Tag == 0 {
			depth--
			continue
		}
		if depth == 1 {
			if err := fn(c); err != nil {
				return err
			}
		}
		if c.Children {
			depth++
		}
	}
	return nil
}

// memberOffset reads DW_AT_data_member_location: a constant, or (older
// compilers) a DW_OP_plus_uconst expression.
func memberOffset(c *dwarf.Entry) (int64, bool) {
	switch v := c.Val(dwarf.AttrDataMemberLoc).(type) {
	case int64:
		return v, true
	case []byte:
		if len(v) > 1 && v[0] == 0x23 { // DW_OP_plus_uconst ULEB128
			var n int64
			var shift uint
			for _, b := range v[1:] {
				n |= int64(b&0x7f) << shift
				if b&0x80 == 0 {
					return n, true
				}
				shift += 7
				if shift > 56 {
					break
				}
			}
		}
	case nil:
		return 0, true // a union member, or C's first member without the attribute
	}
	return 0, false
}

func (x *debugInfo) structType(e *dwarf.Entry, r *dwarf.Reader, name string, size int64) (*Type, error) {
	if decl, _ := e.Val(dwarf.AttrDeclaration).(bool); decl {
		return nil, fmt.Errorf("struct %s is only declared in DWARF", name)
	}
	st := &Type{Kind: KindStruct, Name: canonicalName(name), Size: size, Align: 1}
	type member struct {
		name string
		off  int64
		typ  dwarf.Offset
	}
	var members []member
	err := children(e, r, func(c *dwarf.Entry) error {
		if c.Tag != dwarf.TagMember {
			return nil
		}
		if c.Val(dwarf.AttrBitSize) != nil || c.Val(dwarf.AttrDataBitOffset) != nil {
			return nil // bit fields cannot be named by a path
		}
		mname, _ := c.Val(dwarf.AttrName).(string)
		off, ok := memberOffset(c)
		t, hasType := c.Val(dwarf.AttrType).(dwarf.Offset)
		if !ok || !hasType {
			return nil
		}
		members = append(members, member{mname, off, t})
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		ft, err := x.typeAt(m.typ)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %v", name, m.name, err)
		}
		st.Fields = append(st.Fields, Field{Name: m.name, Offset: m.off, Type: ft})
		st.Align = max(st.Align, ft.Align)
	}
	return st, nil
}

func (x *debugInfo) array(e *dwarf.Entry, r *dwarf.Reader, elemOff dwarf.Offset, name string) (*Type, error) {
	elem, err := x.typeAt(elemOff)
	if err != nil {
		return nil, err
	}
	n := int64(-1)
	err = children(e, r, func(c *dwarf.Entry) error {
		if c.Tag == dwarf.TagSubrangeType && n < 0 {
			if v, ok := c.Val(dwarf.AttrCount).(int64); ok {
				n = v
			} else if v, ok := c.Val(dwarf.AttrUpperBound).(int64); ok {
				n = v + 1
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if n < 0 {
		n = 0
	}
	if name == "" {
		name = fmt.Sprintf("[%d]%s", n, elem.Name)
	}
	return &Type{Kind: KindArray, Name: canonicalName(name), Size: n * elem.Size, Align: elem.Align, Elem: elem, Len: n}, nil
}

// goType lays out a Go type by its reflect.Kind: DWARF describes strings,
// slices and interfaces as structs, and maps, channels and funcs as
// typedefs of pointers.
func (x *debugInfo) goType(e *dwarf.Entry, r *dwarf.Reader, kind int64, name string, size int64) (*Type, error) {
	under, hasUnder := e.Val(dwarf.AttrType).(dwarf.Offset)
	switch {
	case kind == goBool:
		return scalar(KindBool, name, size), nil
	case kind >= goInt && kind <= goInt64:
		return scalar(KindInt, name, size), nil
	case kind >= goUint && kind <= goUintptr:
		return scalar(KindUint, name, size), nil
	case kind == goFloat32 || kind == goFloat64:
		return scalar(KindFloat, name, size), nil
	case kind == goComplex64 || kind == goComplex128:
		return &Type{Kind: KindComplex, Name: name, Size: size, Align: size / 2}, nil
	case kind == goString:
		return &Type{Kind: KindString, Name: name, Size: 16, Align: 8}, nil
	case kind == goSlice:
		t := &Type{Kind: KindSlice, Name: name, Size: 24, Align: 8}
		var first dwarf.Offset
		err := children(e, r, func(c *dwarf.Entry) error {
			if n, _ := c.Val(dwarf.AttrName).(string); c.Tag == dwarf.TagMember && n == "array" {
				first, _ = c.Val(dwarf.AttrType).(dwarf.Offset)
			}
			return nil
		})
		if err == nil && first != 0 {
			if p, err := x.typeAt(first); err == nil && p.target != nil {
				t.Elem, _ = p.target()
			}
		}
		return t, nil
	case kind == goInterface:
		empty := false
		err := children(e, r, func(c *dwarf.Entry) error {
			if n, _ := c.Val(dwarf.AttrName).(string); c.Tag == dwarf.TagMember && n == "_type" {
				empty = true
			}
			return nil
		})
		return &Type{Kind: KindInterface, Name: name, Size: 16, Align: 8, Empty: empty}, err
	case kind == goPtr:
		p, err := x.pointer(under, hasUnder)
		if err != nil {
			return nil, err
		}
		p.Name = name
		return p, nil
	case kind == goUnsafePointer:
		return &Type{Kind: KindPointer, Name: name, Size: 8, Align: 8}, nil
	case kind == goMap || kind == goChan || kind == goFunc:
		return &Type{Kind: KindRef, Name: name, Size: 8, Align: 8}, nil
	case kind == goStruct:
		return x.structType(e, r, name, size)
	case kind == goArray:
		return x.array(e, r, under, name)
	}
	return nil, fmt.Errorf("type %s (Go kind %d) is not one uranus can read", name, kind)
}

// displayName names a DWARF parameter for an attribute: Go spells unnamed
// results ~r0 (or ~r3, counting parameters, before Go 1.18) and blank
// parameters ~b1 or _; those are named by position instead.
func displayName(name string, index int) string {
	if name == "" || name == "_" || strings.HasPrefix(name, "~") {
		return fmt.Sprint(index)
	}
	return name
}
