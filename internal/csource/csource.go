// Package csource reads the few declarations of uranus's C programs that the
// Go side mirrors: enums and #defines of integer values. Tests compare the
// Go mirrors with what this reads from bpf/*.c and bpf/*.h, so a value
// changed on one side only fails a plain `go test` rather than a kernel.
//
// BTF cannot serve: clang records an enum only when a global's type uses
// it, and a #define never. The parser knows only the forms the C files use
// (decimal or hex literals, optionally parenthesised, and references to an
// earlier enumerator or define) and reports anything else rather than guess.
package csource

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
)

// Constant is one enumerator or define.
type Constant struct {
	Name  string
	Value int64
}

// BPFFile reads a file of the bpf/ directory ("uranus.h", "funcs.c") of
// this source tree, whatever the reading test's working directory.
func BPFFile(name string) (string, error) {
	root, err := Root()
	if err != nil {
		return "", fmt.Errorf("reading bpf/%s: %w", name, err)
	}
	b, err := os.ReadFile(filepath.Join(root, "bpf", name))
	if err != nil {
		return "", fmt.Errorf("reading bpf/%s: %w", name, err)
	}
	return string(b), nil
}

// Root is the directory of the uranus module: found from this source
// file's path, or, when a -trimpath build hides that, by walking up from
// the working directory (a test's is its package directory) to go.mod.
func Root() (string, error) {
	if _, self, _, ok := runtime.Caller(0); ok && filepath.IsAbs(self) {
		return filepath.Join(filepath.Dir(self), "..", ".."), nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory: cannot find the source tree")
		}
		dir = parent
	}
}

var (
	lineComment  = regexp.MustCompile(`//[^\n]*`)
	blockComment = regexp.MustCompile(`(?s)/\*.*?\*/`)
	defineLine   = regexp.MustCompile(`(?m)^[ \t]*#[ \t]*define[ \t]+([A-Za-z_]\w*)[ \t]+([^\n]*)$`)
	identifier   = regexp.MustCompile(`^[A-Za-z_]\w*$`)
	volatileDecl = regexp.MustCompile(`\bvolatile[ \t]+const[ \t]+\w+[ \t]+([A-Za-z_]\w*)`)
)

func stripComments(src string) string {
	return lineComment.ReplaceAllString(blockComment.ReplaceAllString(src, " "), "")
}

// Enum returns the enumerators of `enum name { ... }` in src, in order, with
// their values as C assigns them.
func Enum(src, name string) ([]Constant, error) {
	src = stripComments(src)
	head := regexp.MustCompile(`\benum[ \t\n]+` + regexp.QuoteMeta(name) + `[ \t\n]*\{`)
	loc := head.FindStringIndex(src)
	if loc == nil {
		return nil, fmt.Errorf("no enum %s", name)
	}
	body, _, ok := strings.Cut(src[loc[1]:], "}")
	if !ok {
		return nil, fmt.Errorf("enum %s has no closing brace", name)
	}
	known := map[string]int64{}
	var out []Constant
	next := int64(0)
	for _, item := range strings.Split(body, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue // the comma after the last enumerator
		}
		id, expr, explicit := strings.Cut(item, "=")
		id = strings.TrimSpace(id)
		if !identifier.MatchString(id) {
			return nil, fmt.Errorf("enum %s: %q is not an enumerator", name, item)
		}
		v := next
		if explicit {
			var err error
			if v, err = value(expr, known); err != nil {
				return nil, fmt.Errorf("enum %s: %s: %w", name, id, err)
			}
		}
		known[id] = v
		out = append(out, Constant{Name: id, Value: v})
		next = v + 1
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("enum %s is empty", name)
	}
	return out, nil
}

// Defines returns the #defines in src whose names start with prefix and
// whose values are integers (or name an earlier such define), in order of
// appearance. A matching define of any other form is an error.
func Defines(src, prefix string) ([]Constant, error) {
	known := map[string]int64{}
	var out []Constant
	for _, m := range defineLine.FindAllStringSubmatch(stripComments(src), -1) {
		v, err := value(m[2], known)
		if !strings.HasPrefix(m[1], prefix) {
			if err == nil { // others only serve as names a matching one may use
				known[m[1]] = v
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("#define %s: %w", m[1], err)
		}
		known[m[1]] = v
		out = append(out, Constant{Name: m[1], Value: v})
	}
	return out, nil
}

// Define returns the value of one integer #define in src.
func Define(src, name string) (int64, error) {
	all, err := Defines(src, name)
	if err != nil {
		return 0, err
	}
	for _, c := range all {
		if c.Name == name {
			return c.Value, nil
		}
	}
	return 0, fmt.Errorf("no #define %s", name)
}

// value evaluates a literal ("16", "0x01", "(1)", "256U") or the name of a
// constant already seen.
func value(expr string, known map[string]int64) (int64, error) {
	e := strings.TrimSpace(expr)
	for len(e) >= 2 && e[0] == '(' && e[len(e)-1] == ')' {
		e = strings.TrimSpace(e[1 : len(e)-1])
	}
	if v, ok := known[e]; ok {
		return v, nil
	}
	lit := strings.TrimRight(e, "uUlL")
	if v, err := strconv.ParseInt(lit, 0, 64); err == nil && lit != "" {
		return v, nil
	}
	return 0, fmt.Errorf("%q is not an integer literal or an earlier constant", strings.TrimSpace(expr))
}

// VolatileConsts names the `volatile const` globals src declares: the
// constants user space sets before loading.
func VolatileConsts(src string) []string {
	var out []string
	for _, m := range volatileDecl.FindAllStringSubmatch(stripComments(src), -1) {
		out = append(out, m[1])
	}
	return out
}
