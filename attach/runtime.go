package attach

import (
	"fmt"
	"sync"

	"github.com/uranus-otel/uranus/binary"
	"github.com/uranus-otel/uranus/offsets"
)

// targetRuntime is what the core itself needs of a target's runtime.
type targetRuntime struct {
	goid       uint64            // runtime.g.goid, for every program's goroutine key
	parentGoid uint64            // runtime.g.parentGoid, or OffsetAbsent before Go 1.21
	types      binary.TypeLayout // for naming types (an error's dynamic type)
}

// runtimeOffsets resolves offsets.Runtime for bin.
func runtimeOffsets(bin *binary.File, table *offsets.Table) (targetRuntime, error) {
	got, _, _, err := resolveOffsets(bin, table, offsets.Runtime)
	if err != nil {
		return targetRuntime{}, err
	}
	f := func(s, m string) offsets.Offset { return got[offsets.Field{Struct: s, Member: m}] }
	goid := f("runtime.g", "goid")
	if !goid.Present {
		return targetRuntime{}, fmt.Errorf("%s has no runtime.g.goid: cannot tell goroutines apart", bin.GoVersion)
	}
	rt := targetRuntime{goid: goid.Value, parentGoid: OffsetAbsent}
	if pg := f("runtime.g", "parentGoid"); pg.Present {
		rt.parentGoid = pg.Value
	}
	str, tflag := f("runtime._type", "str"), f("runtime._type", "tflag")
	if !str.Present {
		str, tflag = f("internal/abi.Type", "Str"), f("internal/abi.Type", "TFlag")
	}
	if md := f("runtime.moduledata", "types"); md.Present && str.Present && tflag.Present {
		rt.types = binary.TypeLayout{ModuledataTypes: md.Value, Str: str.Value, TFlag: tflag.Value}
	}
	return rt, nil
}

// typeNames names a target's types on demand: only failing calls need it,
// so the binary is opened again the first time and names are cached.
type typeNames struct {
	path   string
	layout binary.TypeLayout
	mu     sync.Mutex
	bin    *binary.File
	failed bool
	names  map[uint64]string
}

func (n *typeNames) name(addr uint64) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if name, ok := n.names[addr]; ok {
		return name
	}
	if n.bin == nil && !n.failed {
		var err error
		if n.bin, err = binary.Open(n.path); err != nil {
			n.failed = true
		}
	}
	name := ""
	if n.bin != nil && n.layout != (binary.TypeLayout{}) {
		name, _ = n.bin.TypeName(addr, n.layout)
	}
	if len(n.names) < 1024 {
		n.names[addr] = name
	}
	return name
}

func (n *typeNames) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.bin != nil {
		n.bin.Close()
		n.bin = nil
	}
}

// TypeName implements instrumentors.Target.
func (t *Target) TypeName(addr uint64) string { return t.types.name(addr) }
