package main

import (
	"bytes"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uranus-otel/uranus/instrumentors/all"
)

// TestInstrumentorOptions: the command declares every instrumentor's own
// options from the registry, and --list names each beside its instrumentor.
func TestInstrumentorOptions(t *testing.T) {
	fs := flag.NewFlagSet("uranus", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var c runConfig
	runFlags(fs, &c)
	var out bytes.Buffer
	listInstrumentors(&out)
	rows := map[string]string{}
	for _, line := range strings.Split(out.String(), "\n") {
		if id, _, ok := strings.Cut(line, " "); ok {
			rows[id] = line
		}
	}
	for _, in := range all.List {
		for _, o := range in.Options {
			if fs.Lookup(o.Name) == nil {
				t.Errorf("%s's option --%s is not a flag of uranus", in.ID, o.Name)
			}
			if !strings.Contains(rows[in.ID], "--"+o.Name) {
				t.Errorf("--list does not show %s's option --%s: %q", in.ID, o.Name, rows[in.ID])
			}
		}
	}
}

// TestNoPackageStateSetFromCmd: options belong to the instrumentors that
// declare them; nothing in cmd/uranus assigns another package's variables
// (as it once set httpclient.KeepQueryValues and gotls.CaptureBytes).
func TestNoPackageStateSetFromCmd(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		imported := map[string]bool{}
		for _, im := range f.Imports {
			p := strings.Trim(im.Path.Value, `"`)
			n := p[strings.LastIndex(p, "/")+1:]
			if im.Name != nil {
				n = im.Name.Name
			}
			imported[n] = true
		}
		check := func(lhs ast.Expr) {
			if sel, ok := lhs.(*ast.SelectorExpr); ok {
				if id, ok := sel.X.(*ast.Ident); ok && imported[id.Name] {
					t.Errorf("%s: assigns %s.%s, a variable of another package", fset.Position(lhs.Pos()), id.Name, sel.Sel.Name)
				}
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.AssignStmt:
				for _, l := range n.Lhs {
					check(l)
				}
			case *ast.IncDecStmt:
				check(n.X)
			}
			return true
		})
	}
}
