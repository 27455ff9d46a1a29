package main

import (
	"debug/dwarf"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"syscall"

	"github.com/uranus-otel/uranus/attach"
	"github.com/uranus-otel/uranus/binary"
	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/instrumentors/all"
	"github.com/uranus-otel/uranus/instrumentors/funcs"
	"github.com/uranus-otel/uranus/offsets"
	"github.com/uranus-otel/uranus/target"
)

const inspectUsage = `NAME
    uranus inspect — show what uranus would probe in a binary, and why

SYNOPSIS
    uranus inspect [--json] [--instrument IDS] [--func SIGNATURE]… [--config FILE] BINARY
    uranus inspect [--json] [--instrument IDS] [--func SIGNATURE]… [--config FILE] --pid N

DESCRIPTION
    Reads the executable (or the one process N runs, through /proc/N/exe) and
    prints, without attaching anything and without needing root:

    - the Go version that built it, its calling convention (register ABI on
      amd64 from Go 1.17, stack ABI before), whether it is stripped (no
      .symtab: functions are then found through .gopclntab), whether it has
      DWARF, its main package and its build settings;
    - for every instrumentor uranus ships, whether it will attach and, when
      it will not, why;
    - for every function an instrumentor probes: the symbol's address, the
      file offset a uprobe takes with the arithmetic that gives it
      (symbol − section address + section offset), the offset of every RET
      instruction (uranus never uses uretprobes on Go code), and the
      equivalent lines for the kernel's tracefs uprobe_events file;
    - every struct-member offset the instrumentor's BPF program receives:
      the constant's name, the Go struct member, its value, and whether it
      came from uranus's generated offsets table or from the binary's DWARF;
    - with --func or --config, for every function named: whether it can be
      traced (or why not), the signature used and where it came from, the
      calling convention, where each argument and result lives under it (a
      register, such as AX or X0, or a stack slot such as SP+16, counted from
      the stack pointer at entry, where SP+0 holds the return address), which
      are recorded and, for those that are not, why; and its probe sites as
      above.

    The uprobe_events lines let you check a probe site by hand:
        echo 'p:mygroup/entry /path/app:0x2b2a20' >> /sys/kernel/tracing/uprobe_events
        echo 1 > /sys/kernel/tracing/events/mygroup/entry/enable
        cat /sys/kernel/tracing/uprobe_profile          # hit counts
        echo 0 > /sys/kernel/tracing/events/mygroup/entry/enable
        echo '-:mygroup/entry' >> /sys/kernel/tracing/uprobe_events

OPTIONS
    --pid N    inspect the executable process N runs. The uprobe_events lines
               name the executable's path when it is visible from here, else
               /proc/N/exe.
    --instrument IDS
               only these instrumentors (comma-separated, as uranus
               --instrument takes them); default: every one, including those
               off by default.
    --func SIGNATURE, --config FILE
               the functions a run with the same options would trace, as
               uranus --func and --config take them (repeatable).
    --json     print one JSON object instead of text (see JSON OUTPUT).

JSON OUTPUT
    An object with format_version 1; its fields only ever get added to.
    Addresses, offsets and sizes are numbers (bytes). "instrumentors" lists
    every instrumentor with "attaches" (bool) and "reason" (why not), its
    "probes" (symbol, address, section_address, section_offset, file_offset,
    ret_offsets relative to the symbol, uprobe_events) and its "offsets"
    (const, field, value, present, optional, source). With --func,
    "functions" lists each function named: name, traced, reason, signature,
    signature_source, abi, params (key, type, where, recorded, why), notes
    and its probe.

EXIT STATUS
    0  at least one instrumentor will attach
    3  the binary was read, but nothing will attach (not a Go program, too
       old a Go version, the functions are not in it, …)
    1  the binary could not be read
    2  wrong usage

EXAMPLES
    uranus inspect ./shop
    uranus inspect --pid 1234
    uranus inspect --func 'main.parseMe(n int, ok bool, f float32)' ./app
    uranus inspect --json /usr/local/bin/app | jq '.instrumentors[] | {id, attaches, reason}'
`

// inspectReport is what inspect finds; the text and JSON outputs are both
// rendered from it, so they cannot disagree.
type inspectReport struct {
	FormatVersion int               `json:"format_version"`
	Path          string            `json:"path"`          // as uprobe_events should name it
	PID           int               `json:"pid,omitempty"` // with --pid
	Go            bool              `json:"go"`
	GoVersion     string            `json:"go_version,omitempty"`
	Arch          string            `json:"arch"`
	ABI           string            `json:"abi,omitempty"` // "register" or "stack"
	Stripped      bool              `json:"stripped"`
	DWARF         bool              `json:"dwarf"`
	MainPath      string            `json:"main_path,omitempty"`
	BuildSettings map[string]string `json:"build_settings,omitempty"`
	// NotInstrumentable says why nothing in this binary can be instrumented
	// (not Go, unsupported architecture or Go version).
	NotInstrumentable string `json:"not_instrumentable,omitempty"`
	// Core are the runtime offsets every instrumentor's programs get.
	Core          []inspectedOffset `json:"core_offsets,omitempty"`
	Instrumentors []inspectedInst   `json:"instrumentors"`
	// WillAttach counts the instrumentors that will attach: of those on by
	// default, or of those named with --instrument.
	WillAttach int  `json:"will_attach"`
	chosen     bool // --instrument was given
	// Propagation is how uranus would send trace context to called
	// services on this machine ($OTEL_URANUS_PROPAGATION, default auto).
	Propagation    string `json:"propagation"`
	PropagationWhy string `json:"propagation_reason"`
	// Functions are those named with --func or --config.
	Functions []inspectedFunc `json:"functions,omitempty"`
}

// inspectedFunc is one function named with --func or --config.
type inspectedFunc struct {
	Name      string            `json:"name"`
	Traced    bool              `json:"traced"`
	Reason    string            `json:"reason,omitempty"` // why not
	Signature string            `json:"signature,omitempty"`
	SigFrom   string            `json:"signature_source,omitempty"` // given, DWARF
	ABI       string            `json:"abi,omitempty"`
	Params    []funcs.Placement `json:"params"`
	Notes     []string          `json:"notes,omitempty"`
	Probe     *inspectedProbe   `json:"probe,omitempty"`
}

type inspectedInst struct {
	ID           string            `json:"id"`
	Doc          string            `json:"doc"`
	OffByDefault bool              `json:"off_by_default"`
	Attaches     bool              `json:"attaches"`
	Reason       string            `json:"reason,omitempty"`
	Options      []string          `json:"options,omitempty"` // the flags it takes, as given: "--func SIGNATURE"
	OffsetsFrom  string            `json:"offsets_source,omitempty"`
	Probes       []inspectedProbe  `json:"probes"`
	Offsets      []inspectedOffset `json:"offsets"`
	// Unreported are values it will attach without, for this Go version.
	Unreported []string `json:"unreported,omitempty"`
}

type inspectedProbe struct {
	Symbol         string   `json:"symbol"`
	Found          bool     `json:"found"`
	Optional       bool     `json:"optional"`
	SymbolSource   string   `json:"symbol_source,omitempty"` // symtab, pclntab, dynsym
	Address        uint64   `json:"address"`
	Size           uint64   `json:"size"`
	Section        string   `json:"section"`
	SectionAddress uint64   `json:"section_address"`
	SectionOffset  uint64   `json:"section_offset"`
	FileOffset     uint64   `json:"file_offset"`
	Requires       string   `json:"requires,omitempty"` // feature the probe serves, off unless enabled
	EntryProgram   string   `json:"entry_program,omitempty"`
	ReturnProgram  string   `json:"return_program,omitempty"`
	RetOffsets     []uint64 `json:"ret_offsets"`
	UprobeEvents   []string `json:"uprobe_events"`
}

type inspectedOffset struct {
	Const    string `json:"const"`
	Field    string `json:"field"`
	Value    uint64 `json:"value"`
	Present  bool   `json:"present"`
	Optional bool   `json:"optional"`
	Source   string `json:"source"`
}

func inspectMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("uranus inspect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pid := fs.Int("pid", 0, "inspect the executable of process `N`")
	asJSON := fs.Bool("json", false, "print JSON")
	only := fs.String("instrument", "", "only these comma-separated instrumentor `IDs`")
	// Of the instrumentors' options, inspect takes those that change what
	// it plans (--func, --config); the others configure a run (and one
	// opens a file) and are shown in the report instead.
	settings := instrumentors.DeclareFlags(fs, []*instrumentors.Instrumentor{funcs.Instrumentor})
	fs.Usage = func() { fmt.Fprint(stderr, inspectUsage) }
	// Flags may come after the binary ("uranus inspect ./app --json").
	var paths []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		paths = append(paths, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch {
	case *pid == 0 && len(paths) == 0:
		fmt.Fprintln(stderr, "uranus inspect: name a BINARY or pass --pid N (see uranus inspect --help)")
		return 2
	case *pid != 0 && len(paths) > 0:
		fmt.Fprintln(stderr, "uranus inspect: give either a BINARY or --pid N, not both")
		return 2
	case len(paths) > 1:
		fmt.Fprintf(stderr, "uranus inspect: one binary at a time (got %s)\n", strings.Join(paths, ", "))
		return 2
	case *pid < 0:
		fmt.Fprintf(stderr, "uranus inspect: --pid %d: a pid is a positive number\n", *pid)
		return 2
	}

	// Every instrumentor, as its options configure it; funcs only when
	// functions are named.
	specs := funcs.Specs(settings[funcs.ID])
	configured, on, err := instrumentors.Configure(all.List, settings, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Fprintln(stderr, "uranus inspect:", err)
		return 2
	}
	var list []*instrumentors.Instrumentor
	for _, in := range configured {
		if in.ID != funcs.ID || len(specs) > 0 {
			list = append(list, in)
		}
	}
	if *only != "" {
		if list, err = chooseInstrumentors(*only, configured, on); err != nil {
			fmt.Fprintln(stderr, "uranus inspect:", err)
			return 2
		}
	}
	var rep *inspectReport
	if *pid != 0 {
		rep, err = inspectPID(*pid, list, *only != "", specs)
	} else {
		rep, err = inspectFile(paths[0], paths[0], list, *only != "", specs)
	}
	if err != nil {
		fmt.Fprintln(stderr, "uranus inspect:", err)
		return 1
	}
	if rep.Go {
		want, err := attach.ParsePropagation(os.Getenv(propagationEnv))
		if err != nil {
			fmt.Fprintln(stderr, "uranus inspect: $"+propagationEnv+":", err)
			return 2
		}
		mode, why, err := attach.PropagationFor(want)
		if err != nil {
			mode, why = attach.PropagationOff, err.Error()
		}
		rep.Propagation, rep.PropagationWhy = string(mode), why
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(stderr, "uranus inspect:", err)
			return 1
		}
	} else {
		writeInspectText(stdout, rep)
	}
	if rep.WillAttach == 0 {
		return 3
	}
	return 0
}

// inspectPID inspects what process pid runs. The binary is read through
// /proc/PID/exe, which works across mount namespaces; uprobe_events lines
// name the executable's own path when that path reaches the same file here.
func inspectPID(pid int, list []*instrumentors.Instrumentor, chosen bool, specs []funcs.Spec) (*inspectReport, error) {
	p, err := target.Lookup(pid)
	if err != nil {
		return nil, fmt.Errorf("--pid %d: %w", pid, err)
	}
	probePath := p.ExePath()
	var st syscall.Stat_t
	if syscall.Stat(p.Exe, &st) == nil && uint64(st.Dev) == p.Dev && st.Ino == p.Ino {
		probePath = p.Exe
	}
	rep, err := inspectFile(p.ExePath(), probePath, list, chosen, specs)
	if err != nil {
		return nil, err
	}
	rep.PID = pid
	return rep, nil
}

// inspectFile analyses the binary at readPath for the instrumentors in list;
// probePath is the path the uprobe_events lines name. chosen means list was
// named with --instrument, so off-by-default ones count as attaching too.
func inspectFile(readPath, probePath string, list []*instrumentors.Instrumentor, chosen bool, specs []funcs.Spec) (*inspectReport, error) {
	if st, err := os.Stat(readPath); err == nil && st.IsDir() {
		return nil, fmt.Errorf("%s is a directory: name the executable file", readPath)
	}
	bin, err := binary.Open(readPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: no such file", readPath)
		}
		return nil, err
	}
	defer bin.Close()
	table, err := offsets.Embedded()
	if err != nil {
		return nil, fmt.Errorf("reading the built-in offsets table: %w", err)
	}

	rep := &inspectReport{
		FormatVersion: 1,
		Path:          probePath,
		Go:            bin.IsGo(),
		GoVersion:     bin.GoVersion,
		Arch:          bin.Arch,
		Stripped:      bin.Stripped,
		DWARF:         bin.HasDWARF,
		MainPath:      bin.MainPath,
		Instrumentors: []inspectedInst{},
		chosen:        chosen,
	}
	if len(bin.Settings) > 0 {
		rep.BuildSettings = bin.Settings
	}
	if bin.IsGo() {
		rep.ABI = "stack"
		if bin.RegABI {
			rep.ABI = "register"
		}
	}
	plans, err := attach.MakePlans(bin, list, table)
	if err != nil {
		rep.NotInstrumentable = err.Error()
		return rep, nil
	}
	rep.Core = coreOffsetRows(bin, table)
	for _, p := range plans {
		in := inspectedInst{
			ID:           p.Inst.ID,
			Doc:          p.Inst.Doc,
			OffByDefault: p.Inst.OffByDefault,
			Attaches:     p.Skip == "",
			Reason:       p.Skip,
			Probes:       []inspectedProbe{},
			Offsets:      []inspectedOffset{},
		}
		for _, o := range p.Inst.Options {
			in.Options = append(in.Options, optionSynopsis(o))
		}
		if in.Attaches {
			in.OffsetsFrom = p.OffsetsFrom
			if chosen || !p.Inst.OffByDefault {
				rep.WillAttach++
			}
		}
		for _, pp := range p.Probes {
			in.Probes = append(in.Probes, inspectProbe(pp, probePath))
		}
		if in.Attaches {
			in.Offsets = offsetRows(p.Inst, p.Consts, p.ConstFields, p.OffsetsFrom)
			for _, u := range p.Unreported {
				in.Unreported = append(in.Unreported, u.String())
			}
		}
		rep.Instrumentors = append(rep.Instrumentors, in)
	}
	rep.Functions = inspectFuncs(bin, specs, rep.Instrumentors)
	return rep, nil
}

// inspectFuncs plans specs as a run would, for the report: each function's
// placements under its calling convention, and its probe from the func
// instrumentor's plan.
func inspectFuncs(bin *binary.File, specs []funcs.Spec, insts []inspectedInst) []inspectedFunc {
	if len(specs) == 0 {
		return nil
	}
	probes := map[string]inspectedProbe{}
	for _, in := range insts {
		if in.ID == funcs.ID {
			for _, p := range in.Probes {
				probes[p.Symbol] = p
			}
		}
	}
	planned, errs := funcs.Plan(bin, specs)
	byName := map[string]inspectedFunc{}
	for _, f := range planned {
		out := inspectedFunc{Name: f.Name, Traced: true, Signature: f.Sig, SigFrom: f.SigFrom,
			ABI: f.Conv.Name, Params: f.Params, Notes: f.Notes}
		if p, ok := probes[f.Name]; ok {
			out.Probe = &p
		}
		if out.Params == nil {
			out.Params = []funcs.Placement{}
		}
		byName[f.Name] = out
	}
	for _, err := range errs {
		var fe *funcs.FuncError
		if errors.As(err, &fe) {
			if _, ok := byName[fe.Func]; !ok {
				byName[fe.Func] = inspectedFunc{Name: fe.Func, Reason: fe.Err.Error(), Params: []funcs.Placement{}}
			}
		}
	}
	var out []inspectedFunc
	for _, s := range specs {
		if f, ok := byName[s.Name]; ok {
			out = append(out, f)
			delete(byName, s.Name)
		}
	}
	return out
}

func inspectProbe(pp attach.PlannedProbe, path string) inspectedProbe {
	ip := inspectedProbe{
		Symbol:        pp.Symbol,
		Optional:      pp.Optional,
		Requires:      pp.Requires,
		EntryProgram:  pp.Entry,
		ReturnProgram: pp.Return,
		RetOffsets:    []uint64{},
		UprobeEvents:  []string{},
	}
	fn := pp.Func
	if fn == nil {
		return ip
	}
	ip.Found = true
	ip.SymbolSource = fn.Source
	ip.Address, ip.Size = fn.Addr, fn.Size
	ip.Section, ip.SectionAddress, ip.SectionOffset = fn.Section, fn.SectionAddr, fn.SectionOffset
	ip.FileOffset = fn.FileOffset
	ip.RetOffsets = append(ip.RetOffsets, fn.RetOffsets...)
	// What the attacher attaches, spelled as tracefs takes it.
	if pp.Entry != "" {
		ip.UprobeEvents = append(ip.UprobeEvents, fmt.Sprintf("p %s:%#x", path, fn.FileOffset))
	}
	if pp.Return != "" {
		for _, r := range fn.RetOffsets {
			ip.UprobeEvents = append(ip.UprobeEvents, fmt.Sprintf("p %s:%#x", path, fn.FileOffset+r))
		}
	}
	return ip
}

// offsetRows lists the constants inst's BPF program receives, in its
// declaration order, each with the member it was read from (every name
// tried, when absent).
func offsetRows(inst *instrumentors.Instrumentor, consts map[string]uint64, fields map[string]offsets.Field, from string) []inspectedOffset {
	rows := []inspectedOffset{}
	for _, c := range inst.Consts {
		v, ok := consts[c.Name]
		if !ok {
			continue
		}
		var names []string
		for _, f := range c.Names() {
			names = append(names, f.String())
		}
		row := inspectedOffset{Const: c.Name, Field: strings.Join(names, " or "), Optional: c.Optional, Source: from}
		if v != attach.OffsetAbsent {
			row.Value, row.Present = v, true
			if f, ok := fields[c.Name]; ok {
				row.Field = f.String()
			}
		}
		rows = append(rows, row)
	}
	for _, v := range inst.Values {
		got, ok := consts[v.Name]
		if !ok || got != v.Value {
			continue // another of the name's constraints matched first
		}
		rows = append(rows, inspectedOffset{Const: v.Name, Field: "Go " + v.GoVersions, Value: v.Value, Present: true, Source: "Go version"})
	}
	return rows
}

// coreOffsetRows resolves the runtime members the shared BPF code reads
// (offsets.Runtime) the way the attacher does: from the table, else from the
// binary's DWARF. A failure is a row without a value, not an error: the
// instrumentors' own rows already say whether they will attach.
func coreOffsetRows(bin *binary.File, table *offsets.Table) []inspectedOffset {
	loadDWARF := func() (*dwarf.Data, error) { return bin.DWARF() }
	got, from, err := offsets.Resolve(table, bin.Version, loadDWARF, bin.Settings["GOEXPERIMENT"] != "", offsets.Runtime)
	var rows []inspectedOffset
	for _, f := range offsets.Runtime {
		row := inspectedOffset{Field: f.String(), Source: from}
		switch f {
		case offsets.Field{Struct: "runtime.g", Member: "goid"}:
			row.Const = "off_g_goid" // the goroutine key of every program
		case offsets.Field{Struct: "runtime.g", Member: "parentGoid"}:
			row.Const = "off_g_parent_goid" // a goroutine's creator, for its parent span
		}
		if o, ok := got[f]; err == nil && ok && o.Present {
			row.Value, row.Present = o.Value, true
		}
		rows = append(rows, row)
	}
	return rows
}

func writeInspectText(w io.Writer, r *inspectReport) {
	fmt.Fprintln(w, r.Path)
	row := func(k, v string) { fmt.Fprintf(w, "  %-15s %s\n", k, v) }
	if r.PID != 0 {
		row("process", fmt.Sprintf("pid %d", r.PID))
	}
	if !r.Go {
		row("Go", "no: not built by Go (no Go build information)")
		row("architecture", r.Arch)
		if len(r.Functions) == 0 {
			fmt.Fprintf(w, "\nnot a Go program: uranus instruments Go programs, and C functions named with --func; nothing will be attached.\n")
			return
		}
		writeFuncsText(w, r.Functions)
		fmt.Fprintf(w, "\n%d of %d instrumentors will attach.\n", r.WillAttach, len(r.Instrumentors))
		return
	}
	row("Go", r.GoVersion)
	row("architecture", r.Arch)
	if r.Propagation != "" {
		row("propagation", r.Propagation+" ("+r.PropagationWhy+")")
	}
	switch r.ABI {
	case "register":
		row("ABI", "register (arguments in registers; goroutine pointer in R14)")
	case "stack":
		row("ABI", "stack (arguments on the stack; goroutine pointer in thread-local storage)")
	}
	if r.Stripped {
		row("stripped", "yes: no .symtab, functions are found through .gopclntab")
	} else {
		row("stripped", "no: functions are found through .symtab")
	}
	if r.DWARF {
		row("DWARF", "yes")
	} else {
		row("DWARF", "no: struct offsets can come from the offsets table only")
	}
	if r.MainPath != "" {
		row("main package", r.MainPath)
	}
	if len(r.BuildSettings) == 0 {
		row("build settings", "none recorded (Go records them since 1.18)")
	} else {
		keys := make([]string, 0, len(r.BuildSettings))
		for k := range r.BuildSettings {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintln(w, "  build settings")
		for _, k := range keys {
			fmt.Fprintf(w, "    %s=%s\n", k, r.BuildSettings[k])
		}
	}
	if r.NotInstrumentable != "" {
		fmt.Fprintf(w, "\nnothing will be attached: %s\n", r.NotInstrumentable)
		return
	}
	if len(r.Core) > 0 {
		fmt.Fprintf(w, "\ncore: runtime offsets in bytes, for every instrumentor (from the %s)\n", r.Core[0].Source)
		writeOffsetRows(w, r.Core)
	}
	for _, in := range r.Instrumentors {
		fmt.Fprintf(w, "\n%s — %s\n", in.ID, in.Doc)
		switch {
		case !in.Attaches:
			fmt.Fprintf(w, "  will not attach: %s\n", in.Reason)
		case in.OffByDefault && !r.chosen:
			fmt.Fprintf(w, "  can attach, but is off by default (enable with --instrument %s)\n", in.ID)
		default:
			fmt.Fprintln(w, "  will attach")
		}
		if len(in.Options) > 0 {
			fmt.Fprintf(w, "  options         %s\n", strings.Join(in.Options, ", "))
		}
		if in.ID == funcs.ID && len(r.Functions) > 0 {
			fmt.Fprintln(w, "  (its functions are shown below)")
		} else {
			for _, p := range in.Probes {
				writeProbeText(w, p)
			}
		}
		if len(in.Offsets) > 0 {
			fmt.Fprintf(w, "  struct offsets in bytes (from the %s)\n", in.OffsetsFrom)
			writeOffsetRows(w, in.Offsets)
		}
		for _, u := range in.Unreported {
			fmt.Fprintf(w, "  WARNING: cannot report %s\n", u)
		}
	}
	writeFuncsText(w, r.Functions)
	fmt.Fprintf(w, "\n%d of %d instrumentors will attach.\n", r.WillAttach, len(r.Instrumentors))
}

// writeFuncsText shows each function named with --func or --config: where
// its arguments and results live, and its probe sites.
func writeFuncsText(w io.Writer, fns []inspectedFunc) {
	if len(fns) == 0 {
		return
	}
	fmt.Fprintln(w, "\nfunctions named with --func or --config")
	for _, f := range fns {
		if !f.Traced {
			fmt.Fprintf(w, "  %s\n    will not be traced: %s\n", f.Name, f.Reason)
			continue
		}
		if f.Probe != nil {
			writeProbeText(w, *f.Probe)
		} else {
			fmt.Fprintf(w, "  %s\n", f.Name)
		}
		fmt.Fprintf(w, "    convention      %s\n", f.ABI)
		if f.Signature != "" {
			fmt.Fprintf(w, "    signature       %s (%s)\n", f.Signature, sigSource(f.SigFrom))
		}
		if len(f.Params) > 0 {
			fmt.Fprintln(w, "    where each value is (arguments at entry, results at each RET; SP+0 holds the return address)")
			kw, tw, ww := 0, 0, 0
			for _, p := range f.Params {
				kw, tw, ww = max(kw, len(p.Key)), max(tw, len(p.Type)), max(ww, len(p.Where))
			}
			for _, p := range f.Params {
				what := "recorded"
				if !p.Recorded {
					what = "not recorded: " + p.Why
				}
				fmt.Fprintf(w, "      %-*s  %-*s  %-*s  %s\n", kw, p.Key, tw, p.Type, ww, p.Where, what)
			}
		}
		for _, n := range f.Notes {
			fmt.Fprintf(w, "    note: %s\n", n)
		}
	}
}

func sigSource(from string) string {
	if from == "given" {
		return "as given, checked against DWARF when the binary has it"
	}
	return "from " + from
}

func writeOffsetRows(w io.Writer, rows []inspectedOffset) {
	cw, fw := 0, 0
	for _, o := range rows {
		cw, fw = max(cw, len(o.Const)), max(fw, len(o.Field))
	}
	for _, o := range rows {
		v := fmt.Sprint(o.Value)
		switch {
		case !o.Present:
			v = "absent in this Go version"
		case o.Source == "Go version":
			v += " (set by Go version)"
		}
		c := o.Const
		if c == "" {
			c = "-"
		}
		fmt.Fprintf(w, "    %-*s  %-*s  %s\n", cw, c, fw, o.Field, v)
	}
}

func writeProbeText(w io.Writer, p inspectedProbe) {
	if p.Requires != "" {
		fmt.Fprintf(w, "  %s (only with the %s feature)\n", p.Symbol, p.Requires)
	} else {
		fmt.Fprintf(w, "  %s\n", p.Symbol)
	}
	if !p.Found {
		if p.Optional {
			fmt.Fprintln(w, "    not in this binary (optional: the instrumentor works without it)")
		} else {
			fmt.Fprintln(w, "    not in this binary")
		}
		return
	}
	sec := p.Section
	if sec == "" {
		sec = "segment" // no section headers: the loadable segment's
	}
	fmt.Fprintf(w, "    symbol address  %#x (%d bytes, from %s)\n", p.Address, p.Size, sourceName(p.SymbolSource))
	fmt.Fprintf(w, "    file offset     %#x − %#x + %#x = %#x   (symbol − %s address + %s offset)\n",
		p.Address, p.SectionAddress, p.SectionOffset, p.FileOffset, sec, sec)
	if p.EntryProgram != "" {
		fmt.Fprintf(w, "    entry           +0x0 → %s\n", p.EntryProgram)
	}
	if p.ReturnProgram != "" {
		offs := make([]string, len(p.RetOffsets))
		for i, o := range p.RetOffsets {
			offs[i] = fmt.Sprintf("%#x", o)
		}
		fmt.Fprintf(w, "    RET sites       %s → %s (%d)\n", strings.Join(offs, " "), p.ReturnProgram, len(p.RetOffsets))
	}
	fmt.Fprintln(w, "    uprobe_events")
	for _, l := range p.UprobeEvents {
		fmt.Fprintf(w, "      %s\n", l)
	}
}

func sourceName(s string) string {
	switch s {
	case "symtab":
		return ".symtab"
	case "pclntab":
		return ".gopclntab"
	case "dynsym":
		return ".dynsym"
	}
	return s
}
