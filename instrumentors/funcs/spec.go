package funcs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Spec is one function the user asked for: its symbol name, optionally its
// signature, and the fields to record through its pointer arguments.
type Spec struct {
	// Name is the symbol: "main.Divide", "main.(*Cart).Add",
	// "main.main.func1", "utest_add", "_Z9utest_addii".
	Name string
	// HasSig tells a signature was given ("main.F()" has one, with no
	// parameters); without one uranus reads it from DWARF.
	HasSig  bool
	Params  []Param
	Results []Param
	// Fields are paths from a parameter or result through struct fields
	// ("r.URL.Path"), each recorded as an attribute of its own.
	Fields []string
}

// Param is one parameter or result as written. Name is "" when unnamed.
type Param struct {
	Name string
	Type *TypeExpr
}

// String renders s in the --func syntax, with types in their canonical
// spelling.
func (s Spec) String() string {
	var b strings.Builder
	b.WriteString(s.Name)
	if s.HasSig {
		b.WriteString(paramList(s.Params))
		switch {
		case len(s.Results) == 1 && s.Results[0].Name == "":
			b.WriteString(" " + s.Results[0].Type.String())
		case len(s.Results) > 0:
			b.WriteString(" " + paramList(s.Results))
		}
	}
	if len(s.Fields) > 0 {
		b.WriteString(" {" + strings.Join(s.Fields, ", ") + "}")
	}
	return b.String()
}

func paramList(ps []Param) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = strings.TrimSpace(p.Name + " " + p.Type.String())
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// ExprKind is the shape of a written type.
type ExprKind uint8

const (
	ExprNamed     ExprKind = iota + 1 // int, http.Request, net/http.Request, pkg.List[int]
	ExprPointer                       // *T
	ExprSlice                         // []T, and a variadic ...T
	ExprArray                         // [N]T
	ExprMap                           // map[K]V
	ExprChan                          // chan T, <-chan T, chan<- T
	ExprFunc                          // func(…) …
	ExprInterface                     // interface{…}
	ExprStruct                        // struct{…}
)

// TypeExpr is a Go type as written in a signature, before it is laid out.
type TypeExpr struct {
	Kind ExprKind
	Name string    // ExprNamed: as written, type arguments included
	Elem *TypeExpr // pointer target, slice/array/chan element, map value
	Key  *TypeExpr // map key
	Len  int64     // array length
	// Text is the canonical spelling of a chan, func, interface or struct
	// type; Empty tells an interface has no methods.
	Text  string
	Empty bool
}

// String is the canonical spelling: package paths shortened to the
// package name ("*net/http.Request" → "*http.Request"), byte and rune as
// uint8 and int32, any as interface {} — the way signatures are compared.
func (t *TypeExpr) String() string {
	if t == nil {
		return "?"
	}
	switch t.Kind {
	case ExprNamed:
		return canonicalName(t.Name)
	case ExprPointer:
		return "*" + t.Elem.String()
	case ExprSlice:
		return "[]" + t.Elem.String()
	case ExprArray:
		return "[" + strconv.FormatInt(t.Len, 10) + "]" + t.Elem.String()
	case ExprMap:
		return "map[" + t.Key.String() + "]" + t.Elem.String()
	}
	return t.Text
}

// canonicalName shortens every package path in a type name to its last
// element and spells the aliases as the types they stand for.
func canonicalName(name string) string {
	switch name {
	case "byte":
		return "uint8"
	case "rune":
		return "int32"
	case "any":
		return "interface {}"
	}
	var b strings.Builder
	start := 0
	flush := func(end int) {
		word := name[start:end]
		if i := strings.LastIndexByte(word, '/'); i >= 0 {
			word = word[i+1:]
		}
		b.WriteString(word)
	}
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '[', ']', ',', ' ', '*', '(', ')':
			flush(i)
			b.WriteByte(name[i])
			start = i + 1
		}
	}
	flush(len(name))
	return b.String()
}

// Limits on what ParseFunc accepts, so that a hostile or mistyped argument
// cannot make the parser recurse or allocate without bound.
const (
	maxSpecLen   = 4096
	maxTypeDepth = 32
)

// ParseFunc parses one --func value (the error does not repeat it):
//
//	NAME[(PARAMS) [RESULTS]] [{PATH, …}]
//
// e.g. "main.Divide(dividend int, divisor int) (quotient int, remainder int)",
// "main.(*Cart).Add", "main.handle(w http.ResponseWriter, r *http.Request) {r.URL.Path}".
// Parameters and results use Go syntax; types may be qualified by package
// name (http.Request) or path (net/http.Request).
func ParseFunc(s string) (Spec, error) {
	if len(s) > maxSpecLen {
		return Spec{}, fmt.Errorf("longer than %d bytes", maxSpecLen)
	}
	if !utf8.ValidString(s) {
		return Spec{}, errors.New("not valid UTF-8")
	}
	p := &sigParser{src: s}
	p.skipSpace()
	name, err := p.funcName()
	if err != nil {
		return Spec{}, err
	}
	spec := Spec{Name: name}
	p.skipSpace()
	if p.peek() == '(' {
		spec.HasSig = true
		if spec.Params, err = p.params(); err != nil {
			return Spec{}, err
		}
		p.skipSpace()
		switch c := p.peek(); {
		case c == '(':
			if spec.Results, err = p.params(); err != nil {
				return Spec{}, err
			}
		case c != 0 && c != '{':
			t, err := p.typ(0)
			if err != nil {
				return Spec{}, fmt.Errorf("result: %v", err)
			}
			spec.Results = []Param{{Type: t}}
		}
		if err := checkNames(spec.Params, spec.Results); err != nil {
			return Spec{}, err
		}
	}
	p.skipSpace()
	if p.peek() == '{' {
		if spec.Fields, err = p.fieldPaths(); err != nil {
			return Spec{}, err
		}
	}
	p.skipSpace()
	if !p.eof() {
		return Spec{}, fmt.Errorf("unexpected %q at offset %d", p.rest(10), p.pos)
	}
	return spec, nil
}

// checkNames rejects duplicate parameter names, which would make two
// attributes with one key.
func checkNames(params, results []Param) error {
	seen := map[string]bool{}
	for _, ps := range [][]Param{params, results} {
		for _, p := range ps {
			if p.Name == "" || p.Name == "_" {
				continue
			}
			if seen[p.Name] {
				return fmt.Errorf("parameter name %s used twice", p.Name)
			}
			seen[p.Name] = true
		}
	}
	return nil
}

// sigParser reads a --func signature. It is written by hand rather than
// with go/parser because a signature is not Go source: the function is
// named by its symbol ("github.com/x/y.(*T).M", a package path with slashes
// and dots, a method by its receiver in parentheses), and types are
// qualified by package path too ("*github.com/x/y.T"), which go/parser
// rejects; Go's own syntax (pointers, slices, arrays, maps, channels, func,
// struct and interface literals, type arguments) is followed as written.
type sigParser struct {
	src string
	pos int
}

func (p *sigParser) eof() bool { return p.pos >= len(p.src) }

func (p *sigParser) peek() byte {
	if p.eof() {
		return 0
	}
	return p.src[p.pos]
}

func (p *sigParser) rest(n int) string {
	r := p.src[p.pos:]
	if len(r) > n {
		r = r[:n] + "…"
	}
	return r
}

func (p *sigParser) skipSpace() {
	for !p.eof() && (p.src[p.pos] == ' ' || p.src[p.pos] == '\t' || p.src[p.pos] == '\n' || p.src[p.pos] == '\r') {
		p.pos++
	}
}

func (p *sigParser) expect(tok string) error {
	p.skipSpace()
	if !strings.HasPrefix(p.src[p.pos:], tok) {
		if p.eof() {
			return fmt.Errorf("expected %q, found the end", tok)
		}
		return fmt.Errorf("expected %q at offset %d, found %q", tok, p.pos, p.rest(10))
	}
	p.pos += len(tok)
	return nil
}

// funcName reads a symbol name. Parentheses belong to it when they follow
// a dot (a method's receiver: main.(*Cart).Add); brackets always do (type
// arguments: main.Map[go.shape.int], which may hold anything). The name
// ends at whitespace, at a parameter list's "(" or at a "{".
func (p *sigParser) funcName() (string, error) {
	start := p.pos
	brackets, inReceiver := 0, false
	for ; !p.eof(); p.pos++ {
		c := p.src[p.pos]
		switch {
		case c == '[':
			brackets++
		case c == ']':
			if brackets == 0 {
				return "", fmt.Errorf("unbalanced ] in function name at offset %d", p.pos)
			}
			brackets--
		case brackets > 0:
		case c == '(' && inReceiver:
			return "", fmt.Errorf("unbalanced ( in function name at offset %d", p.pos)
		case c == '(' && p.pos > start && p.src[p.pos-1] == '.':
			inReceiver = true
		case c == ')' && inReceiver:
			inReceiver = false
		case c == ')':
			return "", fmt.Errorf("unbalanced ) in function name at offset %d", p.pos)
		case inReceiver && (c == '{' || c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return "", fmt.Errorf("unbalanced ( in function name at offset %d", p.pos)
		case c == '(' || c == '{' || c == ' ' || c == '\t' || c == '\n' || c == '\r':
			return p.nameEnd(start)
		}
	}
	if brackets != 0 || inReceiver {
		return "", errors.New("unbalanced brackets in function name")
	}
	return p.nameEnd(start)
}

func (p *sigParser) nameEnd(start int) (string, error) {
	name := p.src[start:p.pos]
	if name == "" {
		return "", errors.New("no function name (e.g. main.Divide, or utest_add for C)")
	}
	if strings.HasSuffix(name, ".") {
		return "", fmt.Errorf("function name %q ends with a dot", name)
	}
	return name, nil
}

// params reads "(…)": Go's parameter list, where names are optional but
// all-or-none, and "a, b int" gives a and b one type.
func (p *sigParser) params() ([]Param, error) {
	if err := p.expect("("); err != nil {
		return nil, err
	}
	type entry struct {
		name string
		typ  *TypeExpr
	}
	var entries []entry
	named := false
	for {
		p.skipSpace()
		if p.peek() == ')' {
			p.pos++
			break
		}
		if len(entries) > 0 {
			if err := p.expect(","); err != nil {
				return nil, err
			}
			p.skipSpace()
			if p.peek() == ')' { // trailing comma
				p.pos++
				break
			}
		}
		first, err := p.typ(0)
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if c := p.peek(); c != ',' && c != ')' {
			// "name type": first must have been a plain identifier.
			if first.Kind != ExprNamed || !isIdent(first.Name) {
				return nil, fmt.Errorf("expected \",\" or \")\" after %s at offset %d, found %q", first, p.pos, p.rest(10))
			}
			t, err := p.typ(0)
			if err != nil {
				return nil, err
			}
			entries = append(entries, entry{first.Name, t})
			named = true
			continue
		}
		entries = append(entries, entry{typ: first})
	}
	out := make([]Param, len(entries))
	if !named {
		for i, e := range entries {
			out[i] = Param{Type: e.typ}
		}
		return out, nil
	}
	// Grouped names take the type of the next named entry: (a, b int).
	var pending []int
	for i, e := range entries {
		if e.name == "" {
			if e.typ.Kind != ExprNamed || !isIdent(e.typ.Name) {
				return nil, fmt.Errorf("mixed named and unnamed parameters: %s has no name", e.typ)
			}
			pending = append(pending, i)
			continue
		}
		for _, j := range pending {
			out[j] = Param{Name: entries[j].typ.Name, Type: e.typ}
		}
		pending = pending[:0]
		out[i] = Param{Name: e.name, Type: e.typ}
	}
	if len(pending) > 0 {
		return nil, fmt.Errorf("parameter %s has no type (names are given to all parameters or to none)", entries[pending[0]].typ.Name)
	}
	return out, nil
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || unicode.IsLetter(r) || i > 0 && unicode.IsDigit(r)) {
			return false
		}
	}
	return true
}

// typ reads one type: by its first token, then by the keyword or name
// that starts it.
func (p *sigParser) typ(depth int) (*TypeExpr, error) {
	if depth > maxTypeDepth {
		return nil, fmt.Errorf("types nested deeper than %d", maxTypeDepth)
	}
	p.skipSpace()
	if p.eof() {
		return nil, errors.New("expected a type, found the end")
	}
	rest := p.src[p.pos:]
	switch {
	case rest[0] == '*':
		p.pos++
		return p.wrap(depth, ExprPointer)
	case strings.HasPrefix(rest, "..."):
		p.pos += 3
		return p.wrap(depth, ExprSlice)
	case rest[0] == '[':
		p.pos++
		return p.sliceOrArray(depth)
	case rest[0] == '(':
		p.pos++
		t, err := p.typ(depth + 1)
		if err != nil {
			return nil, err
		}
		return t, p.expect(")")
	case strings.HasPrefix(rest, "<-"):
		p.pos += 2
		if err := p.keyword("chan"); err != nil {
			return nil, err
		}
		return p.chanOf(depth, "<-chan ")
	}
	word := p.word()
	switch word {
	case "":
		return nil, fmt.Errorf("expected a type at offset %d, found %q", p.pos, p.rest(10))
	case "map":
		return p.mapType(depth)
	case "chan":
		p.skipSpace()
		if strings.HasPrefix(p.src[p.pos:], "<-") {
			p.pos += 2
			return p.chanOf(depth, "chan<- ")
		}
		return p.chanOf(depth, "chan ")
	case "func":
		return p.funcType(depth)
	case "interface", "struct":
		return p.bracedType(word)
	}
	return p.named(depth, word)
}

// wrap reads the element type of a pointer or slice whose prefix was read.
func (p *sigParser) wrap(depth int, kind ExprKind) (*TypeExpr, error) {
	elem, err := p.typ(depth + 1)
	if err != nil {
		return nil, err
	}
	return &TypeExpr{Kind: kind, Elem: elem}, nil
}

// sliceOrArray reads "]T" or "N]T", after the '['.
func (p *sigParser) sliceOrArray(depth int) (*TypeExpr, error) {
	p.skipSpace()
	if p.peek() == ']' {
		p.pos++
		return p.wrap(depth, ExprSlice)
	}
	start := p.pos
	for !p.eof() && p.peek() >= '0' && p.peek() <= '9' {
		p.pos++
	}
	n, err := strconv.ParseInt(p.src[start:p.pos], 10, 64)
	if err != nil || n < 0 || n > 1<<30 {
		return nil, fmt.Errorf("bad array length at offset %d", start)
	}
	if err := p.expect("]"); err != nil {
		return nil, err
	}
	elem, err := p.typ(depth + 1)
	if err != nil {
		return nil, err
	}
	return &TypeExpr{Kind: ExprArray, Len: n, Elem: elem}, nil
}

// chanOf reads a channel's element type; prefix spells its direction.
func (p *sigParser) chanOf(depth int, prefix string) (*TypeExpr, error) {
	elem, err := p.typ(depth + 1)
	if err != nil {
		return nil, err
	}
	return &TypeExpr{Kind: ExprChan, Elem: elem, Text: prefix + elem.String()}, nil
}

// mapType reads "[K]V", after "map".
func (p *sigParser) mapType(depth int) (*TypeExpr, error) {
	if err := p.expect("["); err != nil {
		return nil, err
	}
	key, err := p.typ(depth + 1)
	if err != nil {
		return nil, err
	}
	if err := p.expect("]"); err != nil {
		return nil, err
	}
	val, err := p.typ(depth + 1)
	if err != nil {
		return nil, err
	}
	return &TypeExpr{Kind: ExprMap, Key: key, Elem: val}, nil
}

// funcType reads a function type's parameters and results, after "func";
// only its text is kept (a func value is one pointer, never followed).
func (p *sigParser) funcType(depth int) (*TypeExpr, error) {
	p.skipSpace()
	params, err := p.params()
	if err != nil {
		return nil, err
	}
	text := "func" + typeList(params)
	p.skipSpace()
	switch c := p.peek(); {
	case c == '(':
		results, err := p.params()
		if err != nil {
			return nil, err
		}
		if len(results) == 1 {
			text += " " + results[0].Type.String()
		} else if len(results) > 1 {
			text += " " + typeList(results)
		}
	case c != 0 && c != ',' && c != ')' && c != ']' && c != '{' && c != ';' && c != '}':
		r, err := p.typ(depth + 1)
		if err != nil {
			return nil, err
		}
		text += " " + r.String()
	}
	return &TypeExpr{Kind: ExprFunc, Text: text}, nil
}

// bracedType reads an interface or struct literal's body, after its
// keyword; only its text is kept.
func (p *sigParser) bracedType(word string) (*TypeExpr, error) {
	body, err := p.braces()
	if err != nil {
		return nil, err
	}
	kind := ExprInterface
	if word == "struct" {
		kind = ExprStruct
	}
	if body == "" {
		return &TypeExpr{Kind: kind, Text: word + " {}", Empty: true}, nil
	}
	return &TypeExpr{Kind: kind, Text: word + " { " + body + " }"}, nil
}

// named checks a type name (a predeclared one, or a package path's:
// "github.com/x/y.T") and reads its type arguments, "pkg.List[int]".
func (p *sigParser) named(depth int, word string) (*TypeExpr, error) {
	if strings.ContainsAny(word[len(word)-1:], "./-~") || strings.Contains(word, "..") || strings.Contains(word, "//") {
		return nil, fmt.Errorf("%q is not a type name", word)
	}
	if word == "any" {
		return &TypeExpr{Kind: ExprInterface, Text: "interface {}", Empty: true}, nil
	}
	if p.peek() == '[' {
		p.pos++
		var args []string
		for {
			t, err := p.typ(depth + 1)
			if err != nil {
				return nil, err
			}
			args = append(args, t.String())
			p.skipSpace()
			if p.peek() == ',' {
				p.pos++
				continue
			}
			if err := p.expect("]"); err != nil {
				return nil, err
			}
			break
		}
		word += "[" + strings.Join(args, ",") + "]"
	}
	return &TypeExpr{Kind: ExprNamed, Name: word}, nil
}

func typeList(ps []Param) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.Type.String()
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func (p *sigParser) keyword(kw string) error {
	p.skipSpace()
	if p.word() != kw {
		return fmt.Errorf("expected %q at offset %d", kw, p.pos)
	}
	return nil
}

// word reads an identifier or a qualified name, package path included:
// "int", "http.Request", "github.com/org/pkg.Type".
func (p *sigParser) word() string {
	start := p.pos
	for !p.eof() {
		r, size := utf8.DecodeRuneInString(p.src[p.pos:])
		ok := r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)
		if p.pos > start {
			ok = ok || r == '.' || r == '/' || r == '-' || r == '~'
		}
		if !ok {
			break
		}
		p.pos += size
	}
	w := p.src[start:p.pos]
	// A package path has no empty element, and a name follows its last
	// one: "t/.t" and "a//b.T" name nothing (and would not spell back).
	if i := strings.LastIndexByte(w, '/'); i >= 0 && (i == len(w)-1 || w[i+1] == '.' || strings.Contains(w, "//")) {
		p.pos = start
		return ""
	}
	return w
}

// braces reads a balanced "{…}" and returns what is inside, trimmed, with
// runs of white space made one space.
func (p *sigParser) braces() (string, error) {
	if err := p.expect("{"); err != nil {
		return "", err
	}
	start, depth := p.pos, 1
	for !p.eof() {
		switch p.src[p.pos] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				body := strings.Join(strings.Fields(p.src[start:p.pos]), " ")
				p.pos++
				return body, nil
			}
		}
		p.pos++
	}
	return "", errors.New("unbalanced {")
}

// fieldPaths reads "{r.URL.Path, r.Method}".
func (p *sigParser) fieldPaths() ([]string, error) {
	body, err := p.braces()
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, f := range strings.FieldsFunc(body, func(r rune) bool { return r == ',' || r == ' ' }) {
		if err := checkPath(f); err != nil {
			return nil, err
		}
		paths = append(paths, f)
	}
	if len(paths) == 0 {
		return nil, errors.New("empty {} field list")
	}
	return paths, nil
}

// checkPath accepts "param.Field.Field…": identifiers joined by dots.
func checkPath(path string) error {
	parts := strings.Split(path, ".")
	if len(parts) < 2 {
		return fmt.Errorf("field path %q: want PARAM.FIELD[.FIELD…], e.g. r.URL.Path", path)
	}
	for _, part := range parts {
		if !isIdent(part) {
			return fmt.Errorf("field path %q: %q is not an identifier", path, part)
		}
	}
	return nil
}
