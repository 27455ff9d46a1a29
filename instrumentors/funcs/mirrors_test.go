package funcs

import (
	"testing"

	"github.com/uranus-otel/uranus/internal/csource"
)

// TestConstantsMirrorC: the limits and encodings at the top of plan.go are
// those of bpf/funcs.c, which reads what Plan compiles.
func TestConstantsMirrorC(t *testing.T) {
	src, err := csource.BPFFile("funcs.c")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		define string
		value  int
	}{
		{"MAX_FUNCS", maxFuncs}, {"MAX_FETCH", maxFetch}, {"MAX_HOPS", maxHops},
		{"MAX_VALS", maxVals}, {"MAX_STRS", maxStrs}, {"STR_LEN", strLen},
	} {
		v, err := csource.Define(src, c.define)
		if err != nil {
			t.Errorf("bpf/funcs.c: %v", err)
		} else if v != int64(c.value) {
			t.Errorf("%s is %d in bpf/funcs.c but %d in instrumentors/funcs/plan.go", c.define, v, c.value)
		}
	}

	regs := map[string]int64{}
	for name, v := range bpfRegs {
		regs["REG_"+name] = int64(v)
	}
	enums := []struct {
		name   string
		mirror map[string]int64
	}{
		{"reg", regs},
		{"fetch_kind", map[string]int64{"FETCH_WORD": fetchWord, "FETCH_BYTES": fetchBytes, "FETCH_CSTR": fetchCStr}},
		{"fetch_loc", map[string]int64{"LOC_REG": locReg, "LOC_STACK": locStack}},
	}
	for _, e := range enums {
		values, err := csource.Enum(src, e.name)
		if err != nil {
			t.Errorf("bpf/funcs.c: %v", err)
			continue
		}
		for _, c := range values {
			v, ok := e.mirror[c.Name]
			switch {
			case !ok:
				t.Errorf("bpf/funcs.c: enum %s has %s, which instrumentors/funcs/plan.go does not mirror", e.name, c.Name)
			case v != c.Value:
				t.Errorf("%s is %d in bpf/funcs.c (enum %s) but %d in instrumentors/funcs/plan.go", c.Name, c.Value, e.name, v)
			}
			delete(e.mirror, c.Name)
		}
		for name := range e.mirror {
			t.Errorf("instrumentors/funcs/plan.go mirrors %s, which bpf/funcs.c's enum %s does not have", name, e.name)
		}
	}
}
