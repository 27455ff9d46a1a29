package instrumentors_test

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/uranus-otel/uranus/instrumentors"
)

// toy is an instrumentor with one switch and one repeatable checked
// option; giving the latter turns it on.
func toy() *instrumentors.Instrumentor {
	return &instrumentors.Instrumentor{
		ID:           "toy",
		OffByDefault: true,
		Options: []instrumentors.Option{
			{Name: "toy-loud", Bool: true, Usage: "be loud"},
			{Name: "toy-n", Usage: "count `N`", Parse: func(s string) (any, error) {
				n, err := strconv.Atoi(s)
				if err != nil || n < 0 {
					return nil, fmt.Errorf("%q is not a count", s)
				}
				return n, nil
			}},
		},
		Configure: func(decl *instrumentors.Instrumentor, s instrumentors.Settings, _ *slog.Logger) (*instrumentors.Instrumentor, error) {
			c := *decl
			c.Doc = fmt.Sprintf("loud=%v n=%v", s.Bool("toy-loud"), s["toy-n"])
			c.OffByDefault = len(s["toy-n"]) == 0
			return &c, nil
		},
	}
}

func TestOptions(t *testing.T) {
	plain := &instrumentors.Instrumentor{ID: "plain"}
	for _, c := range []struct {
		args    []string
		doc     string
		on      bool
		failure string
	}{
		{nil, "loud=false n=[]", false, ""},
		{[]string{"--toy-loud", "--toy-n", "3", "--toy-n=4"}, "loud=true n=[3 4]", true, ""},
		{[]string{"--toy-loud=false"}, "loud=false n=[]", false, ""},
		{[]string{"--toy-n", "x"}, "", false, `invalid value "x" for flag -toy-n: "x" is not a count`},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			decl := toy()
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			settings := instrumentors.DeclareFlags(fs, []*instrumentors.Instrumentor{plain, decl})
			err := fs.Parse(c.args)
			if c.failure != "" {
				if err == nil || err.Error() != c.failure {
					t.Fatalf("parse: %v, want %q", err, c.failure)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			list, on, err := instrumentors.Configure([]*instrumentors.Instrumentor{plain, decl}, settings, nil)
			if err != nil {
				t.Fatal(err)
			}
			if list[0] != plain {
				t.Error("an instrumentor without options was replaced")
			}
			if list[1].Doc != c.doc || on["toy"] != c.on || list[1].OffByDefault == c.on {
				t.Errorf("configured: doc %q, turned on %v, off by default %v; want %q, %v", list[1].Doc, on["toy"], list[1].OffByDefault, c.doc, c.on)
			}
			if decl.Doc != "" || !decl.OffByDefault {
				t.Error("Configure changed the declaration")
			}
		})
	}
}
