package toy_test

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/instrumentors/all"
	"github.com/uranus-otel/uranus/internal/e2e"
	"github.com/uranus-otel/uranus/internal/testapp"
	"github.com/uranus-otel/uranus/internal/toy"
)

// TestToyInstrumentor: an instrumentor added as a newcomer would — one
// folder, one C file, one registry line (here the test's) — for a library
// outside the standard library works end to end: its members come from the
// module's version (golang.org/x/sync v0.1.0, through the target's DWARF,
// as uranus ships no table for x/sync), and its spans nest in the request.
func TestToyInstrumentor(t *testing.T) {
	e2e.RequireBPF(t)
	registry := append(slices.Clone(all.List), toy.Instrumentor) // the registry line
	var list []*instrumentors.Instrumentor
	for _, in := range registry {
		if !in.OffByDefault {
			list = append(list, in)
		}
	}
	for _, v := range []string{"1.16.15", "1.27.4"} {
		t.Run(v, func(t *testing.T) {
			p := e2e.Start(t, e2e.BuildTarget(t, "relay", v, testapp.Options{}))
			s := e2e.Attach(t, list, p.Cmd.Process.Pid)
			// Groups with and without WithContext, failing or not.
			want := map[[2]bool]int{}
			for _, c := range [][2]bool{{true, true}, {true, false}, {false, false}} {
				get(t, fmt.Sprintf("http://%s/errgroup?ctx=%d&fail=%d", p.Addr, b2i(c[0]), b2i(c[1])))
				want[c]++
			}
			get(t, "http://"+p.Addr+"/call-errgroup?url="+url.QueryEscape("http://"+p.Addr+"/sleep?ms=1"))
			want[[2]bool{false, false}]++
			got := map[[2]bool]int{}
			for _, sp := range s.WaitSpans(14) {
				if sp.Name != "errgroup.Wait" {
					continue
				}
				attrs := map[string]bool{}
				for _, kv := range sp.Attributes {
					attrs[string(kv.Key)] = kv.Value.AsBool()
				}
				got[[2]bool{attrs["errgroup.with_context"], attrs["errgroup.failed"]}]++
				if !sp.Parent.IsValid() {
					t.Error("an errgroup.Wait span outside its request's span")
				}
			}
			if !maps.Equal(got, want) {
				t.Errorf("errgroup.Wait spans by (with_context, failed): %v; want %v", got, want)
			}
		})
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func get(t *testing.T, u string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}
