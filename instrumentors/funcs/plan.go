package funcs

import (
	"errors"
	"fmt"
	"strings"

	"github.com/uranus-otel/uranus/binary"
	"github.com/uranus-otel/uranus/bpf"
)

// Limits of bpf/funcs.c.
const (
	maxFuncs = 256
	maxFetch = 16
	maxHops  = 4
	maxVals  = 16
	maxStrs  = 4
	strLen   = 128
)

// BPF constants of bpf/funcs.c (enum reg, fetch_kind, fetch_loc).
var bpfRegs = map[string]uint8{"AX": 0, "BX": 1, "CX": 2, "DX": 3, "SI": 4, "DI": 5, "R8": 6, "R9": 7, "R10": 8, "R11": 9}

const (
	fetchWord  = 1
	fetchBytes = 2
	fetchCStr  = 3
	locReg     = 1
	locStack   = 2
)

// floatRegsNote explains why a float in a register is not recorded; the
// README's "Tracing any function" section has the measurement.
const floatRegsNote = "float args in registers cannot be read by uprobes: a uprobe's BPF program " +
	"sees the integer registers only (struct pt_regs), and the task's saved FPU state holds " +
	"stale values while the function runs"

// Func is one function planned for one binary.
type Func struct {
	Name string
	// Sig is the signature used, as --func spells it ("" when unknown).
	Sig string
	// SigFrom says where it came from: "given", "DWARF", or "" (timing only).
	SigFrom string
	Conv    *Convention
	Values  []Value
	// Params says where each parameter and result of the signature lives
	// under Conv, and whether it is recorded (for uranus inspect).
	Params []Placement
	// Unreadable lists what could not be recorded on any call (a float in a
	// register), for an attribute on each span.
	Unreadable []string
	// Notes explain what is not recorded, once per target.
	Notes []string
	spec  bpf.FuncsFuncSpec
}

// Value is one attribute recorded for each call.
type Value struct {
	Key    string // "arg.dividend", "result.0", "arg.r.URL.Path"
	Type   *Type
	Slot   int  // in vals, or in str when Str
	Str    bool // a string, []byte or C string
	Result bool
}

// Placement is one parameter or result: where the calling convention puts
// it, and why it is not recorded when it is not.
type Placement struct {
	Key      string `json:"key"` // "arg.dividend", "result.0"
	Type     string `json:"type"`
	Where    string `json:"where"` // "AX", "AX, BX" (one register a word), "SP+16", "X0"
	Recorded bool   `json:"recorded"`
	Why      string `json:"why,omitempty"` // when not recorded
}

// FuncError is a function that cannot be traced in a binary.
type FuncError struct {
	Func string
	Err  error
}

func (e *FuncError) Error() string { return e.Func + ": " + e.Err.Error() }
func (e *FuncError) Unwrap() error { return e.Err }

// Plan resolves specs against bin: the functions that can be traced, and
// one error for each that cannot.
func Plan(bin *binary.File, specs []Spec) ([]*Func, []error) {
	var errs []error
	type found struct {
		spec Spec
		fn   *binary.Func
	}
	var ok []found
	addrs, names := map[uint64]bool{}, map[string]bool{}
	seen := map[string]bool{}
	for _, s := range specs {
		names[s.Name] = true
		if seen[s.Name] {
			errs = append(errs, &FuncError{s.Name, errors.New("named more than once; give it once, with all its fields")})
			continue
		}
		seen[s.Name] = true
		fn, err := bin.Func(s.Name)
		if err != nil {
			errs = append(errs, lookupError(s.Name, bin, err))
			continue
		}
		addrs[fn.Addr] = true
		ok = append(ok, found{s, fn})
	}

	var dbg *debugInfo
	var dwarfErr error
	if bin.HasDWARF {
		if d, err := bin.DWARF(); err != nil {
			dwarfErr = err
		} else if dbg, err = indexDWARF(d, bin.IsGo(), addrs, names); err != nil {
			dwarfErr = err
		}
	}
	// A name not found may be a function inlined everywhere: say so.
	for i, err := range errs {
		var fe *FuncError
		if dbg != nil && errors.As(err, &fe) && errors.Is(err, binary.ErrNoSymbol) {
			if off, inl := dbg.abstract[fe.Func]; inl {
				errs[i] = &FuncError{fe.Func, fmt.Errorf("inlined into its callers (%s, says DWARF): it has no code of its own to probe "+
					"(build with //go:noinline on it, or -gcflags=all=-l; for C, __attribute__((noinline)))", callSites(dbg.inlined[off]))}
			}
		}
	}

	var out []*Func
	for _, f := range ok {
		if len(out) == maxFuncs {
			errs = append(errs, &FuncError{f.spec.Name, fmt.Errorf("more than %d functions: not traced", maxFuncs)})
			continue
		}
		pf, err := planFunc(bin, dbg, dwarfErr, f.spec, f.fn)
		if err != nil {
			errs = append(errs, &FuncError{f.spec.Name, err})
			continue
		}
		if dbg != nil {
			if off, inl := dbg.abstract[f.spec.Name]; inl && dbg.inlined[off] > 0 {
				pf.Notes = append(pf.Notes, fmt.Sprintf("also inlined into its callers at %s, whose calls make no span", callSites(dbg.inlined[off])))
			}
		}
		out = append(out, pf)
	}
	return out, errs
}

func callSites(n int) string {
	if n == 1 {
		return "1 call site"
	}
	return fmt.Sprintf("%d call sites", n)
}

// lookupError explains a function Func did not find, with suggestions.
func lookupError(name string, bin *binary.File, err error) error {
	if !errors.Is(err, binary.ErrNoSymbol) {
		return &FuncError{name, err}
	}
	msg := err.Error()
	if s := bin.Suggest(name); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, ", ") + "?"
	}
	return &FuncError{name, wrapped{msg, err}}
}

// wrapped is an error with its own text that still matches its cause.
type wrapped struct {
	msg string
	err error
}

func (w wrapped) Error() string { return w.msg }
func (w wrapped) Unwrap() error { return w.err }

// param is a parameter or result being planned.
type param struct {
	name   string // attribute name: given, from DWARF, or the position
	typ    *Type
	result bool
}

func planFunc(bin *binary.File, dbg *debugInfo, dwarfErr error, s Spec, fn *binary.Func) (*Func, error) {
	pf := &Func{Name: s.Name}
	if bin.IsGo() && len(fn.RetOffsets) == 0 {
		return nil, errors.New("has no RET instruction (it never returns), so a span would never end")
	}
	switch {
	case !bin.IsGo():
		pf.Conv = SysV
	case bin.RegABI && !strings.HasSuffix(s.Name, ".abi0"):
		pf.Conv = GoRegABI
	default:
		pf.Conv = GoStackABI
	}

	var declared []dwarfParam
	haveDWARF := false
	if dbg != nil {
		if off, ok := dbg.concrete[fn.Addr]; ok {
			var err error
			if declared, err = dbg.signature(off); err != nil {
				return nil, fmt.Errorf("reading its signature from DWARF: %v", err)
			}
			haveDWARF = true
		}
	}
	// Go 1.17 leaves most results out of DWARF.
	resultsFromDWARF := haveDWARF && !(bin.IsGo() && bin.AtLeast(1, 17) && !bin.AtLeast(1, 18))

	var params []param
	switch {
	case s.HasSig && haveDWARF:
		var err error
		if params, err = matchDWARF(s, declared, resultsFromDWARF, bin.IsGo()); err != nil {
			return nil, err
		}
		pf.SigFrom = "given"
	case s.HasSig:
		for i, p := range s.Params {
			t, err := exprType(p.Type)
			if err != nil {
				return nil, fmt.Errorf("parameter %s: %v", displayName(p.Name, i), err)
			}
			params = append(params, param{displayName(p.Name, i), t, false})
		}
		for i, p := range s.Results {
			t, err := exprType(p.Type)
			if err != nil {
				return nil, fmt.Errorf("result %s: %v", displayName(p.Name, i), err)
			}
			params = append(params, param{displayName(p.Name, i), t, true})
		}
		pf.SigFrom = "given"
	case haveDWARF:
		na, nr := 0, 0
		for _, d := range declared {
			if d.Result {
				if resultsFromDWARF {
					params = append(params, param{displayName(d.Name, nr), d.Type, true})
				}
				nr++
				continue
			}
			params = append(params, param{displayName(d.Name, na), d.Type, false})
			na++
		}
		pf.SigFrom = "DWARF"
		if !resultsFromDWARF {
			pf.Notes = append(pf.Notes, fmt.Sprintf("results not recorded: %s's DWARF leaves them out; give the signature to record them", bin.GoVersion))
		}
	default:
		why := "the binary has no DWARF"
		switch {
		case dwarfErr != nil:
			why = "its DWARF is unreadable (" + dwarfErr.Error() + ")"
		case dbg != nil:
			why = "DWARF does not describe it"
		}
		pf.Notes = append(pf.Notes, "no signature given and "+why+": recording timing only "+
			"(give the signature to record arguments and results: --func '"+s.Name+"(NAME TYPE, …) RESULTS')")
		if len(s.Fields) > 0 {
			return nil, fmt.Errorf("field paths %v need a signature, and %s", s.Fields, why)
		}
		return pf, nil
	}
	pf.Sig = sigString(s.Name, params)
	return pf, pf.compile(params, s.Fields)
}

// matchDWARF checks a given signature against the binary's and takes the
// binary's types (the given names label the attributes). A method's
// receiver may be left out.
func matchDWARF(s Spec, declared []dwarfParam, withResults, isGo bool) ([]param, error) {
	var dargs, dres []dwarfParam
	for _, d := range declared {
		if d.Result {
			dres = append(dres, d)
		} else {
			dargs = append(dargs, d)
		}
	}
	given := s.Params
	if len(given) == len(dargs)-1 && isGo && isMethod(s.Name) {
		given = append([]Param{{Name: dargs[0].Name, Type: &TypeExpr{Kind: ExprNamed, Name: dargs[0].Type.Name}}}, given...)
	}
	mismatch := func(why string) error {
		return fmt.Errorf("the signature given does not match the binary's DWARF, %s: %s; correct it, or leave it out to use DWARF's",
			sigString("", dwarfParams(dargs, dres, withResults)), why)
	}
	if len(given) != len(dargs) {
		return nil, mismatch(fmt.Sprintf("%d parameters given, the function has %d", len(given), len(dargs)))
	}
	var out []param
	for i, p := range given {
		if !sameType(p.Type, dargs[i].Type, isGo) {
			return nil, mismatch(fmt.Sprintf("parameter %d is %s, not %s", i+1, dargs[i].Type.Name, p.Type))
		}
		name := p.Name
		if name == "" {
			name = dargs[i].Name
		}
		out = append(out, param{displayName(name, i), dargs[i].Type, false})
	}
	if !withResults {
		// DWARF cannot check the results: trust the given ones.
		for i, p := range s.Results {
			t, err := exprType(p.Type)
			if err != nil {
				return nil, fmt.Errorf("result %s: %v", displayName(p.Name, i), err)
			}
			out = append(out, param{displayName(p.Name, i), t, true})
		}
		return out, nil
	}
	if len(s.Results) != len(dres) {
		return nil, mismatch(fmt.Sprintf("%d results given, the function has %d", len(s.Results), len(dres)))
	}
	for i, p := range s.Results {
		if !sameType(p.Type, dres[i].Type, isGo) {
			return nil, mismatch(fmt.Sprintf("result %d is %s, not %s", i+1, dres[i].Type.Name, p.Type))
		}
		name := p.Name
		if name == "" {
			name = dres[i].Name
		}
		out = append(out, param{displayName(name, i), dres[i].Type, true})
	}
	return out, nil
}

// isMethod tells a Go method's symbol: pkg.(*T).M or pkg.T.M, as opposed to
// a function (pkg.F) or closure (pkg.F.func1).
func isMethod(name string) bool {
	if strings.Contains(name, ".(*") {
		return true
	}
	i := strings.LastIndexByte(name, '/')
	parts := strings.Split(name[i+1:], ".")
	if len(parts) != 3 {
		return false
	}
	last := parts[2]
	return !strings.HasPrefix(last, "func") && !strings.HasPrefix(last, "gowrap") && !strings.HasPrefix(last, "deferwrap") && !isDigits(last)
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

func dwarfParams(args, res []dwarfParam, withResults bool) []param {
	var out []param
	for i, d := range args {
		out = append(out, param{displayName(d.Name, i), d.Type, false})
	}
	if withResults {
		for i, d := range res {
			out = append(out, param{displayName(d.Name, i), d.Type, true})
		}
	}
	return out
}

// sigString spells a signature the way --func takes it.
func sigString(name string, params []param) string {
	var args, res []string
	for _, p := range params {
		s := p.name + " " + p.typ.Name
		if isDigits(p.name) {
			s = p.typ.Name
		}
		if p.result {
			res = append(res, s)
		} else {
			args = append(args, s)
		}
	}
	out := name + "(" + strings.Join(args, ", ") + ")"
	switch {
	case len(res) == 1 && !strings.Contains(res[0], " "):
		out += " " + res[0]
	case len(res) > 0:
		out += " (" + strings.Join(res, ", ") + ")"
	}
	return out
}

// compile turns the parameters and field paths into what the BPF program
// reads.
func (pf *Func) compile(params []param, fields []string) error {
	var types []*Type
	var rtypes []*Type
	for _, p := range params {
		if p.result {
			rtypes = append(rtypes, p.typ)
		} else {
			types = append(types, p.typ)
		}
	}
	argLocs, resLocs, err := pf.Conv.Assign(types, rtypes)
	if err != nil {
		return err
	}
	locs := append(argLocs, resLocs...)
	byName := map[string]int{}
	for i, p := range params {
		byName[p.name] = i
		prefix := "arg."
		if p.result {
			prefix = "result."
		}
		key := prefix + p.name
		place := Placement{Key: key, Type: p.typ.Name, Where: locs[i].String()}
		if !p.typ.recordable() {
			hint := ""
			if p.typ.Kind == KindStruct || p.typ.Kind == KindPointer {
				hint = fmt.Sprintf("; name its fields to record them, e.g. {%s.%s}", p.name, firstField(p.typ))
			}
			place.Why = whatIsRecorded + hint
			pf.Notes = append(pf.Notes, fmt.Sprintf("%s (%s) not recorded: %s", key, p.typ.Name, place.Why))
		} else {
			place.Why = pf.add(key, p.typ, locs[i], p.result)
			place.Recorded = place.Why == ""
		}
		pf.Params = append(pf.Params, place)
	}
	for _, path := range fields {
		parts := strings.Split(path, ".")
		i, ok := byName[parts[0]]
		if !ok {
			return fmt.Errorf("field path %s: %s names no parameter or result (they are %s)", path, parts[0], names(params))
		}
		prefix := "arg."
		if params[i].result {
			prefix = "result."
		}
		if err := pf.addPath(prefix+path, params[i], locs[i], parts[1:]); err != nil {
			return fmt.Errorf("field path %s: %v", path, err)
		}
	}
	pf.spec.Nfetch = uint32(len(pf.Values))
	if len(pf.Unreadable) > 0 {
		pf.Notes = append(pf.Notes, strings.Join(pf.Unreadable, ", ")+" not recorded: "+floatRegsNote)
	}
	return nil
}

func firstField(t *Type) string {
	if t.Kind == KindPointer {
		if target, err := t.Target(); err == nil {
			t = target
		}
	}
	if t.Kind == KindStruct && len(t.Fields) > 0 {
		return t.Fields[0].Name
	}
	return "Field"
}

func names(params []param) string {
	var out []string
	for _, p := range params {
		out = append(out, p.name)
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// slot reserves a value or string slot for key; false when full.
func (pf *Func) slot(key string, str bool) (int, bool) {
	nv, ns := 0, 0
	for _, v := range pf.Values {
		if v.Str {
			ns++
		} else {
			nv++
		}
	}
	switch {
	case len(pf.Values) >= maxFetch:
	case str && ns < maxStrs:
		return ns, true
	case !str && nv < maxVals:
		return nv, true
	}
	pf.Notes = append(pf.Notes, fmt.Sprintf("%s not recorded: a span records at most %d values, %d of them strings", key, maxFetch, maxStrs))
	return 0, false
}

// add records a whole parameter or result from its location.
func (pf *Func) add(key string, t *Type, loc Location, result bool) (notRecorded string) {
	if len(loc.Regs) > 0 && loc.Regs[0].Float {
		pf.Unreadable = append(pf.Unreadable, fmt.Sprintf("%s (%s in %s)", key, t.Name, loc.Regs[0].Name))
		return floatRegsNote
	}
	f := bpf.FuncsFetch{AtReturn: boolByte(result)}
	str := false
	switch t.Kind {
	case KindString, KindSlice:
		f.Kind, str = fetchBytes, true
	case KindCString:
		f.Kind, str = fetchCStr, true
	default:
		f.Kind, f.Size = fetchWord, uint8(t.Size)
	}
	if len(loc.Regs) > 0 {
		f.Loc, f.Reg = locReg, bpfRegs[loc.Regs[0].Name]
		if f.Kind == fetchBytes {
			f.Reg2 = bpfRegs[loc.Regs[1].Name]
		}
	} else {
		f.Loc, f.StackOff = locStack, int32(loc.spOffset())
	}
	if t.Kind == KindInterface && !t.Empty {
		// An itab's second word is the dynamic type.
		f.Deref, f.FinalOff, f.Size = 1, 8, 8
	} else if t.Kind == KindInterface {
		f.Size = 8
	}
	return pf.push(key, t, f, str, result)
}

func (pf *Func) push(key string, t *Type, f bpf.FuncsFetch, str, result bool) (notRecorded string) {
	slot, ok := pf.slot(key, str)
	if !ok {
		return fmt.Sprintf("a span records at most %d values, %d of them strings", maxFetch, maxStrs)
	}
	f.Slot = uint8(slot)
	pf.spec.Fetch[len(pf.Values)] = f
	pf.Values = append(pf.Values, Value{Key: key, Type: t, Slot: slot, Str: str, Result: result})
	return ""
}

// addPath records a value reached from a parameter by field names: through
// structs held in registers or on the stack, then through pointers.
func (pf *Func) addPath(key string, p param, loc Location, path []string) error {
	t := p.typ
	var within int64 // offset inside the parameter, while still in it
	for len(path) > 0 && t.Kind == KindStruct {
		f, err := field(t, path[0])
		if err != nil {
			return err
		}
		within += f.Offset
		t = f.Type
		path = path[1:]
	}
	if len(path) == 0 {
		sub, err := subLocation(p.typ, loc, within, t)
		if err != nil {
			return err
		}
		if !t.recordable() {
			return fmt.Errorf("it is a %s: %s", t.Name, whatIsRecorded)
		}
		pf.add(key, t, sub, p.result)
		return nil
	}
	if t.Kind != KindPointer {
		return fmt.Errorf("%s (%s) has no field %s", strings.TrimSuffix(key, "."+strings.Join(path, ".")), t.Name, path[0])
	}
	base, err := subLocation(p.typ, loc, within, t)
	if err != nil {
		return err
	}
	fetch := bpf.FuncsFetch{AtReturn: boolByte(p.result), Deref: 1}
	if len(base.Regs) > 0 {
		fetch.Loc, fetch.Reg = locReg, bpfRegs[base.Regs[0].Name]
	} else {
		fetch.Loc, fetch.StackOff = locStack, int32(base.spOffset())
	}
	// From here on the value is in memory: acc is its offset from the
	// pointer followed last; each further pointer is one hop.
	target, err := t.Target()
	if err != nil {
		return err
	}
	t = target
	var hops []uint32
	var acc int64
	for len(path) > 0 {
		switch t.Kind {
		case KindPointer:
			target, err := t.Target()
			if err != nil {
				return err
			}
			hops = append(hops, uint32(acc))
			acc, t = 0, target
		case KindStruct:
			f, err := field(t, path[0])
			if err != nil {
				return err
			}
			acc += f.Offset
			t = f.Type
			path = path[1:]
		default:
			return fmt.Errorf("%s has no field %s", t.Name, path[0])
		}
	}
	str := false
	switch t.Kind {
	case KindString, KindSlice:
		if !t.recordable() {
			return fmt.Errorf("it is a %s: %s", t.Name, whatIsRecorded)
		}
		fetch.Kind, str = fetchBytes, true
	case KindCString:
		fetch.Kind, str = fetchCStr, true
	case KindInterface:
		fetch.Kind, fetch.Size = fetchWord, 8
		if !t.Empty {
			hops = append(hops, uint32(acc))
			acc = 8
		}
	case KindInt, KindUint, KindBool, KindFloat, KindPointer, KindRef:
		fetch.Kind, fetch.Size = fetchWord, uint8(t.Size)
	default:
		return fmt.Errorf("it is a %s: %s", t.Name, whatIsRecorded)
	}
	if len(hops) > maxHops {
		return fmt.Errorf("follows %d pointers; uranus follows at most %d", len(hops)+1, maxHops+1)
	}
	fetch.Nhops = uint8(len(hops))
	copy(fetch.Hops[:], hops)
	fetch.FinalOff = uint32(acc)
	pf.push(key, t, fetch, str, p.result)
	return nil
}

func field(t *Type, name string) (Field, error) {
	for _, f := range t.Fields {
		if f.Name == name {
			return f, nil
		}
	}
	var known []string
	for _, f := range t.Fields {
		known = append(known, f.Name)
	}
	return Field{}, fmt.Errorf("%s has no field %s (it has %s)", t.Name, name, strings.Join(known, ", "))
}

// subLocation is where the part of a value at byte offset within, of type
// sub, is: the registers holding its words, or its stack slot.
func subLocation(whole *Type, loc Location, within int64, sub *Type) (Location, error) {
	if loc.Stack {
		return Location{Stack: true, Offset: loc.Offset + within}, nil
	}
	if within == 0 && sub == whole {
		return loc, nil
	}
	words := flatten(whole, 0, nil)
	if len(words) != len(loc.Regs) {
		return Location{}, fmt.Errorf("internal: %d words in %d registers", len(words), len(loc.Regs))
	}
	n := len(flatten(sub, 0, nil))
	for i, w := range words {
		if w == within && i+n <= len(words) {
			return Location{Regs: loc.Regs[i : i+n]}, nil
		}
	}
	return Location{}, fmt.Errorf("no register holds offset %d of %s", within, whole.Name)
}

// flatten lists the offsets of the scalar words of t in the order the
// register ABI assigns them.
func flatten(t *Type, base int64, out []int64) []int64 {
	switch t.Kind {
	case KindString, KindInterface:
		return append(out, base, base+8)
	case KindSlice:
		return append(out, base, base+8, base+16)
	case KindComplex:
		return append(out, base, base+t.Size/2)
	case KindStruct:
		for _, f := range t.Fields {
			out = flatten(f.Type, base+f.Offset, out)
		}
		return out
	case KindArray:
		if t.Len == 1 {
			return flatten(t.Elem, base, out)
		}
		return out
	}
	if t.Size == 0 {
		return out
	}
	return append(out, base)
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
