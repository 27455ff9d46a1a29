package binary

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"

	version "github.com/hashicorp/go-version"

	"github.com/uranus-otel/uranus/internal/testapp"
	"github.com/uranus-otel/uranus/offsets"
)

// typeLayout takes the layout for v from the generated table, as uranus does.
func typeLayout(t *testing.T, v *version.Version) TypeLayout {
	t.Helper()
	tab, err := offsets.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	md := offsets.Field{Struct: "runtime.moduledata", Member: "types"}
	old := []offsets.Field{{Struct: "runtime._type", Member: "str"}, {Struct: "runtime._type", Member: "tflag"}}
	abi := []offsets.Field{{Struct: "internal/abi.Type", Member: "Str"}, {Struct: "internal/abi.Type", Member: "TFlag"}}
	got, err := tab.Lookup(v, append(append([]offsets.Field{md}, old...), abi...))
	if err != nil {
		t.Fatal(err)
	}
	desc := old
	if !got[old[0]].Present {
		desc = abi
	}
	return TypeLayout{ModuledataTypes: got[md].Value, Str: got[desc[0]].Value, TFlag: got[desc[1]].Value}
}

// TestTypeName names types by their descriptor address, unstripped (from
// the runtime.types symbol) and stripped (from runtime.firstmoduledata): the
// typenames sample prints the address each error value holds at run time
// and the name %T gives it.
func TestTypeName(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: builds binaries with several toolchains")
	}
	for _, v := range []string{"1.13.15", "1.15.15", "1.16.15", "1.20.14", "1.22.12", "1.27.4"} {
		for _, stripped := range []bool{false, true} {
			path, err := testapp.Build("typenames", v, testapp.Options{Stripped: stripped}, t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(path).Output()
			if err != nil {
				t.Fatal(err)
			}
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			l := typeLayout(t, f.Version)
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				addrText, name, _ := strings.Cut(line, " ")
				addr, err := strconv.ParseUint(addrText, 0, 64)
				if err != nil {
					t.Fatalf("go%s: bad line %q", v, line)
				}
				if got, err := f.TypeName(addr, l); err != nil || got != name {
					t.Errorf("go%s stripped=%v: TypeName(%#x) = %q, %v; want %q", v, stripped, addr, got, err, name)
				}
			}
			f.Close()
		}
	}
}
