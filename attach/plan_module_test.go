package attach

import (
	"strings"
	"testing"

	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/instrumentors/httpserver"
	"github.com/uranus-otel/uranus/internal/testapp"
	"github.com/uranus-otel/uranus/offsets"
)

// groupInstrumentor is a toy instrumentor of a library outside the standard
// library: golang.org/x/sync's errgroup, which the relay sample links
// (v0.1.0). It declares the module, and reads one member of the module's
// struct, keyed by the module's version rather than Go's.
func groupInstrumentor(versions string) *instrumentors.Instrumentor {
	return &instrumentors.Instrumentor{
		ID:             "errgroup",
		Library:        "errgroup",
		Module:         "golang.org/x/sync",
		ModuleVersions: versions,
		Probes:         []instrumentors.Probe{{Symbol: "golang.org/x/sync/errgroup.(*Group).Go", Entry: "go_entry"}},
		Consts: []instrumentors.Const{{
			Name:  "off_group_wg",
			Field: offsets.Field{Struct: "golang.org/x/sync/errgroup.Group", Member: "wg", Module: "golang.org/x/sync"},
		}},
	}
}

// TestPlanModule: an instrumentor of a module gets its members for the
// module version the binary links (here from the target's DWARF: uranus
// ships no table for x/sync), is not linked where the module is absent,
// and says why when the version is outside its constraint or nothing can
// give the offsets — without stopping the standard library's instrumentors.
func TestPlanModule(t *testing.T) {
	list := []*instrumentors.Instrumentor{httpserver.Instrumentor, groupInstrumentor(">= 0.1")}
	for _, v := range []string{"1.16.15", "1.27.4"} {
		plain := open(t, build(t, "relay", v, testapp.Options{}))
		plans, err := MakePlans(plain, list, embedded(t))
		if err != nil {
			t.Fatal(err)
		}
		p := plans[1]
		// errgroup.Group{cancel func(); wg sync.WaitGroup; …} in v0.1.0.
		if p.Skip != "" || p.Consts["off_group_wg"] != 8 {
			t.Errorf("Go %s: skip %q, off_group_wg %d; want it planned with 8", v, p.Skip, p.Consts["off_group_wg"])
		}
		if want := "golang.org/x/sync v0.1.0 from the target DWARF"; !strings.Contains(p.OffsetsFrom, want) {
			t.Errorf("Go %s: offsets from %q, want it to say %q", v, p.OffsetsFrom, want)
		}

		stripped := open(t, build(t, "relay", v, testapp.Options{Stripped: true}))
		plans, err = MakePlans(stripped, list, embedded(t))
		if err != nil {
			t.Fatal(err)
		}
		if plans[0].Skip != "" {
			t.Errorf("Go %s stripped: the server instrumentor does not attach: %s", v, plans[0].Skip)
		}
		if want := "no offsets for golang.org/x/sync v0.1.0: uranus has no offsets table for it, and the binary has no DWARF"; !strings.Contains(plans[1].Skip, want) {
			t.Errorf("Go %s stripped: skip %q, want %q", v, plans[1].Skip, want)
		}
	}

	plain := open(t, build(t, "relay", "1.27.4", testapp.Options{}))
	plans, err := MakePlans(plain, []*instrumentors.Instrumentor{groupInstrumentor(">= 0.2")}, embedded(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := `needs golang.org/x/sync >= 0.2, target has "v0.1.0"`; plans[0].Skip != want || plans[0].NotLinked {
		t.Errorf("constraint: skip %q (not linked %v), want %q", plans[0].Skip, plans[0].NotLinked, want)
	}

	noSync := open(t, build(t, "httpserver", "1.27.4", testapp.Options{}))
	plans, err = MakePlans(noSync, []*instrumentors.Instrumentor{groupInstrumentor("")}, embedded(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := "no errgroup in this binary (module golang.org/x/sync is not in its build info)"; plans[0].Skip != want || !plans[0].NotLinked {
		t.Errorf("absent module: skip %q (not linked %v), want %q", plans[0].Skip, plans[0].NotLinked, want)
	}
}
