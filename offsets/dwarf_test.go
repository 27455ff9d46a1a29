package offsets

import (
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// probe mirrors the struct in probeSource, which the test builds with the
// host's go command (test binaries carry no DWARF), so that FromDWARF can be
// checked against unsafe.Offsetof.
type probe struct {
	A uint8
	B uint64
	C string
	D [3]uint16
	probeEmbedded
}

type probeEmbedded struct{ E int32 }

const probeSource = `package main

type probe struct {
	A uint8
	B uint64
	C string
	D [3]uint16
	probeEmbedded
}

type probeEmbedded struct{ E int32 }

var keep probe

func main() { keep.E++; println(keep.A, keep.C) }
`

func probeDWARF(t *testing.T) *dwarf.Data {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(probeSource), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module probe\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", "probe", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the probe program: %v\n%s", err, out)
	}
	f, err := elf.Open(filepath.Join(dir, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	d, err := f.DWARF()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestFromDWARFProbe(t *testing.T) {
	d := probeDWARF(t)
	const name = "main.probe"
	p := &probe{}
	want := map[Field]Offset{
		{Struct: name, Member: "A"}:             {uint64(unsafe.Offsetof(p.A)), true},
		{Struct: name, Member: "B"}:             {uint64(unsafe.Offsetof(p.B)), true},
		{Struct: name, Member: "C"}:             {uint64(unsafe.Offsetof(p.C)), true},
		{Struct: name, Member: "D"}:             {uint64(unsafe.Offsetof(p.D)), true},
		{Struct: name, Member: "probeEmbedded"}: {uint64(unsafe.Offsetof(p.probeEmbedded)), true},
		{Struct: name, Member: "E"}:             {}, // promoted fields are not members
		{Struct: name, Member: "nope"}:          {},
		{Struct: name, Member: SizeMember}:      {uint64(unsafe.Sizeof(*p)), true},
		{Struct: "runtime.g", Member: "goid"}:   {0, true},
	}
	var fields []Field
	for f := range want {
		fields = append(fields, f)
	}
	got, err := FromDWARF(d, fields)
	if err != nil {
		t.Fatal(err)
	}
	goid := Field{Struct: "runtime.g", Member: "goid"}
	if !got[goid].Present || got[goid].Value == 0 {
		t.Errorf("runtime.g.goid = %+v", got[goid])
	}
	want[goid] = got[goid]
	if !reflect.DeepEqual(got, want) {
		t.Errorf("FromDWARF = %v\nwant %v", got, want)
	}

	_, err = FromDWARF(d, []Field{{Struct: name, Member: "A"}, {Struct: "net/http.NoSuch", Member: "x"}, {Struct: "a/b.Missing", Member: "y"}})
	var miss *MissingStructsError
	if !errors.Is(err, ErrStructNotFound) || !errors.As(err, &miss) {
		t.Fatalf("FromDWARF with missing structs: %v", err)
	}
	if !reflect.DeepEqual(miss.Structs, []string{"a/b.Missing", "net/http.NoSuch"}) {
		t.Errorf("missing structs = %q", miss.Structs)
	}
	if !strings.Contains(err.Error(), "net/http.NoSuch") {
		t.Errorf("error %q does not name the missing struct", err)
	}

	if got, err := FromDWARF(d, nil); err != nil || len(got) != 0 {
		t.Errorf("FromDWARF(no fields) = %v, %v", got, err)
	}
	if _, err := FromDWARF(nil, fields); err == nil {
		t.Error("FromDWARF(nil) succeeded")
	}
}

// dwarfBuilder writes minimal DWARF 4 with its own abbreviations, to cover
// encodings the Go linker no longer writes and malformed input.
type dwarfBuilder struct{ info []byte }

const (
	abbrevCU = 1 + iota
	abbrevStruct
	abbrevMember      // data_member_location as a constant
	abbrevMemberExpr  // data_member_location as DW_OP_plus_uconst
	abbrevOther       // a DIE with children FromDWARF must skip
	abbrevMemberBlock // data_member_location as a block1
)

var testAbbrev = []byte{
	abbrevCU, 0x11, 1, 0x03, 0x08, 0, 0, // compile_unit, children, name:string
	abbrevStruct, 0x13, 1, 0x03, 0x08, 0x0b, 0x0f, 0, 0, // structure_type, children, name:string, byte_size:udata
	abbrevMember, 0x0d, 0, 0x03, 0x08, 0x38, 0x0f, 0, 0, // member, name:string, data_member_location:udata
	abbrevMemberExpr, 0x0d, 0, 0x03, 0x08, 0x38, 0x18, 0, 0, // member, name:string, data_member_location:exprloc
	abbrevOther, 0x2e, 1, 0x03, 0x08, 0, 0, // subprogram, children, name:string
	abbrevMemberBlock, 0x0d, 0, 0x03, 0x08, 0x38, 0x0a, 0, 0, // member, name:string, data_member_location:block1
	0,
}

func (b *dwarfBuilder) str(s string) { b.info = append(append(b.info, s...), 0) }
func (b *dwarfBuilder) uleb(v uint64) {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			c |= 0x80
		}
		b.info = append(b.info, c)
		if v == 0 {
			return
		}
	}
}
func (b *dwarfBuilder) die(code byte, name string) { b.info = append(b.info, code); b.str(name) }
func (b *dwarfBuilder) end()                       { b.info = append(b.info, 0) }

// unit wraps the DIEs in a DWARF 4 compile unit header.
func (b *dwarfBuilder) unit() []byte {
	hdr := make([]byte, 11)
	binary.LittleEndian.PutUint32(hdr, uint32(7+len(b.info)))
	binary.LittleEndian.PutUint16(hdr[4:], 4)
	hdr[10] = 8
	return append(hdr, b.info...)
}

func syntheticInfo() []byte {
	var b dwarfBuilder
	b.die(abbrevCU, "sample")
	b.die(abbrevOther, "main.main") // children to skip, including a struct
	b.die(abbrevStruct, "runtime.g")
	b.uleb(8)
	b.die(abbrevMember, "decoy")
	b.info = append(b.info, 0)
	b.end()
	b.end()
	b.die(abbrevStruct, "runtime.g")
	b.uleb(440)
	b.die(abbrevMember, "stack")
	b.info = append(b.info, 0)
	b.die(abbrevMember, "goid")
	b.uleb(152)
	b.die(abbrevMemberExpr, "m")
	b.info = append(b.info, 3, 0x23)
	b.uleb(300) // two-byte ULEB128
	b.die(abbrevMemberBlock, "sched")
	b.info = append(b.info, 2, 0x23, 56)
	b.end()
	b.die(abbrevStruct, "net/url.URL")
	b.uleb(0)
	b.end()
	b.end()
	return b.unit()
}

func TestFromDWARFSynthetic(t *testing.T) {
	d, err := dwarf.New(testAbbrev, nil, nil, syntheticInfo(), nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := FromDWARF(d, []Field{
		{Struct: "runtime.g", Member: "stack"}, {Struct: "runtime.g", Member: "goid"}, {Struct: "runtime.g", Member: "m"}, {Struct: "runtime.g", Member: "sched"},
		{Struct: "runtime.g", Member: "decoy"}, {Struct: "runtime.g", Member: SizeMember}, {Struct: "net/url.URL", Member: "Host"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[Field]Offset{
		{Struct: "runtime.g", Member: "stack"}:    {0, true},
		{Struct: "runtime.g", Member: "goid"}:     {152, true},
		{Struct: "runtime.g", Member: "m"}:        {300, true},
		{Struct: "runtime.g", Member: "sched"}:    {56, true},
		{Struct: "runtime.g", Member: "decoy"}:    {}, // belongs to the struct nested in a function
		{Struct: "runtime.g", Member: SizeMember}: {440, true},
		{Struct: "net/url.URL", Member: "Host"}:   {},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("FromDWARF = %v\nwant %v", got, want)
	}

	// A location expression other than DW_OP_plus_uconst is refused.
	bad := syntheticInfo()
	i := strings.Index(string(bad), "m\x00\x03\x23")
	bad[i+3] = 0x10 // DW_OP_constu
	d, err = dwarf.New(testAbbrev, nil, nil, bad, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FromDWARF(d, []Field{{Struct: "runtime.g", Member: "goid"}}); err == nil || !strings.Contains(err.Error(), "runtime.g") {
		t.Errorf("FromDWARF with a bad location = %v; want an error naming the struct", err)
	}
}

// TestFromDWARFDeepNesting: deeply nested entries before the struct neither
// hide it nor exhaust the stack.
func TestFromDWARFDeepNesting(t *testing.T) {
	var b dwarfBuilder
	b.die(abbrevCU, "deep")
	const levels = 100000
	for i := 0; i < levels; i++ {
		b.die(abbrevOther, "f")
	}
	for i := 0; i < levels; i++ {
		b.end()
	}
	b.die(abbrevStruct, "runtime.g")
	b.uleb(16)
	b.die(abbrevMember, "goid")
	b.uleb(8)
	b.end()
	b.end()
	d, err := dwarf.New(testAbbrev, nil, nil, b.unit(), nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	goid := Field{Struct: "runtime.g", Member: "goid"}
	got, err := FromDWARF(d, []Field{goid})
	if err != nil || got[goid] != (Offset{8, true}) {
		t.Errorf("FromDWARF = %v, %v", got, err)
	}
}

func TestULEB128(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		v    uint64
		used int
	}{
		{[]byte{0}, 0, 1},
		{[]byte{0x7f}, 127, 1},
		{[]byte{0xac, 0x02}, 300, 2},
		{[]byte{0x80}, 0, 0},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 1<<64 - 1, 10},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, 0, 0},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, 0, 0},
	} {
		v, n := uleb128(tc.in)
		if v != tc.v || n != tc.used {
			t.Errorf("uleb128(% x) = %d, %d; want %d, %d", tc.in, v, n, tc.v, tc.used)
		}
	}
}

func FuzzFromDWARF(f *testing.F) {
	f.Add(testAbbrev, syntheticInfo())
	f.Fuzz(func(t *testing.T, abbrev, info []byte) {
		d, err := dwarf.New(abbrev, nil, nil, info, nil, nil, nil, nil)
		if err != nil {
			return
		}
		fields := []Field{{Struct: "runtime.g", Member: "goid"}, {Struct: "runtime.g", Member: "m"}, {Struct: "runtime.g", Member: SizeMember}, {Struct: "net/url.URL", Member: "Host"}}
		got, err := fromDWARF(d, fields)
		if err == nil && len(got) != len(fields) {
			t.Fatalf("FromDWARF returned %d fields, want %d", len(got), len(fields))
		}
	})
}
