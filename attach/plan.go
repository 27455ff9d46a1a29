package attach

import (
	"cmp"
	"debug/dwarf"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"

	version "github.com/hashicorp/go-version"

	"github.com/uranus-otel/uranus/binary"
	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/offsets"
)

// MinGoVersion is the oldest Go release uranus instruments.
var MinGoVersion = version.Must(version.NewVersion("1.13"))

// Plan is what attaching one instrumentor to one binary takes: the functions
// and RET sites to probe and the constants to load, or why it cannot attach.
type Plan struct {
	Inst *instrumentors.Instrumentor
	Skip string // why it will not attach; empty when it will
	// NotLinked: it will not attach because the binary does not link the
	// library it instruments (Skip says which function is missing). That
	// is expected of most programs, so it is told at INFO.
	NotLinked   bool
	Probes      []PlannedProbe
	Consts      map[string]uint64 // BPF constant → member offset (OffsetAbsent when absent)
	OffsetsFrom string            // "offsets table" or "target DWARF"
	MapEntries  map[string][]instrumentors.MapEntry
	State       any // from the instrumentor's Dynamic, for Convert
	// ConstFields names the member each present offset in Consts was read
	// from: which of a Const's names this target's Go version has.
	ConstFields map[string]offsets.Field
	// Unreported are values the attached programs leave out for this
	// target, because it has none of the members they come from; attach
	// warns about each.
	Unreported []Unreported
}

// Unreported is a value an instrumentor cannot report for one target: its
// Go version has none of the names of the member it is read from.
type Unreported struct {
	Value   string          // the Consts' Reports
	Consts  []string        // the BPF constants, which get OffsetAbsent
	Missing []offsets.Field // every name tried, for all of them
}

func (u Unreported) String() string {
	return fmt.Sprintf("%s (%v: none of %v)", u.Value, u.Consts, u.Missing)
}

// PlannedProbe is a declared probe resolved in the binary.
type PlannedProbe struct {
	instrumentors.Probe
	Func *binary.Func // nil for a missing optional probe
}

// OffsetAbsent is what a BPF program receives for a member its target's Go
// version lacks (OFFSET_ABSENT in bpf/uranus.h).
const OffsetAbsent = ^uint64(0)

// CheckBinary rejects binaries that none of list can instrument, naming
// why: another architecture, a Go older than MinGoVersion, or a program
// that is not Go when no instrumentor in list attaches to those.
func CheckBinary(bin *binary.File, list []*instrumentors.Instrumentor) error {
	if bin.Arch != "amd64" {
		return fmt.Errorf("%s is built for %s; uranus attaches to amd64 programs", bin.Path, bin.Arch)
	}
	if bin.Version == nil {
		for _, in := range list {
			if in.NonGo {
				return nil
			}
		}
		return fmt.Errorf("%s is not a Go program (it has no Go build information); "+
			"uranus instruments Go programs (C functions can be traced with --func)", bin.Path)
	}
	if bin.Version.LessThan(MinGoVersion) {
		return fmt.Errorf("%s was built with %s, older than Go %s, the oldest uranus supports", bin.Path, bin.GoVersion, MinGoVersion)
	}
	return nil
}

// MakePlans resolves every instrumentor in list against bin. Instrumentors
// that cannot attach get a Skip reason; the error is for the whole binary.
func MakePlans(bin *binary.File, list []*instrumentors.Instrumentor, table *offsets.Table) ([]Plan, error) {
	if err := CheckBinary(bin, list); err != nil {
		return nil, err
	}
	var offs map[offsets.Field]offsets.Offset
	var modErrs map[string]error
	from, offErr := "", errors.New("not a Go program: no struct offsets")
	if bin.IsGo() {
		offs, from, modErrs, offErr = resolveOffsets(bin, table, instrumentors.Fields(list))
	}
	plans := make([]Plan, 0, len(list))
	for _, inst := range list {
		p := Plan{Inst: inst, Consts: map[string]uint64{}, OffsetsFrom: from}
		if !bin.IsGo() && !inst.NonGo {
			p.Skip = "not a Go program"
		} else {
			err := offErr
			if err == nil && inst.Module != "" {
				err = modErrs[inst.Module]
			}
			p.Skip = planOne(&p, bin, offs, err)
		}
		plans = append(plans, p)
	}
	return plans, nil
}

func planOne(p *Plan, bin *binary.File, offs map[offsets.Field]offsets.Offset, offErr error) string {
	inst := p.Inst
	probes := inst.Probes
	if inst.Dynamic != nil {
		d, err := inst.Dynamic(bin)
		if err != nil {
			return err.Error()
		}
		probes = append(append([]instrumentors.Probe(nil), probes...), d.Probes...)
		for k, v := range d.Consts {
			p.Consts[k] = v
		}
		p.MapEntries, p.State = d.MapEntries, d.State
	}
	if inst.GoVersions != "" && bin.IsGo() {
		c, err := version.NewConstraint(inst.GoVersions)
		if err != nil {
			return fmt.Sprintf("bad Go version constraint %q: %v", inst.GoVersions, err)
		}
		if !c.Check(bin.Version) {
			return fmt.Sprintf("needs Go %s, target is %s", inst.GoVersions, bin.GoVersion)
		}
	}
	if why, linked := moduleFits(inst, bin); why != "" {
		p.NotLinked = !linked
		return why
	}
	for _, pr := range probes {
		if pr.Uretprobe && bin.IsGo() {
			return fmt.Sprintf("%s: a uretprobe on Go code would crash the target when its stack grows", pr.Symbol)
		}
		fn, err := bin.Func(pr.Symbol)
		if err != nil {
			if pr.Optional && errors.Is(err, binary.ErrNoSymbol) {
				p.Probes = append(p.Probes, PlannedProbe{Probe: pr})
				continue
			}
			if inst.Library != "" && errors.Is(err, binary.ErrNoSymbol) {
				p.NotLinked = true
				return fmt.Sprintf("no %s in this binary (%s is not linked into it)", inst.Library, pr.Symbol)
			}
			return err.Error()
		}
		if pr.Return != "" && !pr.Uretprobe && len(fn.RetOffsets) == 0 {
			return fmt.Sprintf("%s has no RET instruction to probe its return", pr.Symbol)
		}
		p.Probes = append(p.Probes, PlannedProbe{Probe: pr, Func: fn})
	}
	if len(inst.Consts) > 0 && offErr != nil {
		return offErr.Error()
	}
	consts, unreported, missing := resolveConsts(inst.Consts, offs)
	if len(missing) > 0 {
		return fmt.Sprintf("%s has no %v", bin.GoVersion, missing)
	}
	p.ConstFields = make(map[string]offsets.Field, len(consts))
	for k, c := range consts {
		p.Consts[k] = c.value
		if c.value != OffsetAbsent {
			p.ConstFields[k] = c.field
		}
	}
	p.Unreported = unreported
	for _, v := range inst.Values {
		if _, done := p.Consts[v.Name]; done {
			continue
		}
		ok, err := valueFits(v, inst, bin)
		if err != nil {
			return err.Error()
		}
		if ok {
			p.Consts[v.Name] = v.Value
		}
	}
	return ""
}

// valueFits says whether Value v applies to bin: its Go version and, for
// a constraint on the instrumentor's module, the module version bin links.
func valueFits(v instrumentors.Value, inst *instrumentors.Instrumentor, bin *binary.File) (bool, error) {
	if !bin.IsGo() {
		return false, nil
	}
	if v.GoVersions != "" {
		c, err := version.NewConstraint(v.GoVersions)
		if err != nil {
			return false, fmt.Errorf("bad Go version constraint %q for %s: %v", v.GoVersions, v.Name, err)
		}
		if !c.Check(bin.Version) {
			return false, nil
		}
	}
	if v.ModuleVersions != "" {
		c, err := version.NewConstraint(v.ModuleVersions)
		if err != nil {
			return false, fmt.Errorf("bad %s version constraint %q for %s: %v", inst.Module, v.ModuleVersions, v.Name, err)
		}
		mv, err := offsets.ModuleVersion(bin.Modules[inst.Module])
		if err != nil || !c.Check(mv) {
			return false, nil
		}
	}
	return true, nil
}

// resolvedConst is a Const's offset and the name it was found under.
type resolvedConst struct {
	value uint64 // OffsetAbsent when none of its names is present
	field offsets.Field
}

// resolveConsts gives each of consts the offset of the first of its names
// present in offs (one Go version's layout), or OffsetAbsent. missing lists
// the required members that have none of their names; unreported, the
// Optional ones whose absence loses a value (Const.Reports), one entry per
// value.
func resolveConsts(consts []instrumentors.Const, offs map[offsets.Field]offsets.Offset) (vals map[string]resolvedConst, unreported []Unreported, missing []string) {
	vals = make(map[string]resolvedConst, len(consts))
	for _, c := range consts {
		names := c.Names()
		found := false
		for _, f := range names {
			if o, ok := offs[f]; ok && o.Present {
				vals[c.Name], found = resolvedConst{o.Value, f}, true
				break
			}
		}
		switch {
		case found:
		case c.Optional:
			vals[c.Name] = resolvedConst{value: OffsetAbsent}
			if c.Reports != "" {
				unreported = addUnreported(unreported, c.Reports, c.Name, names)
			}
		case len(names) == 1:
			missing = append(missing, c.Field.String())
		default:
			missing = append(missing, fmt.Sprintf("any of %v", names))
		}
	}
	sort.Strings(missing)
	return vals, unreported, missing
}

func addUnreported(list []Unreported, value, name string, names []offsets.Field) []Unreported {
	for i := range list {
		if list[i].Value == value {
			list[i].Consts = append(list[i].Consts, name)
			list[i].Missing = append(list[i].Missing, names...)
			return list
		}
	}
	return append(list, Unreported{Value: value, Consts: []string{name}, Missing: names})
}

// moduleFits says why inst cannot attach to bin for its module ("" when it
// can), and whether the binary links the module at all.
func moduleFits(inst *instrumentors.Instrumentor, bin *binary.File) (why string, linked bool) {
	if inst.Module == "" {
		return "", true
	}
	v, ok := bin.Modules[inst.Module]
	if !ok {
		return fmt.Sprintf("no %s in this binary (module %s is not in its build info)", cmp.Or(inst.Library, inst.Module), inst.Module), false
	}
	if inst.ModuleVersions == "" {
		return "", true
	}
	c, err := version.NewConstraint(inst.ModuleVersions)
	if err != nil {
		return fmt.Sprintf("bad %s version constraint %q: %v", inst.Module, inst.ModuleVersions, err), true
	}
	mv, err := offsets.ModuleVersion(v)
	if err != nil || !c.Check(mv) {
		return fmt.Sprintf("needs %s %s, target has %q", inst.Module, inst.ModuleVersions, v), true
	}
	return "", true
}

// resolveOffsets reads the offsets of fields for bin: the standard
// library's for its Go version, each module's for the version of it that
// bin links. A module bin does not link gives absent members (its
// instrumentors do not attach: moduleFits).
func resolveOffsets(bin *binary.File, table *offsets.Table, fields []offsets.Field) (offs map[offsets.Field]offsets.Offset, from string, modErrs map[string]error, err error) {
	loadDWARF := func() (*dwarf.Data, error) {
		if !bin.HasDWARF {
			return nil, errors.New("no DWARF sections")
		}
		return bin.DWARF()
	}
	var std []offsets.Field
	byModule := map[string][]offsets.Field{}
	for _, f := range fields {
		if f.Module == "" {
			std = append(std, f)
		} else {
			byModule[f.Module] = append(byModule[f.Module], f)
		}
	}
	offs, from, err = offsets.Resolve(table, bin.Version, loadDWARF, bin.Settings["GOEXPERIMENT"] != "", std)
	if err != nil {
		return nil, "", nil, err
	}
	modErrs = map[string]error{}
	for _, m := range slices.Sorted(maps.Keys(byModule)) {
		v, linked := bin.Modules[m]
		if !linked {
			for _, f := range byModule[m] {
				offs[f] = offsets.Offset{}
			}
			continue
		}
		got, mfrom, err := offsets.ResolveModule(m, v, bin.Version, loadDWARF, byModule[m])
		if err != nil {
			// Only the instrumentors of this module are concerned.
			for _, f := range byModule[m] {
				offs[f] = offsets.Offset{}
			}
			modErrs[m] = err
			continue
		}
		maps.Copy(offs, got)
		from += fmt.Sprintf("; %s %s from the %s", m, v, mfrom)
	}
	return offs, from, modErrs, nil
}
