package offsets

import (
	"debug/dwarf"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// SizeMember is a pseudo-member name: Field{Struct: s, Member: SizeMember}
// stands for the byte size of struct s rather than for a member's offset.
const SizeMember = "<size>"

// ErrStructNotFound means a binary's DWARF has no struct type of that name:
// the Go version does not have it, or the linker dropped it because the
// program never uses it.
var ErrStructNotFound = errors.New("struct type not in DWARF")

// MissingStructsError lists the wanted structs a binary's DWARF lacks. It
// matches ErrStructNotFound with errors.Is.
type MissingStructsError struct {
	Structs []string // sorted
}

func (e *MissingStructsError) Error() string {
	return fmt.Sprintf("%v: %s", ErrStructNotFound, strings.Join(e.Structs, ", "))
}

// Is makes errors.Is(err, ErrStructNotFound) true.
func (e *MissingStructsError) Is(target error) bool { return target == ErrStructNotFound }

// FromDWARF reads the offsets of fields from a binary's DWARF. A struct that
// is missing is an error (a *MissingStructsError naming every missing one),
// returned with the offsets of the fields that were found; a member missing
// from a struct that exists is reported as not Present.
//
// It runs at attach time on a target's DWARF, so it makes a single pass over
// the top-level entries, decodes only the members of the wanted struct types
// and stops as soon as all of them have been seen.
func FromDWARF(d *dwarf.Data, fields []Field) (res map[Field]Offset, err error) {
	// The target binary is untrusted input and debug/dwarf has panicked on
	// malformed data before; a bad target must not take the agent down.
	defer func() {
		if p := recover(); p != nil {
			res, err = nil, fmt.Errorf("reading offsets from DWARF: malformed debug info: %v", p)
		}
	}()
	return fromDWARF(d, fields)
}

// fromDWARF is FromDWARF without the safety net, for the fuzz test to see
// panics.
func fromDWARF(d *dwarf.Data, fields []Field) (map[Field]Offset, error) {
	if d == nil {
		return nil, errors.New("reading offsets from DWARF: no DWARF data")
	}

	want := make(map[string]bool)
	for _, f := range fields {
		want[f.Struct] = true
	}
	found := make(map[string]*dwarfStruct, len(want))

	// A flat walk that tracks nesting itself: Reader.SkipChildren recurses
	// once per level, and a hostile binary could nest deep enough to
	// overflow the stack, which no recover catches.
	r := d.Reader()
	depth, nulls := 0, 0
	for len(found) < len(want) {
		e, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("reading offsets from DWARF: %w", err)
		}
		if e == nil {
			break
		}
		if e.Tag == 0 {
			if depth > 0 {
				depth--
				continue
			}
			// At a LEB128 number cut off by the end of a unit, debug/dwarf
			// returns null entries forever without consuming input. Nulls
			// that close nothing are at most a little padding.
			if nulls++; nulls > maxNullRun {
				return nil, errors.New("reading offsets from DWARF: malformed debug info: endless null entries")
			}
			continue
		}
		nulls = 0
		if e.Tag == dwarf.TagCompileUnit || e.Tag == dwarf.TagPartialUnit {
			depth = 0
		}
		// Go writes every type as a direct child of a compile unit.
		if e.Tag == dwarf.TagStructType && depth == 1 {
			name, _ := e.Val(dwarf.AttrName).(string)
			if want[name] && found[name] == nil {
				s, err := readStruct(r, e)
				if err != nil {
					return nil, fmt.Errorf("reading offsets from DWARF: struct %s: %w", name, err)
				}
				found[name] = s
				continue
			}
		}
		if e.Children {
			depth++
		}
	}

	var missing []string
	for name := range want {
		if found[name] == nil {
			missing = append(missing, name)
		}
	}

	res := make(map[Field]Offset, len(fields))
	for _, f := range fields {
		s := found[f.Struct]
		if s == nil {
			continue
		}
		if f.Member == SizeMember {
			res[f] = Offset{Value: s.size, Present: s.hasSize}
			continue
		}
		off, ok := s.members[f.Member]
		res[f] = Offset{Value: off, Present: ok}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return res, &MissingStructsError{Structs: missing}
	}
	return res, nil
}

// maxNullRun is far more padding than any linker writes between units.
const maxNullRun = 1 << 12

type dwarfStruct struct {
	size    uint64
	hasSize bool
	members map[string]uint64
}

// readStruct reads the members of the struct entry e, which r has just
// returned, leaving r after the struct's children.
func readStruct(r *dwarf.Reader, e *dwarf.Entry) (*dwarfStruct, error) {
	s := &dwarfStruct{members: make(map[string]uint64)}
	if sz, ok := e.Val(dwarf.AttrByteSize).(int64); ok && sz >= 0 {
		s.size, s.hasSize = uint64(sz), true
	}
	if !e.Children {
		return s, nil
	}
	for depth := 0; ; {
		c, err := r.Next()
		if err != nil {
			return nil, err
		}
		if c == nil {
			return nil, errors.New("debug info ends inside the struct")
		}
		if c.Tag == 0 {
			if depth == 0 {
				return s, nil
			}
			depth--
			continue
		}
		if c.Tag == dwarf.TagMember && depth == 0 {
			name, _ := c.Val(dwarf.AttrName).(string)
			off, err := memberOffset(c)
			if err != nil {
				return nil, fmt.Errorf("member %s: %w", name, err)
			}
			if _, dup := s.members[name]; !dup {
				s.members[name] = off
			}
		}
		if c.Children {
			depth++
		}
	}
}

// memberOffset decodes DW_AT_data_member_location, which Go linkers have
// written both as a constant and as a DW_OP_plus_uconst expression.
func memberOffset(e *dwarf.Entry) (uint64, error) {
	f := e.AttrField(dwarf.AttrDataMemberLoc)
	if f == nil {
		return 0, errors.New("no data member location")
	}
	switch v := f.Val.(type) {
	case int64:
		if v < 0 {
			return 0, fmt.Errorf("negative data member location %d", v)
		}
		return uint64(v), nil
	case []byte:
		const opPlusUconst = 0x23
		if len(v) < 2 || v[0] != opPlusUconst {
			return 0, fmt.Errorf("unsupported data member location expression % x", v)
		}
		off, n := uleb128(v[1:])
		if n == 0 || 1+n != len(v) {
			return 0, fmt.Errorf("malformed data member location expression % x", v)
		}
		return off, nil
	}
	return 0, fmt.Errorf("unsupported data member location %T", f.Val)
}

// uleb128 decodes an unsigned LEB128 number, returning it and the bytes
// used, or 0 bytes when b does not hold a complete one that fits 64 bits.
func uleb128(b []byte) (uint64, int) {
	var v uint64
	for i, c := range b {
		if i == 10 || (i == 9 && c > 1) {
			return 0, 0
		}
		v |= uint64(c&0x7f) << (7 * uint(i))
		if c&0x80 == 0 {
			return v, i + 1
		}
	}
	return 0, 0
}
