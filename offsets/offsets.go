// Package offsets knows where struct members live in each Go version.
//
// Instrumentors read Go structs (net/http.Request, crypto/tls.Conn, …) from
// the target's memory, and those layouts change between Go releases. The
// table in table.json is generated, never typed: `go run ./offsets/gen`
// builds a program with every supported toolchain from the module proxy and
// reads the offsets from its DWARF. A target whose version the table does not
// cover falls back to the target's own DWARF; with neither, the caller must
// skip the instrumentor rather than guess.
package offsets

import (
	"debug/dwarf"
	"errors"
	"fmt"

	version "github.com/hashicorp/go-version"
)

// Field names a struct member whose offset an instrumentor needs.
type Field struct {
	Struct string // type name as DWARF spells it, e.g. "net/http.Request"
	Member string // member name, e.g. "Method"
	// Module is the module whose package defines Struct, e.g.
	// "google.golang.org/grpc"; empty for the standard library. A
	// module's layouts follow its own version, which the target's build
	// info records, rather than Go's: they come from that module's table
	// (see ModuleTable), keyed by the module's version.
	Module string
}

func (f Field) String() string { return f.Struct + "." + f.Member }

// Offset is where a member lives in one Go version. Present is false when
// that version's struct has no such member (e.g. Request.Pattern before 1.23).
type Offset struct {
	Value   uint64
	Present bool
}

// ErrVersionNotCovered means the table was not generated for that Go version.
var ErrVersionNotCovered = errors.New("version not covered by the offsets table")

// Regenerate is the command that rebuilds the table; error messages name it.
const Regenerate = "go run ./offsets/gen"

// Runtime lists the runtime members the shared BPF code needs in every
// target, whatever instrumentors are enabled.
var Runtime = []Field{
	{Struct: "runtime.g", Member: "goid"},
	{Struct: "runtime.g", Member: "parentGoid"}, // Go 1.21+: the creator, for a free one-level parent
	// Naming a type from its descriptor's address (an error's dynamic type):
	// the descriptor is runtime._type up to Go 1.20, internal/abi.Type after.
	{Struct: "runtime.moduledata", Member: "types"},
	{Struct: "runtime._type", Member: "str"},
	{Struct: "runtime._type", Member: "tflag"},
	{Struct: "internal/abi.Type", Member: "Str"},
	{Struct: "internal/abi.Type", Member: "TFlag"},
}

// Resolve returns the offsets of fields for a target built with Go v, and
// where they came from: the table or, when the table does not cover v or
// preferDWARF is set (a GOEXPERIMENT build, whose layouts the table does not
// describe), the target's DWARF, loaded only then. In a target's DWARF a
// missing struct — not in that Go version, or dropped by the linker because
// the program never uses it — makes its members absent; whether that matters
// is the caller's decision. A field the table has no rows for at all is an
// error even when DWARF could answer: the table is stale.
func Resolve(t *Table, v *version.Version, loadDWARF func() (*dwarf.Data, error), preferDWARF bool, fields []Field) (map[Field]Offset, string, error) {
	why := "it is not in the offsets table"
	if !preferDWARF {
		got, err := t.Lookup(v, fields)
		if err == nil {
			return got, "offsets table", nil
		}
		if !errors.Is(err, ErrVersionNotCovered) {
			return nil, "", err
		}
	} else {
		why = "it was built with a GOEXPERIMENT, whose layouts the offsets table does not describe"
	}
	d, err := loadDWARF()
	if err != nil {
		return nil, "", fmt.Errorf("no offsets for Go %s: %s and the binary has no DWARF to read them from (%v); regenerate the table with `%s`", v, why, err, Regenerate)
	}
	got, err := targetDWARF(d, fields)
	if err != nil {
		return nil, "", fmt.Errorf("no offsets for Go %s: %s, and reading the target's DWARF failed: %w (regenerate the table with `%s`)", v, why, err, Regenerate)
	}
	return got, "target DWARF", nil
}

// targetDWARF reads fields from a target's DWARF. A missing struct — not in
// that version, or dropped by the linker because the program never uses it
// — makes its members absent; whether that matters is the caller's
// decision.
func targetDWARF(d *dwarf.Data, fields []Field) (map[Field]Offset, error) {
	got, err := FromDWARF(d, fields)
	var missing *MissingStructsError
	if errors.As(err, &missing) {
		for _, f := range fields {
			if _, ok := got[f]; !ok {
				got[f] = Offset{}
			}
		}
		err = nil
	}
	return got, err
}
